package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

func amount(t *testing.T, s string) *Amount {
	t.Helper()
	a, err := ParseAmount(s)
	if err != nil {
		t.Fatal(err)
	}
	return &a
}

func TestParseAmount(t *testing.T) {
	for in, want := range map[string]Amount{"0": {}, "5": {N: 5}, "25%": {N: 25, Percent: true}, "100%": {N: 100, Percent: true}, " 7 ": {N: 7}} {
		got, err := ParseAmount(in)
		if err != nil || got != want {
			t.Errorf("ParseAmount(%q) = %+v, %v; want %+v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "-1", "+3", "101%", "5 %", "%", "1.5", "abc", "5%%", "0x10"} {
		if got, err := ParseAmount(in); err == nil {
			t.Errorf("ParseAmount(%q) = %+v, want an error", in, got)
		}
	}
	// Batches round up (at least one host), failure budgets down.
	for _, tc := range []struct {
		a         string
		total     int
		up, down  int
		wantBatch int
	}{
		{"25%", 20, 5, 5, 4}, {"10%", 15, 2, 1, 8}, {"1%", 20, 1, 0, 20}, {"100%", 7, 7, 7, 1}, {"5", 3, 5, 5, 1},
	} {
		a := amount(t, tc.a)
		if up, down := a.Of(tc.total, true), a.Of(tc.total, false); up != tc.up || down != tc.down {
			t.Errorf("%s of %d = %d up, %d down; want %d, %d", tc.a, tc.total, up, down, tc.up, tc.down)
		}
		hosts := make([]string, tc.total)
		if n := len(Rollout{Batch: a}.Batches(hosts)); n != tc.wantBatch {
			t.Errorf("%s of %d: %d batches, want %d", tc.a, tc.total, n, tc.wantBatch)
		}
	}
	var got struct{ A, B Amount }
	if err := json.Unmarshal([]byte(`{"A": 3, "B": "30%"}`), &got); err != nil || got.A != (Amount{N: 3}) || got.B != (Amount{N: 30, Percent: true}) {
		t.Errorf("JSON: %+v, %v", got, err)
	}
	for _, bad := range []string{`{"A": -1}`, `{"A": "x"}`, `{"A": 1.5}`, `{"A": true}`, `{"A": "200%"}`} {
		if err := json.Unmarshal([]byte(bad), &got); err == nil {
			t.Errorf("JSON %s accepted", bad)
		}
	}
}

// FuzzParseAmount: what it accepts prints back in canonical form and
// parses again to the same value; a percentage is never over 100.
func FuzzParseAmount(f *testing.F) {
	for _, s := range []string{"5", "25%", "0", "100%", "101%", "-1", " 3", "9999999999999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		a, err := ParseAmount(s)
		if err != nil {
			return
		}
		if a.N < 0 || a.Percent && a.N > 100 {
			t.Fatalf("%q accepted as %+v", s, a)
		}
		b, err := ParseAmount(a.String())
		if err != nil || b != a {
			t.Fatalf("%q: %+v prints as %q, which parses as %+v, %v", s, a, a.String(), b, err)
		}
	})
}

func TestRolloutCheck(t *testing.T) {
	for _, tc := range []struct {
		r    Rollout
		want string
	}{
		{Rollout{Batch: amount(t, "0")}, "batch 0"},
		{Rollout{Batch: amount(t, "0%")}, "batch 0"},
		{Rollout{BatchWait: time.Second}, "batch_wait is the pause between batches: set batch too"},
		{Rollout{Batch: amount(t, "2"), BatchWait: -time.Second}, "negative"},
		{Rollout{MaxFailures: amount(t, "1")}, "max_failures is checked between batches: set batch too, or use fail_fast"},
	} {
		var bad *BadRequestError
		if err := tc.r.Check(); !errors.As(err, &bad) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Check(%+v) = %v, want a *BadRequestError with %q", tc.r, err, tc.want)
		}
	}
	for _, r := range []Rollout{{}, {FailFast: true}, {Batch: amount(t, "1"), MaxFailures: amount(t, "0"), BatchWait: time.Millisecond}} {
		if err := r.Check(); err != nil {
			t.Errorf("Check(%+v) = %v", r, err)
		}
	}
}

// outcome is what a fake host did in a rollout.
type outcome struct {
	ran    bool
	failed bool
	why    string
}

// roll runs a rollout of n fake hosts, those in fail failing, and returns
// each host's outcome, the hosts worked on, the batch events and the
// final progress.
func roll(ctx context.Context, r Rollout, n, parallel int, fail ...int) ([]outcome, []int, []BatchEvent, store.Batches, []store.Batches) {
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("h%02d", i+1)
	}
	var mu sync.Mutex
	var worked []int
	var events []BatchEvent
	var states []store.Batches
	out := make([]outcome, n)
	final := rollout(ctx, r.plan(n), hosts, parallel, func(ctx context.Context, i int) outcome {
		mu.Lock()
		worked = append(worked, i)
		mu.Unlock()
		return outcome{ran: true, failed: slices.Contains(fail, i)}
	}, func(i int, why string) outcome {
		return outcome{why: why}
	}, func(o outcome) bool { return o.failed }, func(i int, o outcome) { out[i] = o },
		func(b BatchEvent) { events = append(events, b) }, func(b store.Batches) { states = append(states, b) })
	slices.Sort(worked)
	return out, worked, events, final, states
}

func TestRolloutMaxFailures(t *testing.T) {
	// 20 hosts, batches of 5, hosts 7 and 8 (indexes 6, 7) fail: batch 2
	// exceeds max failures 1, batches 3 and 4 are not started.
	out, worked, events, final, states := roll(context.Background(), Rollout{Batch: amount(t, "5"), MaxFailures: amount(t, "1")}, 20, 3, 6, 7)
	if want := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}; !slices.Equal(worked, want) {
		t.Errorf("worked on %v, want %v", worked, want)
	}
	for i, o := range out {
		if i < 10 && (!o.ran || o.failed != (i == 6 || i == 7)) || i >= 10 && o.ran {
			t.Errorf("host %d: %+v", i+1, o)
		}
		if i >= 10 && o.why != "the rollout stopped after batch 2 of 4: 2 hosts failed, more than max failures 1" {
			t.Errorf("host %d: reason %q", i+1, o.why)
		}
	}
	wantEvents := []BatchEvent{
		{Batch: 1, Batches: 4, Hosts: []string{"h01", "h02", "h03", "h04", "h05"}},
		{Batch: 2, Batches: 4, Hosts: []string{"h06", "h07", "h08", "h09", "h10"}},
	}
	if d := cmp.Diff(wantEvents, events); d != "" {
		t.Errorf("batch events (-want +got):\n%s", d)
	}
	one := 1
	want := store.Batches{Size: 5, Count: 4, Current: 2, Failures: 2, MaxFailures: &one,
		Stopped: "the rollout stopped after batch 2 of 4: 2 hosts failed, more than max failures 1"}
	if d := cmp.Diff(want, final); d != "" {
		t.Errorf("progress (-want +got):\n%s", d)
	}
	if last := states[len(states)-1]; !cmp.Equal(last, final) {
		t.Errorf("last state %+v, final %+v", last, final)
	}

	// Exactly at the limit goes on: one failure with max failures 1.
	_, worked, _, final, _ = roll(context.Background(), Rollout{Batch: amount(t, "5"), MaxFailures: amount(t, "1")}, 20, 3, 6)
	if len(worked) != 20 || final.Stopped != "" || final.Current != 4 || final.Failures != 1 {
		t.Errorf("one failure: worked %v, progress %+v", worked, final)
	}
	// Percentages round the budget down: 10% of 15 is 1.
	_, worked, _, final, _ = roll(context.Background(), Rollout{Batch: amount(t, "20%"), MaxFailures: amount(t, "10%")}, 15, 2, 0, 1)
	if !slices.Equal(worked, []int{0, 1, 2}) || !strings.Contains(final.Stopped, "max failures 10% (1 host)") || *final.MaxFailures != 1 {
		t.Errorf("percent: worked %v, progress %+v", worked, final)
	}
}

func TestRolloutFailFast(t *testing.T) {
	// One host at a time: nothing after the first failure starts.
	out, worked, events, final, _ := roll(context.Background(), Rollout{FailFast: true}, 6, 1, 2)
	if !slices.Equal(worked, []int{0, 1, 2}) {
		t.Errorf("worked on %v", worked)
	}
	for i := 3; i < 6; i++ {
		if out[i].ran || out[i].why != "fail-fast: h03 failed" {
			t.Errorf("host %d: %+v", i+1, out[i])
		}
	}
	if len(events) != 1 || final.Count != 1 || !final.FailFast || final.Failures != 1 {
		t.Errorf("events %+v, progress %+v", events, final)
	}
	// Across batches: later batches never start. (Host 1 may or may
	// not have started before host 2 failed: they start in parallel.)
	out, _, _, final, _ = roll(context.Background(), Rollout{FailFast: true, Batch: amount(t, "2")}, 6, 2, 1)
	if !out[1].ran || out[2].ran || out[5].ran || out[5].why != "fail-fast: h02 failed" || final.Current != 1 {
		t.Errorf("batched fail-fast: %+v, progress %+v", out, final)
	}
}

func TestRolloutWaitAndCancel(t *testing.T) {
	start := time.Now()
	_, worked, _, final, _ := roll(context.Background(), Rollout{Batch: amount(t, "1"), BatchWait: 20 * time.Millisecond}, 3, 1)
	if len(worked) != 3 || final.Current != 3 || time.Since(start) < 40*time.Millisecond {
		t.Errorf("waits: worked %v, progress %+v, took %v", worked, final, time.Since(start))
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out, _, _, final, _ := roll(ctx, Rollout{Batch: amount(t, "2"), BatchWait: time.Hour}, 4, 1)
	// The first batch runs (its work sees the cancelled ctx and reports
	// it, as any run does); the next is not started.
	if !out[0].ran || out[2].ran || out[3].why != "cancelled before this batch started" || final.Current != 1 {
		t.Errorf("cancelled: %+v, progress %+v", out, final)
	}
}

func TestRetryFailed(t *testing.T) {
	st := store.NewFiles(t.TempDir())
	no := false
	save := func(r store.Run) {
		t.Helper()
		if err := st.SaveRun(r); err != nil {
			t.Fatal(err)
		}
	}
	save(store.Run{ReqID: "00000000000000a1", Script: "deploy", Args: []string{"v2"}, Status: store.RunDone,
		Hosts: []string{"a", "b:7450", "c", "d", "e"}, Started: time.Now(),
		Results: []store.Result{{Host: "a"}, {Host: "b:7450", Exit: 3}, {Host: "c", Exit: -1, Error: "connect: refused"},
			{Host: "d", Exit: -1, Error: "not attempted: stopped", Attempted: &no}, {Host: "e", Error: "odd: exit 0 with an error"}}})
	run, hosts, err := RetryFailed(st, "00000000000000a1", zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"b:7450", "c", "e"}, hosts); d != "" || run.Script != "deploy" || !slices.Equal(run.Args, []string{"v2"}) {
		t.Errorf("retry: %v %+v (-want +got):\n%s", hosts, run, d)
	}

	save(store.Run{ReqID: "00000000000000a2", Script: "deploy", Status: store.RunDone, Hosts: []string{"a", "d"}, Started: time.Now(),
		Results: []store.Result{{Host: "a"}, {Host: "d", Exit: -1, Attempted: &no}}})
	save(store.Run{ReqID: "00000000000000a3", Script: "deploy", Status: store.RunRunning, Hosts: []string{"a"}, Started: time.Now(),
		Owner: &store.RunOwner{PID: 1, Node: "elsewhere.example"}})
	for reqid, want := range map[string]string{
		"00000000000000a2": "no failed host to retry: every host it attempted exited 0; 1 host not attempted",
		"00000000000000a3": "still running",
		"../etc/passwd":    "retry ../etc/passwd",
	} {
		var bad *BadRequestError
		if _, _, err := RetryFailed(st, reqid, zap.NewNop()); !errors.As(err, &bad) || !strings.Contains(err.Error(), want) {
			t.Errorf("RetryFailed(%s) = %v, want a *BadRequestError with %q", reqid, err, want)
		}
	}
	if _, _, err := RetryFailed(st, "00000000000000ff", zap.NewNop()); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("unknown run: %v", err)
	}
}

func TestStoredEventsBatches(t *testing.T) {
	no := false
	run := store.Run{ReqID: "00000000000000b1", Status: store.RunRunning, Hosts: []string{"a", "b", "c", "d", "e"},
		Batches: &store.Batches{Size: 2, Count: 3, Current: 2},
		Results: []store.Result{{Host: "a"}, {Host: "b", Exit: 2}, {Host: "c", Exit: -1, Error: "connect: refused"}}}
	kinds := func(evs []Event) []string {
		var out []string
		for _, ev := range evs {
			switch ev.Kind {
			case EventBatch:
				out = append(out, fmt.Sprintf("batch %d/%d %v failures %d", ev.Batch.Batch, ev.Batch.Batches, ev.Batch.Hosts, ev.Batch.Failures))
			case EventResult:
				out = append(out, "result "+ev.Host)
			case EventDone:
				out = append(out, "done")
			}
		}
		return out
	}
	// Batch 2 started and one of its hosts is done: it is announced
	// before that host, with batch 1's failure.
	want := []string{"batch 1/3 [a b] failures 0", "result a", "result b", "batch 2/3 [c d] failures 1", "result c"}
	if d := cmp.Diff(want, kinds(StoredEvents(run))); d != "" {
		t.Errorf("running (-want +got):\n%s", d)
	}
	// Over: batch 3 was never started; its host is a result, not a batch.
	run.Status = store.RunDone
	run.Results = append(run.Results, store.Result{Host: "d"}, store.Result{Host: "e", Exit: -1, Attempted: &no})
	want = append(want, "result d", "result e", "done")
	if d := cmp.Diff(want, kinds(StoredEvents(run))); d != "" {
		t.Errorf("done (-want +got):\n%s", d)
	}
	// A batch started with no host done yet is announced too; a run
	// without batches has no batch events.
	run.Results, run.Status = nil, store.RunRunning
	if d := cmp.Diff([]string{"batch 1/3 [a b] failures 0", "batch 2/3 [c d] failures 0"}, kinds(StoredEvents(run))); d != "" {
		t.Errorf("no results (-want +got):\n%s", d)
	}
	run.Batches = nil
	if evs := kinds(StoredEvents(run)); len(evs) != 0 {
		t.Errorf("plain run: %v", evs)
	}
}
