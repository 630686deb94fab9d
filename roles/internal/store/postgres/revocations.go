package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Kinds of the revocations table.
const (
	kindAgent      = "agent"
	kindDispatcher = "dispatcher"
)

// RevokeSerial adds serial to the revoked agent serials, noting host,
// reason and the time (whole seconds, UTC). The serial is kept as the
// files store writes it to revoked-serials: lowercase hex, with a 0x
// prefix when it has no hex letter; the notes as it lists them: control
// characters as spaces, the reason without trailing white space. A serial
// already listed is left as it is.
func (s *Store) RevokeSerial(serial *big.Int, host, reason string, at time.Time) error {
	return s.revoke(kindAgent, serial, host, reason, at)
}

// RevokeDispatcherSerial adds serial to the revoked dispatcher serials (the
// list pushed to agents), noted as by host "dispatcher", as the files
// store notes it.
func (s *Store) RevokeDispatcherSerial(serial *big.Int, reason string, at time.Time) error {
	return s.revoke(kindDispatcher, serial, "dispatcher", reason, at)
}

func (s *Store) revoke(kind string, serial *big.Int, host, reason string, at time.Time) error {
	if serial == nil || serial.Sign() <= 0 {
		return errors.New("revoke: no serial number")
	}
	text := store.RevokedSerialText(serial)
	what := "revoke serial " + text
	return s.call(what, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO revocations (kind, serial, host, reason, at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (kind, serial) DO NOTHING`, kind, text, store.OneLine(host), strings.TrimRightFunc(store.OneLine(reason), unicode.IsSpace), at.UTC().Truncate(time.Second))
		if err != nil {
			return s.dbError(what, err)
		}
		return nil
	})
}

// RevokedSerials returns the revoked agent serials. Rows are checked when
// written, so there are no warnings unless someone edited the table by
// hand: a serial that does not parse is a warning naming its row.
func (s *Store) RevokedSerials() (pki.SerialSet, []error, error) {
	return s.serialSet(kindAgent)
}

// RevokedDispatcherSerials returns the revoked dispatcher serials, with
// warnings as RevokedSerials.
func (s *Store) RevokedDispatcherSerials() (pki.SerialSet, []error, error) {
	return s.serialSet(kindDispatcher)
}

func (s *Store) serialSet(kind string) (pki.SerialSet, []error, error) {
	list, err := s.revocations(kind)
	if err != nil {
		return pki.SerialSet{}, nil, err
	}
	var set pki.SerialSet
	var warnings []error
	for i, r := range list {
		ns, err := pki.ParseSerial(r.Serial)
		if err != nil {
			warnings = append(warnings, fmt.Errorf("revocations (%s) entry %d: %w", kind, i+1, err))
			continue
		}
		for _, n := range ns {
			set.Add(n)
		}
	}
	return set, warnings, nil
}

// ListRevocations returns the revoked agent serials with their notes, in
// the order they were revoked.
func (s *Store) ListRevocations() ([]store.Revocation, error) {
	return s.revocations(kindAgent)
}

func (s *Store) revocations(kind string) ([]store.Revocation, error) {
	var out []store.Revocation
	err := s.call("read revocations", func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT serial, host, reason, at FROM revocations WHERE kind = $1 ORDER BY id", kind)
		if err != nil {
			return s.dbError("read revocations", err)
		}
		out, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.Revocation, error) {
			var r store.Revocation
			err := row.Scan(&r.Serial, &r.Host, &r.Reason, &r.At)
			r.At = r.At.UTC()
			return r, err
		})
		if err != nil {
			return s.dbError("read revocations", err)
		}
		return nil
	})
	if err != nil || len(out) == 0 {
		return nil, err
	}
	return out, nil
}

// GetRotation returns the last rotation of the dispatcher's certificate,
// or an error wrapping store.ErrNotFound when there was none.
func (s *Store) GetRotation() (store.Rotation, error) {
	var r store.Rotation
	err := s.call("read rotation state", func(ctx context.Context, c *pgx.Conn) error {
		var record string
		err := c.QueryRow(ctx, "SELECT record FROM rotation WHERE id = 1").Scan(&record)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("no rotation recorded: %w", store.ErrNotFound)
		}
		if err != nil {
			return s.dbError("read rotation state", err)
		}
		if err := json.Unmarshal([]byte(record), &r); err != nil {
			return fmt.Errorf("read rotation state: %w", err)
		}
		return nil
	})
	return r, err
}

// PutRotation records r as the last rotation, as the files store's
// rotation.json (times in whole seconds, UTC).
func (s *Store) PutRotation(r store.Rotation) error {
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode rotation state: %w", err)
	}
	return s.call("write rotation state", func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO rotation (id, record, updated) VALUES (1, $1, now())
ON CONFLICT (id) DO UPDATE SET record = excluded.record, updated = excluded.updated`, string(data))
		if err != nil {
			return s.dbError("write rotation state", err)
		}
		return nil
	})
}
