package control

import (
	"context"
	"fmt"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// cancelPollEvery is how often a process running runs asks the store for
// cancel requests (store.Cancels) made by other processes: a Tracker for
// all its runs in flight at once, Engine.Run for its own.
const cancelPollEvery = 500 * time.Millisecond

// NotCancellableError says a run in flight in another process cannot be
// asked to cancel through the store.
type NotCancellableError struct {
	ReqID  string
	Reason string
}

func (e *NotCancellableError) Error() string {
	return fmt.Sprintf("run %s is running in another process that cannot be asked to cancel it: %s", e.ReqID, e.Reason)
}

// RequestCancel asks the process running run — another API node, or a CLI
// sharing the store — to cancel it, through the store (store.Cancels):
// that process notices within about a second, as Tracker and Engine.Run
// ask for the requests of their runs, and stores the run as cancelled. A
// run that is not running is left as it is. A *NotCancellableError says
// the request cannot be made: the record has no owner (the Perl
// dispatcher wrote it), or the store carries no requests.
func RequestCancel(runs store.Runs, run store.Run, at time.Time) error {
	if run.Status != store.RunRunning {
		return nil
	}
	if run.Owner == nil {
		return &NotCancellableError{ReqID: run.ReqID, Reason: "its record names no owner (written by the Perl dispatcher?); stop it where it runs"}
	}
	c, ok := runs.(store.Cancels)
	if !ok {
		return &NotCancellableError{ReqID: run.ReqID, Reason: "this store carries no cancel requests; cancel it in " + run.Owner.String()}
	}
	return c.RequestCancel(run.ReqID, at)
}

// cancels returns the store's cancel requests, nil when it has none.
func (e *Engine) cancels() store.Cancels {
	c, _ := e.o.Runs.(store.Cancels)
	return c
}

// watchCancel asks the store every cancelPollEvery whether run reqid's
// cancel was requested, and calls cancel once it was. stop ends the
// watch and returns once it is over.
func (e *Engine) watchCancel(reqid string, cancel context.CancelFunc) (stop func()) {
	c := e.cancels()
	if c == nil {
		return func() {}
	}
	done, over := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(over)
		tick := time.NewTicker(cancelPollEvery)
		defer tick.Stop()
		var warned bool
		for {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			asked, err := c.CancelRequests([]string{reqid})
			if err != nil {
				warned = e.pollFailed(warned, err)
				continue
			}
			warned = false
			if len(asked) > 0 {
				e.log.Info("cancelling the run: another process asked for it through the store", zap.String("reqid", reqid))
				cancel()
				return
			}
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() { close(done) })
		<-over
	}
}

// pollFailed logs a failed look for cancel requests: a warning for the
// first failure in a row, at debug level after it. It returns true.
func (e *Engine) pollFailed(warned bool, err error) bool {
	if warned {
		e.log.Debug("read cancel requests", zap.Error(err))
	} else {
		e.log.Warn("read cancel requests: runs of this process cannot be cancelled from another one until the store answers", zap.Error(err))
	}
	return true
}

// startPollLocked starts the Tracker's watch for cancel requests, when
// it is not running and the store carries them. t.mu is held.
func (t *Tracker) startPollLocked() {
	if t.polling {
		return
	}
	if c := t.eng.cancels(); c != nil {
		t.polling = true
		go t.pollCancels(c)
	}
}

// pollCancels asks the store every cancelPollEvery, in one call, which
// runs in flight here have a cancel requested, and cancels those (as
// LiveRun.Cancel). It ends when no run is in flight; Start starts it
// again with the next run.
func (t *Tracker) pollCancels(c store.Cancels) {
	tick := time.NewTicker(cancelPollEvery)
	defer tick.Stop()
	var warned bool
	for range tick.C {
		t.mu.Lock()
		if len(t.live) == 0 {
			t.polling = false
			t.mu.Unlock()
			return
		}
		ids := make([]string, 0, len(t.live))
		for id, lr := range t.live {
			if !lr.requested {
				ids = append(ids, id)
			}
		}
		t.mu.Unlock()
		if len(ids) == 0 {
			continue
		}
		asked, err := c.CancelRequests(ids)
		if err != nil {
			warned = t.eng.pollFailed(warned, err)
			continue
		}
		warned = false
		for _, id := range asked {
			t.mu.Lock()
			lr, ok := t.live[id]
			if ok {
				lr.requested = true
			}
			t.mu.Unlock()
			if ok {
				t.eng.log.Info("cancelling the run: another process asked for it through the store", zap.String("reqid", id))
				lr.Cancel()
			}
		}
	}
}
