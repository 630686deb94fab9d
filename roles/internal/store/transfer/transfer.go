package transfer

import (
	"context"
	"errors"
	"fmt"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Reader reads a store's records as they are stored. Each Transfer method
// calls fn with every record of its concern and stops at fn's first error,
// returning it.
type Reader interface {
	TransferRevocations(fn func(store.RevocationRecord) error) error
	GetRotation() (store.Rotation, error)
	TransferAgents(fn func(store.AgentRecord) error) error
	TransferPairRequests(fn func(store.PairRecord) error) error
	TransferRuns(fn func(store.RunRecord) error) error
}

// Writer writes records as a Reader reads them, each replacing the record
// of the same key (a revocation already listed is kept).
type Writer interface {
	AddRevocationRecord(store.RevocationRecord) (added bool, err error)
	PutRotation(store.Rotation) error
	PutAgentRecord(store.AgentRecord) error
	PutPairRecord(store.PairRecord) error
	PutRunRecord(store.RunRecord) error
}

// Target is what Copy writes to: it reads the target too, to see whether
// it holds state already.
type Target interface {
	Reader
	Writer
}

// Options change what Copy does.
type Options struct {
	// Merge copies into a target that holds state: records of the same
	// key are replaced, the others stay. Without it Copy refuses such a
	// target with a *NotEmptyError.
	Merge bool
	// Warn is told of each record skipped and of locks held in the
	// source; nil ignores them (they are counted in Counts.Skipped).
	Warn func(error)
}

// Counts says what Copy copied, per concern.
type Counts struct {
	Agents                int `json:"agents"`
	ContactTimes          int `json:"contact_times"` // agents copied with a contact time
	PairRequests          int `json:"pairing_requests"`
	Runs                  int `json:"runs"`
	AgentRevocations      int `json:"agent_revocations"`      // added; those already listed are not counted
	DispatcherRevocations int `json:"dispatcher_revocations"` // likewise
	Rotation              int `json:"rotation"`               // 1 when the source had one
	Skipped               int `json:"skipped"`                // records that do not decode (see Options.Warn)
}

// Copied is the number of records written: zero means the target is as
// it was.
func (n Counts) Copied() int {
	return n.Agents + n.PairRequests + n.Runs + n.AgentRevocations + n.DispatcherRevocations + n.Rotation
}

// NotEmptyError refuses to copy into a target that holds state already
// (without Options.Merge). First names the first record found, as
// "agent web-01".
type NotEmptyError struct{ First string }

func (e *NotEmptyError) Error() string {
	return "the target already holds state (" + e.First + ")"
}

// lockLister is a source that can say which host:script locks are held.
type lockLister interface {
	ListLocks() ([]store.LockInfo, error)
}

// Copy copies every record of from to to (see the package doc) and
// returns what it copied. It checks ctx between records and stops with
// ctx's error; what it copied until then is in to, each record whole, and
// in the counts.
func Copy(ctx context.Context, from Reader, to Target, opts Options) (Counts, error) {
	var n Counts
	warn := func(err error) {
		if opts.Warn != nil {
			opts.Warn(err)
		}
	}
	if l, ok := from.(lockLister); ok {
		if locks, err := l.ListLocks(); err == nil && len(locks) > 0 {
			warn(fmt.Errorf("%d host:script locks are held in the source (%s first): a run is in progress and its record is copied as it is now; stop every dispatcher, api and pairing process, then copy again", len(locks), locks[0].LockKey))
		}
	}
	if !opts.Merge {
		first, err := firstRecord(to)
		if err != nil {
			return n, fmt.Errorf("look for state in the target: %w", err)
		}
		if first != "" {
			return n, &NotEmptyError{First: first}
		}
	}

	err := from.TransferRevocations(func(r store.RevocationRecord) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := r.Check(); err != nil {
			n.Skipped++
			warn(fmt.Errorf("skipped: %w", err))
			return nil
		}
		added, err := to.AddRevocationRecord(r)
		if err != nil {
			return fmt.Errorf("copy revoked %s serial %s: %w", r.Kind, r.Serial, err)
		}
		if added && r.Kind == store.RevokedDispatcher {
			n.DispatcherRevocations++
		} else if added {
			n.AgentRevocations++
		}
		return nil
	})
	if err != nil {
		return n, err
	}

	rot, err := from.GetRotation()
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return n, fmt.Errorf("copy rotation state: %w", err)
	default:
		if err := to.PutRotation(rot); err != nil {
			return n, fmt.Errorf("copy rotation state: %w", err)
		}
		n.Rotation = 1
	}

	err = from.TransferAgents(func(r store.AgentRecord) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := r.Decode(); err != nil {
			return fmt.Errorf("copy agent %s: %w (fix or remove the record)", r.Hostname, err)
		}
		if err := to.PutAgentRecord(r); err != nil {
			return fmt.Errorf("copy agent %s: %w", r.Hostname, err)
		}
		n.Agents++
		if !r.Contact.IsZero() {
			n.ContactTimes++
		}
		return nil
	})
	if err != nil {
		return n, err
	}

	skip := func(err error) {
		n.Skipped++
		warn(fmt.Errorf("skipped: %w", err))
	}
	err = copyEach(ctx, from.TransferPairRequests, func(r store.PairRecord) error { _, err := r.Decode(); return err },
		func(r store.PairRecord) error { return wrapCopy(to.PutPairRecord(r), "pairing request", r.ReqID) }, &n.PairRequests, skip)
	if err != nil {
		return n, err
	}
	err = copyEach(ctx, from.TransferRuns, func(r store.RunRecord) error { _, err := r.Decode(); return err },
		func(r store.RunRecord) error { return wrapCopy(to.PutRunRecord(r), "run", r.ReqID) }, &n.Runs, skip)
	return n, err
}

// copyEach copies every record each hands out with put, counting them in
// copied; a record that check refuses is skipped (and reported to skip).
// It stops at the first error of put, or when ctx ends.
func copyEach[R any](ctx context.Context, each func(func(R) error) error, check, put func(R) error, copied *int, skip func(error)) error {
	return each(func(r R) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := check(r); err != nil {
			skip(err)
			return nil
		}
		if err := put(r); err != nil {
			return err
		}
		*copied++
		return nil
	})
}

// wrapCopy names the record a failed copy was of.
func wrapCopy(err error, what, id string) error {
	if err != nil {
		return fmt.Errorf("copy %s %s: %w", what, id, err)
	}
	return nil
}

// errFound stops a Transfer method at the first record.
var errFound = errors.New("found")

// firstRecord names the first record t holds, or "" when it holds none.
func firstRecord(t Reader) (string, error) {
	var first string
	stop := func(what string) error { first = what; return errFound }
	for _, read := range []func() error{
		func() error {
			return t.TransferAgents(func(r store.AgentRecord) error { return stop("agent " + r.Hostname) })
		},
		func() error {
			return t.TransferPairRequests(func(r store.PairRecord) error { return stop("pairing request " + r.ReqID) })
		},
		func() error {
			return t.TransferRuns(func(r store.RunRecord) error { return stop("run " + r.ReqID) })
		},
		func() error {
			return t.TransferRevocations(func(r store.RevocationRecord) error { return stop("revoked " + r.Kind + " serial " + r.Serial) })
		},
		func() error {
			if _, err := t.GetRotation(); !errors.Is(err, store.ErrNotFound) {
				if err != nil {
					return err
				}
				return stop("the rotation state")
			}
			return nil
		},
	} {
		if err := read(); errors.Is(err, errFound) {
			return first, nil
		} else if err != nil {
			return "", err
		}
	}
	return "", nil
}
