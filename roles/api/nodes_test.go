package api

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/internal/pgtest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/postgres/postgrestest"
)

// node starts an API server of the fleet whose runs and locks are in st:
// another node when st is another handle on a store a first node uses.
// The registry stays the fleet's.
func (f *fleet) node(t *testing.T, st store.Store) (*Server, *client) {
	t.Helper()
	eng, err := control.New(control.Options{
		Identity:       control.Identity{Cert: f.ca.Dispatcher(f.t), Roots: f.ca.Pool()},
		ConnectTimeout: 2 * time.Second,
		ReadTimeout:    10 * time.Second,
		Registry:       f.st, Runs: st, Locks: st, Revocations: f.st,
		Resolve: func(context.Context, string) error { return errors.New("does not resolve") },
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(eng.Close)
	srv, err := New(Options{Engine: eng, Runs: st, Registry: f.st, AllowByDefault: true})
	if err != nil {
		t.Fatal(err)
	}
	srv.pollEvery = 20 * time.Millisecond
	ts := httptest.NewServer(srv)
	t.Cleanup(ts.Close)
	return srv, newClient(t, ts.URL)
}

// TestCancelOnAnotherNode: DELETE /runs/{reqid} on node B cancels a run
// node A runs, for both stores: B asks A through the store and answers
// with the final record once A has stored it. A running record nobody
// acts on is 202 after cancelWait; one without an owner is 409.
func TestCancelOnAnotherNode(t *testing.T) {
	t.Run("files", func(t *testing.T) {
		f := newFleet(t)
		testCancelOnAnotherNode(t, f, f.st, store.NewFiles(f.st.Dir()))
	})
	t.Run("postgres", func(t *testing.T) {
		url := pgtest.Start(t).NewDB(t)
		testCancelOnAnotherNode(t, newFleet(t), postgrestest.Open(t, url), postgrestest.Open(t, url))
	})
}

func testCancelOnAnotherNode(t *testing.T, f *fleet, a, b store.Store) {
	f.agent("web-01")
	srvA, nodeA := f.node(t, a)
	srvB, nodeB := f.node(t, b)

	r := nodeA.do("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "tick", "async": true})
	if r.status != http.StatusAccepted {
		t.Fatalf("async run on A: %d %s", r.status, r.body)
	}
	reqid := r.json(t)["reqid"].(string)
	if s := nodeB.do("GET", "/status/"+reqid, nil).json(t); s["status"] != "running" {
		t.Fatalf("B's status of A's run: %v", s)
	}

	start := time.Now()
	r = nodeB.do("DELETE", "/runs/"+reqid, nil)
	took := time.Since(start)
	if r.status != http.StatusOK || took > 5*time.Second {
		t.Fatalf("DELETE on B: %d in %v: %s", r.status, took, r.body)
	}
	got := r.json(t)
	if got["status"] != "cancelled" || got["ok"] != false || !strings.Contains(string(r.body), `"error":"cancelled"`) {
		t.Errorf("DELETE on B answered %s; want the cancelled record", r.body)
	}
	waitFor(t, func() bool { return srvA.tracker.InFlight() == 0 && f.gone.Load() == 1 }, "A's run to end and its agent to see it")
	if s := nodeA.do("GET", "/status/"+reqid, nil).json(t); s["status"] != "cancelled" {
		t.Errorf("A's status of its run: %v", s["status"])
	}
	// Over: DELETE again on either node answers the record.
	for _, c := range []*client{nodeA, nodeB} {
		if r := c.do("DELETE", "/runs/"+reqid, nil); r.status != http.StatusOK || r.json(t)["status"] != "cancelled" {
			t.Errorf("DELETE of a cancelled run: %d %s", r.status, r.body)
		}
	}

	// A running record whose owner lives (this process) but runs nothing:
	// the request is recorded, and B answers 202 once cancelWait is over.
	srvB.cancelWait = 300 * time.Millisecond
	owner := store.CurrentOwner()
	stuck := store.Run{ReqID: "00000000000000bb", Script: "deploy", Args: []string{}, Hosts: []string{"web-01"}, Username: "cli",
		Status: store.RunRunning, Started: time.Now().UTC(), Owner: &owner}
	if err := a.SaveRun(stuck); err != nil {
		t.Fatal(err)
	}
	r = nodeB.do("DELETE", "/runs/"+stuck.ReqID, nil)
	if got := r.json(t); r.status != http.StatusAccepted || got["status"] != "cancelling" || got["reqid"] != stuck.ReqID {
		t.Errorf("DELETE of a run nobody acts on: %d %s; want 202 cancelling", r.status, r.body)
	}
	if asked, err := a.CancelRequests([]string{stuck.ReqID}); err != nil || len(asked) != 1 {
		t.Errorf("cancel requests seen through A: %v, %v; want the run's", asked, err)
	}

	// A record without an owner (the Perl dispatcher's) cannot be asked.
	perl := stuck
	perl.ReqID, perl.Owner = "00000000000000cc", nil
	if err := a.SaveRun(perl); err != nil {
		t.Fatal(err)
	}
	r = nodeB.do("DELETE", "/runs/"+perl.ReqID, nil)
	if r.status != http.StatusConflict || !strings.Contains(r.json(t)["error"].(string), "cannot be asked to cancel") {
		t.Errorf("DELETE of an ownerless record: %d %s; want 409", r.status, r.body)
	}
	if asked, err := a.CancelRequests([]string{perl.ReqID}); err != nil || len(asked) != 0 {
		t.Errorf("cancel requests of the ownerless record: %v, %v; want none", asked, err)
	}
}
