package hook

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// testToken is distinctive enough that finding it anywhere is a leak.
const testToken = "tok-5ecret-QZX7-never-show-me"

// testTimeout is the hook_timeout of tests that do not exercise timeouts:
// long enough for a loaded machine, far shorter than a hung test.
const testTimeout = 10 * time.Second

// testContext is a dispatcher-side run request.
func testContext() Context {
	return Context{
		Action:    "run",
		Script:    "deploy",
		Hosts:     []string{"web-01", "web-02:7443"},
		Args:      []string{"--env", "prod blue"},
		Username:  "alice",
		Token:     testToken,
		SourceIP:  "127.0.0.1",
		Timestamp: time.Date(2025, 5, 1, 14, 0, 0, 123456789, time.FixedZone("CEST", 2*3600)),
	}
}

// writeHook writes an executable #!/bin/sh script into dir.
func writeHook(t testing.TB, dir, name, body string) string {
	t.Helper()
	return writeFile(t, filepath.Join(dir, name), "#!/bin/sh\n"+body+"\n", 0o755)
}

func writeFile(t testing.TB, path, content string, mode os.FileMode) string {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // WriteFile's mode is subject to umask
		t.Fatal(err)
	}
	return path
}

// logs captures what a Runner logs, both as structured entries and as the
// JSON lines an operator would see.
type logs struct {
	observed *observer.ObservedLogs
	mu       sync.Mutex
	buf      bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) Sync() error { return nil }

func (l *logs) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func newLogs() (*zap.Logger, *logs) {
	l := &logs{}
	obs, observed := observer.New(zapcore.DebugLevel)
	l.observed = observed
	enc := zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig())
	return zap.New(zapcore.NewTee(obs, zapcore.NewCore(enc, l, zapcore.DebugLevel))), l
}

// check runs r.Check and fails the test if it has not returned within 30
// s, far beyond any timeout the tests use.
func check(t *testing.T, ctx context.Context, r *Runner, c Context) Decision {
	t.Helper()
	done := make(chan Decision, 1)
	go func() { done <- r.Check(ctx, c) }()
	select {
	case d := <-done:
		return d
	case <-time.After(30 * time.Second):
		t.Fatal("Check did not return within 30s")
		return Decision{}
	}
}

// assertNoToken fails the test if the token shows in the decision or the
// logs.
func assertNoToken(t *testing.T, d Decision, l *logs) {
	t.Helper()
	for what, s := range map[string]string{"Reason": d.Reason, "Error()": d.Error()} {
		if strings.Contains(s, testToken) {
			t.Errorf("%s %q contains the token", what, s)
		}
	}
	if l != nil && strings.Contains(l.text(), testToken) {
		t.Errorf("log contains the token:\n%s", l.text())
	}
}

// readPid reads a pid a hook wrote to path, waiting a little for the file
// to appear.
func readPid(t *testing.T, path string) int {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid > 1 {
				return pid
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no pid in %s: %q, %v", path, b, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// alive reports whether pid runs. A zombie is dead: it only waits for a
// parent, possibly a pid 1 that does not reap, to collect it.
func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
		return false
	}
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return false
	}
	// pid (comm) state …; comm may hold anything, so cut at the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return true
	}
	state := b[i+2]
	return state != 'Z' && state != 'X'
}

// waitGone fails the test if pid still runs after a few seconds (SIGKILL
// is delivered asynchronously).
func waitGone(t *testing.T, what string, pid int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Errorf("%s (pid %d) is still running", what, pid)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// killAtCleanup makes sure that the process group of a hook that wrote its
// pid ($$) to pidFile goes away when the test ends, however it ends.
func killAtCleanup(t *testing.T, pidFile string) {
	t.Cleanup(func() {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return
		}
		if pgid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pgid > 1 {
			syscall.Kill(-pgid, syscall.SIGKILL)
		}
	})
}
