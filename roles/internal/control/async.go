package control

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// ErrShuttingDown refuses a run asked for while a Tracker drains.
var ErrShuttingDown = errors.New("shutting down: no new runs are started; try another node or again once it is back")

// Tracker runs runs for a long-lived process (the API): each in the
// background, waited for or not, cancellable by its reqid, with an
// [EventLog] readers can follow. A run is tracked from the moment its
// locks are held and it is stored as running until its final record is
// stored; from then on only the store knows it. While runs are in flight,
// the Tracker asks the store for cancel requests made by other processes
// (see [RequestCancel]) every half second and cancels the runs asked for.
// It is safe for concurrent use.
type Tracker struct {
	eng *Engine
	// OnFinish, when set, is called once for every run that started, when
	// it is over (its final record stored or failed to be), before Done is
	// closed.
	OnFinish func(r *LiveRun)

	mu      sync.Mutex
	live    map[string]*LiveRun
	closing bool
	polling bool // pollCancels runs (cancel.go)
	wg      sync.WaitGroup
}

// NewTracker returns a Tracker running runs on e.
func NewTracker(e *Engine) *Tracker {
	return &Tracker{eng: e, live: make(map[string]*LiveRun)}
}

// LiveRun is a run in flight in this process.
type LiveRun struct {
	ReqID   string
	req     RunRequest // as asked: what the final record is made of if it could not be stored
	Started time.Time

	log       *EventLog
	cancel    context.CancelFunc
	done      chan struct{}
	requested bool // a cancel request of another process was acted on; guarded by Tracker.mu
	// Set before done is closed.
	report    *RunReport
	err       error
	cancelled bool
	duration  time.Duration
}

// Cancel cancels the run: connections to agents still running it are
// closed, which makes them kill the script's process group, and the run is
// stored as cancelled. It returns at once; Done says when it is over.
func (r *LiveRun) Cancel() { r.cancel() }

// Done is closed when the run is over and its final record stored.
func (r *LiveRun) Done() <-chan struct{} { return r.done }

// Events returns the run's event log.
func (r *LiveRun) Events() *EventLog { return r.log }

// Result returns what Engine.Run returned, whether the run was cancelled,
// and how long it took. Call it once Done is closed.
func (r *LiveRun) Result() (report *RunReport, cancelled bool, took time.Duration, err error) {
	return r.report, r.cancelled, r.duration, r.err
}

// Start runs req in the background and returns once it has started — its
// locks held, its record stored as running — or could not start; in the
// second case nothing was dispatched and the error is Run's (a
// *BadRequestError, a refusal of Options.Authorize, a
// *store.LockConflictError, …) or ErrShuttingDown. The run keeps ctx's
// values but not its end: it stops when it is over or cancelled (Cancel,
// Tracker.Cancel, Drain). req's callbacks are called as Run calls them.
func (t *Tracker) Start(ctx context.Context, req RunRequest) (*LiveRun, error) {
	t.mu.Lock()
	if t.closing {
		t.mu.Unlock()
		return nil, ErrShuttingDown
	}
	t.wg.Add(1)
	t.mu.Unlock()

	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	lr := &LiveRun{req: req, log: NewEventLog(req.Hosts), cancel: cancel, done: make(chan struct{})}
	started := make(chan struct{})
	onStart, onOutput, onResult, onBatch := req.OnStart, req.OnOutput, req.OnResult, req.OnBatch
	req.OnStart = func(reqid string) {
		lr.ReqID, lr.Started = reqid, time.Now()
		t.mu.Lock()
		t.live[reqid] = lr
		t.startPollLocked()
		t.mu.Unlock()
		close(started)
		if onStart != nil {
			onStart(reqid)
		}
	}
	req.OnOutput = func(i int, host string, ev wire.StreamEvent) {
		lr.log.Output(i, host, ev)
		if onOutput != nil {
			onOutput(i, host, ev)
		}
	}
	req.OnResult = func(i int, r store.Result) {
		lr.log.Result(i, r)
		if onResult != nil {
			onResult(i, r)
		}
	}
	req.OnBatch = func(b BatchEvent) {
		lr.log.Batch(b)
		if onBatch != nil {
			onBatch(b)
		}
	}
	go func() {
		defer t.wg.Done()
		defer cancel()
		begin := time.Now()
		report, err := t.eng.run(rctx, req, false) // pollCancels watches for cancel requests
		lr.report, lr.err, lr.cancelled, lr.duration = report, err, rctx.Err() != nil, time.Since(begin)
		if lr.ReqID != "" {
			lr.log.Close(t.finalRecord(lr))
			t.mu.Lock()
			delete(t.live, lr.ReqID)
			t.mu.Unlock()
		}
		if lr.ReqID != "" && t.OnFinish != nil {
			t.OnFinish(lr)
		}
		close(lr.done)
	}()
	select {
	case <-started:
		return lr, nil
	case <-lr.done:
		if lr.ReqID != "" { // started and finished at once
			return lr, nil
		}
		if lr.err == nil {
			lr.err = errors.New("run ended before it started")
		}
		return nil, lr.err
	}
}

// finalRecord is the run's record once it is over: as stored, or — when
// storing failed — as it would have been.
func (t *Tracker) finalRecord(lr *LiveRun) store.Run {
	if lr.err == nil && lr.report != nil && lr.report.Stored.ReqID == lr.ReqID {
		return lr.report.Stored // no need to read back what Run just wrote
	}
	if run, err := t.eng.o.Runs.GetRun(lr.ReqID); err == nil && run.Status != store.RunRunning {
		return run
	}
	req := lr.req
	run := store.Run{ReqID: lr.ReqID, Script: req.Script, Args: nonNil(req.Args), Hosts: req.Hosts,
		Username: req.Username, Status: store.RunDone, Started: lr.Started.UTC(), Finished: time.Now().UTC(), RetryOf: req.RetryOf}
	if lr.cancelled {
		run.Status = store.RunCancelled
	}
	if lr.report != nil {
		run.Results, run.Batches = lr.report.Results, lr.report.Batches
	}
	return run
}

// Get returns the run reqid when it is in flight in this process.
func (t *Tracker) Get(reqid string) (*LiveRun, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	lr, ok := t.live[reqid]
	return lr, ok
}

// InFlight returns how many runs are in flight in this process.
func (t *Tracker) InFlight() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.live)
}

// Drain stops new runs (Start returns ErrShuttingDown) and waits for the
// runs in flight to finish. Those still running when ctx ends are
// cancelled, and Drain waits up to after more for them to store their
// results. It returns how many were cancelled, and an error when some were
// still not over then.
func (t *Tracker) Drain(ctx context.Context, after time.Duration) (cancelled int, err error) {
	t.mu.Lock()
	t.closing = true
	t.mu.Unlock()
	idle := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		return 0, nil
	case <-ctx.Done():
	}
	t.mu.Lock()
	for _, lr := range t.live {
		lr.Cancel()
		cancelled++
	}
	t.mu.Unlock()
	select {
	case <-idle:
		return cancelled, nil
	case <-time.After(after):
		return cancelled, fmt.Errorf("%d runs still not over %s after they were cancelled", t.InFlight(), after)
	}
}

// FollowStored calls emit for the events of run, a record read from runs
// (see StoredEvents), and — while it is running in another process — reads
// it again every every and emits the batches started and the hosts done
// since, until the run is over, ctx ends or emit fails. A record that disappears meanwhile (purged)
// ends it with an error wrapping store.ErrNotFound.
func FollowStored(ctx context.Context, runs store.Runs, run store.Run, every time.Duration, emit func(Event) error) error {
	seen := make(map[string]bool, len(run.Hosts))
	announced := 0 // batch events sent
	for {
		for _, ev := range StoredEvents(run) {
			switch {
			case ev.Kind == EventBatch && ev.Batch.Batch <= announced:
				continue
			case ev.Kind == EventBatch:
				announced = ev.Batch.Batch
			case ev.Kind != EventDone && seen[ev.Host]:
				continue
			}
			if err := emit(ev); err != nil {
				return err
			}
		}
		for _, r := range run.Results {
			seen[r.Host] = true
		}
		if run.Status != store.RunRunning {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
		next, err := GetRun(runs, run.ReqID, nil)
		if err != nil {
			return err
		}
		run = next
	}
}
