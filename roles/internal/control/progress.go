package control

import (
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// progressEvery is how often, at most, a run in flight rewrites its stored
// record with the hosts done so far.
const progressEvery = time.Second

// progress keeps the stored record of a run in flight up to date, so that
// status — in this process or in another one sharing the store — shows the
// hosts done so far. A result is written at once when the record was last
// written progressEvery ago or more, else when that interval ends: the
// record is never more than about progressEvery behind, and a fan-out to
// thousands of hosts does not rewrite it for each one.
//
// Saves made from the timer race with nothing: stop, called before the
// engine stores the final record, waits for a save in progress and
// prevents any later one.
type progress struct {
	runs  store.Runs
	log   *zap.Logger
	every time.Duration

	mu      sync.Mutex
	run     store.Run       // the running record as first stored
	done    []*store.Result // by host index; nil: not done yet
	last    time.Time       // when the record was last written
	dirty   bool            // results not yet written
	timer   *time.Timer
	stopped bool
}

// newProgress starts tracking run, just stored as running.
func (e *Engine) newProgress(run store.Run) *progress {
	return &progress{runs: e.o.Runs, log: e.log, every: progressEvery, run: run,
		done: make([]*store.Result, len(run.Hosts)), last: time.Now()}
}

// add records host i's result.
func (p *progress) add(i int, r store.Result) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped || i < 0 || i >= len(p.done) {
		return
	}
	p.done[i] = &r
	p.changedLocked()
}

// setBatches records the rollout's progress. A batch starting or the
// rollout stopping is written at once; a failure counted, in time.
func (p *progress) setBatches(b store.Batches) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	prev := p.run.Batches
	p.run.Batches = &b
	if prev == nil || prev.Current != b.Current || prev.Stopped != b.Stopped {
		p.saveLocked()
		return
	}
	p.changedLocked()
}

// changedLocked writes the record now when the last write is
// progressEvery old, else arms the timer that will.
func (p *progress) changedLocked() {
	p.dirty = true
	wait := p.every - time.Since(p.last)
	switch {
	case wait <= 0:
		p.saveLocked()
	case p.timer == nil:
		p.timer = time.AfterFunc(wait, p.flush)
	}
}

// flush writes what the timer waited for.
func (p *progress) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.timer = nil
	if !p.stopped && p.dirty {
		p.saveLocked()
	}
}

func (p *progress) saveLocked() {
	run := p.run
	run.Results = make([]store.Result, 0, len(p.done))
	for _, r := range p.done {
		if r != nil {
			run.Results = append(run.Results, *r)
		}
	}
	if err := p.runs.SaveRun(run); err != nil {
		// The final record is what counts; its failure is reported.
		p.log.Debug("store run progress", zap.String("reqid", run.ReqID), zap.Error(err))
	}
	p.last, p.dirty = time.Now(), false
}

// stop ends the tracking: no save happens after it returns.
func (p *progress) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.stopped = true
	if p.timer != nil {
		p.timer.Stop()
		p.timer = nil
	}
}
