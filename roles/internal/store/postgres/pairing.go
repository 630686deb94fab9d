package postgres

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// The pairing queue. Every change holds the transaction-level advisory
// lock lockQueue, the files store's pairing/queue.lock, so the checks of
// AddPairRequest and the exactly-once of DecidePairRequest hold across
// nodes; a decision also locks its row (SELECT … FOR UPDATE). The record
// column is the request as the files store writes it, the source of truth;
// the other columns follow it for the queries.

// lockQueueTx takes the queue lock for the rest of tx, waiting at most
// lockWait (then the error says what to do).
func lockQueueTx(ctx context.Context, tx pgx.Tx) error {
	if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1, $2)", lockSpace, lockQueue); err != nil {
		if sqlState(err) == codeLockNotAvailable {
			return own(fmt.Errorf("the pairing queue is still locked by another dispatcher after %s; try again, or look for a hung dispatcher node", lockWait))
		}
		return err
	}
	return nil
}

// pairRow is a request as stored.
type pairRow struct {
	reqid  string
	record string
}

func decodePair(reqid, record string) (store.PairRequest, error) {
	var r store.PairRequest
	if err := json.Unmarshal([]byte(record), &r); err != nil {
		return store.PairRequest{}, fmt.Errorf("read pairing request %s: %w", reqid, err)
	}
	if r.ReqID == "" {
		r.ReqID = reqid
	}
	return r, nil
}

func encodePair(r store.PairRequest) (string, error) {
	r.Created, r.Expires = r.Created.UTC(), r.Expires.UTC()
	data, err := json.Marshal(r)
	if err != nil {
		return "", fmt.Errorf("encode pairing request %s: %w", r.ReqID, err)
	}
	return string(data), nil
}

// nullTime is NULL for the zero time.
func nullTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	return &t
}

// writePair replaces the stored request r.ReqID (or inserts it, when
// insert; then a taken reqid reports false).
func writePair(ctx context.Context, tx pgx.Tx, r store.PairRequest, insert bool) (bool, error) {
	record, err := encodePair(r)
	if err != nil {
		return false, err
	}
	if insert {
		tag, err := tx.Exec(ctx, `INSERT INTO pair_requests (reqid, hostname, status, created, expires, decided, record)
VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (reqid) DO NOTHING`,
			r.ReqID, r.Hostname, r.Status, r.Created, r.Expires, nullTime(r.Decided), record)
		return err == nil && tag.RowsAffected() == 1, err
	}
	_, err = tx.Exec(ctx, `UPDATE pair_requests SET hostname = $2, status = $3, created = $4, expires = $5, decided = $6, record = $7
WHERE reqid = $1`, r.ReqID, r.Hostname, r.Status, r.Created, r.Expires, nullTime(r.Decided), record)
	return true, err
}

// decision returns r with d recorded at now, as the files store records
// it.
func decision(r store.PairRequest, d store.Decision, now time.Time) store.PairRequest {
	r.Status, r.Reason, r.Decided = d.Status, d.Reason, now.UTC()
	if d.Status == store.PairApproved {
		r.Cert, r.CA = d.Cert, d.CA
	}
	return r
}

var expiredDecision = store.Decision{Status: store.PairDenied, Reason: store.ReasonExpired}

// queryPairs reads requests with query, oldest first (created, then
// reqid, by the records' times). Records that do not decode are skipped,
// as the files store skips files that do not parse: they cannot be decided
// or answered.
func (s *Store) queryPairs(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, query string, args ...any) ([]store.PairRequest, error) {
	rows, err := q.Query(ctx, query, args...)
	if err != nil {
		return nil, err
	}
	raw, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (pairRow, error) {
		var p pairRow
		err := row.Scan(&p.reqid, &p.record)
		return p, err
	})
	if err != nil {
		return nil, err
	}
	var out []store.PairRequest
	for _, p := range raw {
		r, err := decodePair(p.reqid, p.record)
		if err != nil {
			s.log.Warn("skipping a pairing request that does not decode", zap.String("reqid", p.reqid), zap.Error(err))
			continue
		}
		out = append(out, r)
	}
	store.SortPairRequests(out)
	return out, nil
}

// AddPairRequest queues r as a new pending request under a new random
// request id (16 hex digits, as the files store makes them) and returns it
// as stored. r.Created is taken as the current time. Under the queue lock
// it first marks expired requests denied, then refuses with a
// *store.PendingExistsError when a request for the same host name
// (ignoring case) is pending, and with a *store.QueueFullError when
// maxPending requests are (maxPending < 1: no limit).
func (s *Store) AddPairRequest(r store.PairRequest, maxPending int) (store.PairRequest, error) {
	if err := pki.ValidHostname(r.Hostname); err != nil {
		return store.PairRequest{}, fmt.Errorf("pairing request: %w", err)
	}
	now := r.Created
	r.Status, r.Reason, r.Cert, r.CA, r.Decided = store.PairPending, "", "", "", time.Time{}
	const what = "queue pairing request"
	err := s.call(what, func(ctx context.Context, c *pgx.Conn) error {
		return s.dbTx(ctx, c, what, func(tx pgx.Tx) error {
			if err := lockQueueTx(ctx, tx); err != nil {
				return err
			}
			all, err := s.queryPairs(ctx, tx, "SELECT reqid, record FROM pair_requests WHERE status = $1", store.PairPending)
			if err != nil {
				return err
			}
			pending := 0
			for _, q := range all {
				if q.Status != store.PairPending {
					continue
				}
				if !q.Pending(now) {
					if _, err := writePair(ctx, tx, decision(q, expiredDecision, now), false); err != nil {
						return err
					}
					continue
				}
				if strings.EqualFold(q.Hostname, r.Hostname) {
					return own(&store.PendingExistsError{Hostname: r.Hostname, ReqID: q.ReqID})
				}
				pending++
			}
			if maxPending > 0 && pending >= maxPending {
				return own(&store.QueueFullError{Pending: pending, Max: maxPending})
			}
			for range 8 {
				r.ReqID = newPairReqID()
				ok, err := writePair(ctx, tx, r, true)
				if err != nil || ok {
					return err
				}
			}
			return own(errors.New("pairing request: no free request id after 8 tries"))
		})
	})
	if err != nil {
		return store.PairRequest{}, err
	}
	return r, nil
}

// GetPairRequest returns the request reqid as stored, decided or not. An
// unknown id gives an error wrapping store.ErrNotFound; an id that could
// not name a request (see store.ValidReqID) is an error before the
// database is asked.
func (s *Store) GetPairRequest(reqid string) (store.PairRequest, error) {
	if err := store.ValidReqID(reqid); err != nil {
		return store.PairRequest{}, err
	}
	var r store.PairRequest
	err := s.call("read pairing request "+reqid, func(ctx context.Context, c *pgx.Conn) error {
		var record string
		err := c.QueryRow(ctx, "SELECT record FROM pair_requests WHERE reqid = $1", reqid).Scan(&record)
		if errors.Is(err, pgx.ErrNoRows) {
			return pairNotFound(reqid)
		}
		if err != nil {
			return s.dbError("read pairing request "+reqid, err)
		}
		r, err = decodePair(reqid, record)
		return err
	})
	return r, err
}

func pairNotFound(reqid string) error {
	return fmt.Errorf("pairing request %s: %w (requests are kept until pairing_timeout after they are decided)", reqid, store.ErrNotFound)
}

// ListPairRequests returns the requests pending at now (not decided, not
// expired), oldest first.
func (s *Store) ListPairRequests(now time.Time) ([]store.PairRequest, error) {
	var out []store.PairRequest
	err := s.call("read pairing queue", func(ctx context.Context, c *pgx.Conn) error {
		all, err := s.queryPairs(ctx, c, "SELECT reqid, record FROM pair_requests WHERE status = $1", store.PairPending)
		if err != nil {
			return s.dbError("read pairing queue", err)
		}
		for _, r := range all {
			if r.Pending(now) {
				out = append(out, r)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// DecidePairRequest decides the pending request reqid exactly once, even
// with deciders on several nodes at the same moment. In one transaction,
// holding the queue lock and the request's row (FOR UPDATE), it reads the
// request; if it is no longer pending it returns a *store.DecidedError
// without calling decide, and if it has expired it records the denial
// "expired" and returns a *store.DecidedError. Otherwise it calls decide
// with the request — the place to sign a certificate and write the
// registry, so that happens once — and records the decision decide
// returns. An error from decide is returned as it is and nothing is
// recorded: the request stays pending. It returns the request as recorded.
//
// decide runs while the transaction is open, on a connection of its own
// outside the pool's bound, so it may use the store (PutAgent) freely. If
// the node dies while decide runs, the transaction rolls back and the
// request stays pending.
func (s *Store) DecidePairRequest(reqid string, now time.Time, decide func(store.PairRequest) (store.Decision, error)) (store.PairRequest, error) {
	if err := store.ValidReqID(reqid); err != nil {
		return store.PairRequest{}, err
	}
	const what = "decide pairing request"
	ctx, cancel := context.WithTimeout(context.Background(), decideTimeout)
	defer cancel()
	c, err := s.pool.get(ctx, false)
	if err != nil {
		return store.PairRequest{}, s.dbError(what, err)
	}
	defer s.pool.put(c, false)
	var out store.PairRequest
	expired := false
	err = s.dbTx(ctx, c, what, func(tx pgx.Tx) error {
		if err := lockQueueTx(ctx, tx); err != nil {
			return err
		}
		var record string
		err := tx.QueryRow(ctx, "SELECT record FROM pair_requests WHERE reqid = $1 FOR UPDATE", reqid).Scan(&record)
		if errors.Is(err, pgx.ErrNoRows) {
			return own(pairNotFound(reqid))
		}
		if err != nil {
			return err
		}
		r, err := decodePair(reqid, record)
		if err != nil {
			return own(err)
		}
		if r.Status == store.PairPending && !r.Pending(now) {
			// Record the denial (the transaction commits it), then refuse.
			out, expired = decision(r, expiredDecision, now), true
			_, err := writePair(ctx, tx, out, false)
			return err
		}
		if r.Status != store.PairPending {
			return own(&store.DecidedError{ReqID: r.ReqID, Hostname: r.Hostname, Status: r.Status, Reason: r.Reason})
		}
		d, err := decide(r)
		if err != nil {
			return own(err)
		}
		if d.Status != store.PairApproved && d.Status != store.PairDenied {
			return own(fmt.Errorf("pairing request %s: decision %q is neither approved nor denied", reqid, d.Status))
		}
		r = decision(r, d, now)
		if _, err := writePair(ctx, tx, r, false); err != nil {
			return err
		}
		// The request as it reads back, as GetPairRequest returns it.
		record, err = encodePair(r)
		if err == nil {
			out, err = decodePair(reqid, record)
		}
		return own(err)
	})
	if err != nil {
		return store.PairRequest{}, err
	}
	if expired {
		return store.PairRequest{}, &store.DecidedError{ReqID: out.ReqID, Hostname: out.Hostname, Status: out.Status, Reason: out.Reason}
	}
	return out, nil
}

// ExpirePairRequests denies (reason "expired") every request still pending
// after its expiry and removes decided requests decided before now-keep,
// so an agent still polling gets its answer for keep after the decision.
// It returns the requests it has just denied.
func (s *Store) ExpirePairRequests(now time.Time, keep time.Duration) ([]store.PairRequest, error) {
	var expired []store.PairRequest
	const what = "expire pairing requests"
	err := s.call(what, func(ctx context.Context, c *pgx.Conn) error {
		return s.dbTx(ctx, c, what, func(tx pgx.Tx) error {
			if err := lockQueueTx(ctx, tx); err != nil {
				return err
			}
			pending, err := s.queryPairs(ctx, tx, "SELECT reqid, record FROM pair_requests WHERE status = $1", store.PairPending)
			if err != nil {
				return err
			}
			for _, r := range pending {
				if r.Pending(now) {
					continue
				}
				r = decision(r, expiredDecision, now)
				if _, err := writePair(ctx, tx, r, false); err != nil {
					return err
				}
				expired = append(expired, r)
			}
			// The decided column is the decision time cut to microseconds:
			// select a little more and decide on the records' times.
			cutoff := now.Add(-keep)
			old, err := s.queryPairs(ctx, tx, "SELECT reqid, record FROM pair_requests WHERE status <> $1 AND decided < $2",
				store.PairPending, cutoff.Add(time.Microsecond))
			if err != nil {
				return err
			}
			var purge []string
			for _, r := range old {
				if r.Status != store.PairPending && r.Decided.Add(keep).Before(now) {
					purge = append(purge, r.ReqID)
				}
			}
			if len(purge) > 0 {
				if _, err := tx.Exec(ctx, "DELETE FROM pair_requests WHERE reqid = ANY($1)", purge); err != nil {
					return err
				}
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return expired, nil
}

// newPairReqID returns 16 lowercase hex digits (64 bits from crypto/rand),
// as the files store's request ids.
func newPairReqID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
