package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// validHost checks a host name as the files store does before it names a
// file, with the same error.
func validHost(host string) error {
	if err := pki.ValidHostname(host); err != nil {
		return fmt.Errorf("registry: %w", err)
	}
	return nil
}

func notRegistered(host string) error {
	return fmt.Errorf("agent %s is not registered: %w", host, store.ErrNotFound)
}

// GetAgent returns the record of host, its last contact the later of the
// record's and RecordContact's. A host that is not registered gives an
// error wrapping store.ErrNotFound; a host name that could not be
// registered is an error before the database is asked.
func (s *Store) GetAgent(host string) (store.Agent, error) {
	if err := validHost(host); err != nil {
		return store.Agent{}, err
	}
	var a store.Agent
	err := s.call("read registry record "+host, func(ctx context.Context, c *pgx.Conn) error {
		var record string
		var contact *time.Time
		err := c.QueryRow(ctx, "SELECT record, last_contact FROM agents WHERE hostname = $1", host).Scan(&record, &contact)
		if errors.Is(err, pgx.ErrNoRows) {
			return notRegistered(host)
		}
		if err != nil {
			return s.dbError("read registry record "+host, err)
		}
		a, err = decodeAgent(host, record, contact)
		return err
	})
	return a, err
}

// decodeAgent reads a record as the files store reads agents/HOST.json,
// with the contact time merged as Files.withContact merges it.
func decodeAgent(host, record string, contact *time.Time) (store.Agent, error) {
	var a store.Agent
	if err := json.Unmarshal([]byte(record), &a); err != nil {
		return store.Agent{}, fmt.Errorf("read registry record %s: %w", host, err)
	}
	if a.Hostname == "" {
		a.Hostname = host
	}
	if contact != nil {
		if t := contact.UTC().Truncate(time.Second); t.After(a.LastContact) {
			a.LastContact = t
		}
	}
	return a, nil
}

// ListAgents returns every registered agent, sorted by host name (byte
// order, as the files store sorts, whatever the database's collation).
func (s *Store) ListAgents() ([]store.Agent, error) {
	agents := make([]store.Agent, 0)
	err := s.call("read registry", func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT hostname, record, last_contact FROM agents")
		if err != nil {
			return s.dbError("read registry", err)
		}
		defer rows.Close()
		for rows.Next() {
			var host, record string
			var contact *time.Time
			if err := rows.Scan(&host, &record, &contact); err != nil {
				return s.dbError("read registry", err)
			}
			a, err := decodeAgent(host, record, contact)
			if err != nil {
				return err
			}
			agents = append(agents, a)
		}
		if err := rows.Err(); err != nil {
			return s.dbError("read registry", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	sort.SliceStable(agents, func(i, j int) bool { return agents[i].Hostname < agents[j].Hostname })
	return agents, nil
}

// AgentNames returns the host names of the registered agents, sorted;
// none is nil, as with the files store.
func (s *Store) AgentNames() ([]string, error) {
	var names []string
	err := s.call("read registry", func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT hostname FROM agents")
		if err != nil {
			return s.dbError("read registry", err)
		}
		names, err = pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return s.dbError("read registry", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return nil, nil
	}
	sort.Strings(names)
	return names, nil
}

// PutAgent creates or replaces the record of a.Hostname. The record is
// stored as the bytes the files store writes to agents/HOST.json, so every
// field, Extra included, reads back as it was. The contact time recorded
// by RecordContact stays.
func (s *Store) PutAgent(a store.Agent) error {
	if err := validHost(a.Hostname); err != nil {
		return err
	}
	data, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return fmt.Errorf("encode registry record of %s: %w", a.Hostname, err)
	}
	record := string(append(data, '\n'))
	return s.call("write registry record "+a.Hostname, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO agents (hostname, record) VALUES ($1, $2)
ON CONFLICT (hostname) DO UPDATE SET record = excluded.record`, a.Hostname, record)
		if err != nil {
			return s.dbError("write registry record "+a.Hostname, err)
		}
		return nil
	})
}

// DeleteAgent removes the record of host and its contact time. A host that
// is not registered gives an error wrapping store.ErrNotFound.
func (s *Store) DeleteAgent(host string) error {
	if err := validHost(host); err != nil {
		return err
	}
	return s.call("remove registry record "+host, func(ctx context.Context, c *pgx.Conn) error {
		tag, err := c.Exec(ctx, "DELETE FROM agents WHERE hostname = $1", host)
		if err != nil {
			return s.dbError("remove registry record "+host, err)
		}
		if tag.RowsAffected() == 0 {
			return notRegistered(host)
		}
		return nil
	})
}

// RecordContact notes a successful contact with host at at, in the
// agents row beside the record (the record is not rewritten). GetAgent and
// ListAgents report the later of it and the record's last_contact. The
// time belongs to the agent's row: for a host that is not registered
// nothing is noted and that is no error (the files store writes
// contact/HOST for any valid name), and a host registered later starts
// without one. The engine only records contacts of registered agents.
func (s *Store) RecordContact(host string, at time.Time) error {
	if err := validHost(host); err != nil {
		return err
	}
	return s.call("record contact with "+host, func(ctx context.Context, c *pgx.Conn) error {
		if _, err := c.Exec(ctx, "UPDATE agents SET last_contact = $2 WHERE hostname = $1", host, at); err != nil {
			return s.dbError("record contact with "+host, err)
		}
		return nil
	})
}
