package exec

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// testRunner has short grace and drain periods so that kill paths finish
// quickly.
func testRunner() *Runner {
	return &Runner{Grace: 200 * time.Millisecond, DrainTimeout: 200 * time.Millisecond}
}

// writeScript writes an executable #!/bin/sh script into dir.
func writeScript(t testing.TB, dir, name, body string) string {
	t.Helper()
	return writeFile(t, dir, name, "#!/bin/sh\n"+body+"\n", 0o755)
}

func writeFile(t testing.TB, dir, name, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // WriteFile's mode is subject to umask
		t.Fatal(err)
	}
	return p
}

// mustRun runs req and fails the test if Run has not returned within 30 s,
// which is far beyond any timeout, grace or drain the tests use: a Run
// that hangs (say, on output held by a grandchild) fails instead of
// blocking the test binary.
func mustRun(t *testing.T, ctx context.Context, r *Runner, req Request) *Result {
	t.Helper()
	done := make(chan *Result, 1)
	go func() { done <- r.Run(ctx, req) }()
	select {
	case res := <-done:
		if res == nil {
			t.Fatal("Run returned nil")
		}
		return res
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s")
		return nil
	}
}

// firstLineInt parses the first line of out, where test scripts print $$
// (their pid, which is also their process group).
func firstLineInt(t *testing.T, out []byte) int {
	t.Helper()
	line, _, _ := bytes.Cut(out, []byte("\n"))
	n, err := strconv.Atoi(string(line))
	if err != nil || n <= 1 {
		t.Fatalf("first line of output %q is not a pid", out)
	}
	return n
}

// killGroupAtCleanup makes sure a group a test left running goes away.
func killGroupAtCleanup(t *testing.T, pgid int) {
	t.Cleanup(func() { syscall.Kill(-pgid, syscall.SIGKILL) })
}

// liveInGroup lists the processes of group pgid that are still running
// (zombies are dead: they only wait for a parent, possibly a pid 1 that
// does not reap, to collect them).
func liveInGroup(pgid int) []string {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var live []string
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp …; comm may hold anything, so cut at the last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 > len(b) {
			continue
		}
		f := strings.Fields(string(b[i+2:]))
		if len(f) < 3 || f[2] != strconv.Itoa(pgid) || f[0] == "Z" || f[0] == "X" {
			continue
		}
		live = append(live, e.Name()+" "+string(b[:i+1]))
	}
	return live
}

// waitGroupGone fails the test if some process of group pgid is still
// alive after a few seconds (SIGKILL is delivered asynchronously).
func waitGroupGone(t *testing.T, pgid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		live := liveInGroup(pgid)
		if len(live) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("processes of group %d survive: %q", pgid, live)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
