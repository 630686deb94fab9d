package control

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/internal/pgtest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/postgres/postgrestest"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// Two processes sharing one store are played by two handles on it: a runs
// the runs (its engine's Runs and Locks), b is the other node. Files: two
// store.NewFiles of the fleet's state directory; PostgreSQL: two Opens of
// one new database (the fleet's registry stays in its files).
type nodes struct {
	name string
	open func(t *testing.T, f *fleet) (a, b store.Store)
}

func filesNodes() nodes {
	return nodes{"files", func(t *testing.T, f *fleet) (store.Store, store.Store) {
		return f.st, store.NewFiles(f.st.Dir())
	}}
}

func postgresNodes(srv *pgtest.Server) nodes {
	return nodes{"postgres", func(t *testing.T, f *fleet) (store.Store, store.Store) {
		url := srv.NewDB(t)
		return postgrestest.Open(t, url), postgrestest.Open(t, url)
	}}
}

// waitUntil polls cond every 20 ms until it holds, failing t after within.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCancelFromAnotherNode: a cancel requested through handle b (another
// API node) cancels a run in flight through handle a, within a few
// seconds — a Tracker's (the API) and a plain Engine.Run's (the CLI) —
// with the files store and with PostgreSQL.
func TestCancelFromAnotherNode(t *testing.T) {
	t.Run("files", func(t *testing.T) { testCancelFromAnotherNode(t, filesNodes()) })
	t.Run("postgres", func(t *testing.T) { testCancelFromAnotherNode(t, postgresNodes(pgtest.Start(t))) })
}

func testCancelFromAnotherNode(t *testing.T, n nodes) {
	t.Run("tracker", func(t *testing.T) {
		f := newFleet(t)
		tk := &ticker{}
		f.agentWith("slow-01", tk.handler("slow-01"))
		a, b := n.open(t, f)
		tr := NewTracker(f.engine(func(o *Options) { o.Runs, o.Locks = a, a }))
		lr, err := tr.Start(context.Background(), RunRequest{Hosts: []string{"slow-01"}, Script: "tick", Username: "alice"})
		if err != nil {
			t.Fatal(err)
		}
		ctx, stop := context.WithTimeout(context.Background(), 10*time.Second)
		defer stop()
		var seen []Event
		for !hasLine(seen, "slow-01", "tick 2 on slow-01\n") {
			evs, end, err := lr.Events().Wait(ctx, len(seen))
			if err != nil || end {
				t.Fatalf("waiting for ticks: %v, end %v", err, end)
			}
			seen = append(seen, evs...)
		}
		stored, err := b.GetRun(lr.ReqID)
		if err != nil || stored.Status != store.RunRunning {
			t.Fatalf("the other node sees %q, %v; want running", stored.Status, err)
		}

		asked := time.Now()
		if err := b.RequestCancel(lr.ReqID, asked); err != nil {
			t.Fatal(err)
		}
		select {
		case <-lr.Done():
		case <-time.After(5 * time.Second):
			t.Fatal("a run whose cancel was requested through the other handle did not end within 5 s")
		}
		t.Logf("cancelled %v after the request", time.Since(asked).Round(time.Millisecond))
		report, cancelled, _, err := lr.Result()
		if err != nil || !cancelled || report.Results[0].Error != "cancelled" {
			t.Fatalf("result: %+v, cancelled %v, %v", report, cancelled, err)
		}
		waitFor(t, func() bool { return tk.gone.Load() == 1 }, "the agent to see the connection closed")
		stored, err = b.GetRun(lr.ReqID)
		if err != nil || stored.Status != store.RunCancelled || stored.Results[0].Error != "cancelled" {
			t.Errorf("the other node sees %+v, %v; want it cancelled", stored, err)
		}
		if !strings.Contains(f.logs(), "another process asked for it through the store") {
			t.Errorf("the cancel is not logged:\n%s", f.logs())
		}
		// With no run in flight the tracker stops asking.
		waitFor(t, func() bool {
			tr.mu.Lock()
			defer tr.mu.Unlock()
			return !tr.polling
		}, "the tracker to stop polling")
	})

	t.Run("engine run", func(t *testing.T) {
		f := newFleet(t)
		tk := &ticker{}
		f.agentWith("slow-01", tk.handler("slow-01"))
		a, b := n.open(t, f)
		e := f.engine(func(o *Options) { o.Runs, o.Locks = a, a })
		ticking := make(chan string, 1)
		type outcome struct {
			report *RunReport
			err    error
		}
		over := make(chan outcome, 1)
		var reqid string
		go func() {
			report, err := e.Run(context.Background(), RunRequest{Hosts: []string{"slow-01"}, Script: "tick",
				OnStart: func(id string) { reqid = id },
				OnOutput: func(int, string, wire.StreamEvent) {
					select {
					case ticking <- reqid:
					default:
					}
				}})
			over <- outcome{report, err}
		}()
		var id string
		select {
		case id = <-ticking:
		case o := <-over:
			t.Fatalf("the run ended before it ticked: %+v, %v", o.report, o.err)
		case <-time.After(10 * time.Second):
			t.Fatal("no tick within 10 s")
		}
		if err := b.RequestCancel(id, time.Now()); err != nil {
			t.Fatal(err)
		}
		var o outcome
		select {
		case o = <-over:
		case <-time.After(5 * time.Second):
			t.Fatal("a CLI run whose cancel was requested through the other handle did not end within 5 s")
		}
		if o.err != nil || o.report.OK || o.report.Results[0].Error != "cancelled" || o.report.Stored.Status != store.RunCancelled {
			t.Fatalf("run: %+v, %v", o.report, o.err)
		}
		stored, err := b.GetRun(id)
		if err != nil || stored.Status != store.RunCancelled {
			t.Errorf("the other node sees %q, %v; want cancelled", stored.Status, err)
		}
		waitFor(t, func() bool { return tk.gone.Load() == 1 }, "the agent to see the connection closed")
	})
}

// lostChildEnv carries the database URL to the child of
// TestLostOnAnotherHost.
const lostChildEnv = "DISPATCHER_TEST_LOST_CHILD_URL"

// TestLostOnAnotherHost: with PostgreSQL, a run left running by a process
// on another host is marked lost through another handle once that
// process's database session is gone (the process killed with SIGKILL),
// and not while its session holds the run's locks. Runs of another host
// that hold no locks, and records without an owner, are never marked.
func TestLostOnAnotherHost(t *testing.T) {
	if url := os.Getenv(lostChildEnv); url != "" {
		lostChild(t, url)
		return
	}
	url := pgtest.Start(t).NewDB(t)
	a, b := postgrestest.Open(t, url), postgrestest.Open(t, url)

	// A process "on node-a" takes the locks of its run and stores it as
	// running, then waits to be killed.
	child := exec.Command(os.Args[0], "-test.run=^TestLostOnAnotherHost$")
	child.Env = append(os.Environ(), lostChildEnv+"="+url)
	out, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	child.Stderr = os.Stderr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = child.Process.Kill()
		_ = child.Wait()
	})
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if id, ok := strings.CutPrefix(sc.Text(), "lost-child-ready "); ok {
				ready <- id
			}
		}
		close(ready)
	}()
	var killed string
	select {
	case id, ok := <-ready:
		if !ok {
			t.Fatal("the child ended before it stored its run")
		}
		killed = id
	case <-time.After(30 * time.Second):
		t.Fatal("the child did not store its run within 30 s")
	}

	// Through a, this process: a run on node-c whose session lives, one
	// on node-c without locks, one the Perl dispatcher wrote.
	release, session, err := a.AcquireSession(store.LockHolder{PID: 7, ReqID: "alive-run", User: "bob", Started: time.Now()},
		[]store.LockKey{{Host: "web-02", Script: "deploy"}})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	save := func(id string, owner *store.RunOwner) {
		t.Helper()
		if err := a.SaveRun(store.Run{ReqID: id, Script: "deploy", Args: []string{}, Hosts: []string{"web-02"}, Username: "bob",
			Status: store.RunRunning, Started: time.Now().UTC(), Owner: owner}); err != nil {
			t.Fatal(err)
		}
	}
	save("alive-run", &store.RunOwner{Node: "node-c.invalid", PID: 7, Session: session})
	save("no-locks", &store.RunOwner{Node: "node-c.invalid", PID: 7})
	save("perl", nil)

	status := func(id string) string {
		t.Helper()
		run, err := GetRun(b, id, nil)
		if err != nil {
			t.Fatalf("GetRun(%s): %v", id, err)
		}
		return run.Status
	}
	for _, id := range []string{killed, "alive-run", "no-locks", "perl"} {
		if got := status(id); got != store.RunRunning {
			t.Errorf("%s while its owner lives: %q, want running", id, got)
		}
	}

	if err := child.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = child.Wait()
	waitUntil(t, 10*time.Second, "the killed process's run to be marked lost", func() bool { return status(killed) == store.RunLost })
	run, err := b.GetRun(killed)
	if err != nil || run.Results[0].Exit != -1 || !strings.HasPrefix(run.Results[0].Error, "lost: ") {
		t.Errorf("stored lost run: %+v, %v", run, err)
	}
	if n, err := ReapLost(b, nil); err != nil || n != 0 {
		t.Errorf("ReapLost = %d, %v; want 0: only the killed process's run is lost", n, err)
	}
	for _, id := range []string{"alive-run", "no-locks", "perl"} {
		if got := status(id); got != store.RunRunning {
			t.Errorf("%s after the other process was killed: %q, want running", id, got)
		}
	}

	// The living session ends too (released): its run is lost now, by
	// the API's sweep.
	release()
	if n, err := ReapLost(b, nil); err != nil || n != 1 {
		t.Errorf("ReapLost after the last session ended = %d, %v; want 1", n, err)
	}
	if got := status("alive-run"); got != store.RunLost {
		t.Errorf("alive-run after its session ended: %q, want lost", got)
	}
}

// lostChild is the child of TestLostOnAnotherHost: it plays a dispatcher
// on node-a.invalid running a run, and waits to be killed.
func lostChild(t *testing.T, url string) {
	st := postgrestest.Open(t, url)
	reqid := NewReqID()
	_, session, err := st.AcquireSession(store.LockHolder{PID: os.Getpid(), ReqID: reqid, User: "alice", Started: time.Now()},
		[]store.LockKey{{Host: "web-01", Script: "deploy"}})
	if err != nil {
		t.Fatal(err)
	}
	owner := store.RunOwner{Node: "node-a.invalid", PID: os.Getpid(), Session: session}
	if err := st.SaveRun(store.Run{ReqID: reqid, Script: "deploy", Args: []string{}, Hosts: []string{"web-01"}, Username: "alice",
		Status: store.RunRunning, Started: time.Now().UTC(), Owner: &owner}); err != nil {
		t.Fatal(err)
	}
	fmt.Printf("lost-child-ready %s\n", reqid)
	time.Sleep(time.Minute) // killed long before
	t.Fatal("not killed within a minute")
}
