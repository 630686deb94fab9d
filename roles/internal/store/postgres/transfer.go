package postgres

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// The records as stored, for copying a whole state between stores
// (dispatcher store import and export; see store.AgentRecord and the
// package roles/internal/store/transfer). The Transfer methods read each
// table in one query, except the runs, which are read one at a time (they
// may be large), and call fn outside the query, with no connection held.
// The Put…Record methods replace the row of the same key, so writing a
// record twice leaves what writing it once leaves.

// TransferAgents calls fn with every registry record, sorted by host name
// (byte order), as stored: the record text byte for byte and the contact
// time of RecordContact. It stops at fn's first error and returns it.
func (s *Store) TransferAgents(fn func(store.AgentRecord) error) error {
	var recs []store.AgentRecord
	err := s.call("read registry", func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT hostname, record, last_contact FROM agents")
		if err != nil {
			return s.dbError("read registry", err)
		}
		recs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.AgentRecord, error) {
			var r store.AgentRecord
			var record string
			var contact *time.Time
			err := row.Scan(&r.Hostname, &record, &contact)
			r.Record = []byte(record)
			if contact != nil {
				r.Contact = contact.UTC()
			}
			return r, err
		})
		if err != nil {
			return s.dbError("read registry", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].Hostname < recs[j].Hostname })
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// PutAgentRecord stores r.Record as it is (after r.Decode accepts it),
// with r.Contact as the contact time (none when zero), replacing the row
// of r.Hostname.
func (s *Store) PutAgentRecord(r store.AgentRecord) error {
	if _, err := r.Decode(); err != nil {
		return err
	}
	what := "write registry record " + r.Hostname
	return s.call(what, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO agents (hostname, record, last_contact) VALUES ($1, $2, $3)
ON CONFLICT (hostname) DO UPDATE SET record = excluded.record, last_contact = excluded.last_contact`,
			r.Hostname, string(r.Record), nullTime(r.Contact))
		if err != nil {
			return s.dbError(what, err)
		}
		return nil
	})
}

// TransferPairRequests calls fn with every pairing request, pending or
// decided, sorted by request id, as stored. It stops at fn's first error
// and returns it.
func (s *Store) TransferPairRequests(fn func(store.PairRecord) error) error {
	var recs []store.PairRecord
	err := s.call("read pairing queue", func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT reqid, record FROM pair_requests")
		if err != nil {
			return s.dbError("read pairing queue", err)
		}
		recs, err = pgx.CollectRows(rows, func(row pgx.CollectableRow) (store.PairRecord, error) {
			var r store.PairRecord
			var record string
			err := row.Scan(&r.ReqID, &record)
			r.Record = []byte(record)
			return r, err
		})
		if err != nil {
			return s.dbError("read pairing queue", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Slice(recs, func(i, j int) bool { return recs[i].ReqID < recs[j].ReqID })
	for _, r := range recs {
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// PutPairRecord stores r.Record as it is (after r.Decode accepts it),
// replacing the request r.ReqID, under the queue lock; the columns the
// queries select on are taken from the record.
func (s *Store) PutPairRecord(r store.PairRecord) error {
	p, err := r.Decode()
	if err != nil {
		return err
	}
	what := "write pairing request " + r.ReqID
	return s.call(what, func(ctx context.Context, c *pgx.Conn) error {
		return s.dbTx(ctx, c, what, func(tx pgx.Tx) error {
			if err := lockQueueTx(ctx, tx); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, `INSERT INTO pair_requests (reqid, hostname, status, created, expires, decided, record)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (reqid) DO UPDATE SET hostname = excluded.hostname, status = excluded.status, created = excluded.created,
	expires = excluded.expires, decided = excluded.decided, record = excluded.record`,
				r.ReqID, p.Hostname, p.Status, p.Created, p.Expires, nullTime(p.Decided), string(r.Record))
			return err
		})
	})
}

// TransferRuns calls fn with every stored run, sorted by request id, as
// stored, with the time of its last write. The ids are read first, then
// each run on its own (a run pruned meanwhile is passed over). It stops at
// fn's first error and returns it.
func (s *Store) TransferRuns(fn func(store.RunRecord) error) error {
	var ids []string
	err := s.call("read runs", func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT reqid FROM runs")
		if err != nil {
			return s.dbError("read runs", err)
		}
		ids, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return s.dbError("read runs", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	sort.Strings(ids)
	for _, id := range ids {
		r := store.RunRecord{ReqID: id}
		found := true
		err := s.call("read run "+id, func(ctx context.Context, c *pgx.Conn) error {
			var record string
			err := c.QueryRow(ctx, "SELECT record, updated FROM runs WHERE reqid = $1", id).Scan(&record, &r.Updated)
			if errors.Is(err, pgx.ErrNoRows) {
				found = false
				return nil
			}
			if err != nil {
				return s.dbError("read run "+id, err)
			}
			r.Record, r.Updated = []byte(record), r.Updated.UTC()
			return nil
		})
		if err != nil {
			return err
		}
		if !found {
			continue
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// PutRunRecord stores r.Record as it is (after r.Decode accepts it),
// replacing the run r.ReqID, with r.Updated as the time of its last write
// (this node's clock when zero), so that PruneRuns removes it when it
// would have removed the original.
func (s *Store) PutRunRecord(r store.RunRecord) error {
	run, err := r.Decode()
	if err != nil {
		return err
	}
	updated := r.Updated
	if updated.IsZero() {
		updated = time.Now()
	}
	what := "store run " + r.ReqID
	return s.call(what, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO runs (reqid, status, updated, record) VALUES ($1, $2, $3, $4)
ON CONFLICT (reqid) DO UPDATE SET status = excluded.status, updated = excluded.updated, record = excluded.record`,
			r.ReqID, run.Status, updated, string(r.Record))
		if err != nil {
			return s.dbError(what, err)
		}
		return nil
	})
}

// TransferRevocations calls fn with the revoked agent serials, then the
// revoked dispatcher serials, each in the order they were revoked, with
// their notes. It stops at fn's first error and returns it.
func (s *Store) TransferRevocations(fn func(store.RevocationRecord) error) error {
	for _, kind := range []string{kindAgent, kindDispatcher} {
		list, err := s.revocations(kind)
		if err != nil {
			return err
		}
		for _, r := range list {
			if err := fn(store.RevocationRecord{Kind: kind, Revocation: r}); err != nil {
				return err
			}
		}
	}
	return nil
}

// AddRevocationRecord adds r at the end of its list (after r.Check
// accepts it) with its serial as written and its notes as they are (an
// entry without notes gets an empty host and reason and the zero time,
// which lists as none). An entry of the same serial, as written, already
// listed is left as it is and added reports false.
func (s *Store) AddRevocationRecord(r store.RevocationRecord) (added bool, err error) {
	if err := r.Check(); err != nil {
		return false, err
	}
	what := "revoke serial " + r.Serial
	err = s.call(what, func(ctx context.Context, c *pgx.Conn) error {
		tag, err := c.Exec(ctx, `INSERT INTO revocations (kind, serial, host, reason, at) VALUES ($1, $2, $3, $4, $5)
ON CONFLICT (kind, serial) DO NOTHING`, r.Kind, r.Serial, r.Host, r.Reason, r.At.UTC())
		if err != nil {
			return s.dbError(what, err)
		}
		added = tag.RowsAffected() == 1
		return nil
	})
	return added, err
}
