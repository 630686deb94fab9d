package control

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Stored runs past run_retention are pruned after a run, but one engine
// (the API's) scans the runs at most once a minute, not after every run.
func TestPruneAtMostOncePerInterval(t *testing.T) {
	st := store.NewFiles(t.TempDir())
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	e := &Engine{o: Options{Runs: st, RunRetention: time.Hour, Now: func() time.Time { return now }}}
	old := func(reqid string) string {
		t.Helper()
		if err := st.SaveRun(store.Run{ReqID: reqid, Status: store.RunDone, Hosts: []string{"web-01"}}); err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(st.Dir(), "runs", reqid+".json")
		long := now.Add(-2 * time.Hour)
		if err := os.Chtimes(path, long, long); err != nil {
			t.Fatal(err)
		}
		return path
	}
	exists := func(path string) bool { _, err := os.Stat(path); return err == nil }

	first := old("00000000000000a1")
	e.prune()
	if exists(first) {
		t.Fatal("the first prune kept a run past retention")
	}
	second := old("00000000000000a2")
	now = now.Add(30 * time.Second)
	e.prune()
	if !exists(second) {
		t.Fatal("pruned again 30 s after the last prune")
	}
	now = now.Add(31 * time.Second)
	e.prune()
	if exists(second) {
		t.Fatal("not pruned a minute after the last prune")
	}
}
