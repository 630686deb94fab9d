package hook

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Hooks that print far more than anyone reads. Their output goes to the
// null device: the decision is the exit code alone, nothing is held in
// memory and nothing waits for a reader.

// flood is sh that writes 100 MiB of NUL bytes on stdout and on stderr,
// and stops the hook (exit 9) if either write fails: only a hook whose
// output was taken to the end gets past it.
const flood = `head -c 104857600 /dev/zero || exit 9
head -c 104857600 /dev/zero >&2 || exit 9
`

func TestHostileHookFloodsOutput(t *testing.T) {
	// Not parallel: the allocation count is Check's alone.
	tests := []struct {
		name    string
		body    string
		timeout time.Duration
		want    Decision
		// after checks what the hook left behind (dir is its directory)
		after func(t *testing.T, dir string)
	}{
		{name: "then exit 0", body: flood + "exit 0", want: Decision{Outcome: Allow}},
		{name: "then exit 1", body: flood + "exit 1", want: Decision{Denied, "denied by auth hook"}},
		{name: "then exit 2", body: flood + "exit 2", want: Decision{BadCredentials, "bad credentials"}},
		{
			name: "then killed by SIGSEGV",
			body: flood + "ulimit -c 0\nkill -SEGV $$",
			want: Decision{Denied, "hook killed by SIGSEGV"},
		},
		{
			// The allow it would give after its sleep never comes.
			name:    "then sleeps past hook_timeout",
			body:    flood + "echo $$ >\"$DIR/hook.pid\"\nsleep 30 &\necho $! >\"$DIR/child.pid\"\nwait\nexit 0",
			timeout: 2 * time.Second,
			want:    Decision{Denied, "hook timed out after 2s"},
			after: func(t *testing.T, dir string) {
				waitGone(t, "the hook", readPid(t, dir+"/hook.pid"))
				waitGone(t, "the hook's child", readPid(t, dir+"/child.pid"))
			},
		},
		{
			// Output without end, from the hook and a child, until
			// hook_timeout kills the group.
			name:    "without end",
			body:    "echo $$ >\"$DIR/hook.pid\"\ncat /dev/zero >&2 &\necho $! >\"$DIR/child.pid\"\ncat /dev/zero\nexit 0",
			timeout: 500 * time.Millisecond,
			want:    Decision{Denied, "hook timed out after 500ms"},
			after: func(t *testing.T, dir string) {
				waitGone(t, "the hook", readPid(t, dir+"/hook.pid"))
				waitGone(t, "the hook's child", readPid(t, dir+"/child.pid"))
			},
		},
		{
			// Whatever it left behind goes on printing; the decision is
			// not held up by it.
			name: "leaves a child printing, exit 0",
			body: "echo $$ >\"$DIR/hook.pid\"\n(" + strings.ReplaceAll(flood, "\n", "; ") + "sleep 30) &\necho $! >\"$DIR/child.pid\"\nexit 0",
			want: Decision{Outcome: Allow},
			after: func(t *testing.T, dir string) {
				// Left running, as the contract says (HOOKS.md).
				if child := readPid(t, dir+"/child.pid"); !alive(child) {
					t.Errorf("the hook's child (pid %d) was killed", child)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			killAtCleanup(t, dir+"/hook.pid")
			hook := writeHook(t, dir, "hook", "DIR="+dir+"\n"+tt.body)
			timeout := tt.timeout
			if timeout == 0 {
				timeout = testTimeout
			}
			log, l := newLogs()
			r := &Runner{Path: hook, Timeout: timeout, Log: log}
			var got Decision
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			got = check(t, t.Context(), r, testContext())
			runtime.ReadMemStats(&after)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if tt.after != nil {
				tt.after(t, dir)
			}
			// 200 MiB and more went by; Check keeps none of it.
			n := after.TotalAlloc - before.TotalAlloc
			if n > 1<<20 {
				t.Errorf("Check allocated %.1f MiB", float64(n)/(1<<20))
			}
			t.Logf("allocated %d KiB", n>>10)
			assertNoToken(t, got, l)
		})
	}
}

func TestHostileHookOutputIsNullDevice(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	// $$ is the hook's shell, whose descriptors a command substitution
	// leaves alone.
	hook := writeHook(t, dir, "hook", `fds=$(readlink /proc/$$/fd/1 /proc/$$/fd/2)
printf '%s\n' "$fds" >"`+dir+`/fds"
exit 0`)
	if _, err := os.Stat("/proc/self/fd/1"); err != nil {
		t.Skip("no /proc")
	}
	if d := check(t, t.Context(), &Runner{Path: hook, Timeout: testTimeout}, testContext()); !d.Allowed() {
		t.Fatalf("hook denied: %v", d)
	}
	b, err := os.ReadFile(filepath.Join(dir, "fds"))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(b), os.DevNull+"\n"+os.DevNull+"\n"; got != want {
		t.Errorf("the hook's stdout and stderr are %q, want %q", got, want)
	}
}
