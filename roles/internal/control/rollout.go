package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Amount is a number of hosts, or a percentage of the hosts selected:
// "5" or "25%". The zero value is zero hosts.
type Amount struct {
	N       int  // hosts, or percent when Percent
	Percent bool // N is a percentage, 0-100
}

// ParseAmount reads "N" or "N%": a whole number ≥ 0, a percentage at most
// 100.
func ParseAmount(s string) (Amount, error) {
	num, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || num != strings.TrimSpace(num) || strings.HasPrefix(num, "+") {
		return Amount{}, fmt.Errorf("%q: want a number of hosts like 5 or a percentage like 25%%", s)
	}
	if pct && n > 100 {
		return Amount{}, fmt.Errorf("%q: a percentage is at most 100%%", s)
	}
	return Amount{N: n, Percent: pct}, nil
}

// String is the amount as ParseAmount reads it.
func (a Amount) String() string {
	if a.Percent {
		return strconv.Itoa(a.N) + "%"
	}
	return strconv.Itoa(a.N)
}

// Of returns the amount as hosts out of total: a percentage rounded up
// when up is set (a batch has at least one host), else down (a failure
// budget is never more generous than asked).
func (a Amount) Of(total int, up bool) int {
	if !a.Percent {
		return a.N
	}
	if up {
		return (total*a.N + 99) / 100
	}
	return total * a.N / 100
}

// MarshalText writes String.
func (a Amount) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// UnmarshalText reads what ParseAmount reads.
func (a *Amount) UnmarshalText(b []byte) error {
	v, err := ParseAmount(string(b))
	if err != nil {
		return err
	}
	*a = v
	return nil
}

// UnmarshalJSON reads a JSON number (hosts) or string ("25%", "5").
func (a *Amount) UnmarshalJSON(b []byte) error {
	var s string
	if len(b) > 0 && b[0] == '"' {
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
	} else {
		s = string(b)
	}
	return a.UnmarshalText([]byte(s))
}

// Rollout says how a run or ping goes through its hosts: in batches, one
// batch after the other, stopping early on failures. The zero value runs
// every host at once.
type Rollout struct {
	Batch     *Amount       // hosts per batch; nil: every host in one batch
	BatchWait time.Duration // pause between two batches
	// MaxFailures: once more hosts than this have failed, no further
	// batch is started; nil: no limit.
	MaxFailures *Amount
	// FailFast: once a host has failed, no further host is started, in
	// this batch or a later one; hosts in flight finish.
	FailFast bool
}

// batched reports whether r asks for anything but one batch of all.
func (r Rollout) batched() bool { return r.Batch != nil || r.FailFast }

// Check reports options that cannot work together, as *BadRequestError,
// naming them as the API's fields do (batch, batch_wait, max_failures,
// fail_fast).
func (r Rollout) Check() error { return r.CheckAs(func(field string) string { return field }) }

// CheckAs is Check with the options named by name: the command line
// passes a function that turns "batch_wait" into "--batch-wait".
func (r Rollout) CheckAs(name func(field string) string) error {
	switch {
	case r.Batch != nil && r.Batch.N == 0:
		return badRequest(fmt.Errorf("%s %s: want at least 1 host, or 1%%, per batch", name("batch"), r.Batch))
	case r.BatchWait < 0:
		return badRequest(fmt.Errorf("%s must not be negative", name("batch_wait")))
	case r.Batch == nil && r.BatchWait > 0:
		return badRequest(fmt.Errorf("%s is the pause between batches: set %s too", name("batch_wait"), name("batch")))
	case r.Batch == nil && r.MaxFailures != nil:
		return badRequest(fmt.Errorf("%s is checked between batches: set %s too, or use %s to stop at the first failure",
			name("max_failures"), name("batch"), name("fail_fast")))
	}
	return nil
}

// BatchEvent is the start of one batch of a rollout.
type BatchEvent struct {
	Batch    int      `json:"batch"`    // from 1
	Batches  int      `json:"batches"`  // in all
	Hosts    []string `json:"hosts"`    // the batch's hosts, as given
	Failures int      `json:"failures"` // hosts that failed in earlier batches
}

// plan is a rollout worked out for n hosts.
type plan struct {
	Rollout
	size, count int
	maxFail     int // -1: no limit
}

func (r Rollout) plan(n int) plan {
	p := plan{Rollout: r, size: n, count: 1, maxFail: -1}
	if r.Batch != nil {
		p.size = max(1, r.Batch.Of(n, true))
	}
	if n > 0 {
		p.count = (n + p.size - 1) / p.size
	}
	if r.MaxFailures != nil {
		p.maxFail = r.MaxFailures.Of(n, false)
	}
	return p
}

// progress is the rollout's state as stored with the run.
func (p plan) progress() *store.Batches {
	b := &store.Batches{Size: p.size, Count: p.count, FailFast: p.FailFast}
	if p.maxFail >= 0 {
		m := p.maxFail
		b.MaxFailures = &m
	}
	return b
}

// notAttempted is the result error of a host a rollout did not start.
func notAttempted(why string) string { return "not attempted: " + why }

// rollout calls work for every host 0..n-1 in batches as p says, at most
// parallel at once within a batch, and hands each result to done in
// completion order on the calling goroutine (as fanout does). Hosts it
// does not start get skip(i, why) instead. failed says whether a result
// counts as a failure. onBatch, when set, hears of each batch before it
// starts (not for a plain run of every host at once); state, when set, of every change of the progress (from the
// calling goroutine). It returns the final progress.
func rollout[R any](ctx context.Context, p plan, hosts []string, parallel int,
	work func(ctx context.Context, i int) R, skip func(i int, why string) R, failed func(R) bool,
	done func(i int, r R), onBatch func(BatchEvent), state func(store.Batches)) store.Batches {
	n := len(hosts)
	prog := *p.progress()
	notify := func() {
		if state != nil {
			state(prog)
		}
	}
	// halt is fail-fast's reason to start no further host, set by the
	// worker of the first failed host before it takes another job.
	var halt atomic.Pointer[string]
	type item struct {
		r   R
		ran bool
	}
	for b := range p.count {
		lo, hi := b*p.size, min(n, (b+1)*p.size)
		if prog.Stopped == "" && b > 0 {
			prog.Stopped = p.stopBetween(prog, b)
			if prog.Stopped == "" && p.BatchWait > 0 && !sleepCtx(ctx, p.BatchWait) {
				prog.Stopped = "cancelled before this batch started"
			}
			if prog.Stopped == "" && ctx.Err() != nil {
				prog.Stopped = "cancelled before this batch started"
			}
			if prog.Stopped != "" {
				notify()
			}
		}
		if prog.Stopped != "" {
			for i := lo; i < hi; i++ {
				done(i, skip(i, prog.Stopped))
			}
			continue
		}
		prog.Current = b + 1
		notify()
		if onBatch != nil && p.batched() {
			onBatch(BatchEvent{Batch: b + 1, Batches: p.count, Hosts: hosts[lo:hi], Failures: prog.Failures})
		}
		fanout(ctx, hi-lo, parallel, func(ctx context.Context, j int) item {
			if halt.Load() != nil {
				return item{}
			}
			r := work(ctx, lo+j)
			if p.FailFast && failed(r) {
				why := fmt.Sprintf("fail-fast: %s failed", hosts[lo+j])
				halt.CompareAndSwap(nil, &why)
			}
			return item{r: r, ran: true}
		}, func(j int, it item) {
			i := lo + j
			if why := halt.Load(); why != nil && prog.Stopped == "" {
				prog.Stopped = *why
				notify()
			}
			if !it.ran {
				done(i, skip(i, prog.Stopped))
				return
			}
			if failed(it.r) {
				prog.Failures++
				notify()
			}
			done(i, it.r)
		})
	}
	return prog
}

// stopBetween says why batch b (from 0) must not start, or "".
func (p plan) stopBetween(prog store.Batches, b int) string {
	if p.maxFail >= 0 && prog.Failures > p.maxFail {
		limit := p.MaxFailures.String()
		if p.MaxFailures.Percent {
			limit = fmt.Sprintf("%s (%s)", limit, hostCount(p.maxFail))
		}
		return fmt.Sprintf("the rollout stopped after batch %d of %d: %s failed, more than max failures %s",
			b, p.count, hostCount(prog.Failures), limit)
	}
	return ""
}

// hostCount is "1 host" or "N hosts".
func hostCount(n int) string {
	if n == 1 {
		return "1 host"
	}
	return fmt.Sprintf("%d hosts", n)
}

// sleepCtx waits d, or less when ctx ends first (then it returns false).
func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// falsePtr is the Attempted of a host not started.
func falsePtr() *bool {
	f := false
	return &f
}

// RetryFailed reads stored run reqid and returns it with the hosts to run
// again: those that failed — a non-zero exit or an error — in the order of
// the run. Hosts a rollout did not attempt are not among them (run the
// rollout again to reach them). A run still in flight, or one where no
// host failed, is a *BadRequestError; a run not stored wraps
// store.ErrNotFound.
func RetryFailed(runs store.Runs, reqid string, log *zap.Logger) (store.Run, []string, error) {
	if err := store.ValidReqID(reqid); err != nil {
		return store.Run{}, nil, badRequest(fmt.Errorf("retry %s: %w", reqid, err))
	}
	run, err := Status(runs, reqid, log)
	if errors.Is(err, store.ErrNotFound) {
		return run, nil, fmt.Errorf("retry %s: %w: unknown, or older than run_retention", reqid, err)
	}
	if err != nil {
		return run, nil, fmt.Errorf("retry %s: %w", reqid, err)
	}
	if run.Status == store.RunRunning {
		return run, nil, badRequest(fmt.Errorf("run %s is still running: retry its failed hosts once it is over (dispatcher status %s)", reqid, reqid))
	}
	byHost := make(map[string]store.Result, len(run.Results))
	for _, r := range run.Results {
		byHost[r.Host] = r
	}
	var hosts []string
	skipped := 0
	for _, h := range run.Hosts {
		r, ok := byHost[h]
		switch {
		case ok && !r.WasAttempted():
			skipped++
		case !ok || r.Exit != 0 || r.Error != "":
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		msg := fmt.Sprintf("run %s has no failed host to retry: every host it attempted exited 0", reqid)
		if skipped > 0 {
			msg += fmt.Sprintf("; %s not attempted: reach them by running the rollout again", hostCount(skipped))
		}
		return run, nil, badRequest(errors.New(msg))
	}
	return run, hosts, nil
}

// Batches splits hosts into the batches r would run them in.
func (r Rollout) Batches(hosts []string) [][]string {
	p := r.plan(len(hosts))
	out := make([][]string, 0, p.count)
	for lo := 0; lo < len(hosts); lo += p.size {
		out = append(out, hosts[lo:min(len(hosts), lo+p.size)])
	}
	return out
}

// RetryFailed is [RetryFailed] on the engine's stored runs.
func (e *Engine) RetryFailed(reqid string) (store.Run, []string, error) {
	return RetryFailed(e.o.Runs, reqid, e.log)
}
