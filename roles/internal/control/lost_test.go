package control

import (
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// deadOwner returns the owner of a process that ran on this host and was
// killed.
func deadOwner(t *testing.T) store.RunOwner {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("runs are marked lost on Linux only")
	}
	child := exec.Command("sleep", "60")
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}
	_ = child.Process.Kill()
	_ = child.Wait()
	return store.RunOwner{Node: store.CurrentOwner().Node, PID: child.Process.Pid}
}

func TestMarkLost(t *testing.T) {
	st := store.NewFiles(t.TempDir())
	dead := deadOwner(t)
	alive := store.CurrentOwner()
	elsewhere := store.RunOwner{Node: alive.Node + "-b", PID: dead.PID}
	started := time.Date(2026, 11, 26, 10, 0, 0, 0, time.UTC)
	save := func(id string, status string, owner *store.RunOwner) {
		t.Helper()
		run := store.Run{ReqID: id, Script: "deploy", Args: []string{}, Hosts: []string{"web-01", "web-02:7443", "web-03"},
			Username: "ops", Status: status, Started: started, Owner: owner,
			Results: []store.Result{{Host: "web-02:7443", Exit: 0, Stdout: "ok\n", RTT: "5ms", ReqID: id}}}
		if err := st.SaveRun(run); err != nil {
			t.Fatal(err)
		}
	}
	save("lost1", store.RunRunning, &dead)
	save("lost2", store.RunRunning, &dead)
	save("alive", store.RunRunning, &alive)
	save("remote", store.RunRunning, &elsewhere)
	save("perl", store.RunRunning, nil)
	save("done", store.RunDone, &dead)

	// One record through Status, as `dispatcher status` and /status read it.
	got, err := Status(st, "lost1", nil)
	if err != nil {
		t.Fatal(err)
	}
	lostErr := LostError(dead)
	want := []store.Result{
		{Host: "web-01", Exit: -1, RTT: "0ms", ReqID: "lost1", Error: lostErr},
		{Host: "web-02:7443", Exit: 0, Stdout: "ok\n", RTT: "5ms", ReqID: "lost1"},
		{Host: "web-03", Exit: -1, RTT: "0ms", ReqID: "lost1", Error: lostErr},
	}
	if got.Status != store.RunLost || got.Finished.IsZero() || got.OK() {
		t.Errorf("status %q finished %v ok %v", got.Status, got.Finished, got.OK())
	}
	if d := cmp.Diff(want, got.Results); d != "" {
		t.Errorf("results (-want +got):\n%s", d)
	}
	if !strings.Contains(lostErr, "not run again") || !strings.Contains(lostErr, dead.String()) {
		t.Errorf("lost error %q does not say what happened", lostErr)
	}
	if stored, err := st.GetRun("lost1"); err != nil || stored.Status != store.RunLost {
		t.Errorf("stored record: %q, %v", stored.Status, err)
	}

	// The rest by the sweep: only the record of the dead local process.
	n, err := ReapLost(st, nil)
	if err != nil || n != 1 {
		t.Errorf("ReapLost = %d, %v; want 1 (lost2)", n, err)
	}
	for id, status := range map[string]string{"lost2": store.RunLost, "alive": store.RunRunning, "remote": store.RunRunning,
		"perl": store.RunRunning, "done": store.RunDone} {
		if r, err := st.GetRun(id); err != nil || r.Status != status {
			t.Errorf("%s: status %q, %v; want %q", id, r.Status, err, status)
		}
	}
	if n, err := ReapLost(st, nil); err != nil || n != 0 {
		t.Errorf("second sweep = %d, %v; want 0", n, err)
	}
}

func TestFollowStoredEndsOnLost(t *testing.T) {
	st := store.NewFiles(t.TempDir())
	dead := deadOwner(t)
	run := store.Run{ReqID: "r1", Script: "s", Args: []string{}, Hosts: []string{"a"}, Status: store.RunRunning,
		Started: time.Now().UTC(), Owner: &dead}
	if err := st.SaveRun(run); err != nil {
		t.Fatal(err)
	}
	var last Event
	err := FollowStored(t.Context(), st, run, time.Millisecond, func(ev Event) error { last = ev; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if last.Kind != EventDone || last.Run.Status != store.RunLost {
		t.Errorf("last event %+v, want the end of a lost run", last)
	}
}
