package postgres

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

func key(host, script string) store.LockKey { return store.LockKey{Host: host, Script: script} }

func holder(reqid string) store.LockHolder {
	return store.LockHolder{PID: os.Getpid(), ReqID: reqid, User: "alice",
		Started: time.Date(2026, 5, 1, 12, 0, 0, 123456789, time.UTC)}
}

func mustAcquire(t *testing.T, s *Store, reqid string, keys ...store.LockKey) func() {
	t.Helper()
	release, err := s.Acquire(holder(reqid), keys)
	if err != nil {
		t.Fatalf("Acquire for %s: %v", reqid, err)
	}
	t.Cleanup(release)
	return release
}

func lockList(t *testing.T, s *Store) []string {
	t.Helper()
	locks, err := s.ListLocks()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, l := range locks {
		out = append(out, fmt.Sprintf("%s %s %d %s %s %q", l.LockKey, l.ReqID, l.PID, l.User, l.Started.Format(time.RFC3339Nano), l.Path))
	}
	return out
}

func lockLine(k, reqid string) string {
	return fmt.Sprintf("%s %s %d alice 2026-05-01T12:00:00.123456789Z %q", k, reqid, os.Getpid(), "")
}

// Two nodes (two stores, two pools) see each other's locks: a pair held
// by one conflicts for the other, which takes none of the pairs it asked
// for; other pairs are free; released locks can be taken.
func TestLockConflictAcrossStores(t *testing.T) {
	a, url := newStore(t)
	b := openStore(t, url)
	first := []store.LockKey{key("web-01", "deploy"), key("web-02", "deploy")}
	release := mustAcquire(t, a, "r1", first...)

	_, err := b.Acquire(holder("r2"), []store.LockKey{key("web-03", "deploy"), key("web-02", "deploy"), key("web-01", "deploy")})
	var lc *store.LockConflictError
	if !errors.As(err, &lc) {
		t.Fatalf("second Acquire: %v, want *store.LockConflictError", err)
	}
	if d := cmp.Diff([]string{"web-02:deploy", "web-01:deploy"}, lc.Pairs()); d != "" {
		t.Errorf("conflicts (-want +got):\n%s", d)
	}
	// Nothing of the refused call is held: web-03 is free.
	rel3 := mustAcquire(t, b, "r3", key("web-03", "deploy"))
	rel3()
	// Other hosts, and other scripts on the same host, do not conflict.
	rel4 := mustAcquire(t, b, "r4", key("web-01", "restart"), key("web-09", "deploy"))

	want := []string{
		lockLine("web-01:deploy", "r1"), lockLine("web-01:restart", "r4"),
		lockLine("web-02:deploy", "r1"), lockLine("web-09:deploy", "r4"),
	}
	for name, st := range map[string]*Store{"a": a, "b": b} {
		if d := cmp.Diff(want, lockList(t, st)); d != "" {
			t.Errorf("ListLocks of %s (-want +got):\n%s", name, d)
		}
	}

	release()
	release() // a second call is harmless
	rel4()
	if locks, err := b.ListLocks(); err != nil || locks != nil {
		t.Errorf("ListLocks after release = %#v, %v; want nil", locks, err)
	}
	mustAcquire(t, b, "r5", first...)()
}

// A lock whose holder's session ends without a release — the node killed,
// the connection cut — is free again at once, and listed no more.
func TestLockFreedWhenHolderSessionDies(t *testing.T) {
	a, url := newStore(t)
	b := openStore(t, url)
	k := key("web-01", "deploy")
	releaseA := mustAcquire(t, a, "r1", k, key("web-02", "deploy"))
	if _, err := b.Acquire(holder("r2"), []store.LockKey{k}); err == nil {
		t.Fatal("the lock is not held")
	}

	admin := sqlConn(t, url)
	ctx := context.Background()
	var pid int
	if err := admin.QueryRow(ctx, "SELECT DISTINCT backend_pid FROM lock_holders WHERE reqid = 'r1'").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	var killed bool
	if err := admin.QueryRow(ctx, "SELECT pg_terminate_backend($1)", pid).Scan(&killed); err != nil || !killed {
		t.Fatalf("pg_terminate_backend(%d) = %v, %v", pid, killed, err)
	}
	begin := time.Now()
	var releaseB func()
	for deadline := begin.Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		var err error
		releaseB, err = b.Acquire(holder("r2"), []store.LockKey{k})
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the lock of a killed session is still held after 10 s: %v", err)
		}
	}
	t.Cleanup(releaseB)
	t.Logf("lock free %v after its session was terminated", time.Since(begin))
	if d := cmp.Diff([]string{lockLine("web-01:deploy", "r2")}, lockList(t, a)); d != "" {
		t.Errorf("ListLocks (-want +got):\n%s", d)
	}
	// The dead holder's release neither fails loudly nor frees the new
	// holder's lock.
	releaseA()
	if d := cmp.Diff([]string{lockLine("web-01:deploy", "r2")}, lockList(t, a)); d != "" {
		t.Errorf("ListLocks after the dead holder's release (-want +got):\n%s", d)
	}
	// Closing the store of a holder ends nothing held: the run's
	// connection is its own.
	_ = b.Close()
	if _, err := a.Acquire(holder("r3"), []store.LockKey{k}); err == nil {
		t.Error("the lock was freed when its holder's store closed")
	}
	releaseB()
	mustAcquire(t, a, "r3", k)
}

func TestLockKeys(t *testing.T) {
	s, url := newStore(t)
	// A pair given twice counts once.
	mustAcquire(t, s, "r1", key("web-01", "deploy"), key("web-01", "deploy"))()
	// No pairs: nothing to hold, no connection taken.
	release, err := s.Acquire(holder("r2"), nil)
	if err != nil {
		t.Fatal(err)
	}
	release()
	for _, k := range []store.LockKey{key("", "deploy"), key("web-01", "")} {
		if _, err := s.Acquire(holder("r3"), []store.LockKey{key("web-02", "x"), k}); err == nil {
			t.Errorf("Acquire(%v) succeeded", k)
		}
	}
	var n int
	if err := sqlConn(t, url).QueryRow(context.Background(), "SELECT count(*) FROM lock_holders").Scan(&n); err != nil || n != 0 {
		t.Errorf("%d lock rows left, %v", n, err)
	}
}

// One run may lock ten thousand hosts (SPEC §9) with one advisory lock,
// well within the server's shared lock table, and a conflict among them is
// found.
func TestLockManyPairs(t *testing.T) {
	a, url := newStore(t)
	b := openStore(t, url)
	keys := make([]store.LockKey, 10000)
	for i := range keys {
		keys[i] = store.LockKey{Host: fmt.Sprintf("host-%05d.example.com", i), Script: "deploy"}
	}
	mustAcquire(t, b, "r0", keys[7777])
	_, err := a.Acquire(holder("r1"), keys)
	var lc *store.LockConflictError
	if !errors.As(err, &lc) || len(lc.Conflicts) != 1 || lc.Conflicts[0] != keys[7777] {
		t.Fatalf("Acquire of 10,000 pairs with one held: %v", err)
	}
	release := mustAcquire(t, a, "r1", append(keys[:7777:7777], keys[7778:]...)...)
	var advisory int
	if err := sqlConn(t, url).QueryRow(context.Background(),
		"SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())").Scan(&advisory); err != nil {
		t.Fatal(err)
	}
	if advisory != 2 {
		t.Errorf("%d advisory locks held by two runs, want 2", advisory)
	}
	if locks, err := b.ListLocks(); err != nil || len(locks) != len(keys) {
		t.Errorf("ListLocks: %d locks, %v; want %d", len(locks), err, len(keys))
	}
	release()
	if locks, err := b.ListLocks(); err != nil || len(locks) != 1 {
		t.Errorf("ListLocks after release: %d locks, %v; want 1", len(locks), err)
	}
}
