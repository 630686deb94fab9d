package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// SaveRun creates or replaces the record of r.ReqID (checked with
// store.ValidReqID, as the files store checks it). Its time of last
// write, for PruneRuns, is this node's clock.
func (s *Store) SaveRun(r store.Run) error {
	if err := store.ValidReqID(r.ReqID); err != nil {
		return err
	}
	data, err := json.Marshal(r)
	if err != nil {
		return fmt.Errorf("encode run %s: %w", r.ReqID, err)
	}
	return s.call("store run "+r.ReqID, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, `INSERT INTO runs (reqid, status, updated, record) VALUES ($1, $2, $3, $4)
ON CONFLICT (reqid) DO UPDATE SET status = excluded.status, updated = excluded.updated, record = excluded.record`,
			r.ReqID, r.Status, time.Now(), string(data))
		if err != nil {
			return s.dbError("store run "+r.ReqID, err)
		}
		return nil
	})
}

// GetRun returns the stored run reqid. A run that is not stored (never, or
// no longer) gives an error wrapping store.ErrNotFound.
func (s *Store) GetRun(reqid string) (store.Run, error) {
	if err := store.ValidReqID(reqid); err != nil {
		return store.Run{}, err
	}
	var r store.Run
	err := s.call("read run "+reqid, func(ctx context.Context, c *pgx.Conn) error {
		var record string
		err := c.QueryRow(ctx, "SELECT record FROM runs WHERE reqid = $1", reqid).Scan(&record)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("run %s: %w (runs are kept for run_retention)", reqid, store.ErrNotFound)
		}
		if err != nil {
			return s.dbError("read run "+reqid, err)
		}
		if err := json.Unmarshal([]byte(record), &r); err != nil {
			return fmt.Errorf("read run %s: %w", reqid, err)
		}
		return nil
	})
	return r, err
}

// PruneRuns removes the runs last written before cutoff and returns how
// many it removed.
func (s *Store) PruneRuns(cutoff time.Time) (int, error) {
	var n int
	err := s.call("prune runs", func(ctx context.Context, c *pgx.Conn) error {
		tag, err := c.Exec(ctx, "DELETE FROM runs WHERE updated < $1", cutoff)
		if err != nil {
			return s.dbError("prune runs", err)
		}
		n = int(tag.RowsAffected())
		return nil
	})
	return n, err
}

// RunningRuns returns the stored runs whose status is running, ordered by
// request id. A record that does not decode is skipped (and logged): GetRun
// reports it when asked.
func (s *Store) RunningRuns() ([]store.Run, error) {
	var out []store.Run
	err := s.call("read running runs", func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT reqid, record FROM runs WHERE status = $1 ORDER BY reqid", store.RunRunning)
		if err != nil {
			return s.dbError("read running runs", err)
		}
		defer rows.Close()
		for rows.Next() {
			var reqid, record string
			if err := rows.Scan(&reqid, &record); err != nil {
				return s.dbError("read running runs", err)
			}
			var r store.Run
			if err := json.Unmarshal([]byte(record), &r); err != nil {
				s.log.Warn("skipping a stored run that does not decode", zap.String("reqid", reqid), zap.Error(err))
				continue
			}
			if r.Status == store.RunRunning {
				out = append(out, r)
			}
		}
		if err := rows.Err(); err != nil {
			return s.dbError("read running runs", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}
