package postgres

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

func TestRuns(t *testing.T) {
	s, url := newStore(t)
	files := store.NewFiles(t.TempDir())
	start := time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)
	r := store.Run{
		ReqID: "0123456789abcdef", Script: "deploy", Args: []string{"a b", ""},
		Hosts: []string{"web-01", "web-02:7450"}, Username: "alice",
		Status: store.RunRunning, Started: start, Owner: &store.RunOwner{Node: "n1", PID: 42, Start: "x"},
	}
	done := r
	done.Status, done.Finished, done.Owner = store.RunDone, start.Add(2*time.Second), nil
	done.Results = []store.Result{
		{Host: "web-01", Exit: 0, Stdout: "ok\n", StdoutB64: "b2sK", RTT: "12ms", ReqID: r.ReqID},
		{Host: "web-02:7450", Exit: -1, RTT: "3000ms", ReqID: r.ReqID, Error: "connect: connection refused"},
	}
	other := store.Run{ReqID: "r-2", Status: store.RunRunning, Hosts: []string{}}

	for _, run := range []store.Run{r, other} {
		if err := s.SaveRun(run); err != nil {
			t.Fatal(err)
		}
		if err := files.SaveRun(run); err != nil {
			t.Fatal(err)
		}
	}
	running, err := s.RunningRuns()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]store.Run{r, other}, running); d != "" {
		t.Errorf("RunningRuns (-want +got):\n%s", d)
	}
	if err := s.SaveRun(done); err != nil {
		t.Fatal(err)
	}
	if err := files.SaveRun(done); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{r.ReqID, other.ReqID} {
		want, err := files.GetRun(id)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.GetRun(id)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("GetRun(%s) (-files +postgres):\n%s", id, d)
		}
	}
	if running, err := s.RunningRuns(); err != nil || len(running) != 1 || running[0].ReqID != other.ReqID {
		t.Errorf("RunningRuns after one finished: %+v, %v", running, err)
	}

	_, err = s.GetRun("ffffffffffffffff")
	if !errors.Is(err, store.ErrNotFound) || err.Error() != "run ffffffffffffffff: not found (runs are kept for run_retention)" {
		t.Errorf("GetRun(unknown) = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"../agents/web-01", "a/b", "..", "", "x.json", strings.Repeat("a", 65), "ünï"} {
		if _, err := s.GetRun(bad); err == nil || errors.Is(err, store.ErrNotFound) || err.Error() != store.ValidReqID(bad).Error() {
			t.Errorf("GetRun(%q) = %v, want a request id error", bad, err)
		}
		if err := s.SaveRun(store.Run{ReqID: bad}); err == nil {
			t.Errorf("SaveRun(%q) succeeded", bad)
		}
	}

	// Pruning goes by the time a record was last written.
	exec(t, sqlConn(t, url), "UPDATE runs SET updated = now() - interval '48 hours' WHERE reqid = $1", r.ReqID)
	n, err := s.PruneRuns(time.Now().Add(-24 * time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PruneRuns = %d, %v; want 1 removed", n, err)
	}
	if _, err := s.GetRun(r.ReqID); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("pruned run still there: %v", err)
	}
	if _, err := s.GetRun(other.ReqID); err != nil {
		t.Errorf("fresh run pruned: %v", err)
	}
	if n, err := s.PruneRuns(time.Now().Add(time.Minute)); err != nil || n != 1 {
		t.Errorf("PruneRuns(in a minute) = %d, %v; want 1", n, err)
	}
	if running, err := s.RunningRuns(); err != nil || running != nil {
		t.Errorf("RunningRuns of none = %#v, %v; want nil", running, err)
	}
}
