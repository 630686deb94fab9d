//go:build unix

package store

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestMain lets the test binary act as a lock holder in a child process:
// with STORE_TEST_HOLD=PATH it locks PATH as the Perl dispatcher does (open
// for append, flock LOCK_EX, write nothing), says "locked" and waits for
// its stdin to close. With STORE_TEST_DECIDE set it is one of the racing
// approvers of TestPairDecideTwoProcesses (see decideChild).
func TestMain(m *testing.M) {
	if os.Getenv("STORE_TEST_DECIDE") != "" {
		os.Exit(decideChild())
	}
	if path := os.Getenv("STORE_TEST_HOLD"); path != "" {
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
		if err == nil {
			err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		}
		if err != nil {
			fmt.Println(err)
			os.Exit(3)
		}
		fmt.Println("locked")
		_, _ = io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func holder(reqid string) LockHolder {
	return LockHolder{PID: os.Getpid(), ReqID: reqid, User: "alice", Started: time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)}
}

func TestLockConflict(t *testing.T) {
	f := NewFiles(t.TempDir())
	first := []LockKey{{"web-01", "deploy"}, {"web-02", "deploy"}}
	release, err := f.Acquire(holder("r1"), first)
	if err != nil {
		t.Fatal(err)
	}
	assertMode(t, filepath.Join(f.Dir(), "locks"), ModeDir)
	if _, err := os.Stat(filepath.Join(f.Dir(), "locks", "web-01--deploy.lock")); err != nil {
		t.Errorf("lock file not at the Perl dispatcher's path: %v", err)
	}

	// The same pairs, or some of them, conflict; every conflict is named.
	_, err = f.Acquire(holder("r2"), []LockKey{{"web-03", "deploy"}, {"web-02", "deploy"}, {"web-01", "deploy"}})
	var lc *LockConflictError
	if !errors.As(err, &lc) {
		t.Fatalf("second Acquire: %v, want *LockConflictError", err)
	}
	if d := cmp.Diff([]string{"web-02:deploy", "web-01:deploy"}, lc.Pairs()); d != "" {
		t.Errorf("conflicts (-want +got):\n%s", d)
	}
	// Nothing of the refused call is held: web-03 is free.
	rel3, err := f.Acquire(holder("r3"), []LockKey{{"web-03", "deploy"}})
	if err != nil {
		t.Fatalf("web-03 after a refused Acquire: %v", err)
	}
	rel3()

	// Other hosts, and other scripts on the same host, do not conflict.
	rel4, err := f.Acquire(holder("r4"), []LockKey{{"web-01", "restart"}, {"web-09", "deploy"}})
	if err != nil {
		t.Fatalf("different pairs: %v", err)
	}

	locks, err := f.ListLocks()
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, l := range locks {
		got = append(got, fmt.Sprintf("%s %s %d", l.LockKey, l.ReqID, l.PID))
	}
	pid := os.Getpid()
	want := []string{
		fmt.Sprintf("web-01:deploy r1 %d", pid), fmt.Sprintf("web-01:restart r4 %d", pid),
		fmt.Sprintf("web-02:deploy r1 %d", pid), fmt.Sprintf("web-09:deploy r4 %d", pid),
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ListLocks (-want +got):\n%s", d)
	}

	release()
	release() // a second call is harmless
	rel4()
	if locks, err := f.ListLocks(); err != nil || len(locks) != 0 {
		t.Errorf("ListLocks after release = %v, %v; want none", locks, err)
	}
	rel5, err := f.Acquire(holder("r5"), first)
	if err != nil {
		t.Fatalf("Acquire after release: %v", err)
	}
	rel5()
}

func TestLockDuplicateKeys(t *testing.T) {
	f := NewFiles(t.TempDir())
	rel, err := f.Acquire(holder("r1"), []LockKey{{"web-01", "deploy"}, {"web-01", "deploy"}})
	if err != nil {
		t.Fatalf("a pair given twice conflicted with itself: %v", err)
	}
	rel()
}

func TestLockFileNames(t *testing.T) {
	for k, want := range map[LockKey]string{
		{"web-01", "deploy"}:         "web-01--deploy.lock",
		{"web-01", "../../etc/x"}:    "web-01--.._.._etc_x.lock",
		{"xn--bcher-kva", "a_b-c.d"}: "xn--bcher-kva--a_b-c.d.lock",
		{"h", "a b;$(id)"}:           "h--a_b___id_.lock",
	} {
		if got := filepath.Base(LockPath("/s", k)); got != want {
			t.Errorf("LockPath(%v) = %s, want %s", k, got, want)
		}
		if d := filepath.Dir(LockPath("/s", k)); d != "/s/locks" {
			t.Errorf("LockPath(%v) is in %s", k, d)
		}
	}
}

// A lock held by another process (here one that locks like the Perl
// dispatcher) is seen by Acquire and ListLocks, and freed when that process
// dies.
func TestLockHeldByOtherProcess(t *testing.T) {
	f := NewFiles(t.TempDir())
	key := LockKey{"xn--bcher-kva", "deploy"}
	path := LockPath(f.Dir(), key)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "STORE_TEST_HOLD="+path)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "locked\n" {
		t.Fatalf("child: %q, %v", line, err)
	}

	_, err = f.Acquire(holder("r1"), []LockKey{{"web-01", "deploy"}, key})
	var lc *LockConflictError
	if !errors.As(err, &lc) || len(lc.Conflicts) != 1 || lc.Conflicts[0] != key {
		t.Fatalf("Acquire with a lock held by another process: %v", err)
	}
	locks, err := f.ListLocks()
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) != 1 || locks[0].LockKey != key || locks[0].PID != 0 {
		t.Errorf("ListLocks = %+v, want only %v with no holder details", locks, key)
	}

	// The child dies without unlocking: the kernel frees its lock.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	stdin.Close()
	rel, err := f.Acquire(holder("r2"), []LockKey{key})
	if err != nil {
		t.Fatalf("Acquire after the holder died: %v", err)
	}
	rel()
}

func TestLockSymlinkRefused(t *testing.T) {
	f := NewFiles(t.TempDir())
	target := filepath.Join(t.TempDir(), "target")
	if err := os.MkdirAll(filepath.Join(f.Dir(), "locks"), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, LockPath(f.Dir(), LockKey{"web-01", "deploy"})); err != nil {
		t.Fatal(err)
	}
	if _, err := f.Acquire(holder("r1"), []LockKey{{"web-01", "deploy"}}); err == nil {
		t.Error("Acquire followed a symbolic link")
	}
	if _, err := os.Stat(target); err == nil {
		t.Error("the link target was created")
	}
}
