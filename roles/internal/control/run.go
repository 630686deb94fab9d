package control

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/exec"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// RunRequest is one run of a script on many hosts.
type RunRequest struct {
	Hosts    []string // "name" or "name:port"; results come back in this order
	Script   string
	Args     []string // passed to the script as they are
	Username string
	Token    string        // forwarded to the agents, never stored or logged
	Timeout  time.Duration // script wall-clock limit on the agent (whole seconds, rounded up); 0 = the agent's default
	Port     int           // port for hosts that name none (--port); 0 = registry, then 7443
	Parallel int           // hosts in flight at once; 0 = Options.Parallel
	Rollout  Rollout       // batches and when to stop early; the zero value runs every host at once
	RetryOf  string        // the run whose failed hosts this one retries (RetryFailed), stored with the run

	// OnStart, when set, is called with the reqid once the locks are held
	// and the run is stored, before any agent is contacted.
	OnStart func(reqid string)
	// OnOutput, when set, asks agents to stream and receives each chunk of
	// output as it arrives. It is called from the hosts' goroutines: calls
	// for different hosts run concurrently, calls for one host in order.
	// Agents that cannot stream (Perl agents) send no chunks: their output
	// is only in the result.
	OnOutput func(i int, host string, ev wire.StreamEvent)
	// OnResult, when set, receives each host's result as it completes:
	// in completion order, one call at a time. i is the host's index in
	// Hosts. Hosts a rollout did not start come too, with Attempted
	// false.
	OnResult func(i int, r store.Result)
	// OnBatch, when set, hears of each batch of a rollout as it starts
	// (a run without a batch size is one batch).
	OnBatch func(BatchEvent)
}

// RunReport is the outcome of a run, in the JSON shape of run --json
// (SPEC §6). OK is true only when every host exited 0.
type RunReport struct {
	OK      bool           `json:"ok"`
	ReqID   string         `json:"reqid"`
	Results []store.Result `json:"results"`
	// Batches is the rollout's progress when the run had a batch size or
	// fail-fast: among it, why it stopped early.
	Batches *store.Batches `json:"batches,omitempty"`

	// Stored is the final record as Run stored it; its zero value when
	// storing failed.
	Stored store.Run `json:"-"`
}

// ScriptNotPermitted is the error of a refused script, on the agent and
// here (SPEC §6: scripts parse it).
const ScriptNotPermitted = wire.ErrScriptNotPermitted

// Run runs a script on every host of req, at most Parallel at a time, and
// returns each host's result in the order of req.Hosts. In order, it:
// checks the arguments (bad hosts, too many, bad script arguments: an
// error, nothing done), asks Options.Authorize, takes the host:script locks
// (a conflict is a *store.LockConflictError and nothing is dispatched),
// stores the run as running, contacts the agents (storing the hosts done so
// far as they complete), and stores the results: status done, or cancelled
// when ctx ended first.
//
// A host that fails (unreachable, refused, timed out, identity check) is a
// result with exit -1 and the reason in Error; it never stops the others.
// A script name that no agent could allow (not 1-64 of [A-Za-z0-9_-]) is
// refused for every host with "script not permitted" without contacting
// any. The error is non-nil only when the run could not start, or (with a
// report) when its results could not be stored.
//
// While the hosts run, Run asks the store every half second whether
// another process asked for the run to be cancelled ([RequestCancel]) and
// then cancels it as if ctx had ended.
func (e *Engine) Run(ctx context.Context, req RunRequest) (*RunReport, error) {
	return e.run(ctx, req, true)
}

// run is Run; watch asks the store for cancel requests of the run
// (Tracker asks for those of all its runs at once instead).
func (e *Engine) run(ctx context.Context, req RunRequest, watch bool) (*RunReport, error) {
	targets, err := parseTargets(req.Hosts, e.o.MaxHosts)
	if err != nil {
		return nil, err
	}
	if req.Script == "" {
		return nil, errors.New("no script given")
	}
	if err := exec.CheckArgs(req.Args); err != nil {
		return nil, fmt.Errorf("script arguments: %w", err)
	}
	if req.Timeout < 0 {
		return nil, errors.New("timeout must not be negative")
	}
	if err := req.Rollout.Check(); err != nil {
		return nil, err
	}
	if err := e.authorize(ctx, AuthRequest{Action: logging.ActionRun, Script: req.Script, Hosts: req.Hosts,
		Args: req.Args, Username: req.Username, Token: req.Token}); err != nil {
		return nil, err
	}
	if err := e.loadRevoked(); err != nil {
		return nil, err
	}

	reqid := NewReqID()
	permitted := exec.ValidName(req.Script)
	started := e.o.Now()
	owner := store.CurrentOwner()
	if permitted {
		keys := make([]store.LockKey, len(targets))
		for i, t := range targets {
			keys[i] = store.LockKey{Host: t.Name, Script: req.Script}
		}
		release, session, err := e.acquire(store.LockHolder{PID: os.Getpid(), ReqID: reqid, User: req.Username, Started: started.UTC()}, keys)
		owner.Session = session
		var lc *store.LockConflictError
		if errors.As(err, &lc) {
			logging.EventLevel(e.log, zapcore.WarnLevel, logging.ActionLockConflict, zap.String("reqid", reqid),
				zap.String("script", req.Script), zap.Strings("conflicts", lc.Pairs()), zap.String("user", req.Username))
		}
		if err != nil {
			return nil, err
		}
		defer release()
	}

	run := store.Run{ReqID: reqid, Script: req.Script, Args: nonNil(req.Args), Hosts: req.Hosts,
		Username: req.Username, Status: store.RunRunning, Started: started.UTC(), RetryOf: req.RetryOf}
	run.Owner = &owner
	plan := req.Rollout.plan(len(targets))
	if plan.batched() {
		run.Batches = plan.progress()
	}
	if err := e.o.Runs.SaveRun(run); err != nil {
		return nil, fmt.Errorf("store run %s: %w", reqid, err)
	}
	logging.Event(e.log, logging.ActionDispatch, zap.String("reqid", reqid), zap.String("script", req.Script),
		zap.Int("hosts", len(targets)), zap.Int("args", len(req.Args)), zap.String("user", req.Username))
	if req.OnStart != nil {
		req.OnStart(reqid)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stopWatch := func() {}
	if watch {
		stopWatch = e.watchCancel(reqid, cancel)
	}
	results := make([]store.Result, len(targets))
	failed := 0
	work := func(ctx context.Context, i int) store.Result {
		if !permitted {
			logging.EventLevel(e.log, zapcore.WarnLevel, logging.ActionRun, zap.String("reqid", reqid), zap.String("host", targets[i].Name),
				zap.String("script", req.Script), zap.Int("exit", -1), zap.String("error", ScriptNotPermitted), zap.String("reason", "not a script name"))
			return store.Result{Host: targets[i].Arg, Exit: -1, RTT: FormatRTT(0), ReqID: reqid, Error: ScriptNotPermitted}
		}
		return e.runOne(ctx, reqid, i, targets[i], req)
	}
	prog := e.newProgress(run)
	skip := func(i int, why string) store.Result {
		return store.Result{Host: targets[i].Arg, Exit: -1, RTT: FormatRTT(0), ReqID: reqid, Error: notAttempted(why), Attempted: falsePtr()}
	}
	var state func(store.Batches)
	if plan.batched() {
		state = prog.setBatches
	}
	batches := rollout(ctx, plan, req.Hosts, e.parallel(req.Parallel), work, skip,
		func(r store.Result) bool { return r.Exit != 0 }, func(i int, r store.Result) {
			results[i] = r
			prog.add(i, r)
			if r.Exit != 0 {
				failed++
			}
			if req.OnResult != nil {
				req.OnResult(i, r)
			}
		}, req.OnBatch, state)

	stopWatch()
	prog.stop()
	run.Status, run.Finished, run.Results, run.Owner = store.RunDone, e.o.Now().UTC(), results, nil
	if ctx.Err() != nil {
		run.Status = store.RunCancelled // hosts still in flight say "cancelled"
	}
	if plan.batched() {
		run.Batches = &batches
	}
	report := &RunReport{OK: failed == 0, ReqID: reqid, Results: results, Batches: run.Batches}
	if err := e.o.Runs.SaveRun(run); err != nil {
		return report, fmt.Errorf("run %s finished but its results could not be stored: %w", reqid, err)
	}
	report.Stored = run
	e.prune()
	return report, nil
}

// acquire takes the run's locks, naming the session that holds them when
// the store can (store.SessionLocks, for RunOwner.Session).
func (e *Engine) acquire(h store.LockHolder, keys []store.LockKey) (release func(), session string, err error) {
	if sl, ok := e.o.Locks.(store.SessionLocks); ok {
		return sl.AcquireSession(h, keys)
	}
	release, err = e.o.Locks.Acquire(h, keys)
	return release, "", err
}

// runOne runs the script on one host and never fails: every problem is
// in the result. It logs one run event (and a serial-reject event when the
// agent failed the identity checks).
func (e *Engine) runOne(ctx context.Context, reqid string, i int, t Target, req RunRequest) store.Result {
	start := time.Now()
	extra := time.Duration(timeoutSeconds(req.Timeout)) * time.Second
	ctx, cancel := context.WithTimeout(ctx, e.hostDeadline(extra))
	defer cancel()
	res := store.Result{Host: t.Arg, Exit: -1, ReqID: reqid}
	p, err := e.prepare(ctx, t, req.Port)
	var resp *wire.RunResponse
	var peer wire.Peer
	if err == nil {
		var onEvent func(wire.StreamEvent)
		if req.OnOutput != nil {
			onEvent = func(ev wire.StreamEvent) { req.OnOutput(i, t.Arg, ev) }
		}
		resp, err = e.client.Run(wire.WithPeer(ctx, &peer), p.target, wire.RunRequest{Script: req.Script, Args: nonNil(req.Args), ReqID: reqid,
			Username: req.Username, Token: req.Token, Timeout: timeoutSeconds(req.Timeout)}, onEvent)
	}
	rtt := time.Since(start)
	res.RTT = FormatRTT(rtt)
	if err != nil {
		res.Error = err.Error()
		e.logIdentity(reqid, t.Name, err)
	} else {
		res.Exit, res.Error, res.Truncated, res.Signal = resp.Exit, resp.Error, resp.Truncated, resp.Signal
		res.Stdout, res.StdoutB64, res.Stderr, res.StderrB64 = resp.Stdout, resp.StdoutB64, resp.Stderr, resp.StderrB64
		e.touch(p)
		e.afterContact(ctx, reqid, p, peer.Leaf())
	}
	lvl := zapcore.InfoLevel
	if res.Exit != 0 {
		lvl = zapcore.WarnLevel
	}
	fields := []zap.Field{zap.String("reqid", reqid), zap.String("host", t.Name), zap.String("script", req.Script),
		zap.Int("exit", res.Exit), zap.Duration("rtt", rtt.Round(time.Millisecond))}
	if res.Error != "" {
		fields = append(fields, zap.String("error", res.Error))
	}
	logging.EventLevel(e.log, lvl, logging.ActionRun, fields...)
	return res
}

// timeoutSeconds is the wire form of a script timeout: whole seconds,
// rounded up.
func timeoutSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	s := math.Ceil(d.Seconds())
	if s > math.MaxInt32 {
		return math.MaxInt32
	}
	return int(s)
}

// pruneEvery is how often one Engine prunes stored runs at most.
const pruneEvery = time.Minute

// prune removes stored runs past RunRetention, when the store can, at
// most once per pruneEvery.
func (e *Engine) prune() {
	p, ok := e.o.Runs.(interface {
		PruneRuns(cutoff time.Time) (int, error)
	})
	if !ok || e.o.RunRetention < 0 {
		return
	}
	// Pruning reads every stored run's time: once per pruneEvery is
	// enough, so a busy API does not scan the runs after each of them.
	// A CLI process, which runs once, always prunes.
	now, last := e.o.Now().UnixNano(), e.lastPrune.Load()
	if last != 0 && now-last < int64(pruneEvery) || !e.lastPrune.CompareAndSwap(last, now) {
		return
	}
	if _, err := p.PruneRuns(e.o.Now().Add(-e.o.RunRetention)); err != nil {
		e.log.Warn("prune stored runs", zap.Error(err))
	}
}

// Status returns the stored run reqid: an error wrapping store.ErrNotFound
// when it is not stored (or no longer), a plain error for a reqid that is
// not one.
// A run left running by a process that has ended is marked lost first
// (MarkLost).
func Status(runs store.Runs, reqid string, log *zap.Logger) (store.Run, error) {
	if err := store.ValidReqID(reqid); err != nil {
		return store.Run{}, err
	}
	return GetRun(runs, reqid, log)
}

// ListLocks returns the host:script locks held right now.
func ListLocks(locks store.Locks) ([]store.LockInfo, error) {
	return locks.ListLocks()
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}
