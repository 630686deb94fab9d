package control

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// ticker is an agent whose /run streams "tick N" lines: quick ones ("tick"
// on hosts named quick-*) finish after two lines, the others keep ticking
// until the dispatcher closes the connection, which it records.
type ticker struct {
	gone atomic.Int64 // runs whose connection the dispatcher closed
}

func (tk *ticker) handler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /run", func(w http.ResponseWriter, r *http.Request) {
		var req wire.RunRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			wire.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		sw := wire.NewStreamWriter(w)
		for n := 1; ; n++ {
			// A line in two chunks: only whole lines reach the log.
			_ = sw.Event(wire.NewStreamEvent("stdout", []byte(fmt.Sprintf("tick %d", n))))
			_ = sw.Event(wire.NewStreamEvent("stdout", []byte(" on "+name+"\n")))
			if strings.HasPrefix(name, "quick-") && n == 2 {
				_ = sw.Event(wire.NewStreamEvent("stderr", []byte("no newline")))
				_ = sw.Final(wire.RunResponse{Script: req.Script, ReqID: req.ReqID, Stdout: "tick 1 on " + name + "\ntick 2 on " + name + "\n", Stderr: "no newline"})
				return
			}
			select {
			case <-r.Context().Done():
				tk.gone.Add(1)
				return
			case <-time.After(50 * time.Millisecond):
			}
		}
	})
	return mux
}

// agentWith starts an agent of the fleet serving h and registers it.
func (f *fleet) agentWith(name string, h http.Handler) {
	f.t.Helper()
	cert := f.ca.Agent(f.t, name)
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: f.ca.Pool()}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	f.t.Cleanup(srv.Close)
	fp, err := pki.Fingerprint(cert.Leaf.PublicKey)
	if err != nil {
		f.t.Fatal(err)
	}
	f.register(store.Agent{Hostname: name, IP: "127.0.0.1", Port: srv.Listener.Addr().(*net.TCPAddr).Port, KeyFingerprint: fp})
}

// follow reads l from the start until done or timeout.
func follow(t *testing.T, l *EventLog, timeout time.Duration) []Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var all []Event
	for {
		evs, end, err := l.Wait(ctx, len(all))
		if err != nil {
			t.Fatalf("event log: %v after %d events", err, len(all))
		}
		all = append(all, evs...)
		if end {
			return all
		}
	}
}

func TestTrackerCancel(t *testing.T) {
	f := newFleet(t)
	tk := &ticker{}
	f.agentWith("slow-01", tk.handler("slow-01"))
	f.agentWith("quick-01", tk.handler("quick-01"))
	tr := NewTracker(f.engine(nil))
	var finished atomic.Pointer[LiveRun]
	tr.OnFinish = func(r *LiveRun) { finished.Store(r) }

	ctx, cancelCaller := context.WithCancel(context.Background())
	lr, err := tr.Start(ctx, RunRequest{Hosts: []string{"slow-01", "quick-01"}, Script: "tick", Username: "alice"})
	if err != nil {
		t.Fatal(err)
	}
	cancelCaller() // the caller going away does not stop a background run
	if got, ok := tr.Get(lr.ReqID); !ok || got != lr {
		t.Fatalf("Get(%s) = %v, %v", lr.ReqID, got, ok)
	}

	// Lines arrive while the run goes on; quick-01 is done meanwhile and
	// the stored record shows it.
	rctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	var seen []Event
	for !hasLine(seen, "slow-01", "tick 3 on slow-01\n") {
		evs, end, err := lr.Events().Wait(rctx, len(seen))
		if err != nil || end {
			t.Fatalf("waiting for ticks: %v, end %v, events %+v", err, end, seen)
		}
		seen = append(seen, evs...)
	}
	var stored store.Run
	deadline := time.Now().Add(5 * time.Second)
	for {
		stored, err = f.st.GetRun(lr.ReqID)
		if err == nil && len(stored.Results) == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if stored.Status != store.RunRunning || len(stored.Results) != 1 || stored.Results[0].Host != "quick-01" {
		t.Fatalf("stored while running: %+v, %v", stored, err)
	}

	start := time.Now()
	lr.Cancel()
	select {
	case <-lr.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("cancelled run did not end")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("cancel took %v", took)
	}
	report, cancelled, _, err := lr.Result()
	if err != nil || !cancelled || report.OK {
		t.Fatalf("result: %+v, cancelled %v, %v", report, cancelled, err)
	}
	if r := report.Results[0]; r.Exit != -1 || r.Error != "cancelled" {
		t.Errorf("slow-01: %+v, want exit -1, cancelled", r)
	}
	waitFor(t, func() bool { return tk.gone.Load() == 1 }, "the agent to see the connection closed")
	stored, err = f.st.GetRun(lr.ReqID)
	if err != nil || stored.Status != store.RunCancelled || len(stored.Results) != 2 {
		t.Errorf("stored: %+v, %v", stored, err)
	}
	if _, ok := tr.Get(lr.ReqID); ok {
		t.Error("a finished run is still tracked")
	}
	waitFor(t, func() bool { return finished.Load() == lr }, "OnFinish")
	if locks, _ := f.st.ListLocks(); len(locks) != 0 {
		t.Errorf("locks after cancel: %v", locks)
	}

	// The whole log, read by a late reader: quick-01's lines and its
	// unterminated stderr, both results, the end.
	all := follow(t, lr.Events(), time.Second)
	var quick []string
	for _, ev := range all {
		if ev.Kind == EventOutput && ev.Host == "quick-01" {
			quick = append(quick, ev.Output.Stream+":"+ev.Output.Data)
		}
	}
	want := []string{"stdout:tick 1 on quick-01\n", "stdout:tick 2 on quick-01\n", "stderr:no newline"}
	if d := cmp.Diff(want, quick); d != "" {
		t.Errorf("quick-01 lines (-want +got):\n%s", d)
	}
	last := all[len(all)-1]
	if last.Kind != EventDone || last.Run.Status != store.RunCancelled || last.Run.ReqID != lr.ReqID {
		t.Errorf("last event: %+v", last)
	}
	if n := countKind(all, EventResult); n != 2 {
		t.Errorf("%d result events, want 2", n)
	}
}

func hasLine(evs []Event, host, data string) bool {
	for _, ev := range evs {
		if ev.Kind == EventOutput && ev.Host == host && ev.Output.Data == data {
			return true
		}
	}
	return false
}

func countKind(evs []Event, kind string) int {
	n := 0
	for _, ev := range evs {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTrackerRefusals(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01", "web-01")
	f.hold = make(chan struct{})
	tr := NewTracker(f.engine(nil))

	// Bad requests are refused before anything runs.
	e := tr.eng
	for _, req := range []RunRequest{
		{Hosts: nil, Script: "hello"},
		{Hosts: []string{"web-01", "web-01:7443"}, Script: "hello"},
		{Hosts: []string{"../etc"}, Script: "hello"},
		{Hosts: []string{"web-01"}},
		{Hosts: []string{"web-01"}, Script: "hello", Args: []string{"a\x00b"}},
		{Hosts: []string{"web-01"}, Script: "hello", Timeout: -time.Second},
		{Hosts: []string{"web-01"}, Script: "hello", Parallel: -1},
	} {
		var bad *BadRequestError
		if err := e.CheckRun(req); !errors.As(err, &bad) {
			t.Errorf("CheckRun(%+v) = %v, want a *BadRequestError", req, err)
		}
	}
	if err := e.CheckHosts(nil, 0, 0, true); err != nil {
		t.Errorf("CheckHosts(none, emptyOK) = %v", err)
	}
	if err := e.CheckHosts(nil, 0, 0, false); err == nil {
		t.Error("CheckHosts(none) = nil")
	}

	// A run holding web-01:hello makes a second one conflict at Start.
	lr, err := tr.Start(context.Background(), RunRequest{Hosts: []string{"web-01"}, Script: "hello"})
	if err != nil {
		t.Fatal(err)
	}
	_, err = tr.Start(context.Background(), RunRequest{Hosts: []string{"web-01"}, Script: "hello"})
	var lc *store.LockConflictError
	if !errors.As(err, &lc) || lc.Pairs()[0] != "web-01:hello" {
		t.Fatalf("second start: %v, want a lock conflict", err)
	}

	// Draining refuses new runs and waits for the one in flight.
	drained := make(chan error, 1)
	go func() {
		_, err := tr.Drain(context.Background(), time.Second)
		drained <- err
	}()
	waitFor(t, func() bool {
		_, err := tr.Start(context.Background(), RunRequest{Hosts: []string{"web-01"}, Script: "other"})
		return errors.Is(err, ErrShuttingDown)
	}, "Start to refuse while draining")
	select {
	case err := <-drained:
		t.Fatalf("Drain returned %v with a run in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(f.hold)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	report, cancelled, _, err := lr.Result()
	if err != nil || cancelled || !report.OK {
		t.Errorf("drained run: %+v, cancelled %v, %v", report, cancelled, err)
	}
}

func TestTrackerDrainCancels(t *testing.T) {
	f := newFleet(t)
	tk := &ticker{}
	f.agentWith("slow-01", tk.handler("slow-01"))
	tr := NewTracker(f.engine(nil))
	lr, err := tr.Start(context.Background(), RunRequest{Hosts: []string{"slow-01"}, Script: "tick"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	n, err := tr.Drain(ctx, 5*time.Second)
	if n != 1 || err != nil {
		t.Fatalf("Drain = %d, %v; want 1 cancelled", n, err)
	}
	stored, err := f.st.GetRun(lr.ReqID)
	if err != nil || stored.Status != store.RunCancelled || stored.Results[0].Error != "cancelled" {
		t.Errorf("stored after drain: %+v, %v", stored, err)
	}
}

func TestFollowStored(t *testing.T) {
	st := store.NewFiles(t.TempDir())
	run := store.Run{ReqID: "0123456789abcdef", Script: "s", Hosts: []string{"a", "b"}, Status: store.RunRunning,
		Results: []store.Result{{Host: "b", Stdout: "one\ntwo", Stderr: "err\n"}}}
	if err := st.SaveRun(run); err != nil {
		t.Fatal(err)
	}
	var got []string
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	emitted := make(chan struct{}, 10)
	go func() {
		<-emitted // b's events are out: another process finishes the run
		done := run
		done.Status = store.RunDone
		done.Results = []store.Result{{Host: "a", Stdout: "x\n"}, run.Results[0]}
		if err := st.SaveRun(done); err != nil {
			t.Error(err)
		}
	}()
	err := FollowStored(ctx, st, run, 10*time.Millisecond, func(ev Event) error {
		switch ev.Kind {
		case EventOutput:
			got = append(got, ev.Host+" "+ev.Output.Stream+" "+ev.Output.Data)
		case EventResult:
			got = append(got, ev.Host+" result")
			emitted <- struct{}{}
		case EventDone:
			got = append(got, "done "+ev.Run.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"b stdout one\n", "b stdout two", "b stderr err\n", "b result", "a stdout x\n", "a result", "done done"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
}

func TestEventLogOverflow(t *testing.T) {
	l := NewEventLog([]string{"h"})
	line := strings.Repeat("x", maxLine-1) + "\n"
	for range MaxLiveOutput/len(line) + 2 {
		l.Output(0, "h", wire.NewStreamEvent("stdout", []byte(line)))
	}
	// A line longer than maxLine without a newline is cut.
	l.Output(0, "h", wire.NewStreamEvent("stderr", []byte(strings.Repeat("y", maxLine+10))))
	l.Result(0, store.Result{Host: "h"})
	l.Close(store.Run{Status: store.RunDone})
	all := follow(t, l, time.Second)
	if n := countKind(all, EventOverflow); n != 1 {
		t.Errorf("%d overflow events, want 1", n)
	}
	if n := countKind(all, EventOutput); n != MaxLiveOutput/len(line) {
		t.Errorf("%d output events, want %d", n, MaxLiveOutput/len(line))
	}
	if all[len(all)-2].Kind != EventResult || all[len(all)-1].Kind != EventDone {
		t.Errorf("log does not end with the result and done: %+v", all[len(all)-2:])
	}
}
