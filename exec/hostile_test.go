package exec

import (
	"bytes"
	"context"
	"os"
	osexec "os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// Scripts that try to hurt the agent: floods, daemons, signals, closed
// descriptors, bytes that are not text. None of these tests is parallel,
// so that allocation counts are the Run's alone.

// allocated returns how many bytes of heap f allocated (cumulative, so
// garbage counts as well as what is kept).
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

const gib = 1 << 30

func TestHostileGigabyteOnEachStream(t *testing.T) {
	// 1 GiB of NUL bytes on stdout and 1 GiB on stderr at once. The exit
	// code says both writers wrote everything: one cut off by a closed
	// pipe (SIGPIPE) would make it non-zero.
	script := writeScript(t, t.TempDir(), "flood.sh", `head -c `+strconv.Itoa(gib)+` /dev/zero & out=$!
head -c `+strconv.Itoa(gib)+` /dev/zero >&2; err=$?
wait $out; out=$?
exit $((out * 10 + err))`)
	const limit = 1 << 20
	for _, streaming := range []bool{false, true} {
		name := map[bool]string{false: "plain", true: "streaming"}[streaming]
		t.Run(name, func(t *testing.T) {
			req := Request{Entry: Entry{Name: "flood", Path: script}, OutputLimit: limit}
			var mu sync.Mutex
			got := map[string]int{}
			if streaming {
				req.OnOutput = func(stream string, data []byte) {
					mu.Lock()
					defer mu.Unlock()
					got[stream] += len(data)
				}
			}
			var res *Result
			n := allocated(func() { res = mustRun(t, context.Background(), testRunner(), req) })
			if res.Exit != 0 || res.Error != "" || res.Signal != "" {
				t.Fatalf("Exit %d, Signal %q, Error %q; want the script's own 0", res.Exit, res.Signal, res.Error)
			}
			if !res.Truncated {
				t.Error("Truncated is false")
			}
			zeros := make([]byte, limit)
			if !bytes.Equal(res.Stdout, zeros) || !bytes.Equal(res.Stderr, zeros) {
				t.Errorf("kept %d bytes of stdout and %d of stderr, want exactly %d NUL bytes of each", len(res.Stdout), len(res.Stderr), limit)
			}
			if cap(res.Stdout) > limit || cap(res.Stderr) > limit {
				t.Errorf("buffers of %d and %d bytes hold the output, want at most the limit (%d)", cap(res.Stdout), cap(res.Stderr), limit)
			}
			if streaming {
				want := map[string]int{"stdout": limit, "stderr": limit}
				if diff := cmp.Diff(want, got); diff != "" {
					t.Errorf("bytes passed to OnOutput (-want +got):\n%s", diff)
				}
			}
			// What is kept (2 MiB, in pooled chunks, plus the one exact
			// copy a Result without Chunked holds), not the 2 GiB that
			// went through.
			if n > 3*2*limit {
				t.Errorf("Run allocated %.1f MiB for 2 GiB of output with a 1 MiB limit per stream, want at most 6 MiB", float64(n)/(1<<20))
			}
			t.Logf("allocated %.1f MiB", float64(n)/(1<<20))
		})
	}
}

func TestHostileEndlessOutputTimesOut(t *testing.T) {
	// Output without end on both streams, from the script and a child:
	// the timeout kills the whole group, what was kept is returned.
	script := writeScript(t, t.TempDir(), "endless.sh", "echo $$\ncat /dev/zero >&2 &\nexec yes")
	var res *Result
	n := allocated(func() {
		res = mustRun(t, context.Background(), testRunner(), Request{
			Entry:       Entry{Name: "endless", Path: script},
			OutputLimit: 64 << 10,
			Timeout:     300 * time.Millisecond,
		})
	})
	pgid := firstLineInt(t, res.Stdout)
	killGroupAtCleanup(t, pgid)
	if !res.TimedOut || res.Exit != ExitFailed || res.Error != "timed out after 300ms" || !res.Truncated {
		t.Errorf("TimedOut %v, Exit %d, Error %q, Truncated %v; want true, 126, \"timed out after 300ms\", true", res.TimedOut, res.Exit, res.Error, res.Truncated)
	}
	if len(res.Stdout) != 64<<10 || len(res.Stderr) != 64<<10 {
		t.Errorf("kept %d bytes of stdout and %d of stderr, want %d of each", len(res.Stdout), len(res.Stderr), 64<<10)
	}
	if n > 8<<20 {
		t.Errorf("Run allocated %d MiB with a 64 KiB limit per stream", n>>20)
	}
	waitGroupGone(t, pgid)
}

func TestHostileDaemonHoldsOutput(t *testing.T) {
	t.Run("quiet daemon", func(t *testing.T) {
		// The script exits 7 and leaves a daemon holding stdout and stderr.
		// Run answers after the drain with the script's own code and
		// output; the daemon is left running, since the script ended by
		// itself.
		script := writeScript(t, t.TempDir(), "daemon.sh", "echo $$\nsleep 1000 &\necho started\necho warning >&2\nexit 7")
		res := mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "daemon", Path: script}})
		pgid := firstLineInt(t, res.Stdout)
		killGroupAtCleanup(t, pgid)
		want := &Result{Exit: 7, Stdout: []byte(strconv.Itoa(pgid) + "\nstarted\n"), Stderr: []byte("warning\n"), Duration: res.Duration}
		if diff := cmp.Diff(want, res); diff != "" {
			t.Errorf("Result (-want +got):\n%s", diff)
		}
		if live := liveInGroup(pgid); len(live) != 1 || !strings.Contains(live[0], "(sleep)") {
			t.Errorf("processes left in the group: %q, want the daemon (sleep) alone", live)
		}
	})

	t.Run("chatty daemon", func(t *testing.T) {
		// A daemon that keeps writing: once Run has stopped reading, its
		// next write fails (SIGPIPE), so it can neither block on a full
		// pipe forever nor have its output read into memory.
		script := writeScript(t, t.TempDir(), "chatty.sh", "echo $$\n(while :; do echo tick; echo tock >&2; sleep 0.01; done) &\nexit 0")
		res := mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "chatty", Path: script}, OutputLimit: 1 << 20})
		pgid := firstLineInt(t, res.Stdout)
		killGroupAtCleanup(t, pgid)
		if res.Exit != 0 || res.Error != "" {
			t.Errorf("Exit %d, Error %q; want 0, \"\"", res.Exit, res.Error)
		}
		waitGroupGone(t, pgid)
	})

	t.Run("daemon escapes the group, script times out", func(t *testing.T) {
		// setsid takes the daemon out of the process group, so the kill
		// on timeout misses it; it still holds stdout. The drain bounds
		// Run all the same.
		if _, err := osexec.LookPath("setsid"); err != nil {
			t.Skip("no setsid")
		}
		dir := t.TempDir()
		pidFile := filepath.Join(dir, "escaped.pid")
		script := writeScript(t, dir, "escape.sh", `setsid sh -c 'echo $$ >`+pidFile+`; exec sleep 1000' &
while [ ! -s `+pidFile+` ]; do sleep 0.01; done
echo $$
sleep 1000`)
		res := mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "escape", Path: script}, Timeout: 500 * time.Millisecond})
		escaped := readPidFile(t, pidFile)
		t.Cleanup(func() { syscall.Kill(escaped, syscall.SIGKILL) })
		if !res.TimedOut || res.Exit != ExitFailed || res.Error != "timed out after 500ms" {
			t.Errorf("TimedOut %v, Exit %d, Error %q; want true, 126, \"timed out after 500ms\"", res.TimedOut, res.Exit, res.Error)
		}
		waitGroupGone(t, firstLineInt(t, res.Stdout))
		if err := syscall.Kill(escaped, 0); err != nil {
			t.Errorf("the escaped daemon is gone (%v): this test no longer shows an escape", err)
		}
	})
}

// readPidFile reads the pid a script wrote to path.
func readPidFile(t *testing.T, path string) int {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 1 {
		t.Fatalf("no pid in %s: %q", path, b)
	}
	return pid
}

func TestHostileSignals(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       Result
	}{
		{
			// What it printed before dying is kept.
			name: "SIGSEGV after output",
			body: "ulimit -c 0\necho about to crash\necho on stderr >&2\nkill -SEGV $$\necho still alive",
			want: Result{Exit: ExitFailed, Signal: "SIGSEGV", Stdout: []byte("about to crash\n"), Stderr: []byte("on stderr\n"), Error: "killed by SIGSEGV"},
		},
		{
			// A child's crash is not the script's: sh reports it as 139
			// and the script exits with that code by itself.
			name: "child's SIGSEGV passed on as a code",
			body: "ulimit -c 0\nexec 2>/dev/null\nsh -c 'kill -SEGV $$'\nexit $?",
			want: Result{Exit: 139},
		},
		{
			name: "SIGABRT",
			body: "ulimit -c 0\nkill -ABRT $$",
			want: Result{Exit: ExitFailed, Signal: "SIGABRT", Error: "killed by SIGABRT"},
		},
		{
			// Not in the table of names: the number.
			name: "real-time signal",
			body: "kill -s " + strconv.Itoa(int(syscall.Signal(34))) + " $$",
			want: Result{Exit: ExitFailed, Signal: "signal 34", Error: "killed by signal 34"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := writeScript(t, t.TempDir(), "s.sh", tc.body)
			res := mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "s", Path: script}})
			tc.want.Duration = res.Duration
			if diff := cmp.Diff(&tc.want, res); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}
		})
	}
}

func TestHostileClosedDescriptors(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "finished")
	for _, tc := range []struct {
		name, body string
		want       Result
	}{
		{
			name: "stdout closed early",
			body: "echo before\nexec >&-\necho 'stdout closed' >&2\necho lost 2>/dev/null\nexit 3",
			want: Result{Exit: 3, Stdout: []byte("before\n"), Stderr: []byte("stdout closed\n")},
		},
		{
			// Both streams at end of file long before the script ends: Run
			// waits for the script itself (the marker it writes last is
			// there when Run returns).
			name: "stdout and stderr closed, then work",
			body: "echo before\nexec >&- 2>&-\nsleep 0.3\ntouch " + marker + "\nexit 4",
			want: Result{Exit: 4, Stdout: []byte("before\n")},
		},
		{
			name: "stdin closed at once",
			body: "exec <&-\necho ok\nexit 5",
			want: Result{Exit: 5, Stdout: []byte("ok\n")},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			os.Remove(marker)
			script := writeScript(t, t.TempDir(), "s.sh", tc.body)
			res := mustRun(t, context.Background(), testRunner(), Request{
				Entry: Entry{Name: "s", Path: script},
				Stdin: bytes.Repeat([]byte("c"), 1<<20),
			})
			tc.want.Duration = res.Duration
			if diff := cmp.Diff(&tc.want, res); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}
			if strings.Contains(tc.body, marker) {
				if _, err := os.Stat(marker); err != nil {
					t.Errorf("Run returned before the script finished: %v", err)
				}
			}
		})
	}
}

func TestHostileNotText(t *testing.T) {
	// Bytes that are not UTF-8, NUL and escape sequences come back exactly;
	// the cut at OutputLimit may fall inside a character.
	all := make([]byte, 256)
	for i := range all {
		all[i] = byte(i)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "all.bin"), all, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, body string
		limit      int64
		stdout     []byte
		truncated  bool
	}{
		{name: "every byte value", body: "cat " + filepath.Join(dir, "all.bin"), stdout: all},
		{name: "invalid UTF-8", body: `printf '\377\376ok\200\n'`, stdout: []byte("\xff\xfeok\x80\n")},
		{name: "cut inside a character", body: `printf 'ab\342\202\254'`, limit: 3, stdout: []byte("ab\xe2"), truncated: true},
		{name: "terminal escapes", body: `printf '\033[2J\033]0;pwned\007\r'`, stdout: []byte("\x1b[2J\x1b]0;pwned\x07\r")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := writeScript(t, t.TempDir(), "s.sh", tc.body)
			var streamed []byte
			res := mustRun(t, context.Background(), testRunner(), Request{
				Entry:       Entry{Name: "s", Path: script},
				OutputLimit: tc.limit,
				OnOutput: func(stream string, data []byte) {
					if stream == "stdout" {
						streamed = append(streamed, data...)
					}
				},
			})
			if res.Exit != 0 || res.Error != "" {
				t.Fatalf("Exit %d, Error %q", res.Exit, res.Error)
			}
			if !bytes.Equal(res.Stdout, tc.stdout) || res.Truncated != tc.truncated {
				t.Errorf("Stdout %q, Truncated %v; want %q, %v", res.Stdout, res.Truncated, tc.stdout, tc.truncated)
			}
			if !bytes.Equal(streamed, tc.stdout) {
				t.Errorf("OnOutput got %q, want %q", streamed, tc.stdout)
			}
		})
	}
}

func TestHostileNeverReadsLargeStdin(t *testing.T) {
	// 8 MiB of context, far more than a pipe holds, to scripts that read
	// none or a little of it.
	stdin := bytes.Repeat([]byte("x"), 8<<20)
	for _, tc := range []struct {
		name, body string
		want       Result
	}{
		{name: "exits at once", body: "exit 5", want: Result{Exit: 5}},
		{name: "reads a little", body: "head -c 3\nexit 6", want: Result{Exit: 6, Stdout: []byte("xxx")}},
		{name: "works without reading", body: "sleep 0.2\necho done\nexit 0", want: Result{Exit: 0, Stdout: []byte("done\n")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := writeScript(t, t.TempDir(), "s.sh", tc.body)
			res := mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "s", Path: script}, Stdin: stdin})
			tc.want.Duration = res.Duration
			if diff := cmp.Diff(&tc.want, res); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}
		})
	}
}
