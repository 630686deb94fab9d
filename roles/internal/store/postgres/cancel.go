package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

var _ store.Cancels = (*Store)(nil)

// codeForeignKey is the SQLSTATE of a row naming a run that is not stored.
const codeForeignKey = "23503"

// RequestCancel records that run reqid is to be cancelled: a row of
// run_cancels, which goes with the run. A run that is not stored (never,
// or pruned) gives an error wrapping store.ErrNotFound; asking again keeps
// the first request.
func (s *Store) RequestCancel(reqid string, at time.Time) error {
	if err := store.ValidReqID(reqid); err != nil {
		return err
	}
	what := "request cancel of run " + reqid
	return s.call(what, func(ctx context.Context, c *pgx.Conn) error {
		_, err := c.Exec(ctx, "INSERT INTO run_cancels (reqid, requested) VALUES ($1, $2) ON CONFLICT (reqid) DO NOTHING", reqid, at)
		switch {
		case sqlState(err) == codeForeignKey:
			return fmt.Errorf("run %s: %w (runs are kept for run_retention)", reqid, store.ErrNotFound)
		case err != nil:
			return s.dbError(what, err)
		}
		return nil
	})
}

// CancelRequests returns those of reqids whose cancel was requested, in
// their order, in one query.
func (s *Store) CancelRequests(reqids []string) ([]string, error) {
	for _, id := range reqids {
		if err := store.ValidReqID(id); err != nil {
			return nil, err
		}
	}
	if len(reqids) == 0 {
		return nil, nil
	}
	const what = "read cancel requests"
	asked := make(map[string]bool)
	err := s.call(what, func(ctx context.Context, c *pgx.Conn) error {
		rows, err := c.Query(ctx, "SELECT reqid FROM run_cancels WHERE reqid = ANY($1)", reqids)
		if err != nil {
			return s.dbError(what, err)
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return s.dbError(what, err)
		}
		for _, id := range ids {
			asked[id] = true
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	var out []string
	for _, id := range reqids {
		if asked[id] {
			out = append(out, id)
		}
	}
	return out, nil
}
