package exec

import (
	"bytes"
	"context"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap/zaptest"
)

func TestRunArgvByteForByte(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "MARKER")
	script := writeScript(t, dir, "argv.sh", `printf '%s\n' "$#" >&2
cat /proc/$$/cmdline`)
	args := []string{
		"",
		"with space",
		`"double quoted"`,
		`'single quoted'`,
		"$(touch " + marker + ")",
		"`touch " + marker + "`",
		"; touch " + marker,
		"| touch " + marker,
		"&& touch " + marker + " &",
		"> " + marker,
		"line1\nline2\n",
		"../../../etc/passwd",
		"\xff\xfe\x80 not UTF-8",
		"*",
		"$HOME ${PATH}",
		"-n",
		"--",
		`back\slash`,
		"tab\there",
		"\x01\x1b[31m",
	}
	res := mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "argv", Path: script}, Args: args})
	if res.Exit != 0 || res.Error != "" {
		t.Fatalf("Exit %d, Error %q, stderr %q", res.Exit, res.Error, res.Stderr)
	}
	if got, want := string(res.Stderr), "20\n"; got != want {
		t.Errorf("argc: got %q, want %q", got, want)
	}
	// The kernel runs "/bin/sh SCRIPT ARGS…" for a #! script: what sh got
	// is the interpreter, the path executed and every argument untouched.
	got := strings.Split(strings.TrimSuffix(string(res.Stdout), "\x00"), "\x00")
	want := append([]string{"/bin/sh", script}, args...)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("argv (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Errorf("%s was created: an argument was interpreted by a shell", marker)
	}
}

func TestRunStdinContext(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "cat.sh", "cat")
	ctxJSON := []byte(`{"script":"cat","args":["a"],"reqid":"r-1","peer_ip":"10.0.0.1","username":"ops","token":"t","timestamp":1}`)
	res := mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "cat", Path: script}, Stdin: ctxJSON})
	if res.Exit != 0 || res.Error != "" {
		t.Fatalf("Exit %d, Error %q", res.Exit, res.Error)
	}
	if !bytes.Equal(res.Stdout, ctxJSON) {
		t.Errorf("script read %q, want %q", res.Stdout, ctxJSON)
	}
}

func TestRunTrueIgnoresLargeStdin(t *testing.T) {
	if _, err := os.Stat("/bin/true"); err != nil {
		t.Skip("no /bin/true")
	}
	// /bin/true exits without reading: the context write gets EPIPE, which
	// is not an error, and the exit code stands.
	res := mustRun(t, context.Background(), testRunner(), Request{
		Entry: Entry{Name: "true", Path: "/bin/true"},
		Stdin: bytes.Repeat([]byte("x"), 1<<20),
	})
	want := &Result{Exit: 0, Duration: res.Duration}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("Result (-want +got):\n%s", diff)
	}
}

func TestRunScriptThatNeverReadsStdin(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "sleepy.sh", "sleep 0.2; echo ok")
	res := mustRun(t, context.Background(), testRunner(), Request{
		Entry: Entry{Name: "sleepy", Path: script},
		Stdin: bytes.Repeat([]byte("x"), 1<<20), // far more than a pipe holds
	})
	if res.Exit != 0 || res.Error != "" || string(res.Stdout) != "ok\n" {
		t.Errorf("got Exit %d, Error %q, Stdout %q; want 0, \"\", \"ok\\n\"", res.Exit, res.Error, res.Stdout)
	}
}

func TestRunStdinHeldOpenByGrandchild(t *testing.T) {
	// The script exits, but a background process keeps stdin open without
	// reading it: the context write must not keep Run waiting.
	dir := t.TempDir()
	// An asynchronous command's stdin is /dev/null in sh before its own
	// redirections, so the pipe goes through fd 3.
	script := writeScript(t, dir, "holder.sh", `echo $$
exec 3<&0
sleep 1000 <&3 3<&- >/dev/null 2>&1 &
exec 3<&-
echo ok`)
	res := mustRun(t, context.Background(), testRunner(), Request{
		Entry: Entry{Name: "holder", Path: script},
		Stdin: bytes.Repeat([]byte("x"), 1<<20),
	})
	killGroupAtCleanup(t, firstLineInt(t, res.Stdout))
	if res.Exit != 0 || res.Error != "" || !strings.HasSuffix(string(res.Stdout), "\nok\n") {
		t.Errorf("got Exit %d, Error %q, Stdout %q", res.Exit, res.Error, res.Stdout)
	}
}

func TestRunTimeoutKillsGroup(t *testing.T) {
	for _, tc := range []struct {
		name, body, signal string
	}{
		{
			name:   "dies on SIGTERM",
			body:   "echo $$\nsleep 1000 &\nsleep 1000",
			signal: "SIGTERM",
		},
		{
			name:   "ignores SIGTERM",
			body:   "trap '' TERM\necho $$\nsleep 1000 &\nsleep 1000",
			signal: "SIGKILL",
		},
		{
			// The leader goes at once, a grandchild ignores SIGTERM: the
			// final SIGKILL to the group is what ends it.
			name:   "grandchild ignores SIGTERM",
			body:   "echo $$\n(trap '' TERM; exec sleep 1000) &\nsleep 1000",
			signal: "SIGTERM",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script := writeScript(t, t.TempDir(), "hang.sh", tc.body)
			res := mustRun(t, context.Background(), testRunner(), Request{
				Entry:   Entry{Name: "hang", Path: script},
				Timeout: 200 * time.Millisecond,
			})
			pgid := firstLineInt(t, res.Stdout)
			killGroupAtCleanup(t, pgid)
			want := &Result{
				Exit:     ExitFailed,
				Signal:   tc.signal,
				Stdout:   res.Stdout,
				TimedOut: true,
				Duration: res.Duration,
				Error:    "timed out after 200ms",
			}
			if diff := cmp.Diff(want, res); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}
			waitGroupGone(t, pgid)
		})
	}
}

func TestRunCancel(t *testing.T) {
	script := writeScript(t, t.TempDir(), "hang.sh", "echo $$\nsleep 1000 &\nsleep 1000")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// The caller goes away once the script is under way (it has printed
	// its pid and started its background child).
	res := mustRun(t, ctx, testRunner(), Request{
		Entry:    Entry{Name: "hang", Path: script},
		OnOutput: func(string, []byte) { time.AfterFunc(50*time.Millisecond, cancel) },
	})
	pgid := firstLineInt(t, res.Stdout)
	killGroupAtCleanup(t, pgid)
	want := &Result{
		Exit:      ExitFailed,
		Signal:    "SIGTERM",
		Stdout:    res.Stdout,
		Cancelled: true,
		Duration:  res.Duration,
		Error:     "cancelled",
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("Result (-want +got):\n%s", diff)
	}
	waitGroupGone(t, pgid)
}

func TestRunCancelledBeforeStart(t *testing.T) {
	dir := t.TempDir()
	marker := filepath.Join(dir, "ran")
	script := writeScript(t, dir, "touch.sh", "touch "+marker)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	res := mustRun(t, ctx, testRunner(), Request{Entry: Entry{Name: "touch", Path: script}})
	want := &Result{Exit: ExitFailed, Cancelled: true, Error: "cancelled"}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("Result (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the script ran although the context was already done")
	}
}

func TestRunBackgroundChildHoldsStdout(t *testing.T) {
	// The script exits at once, leaving a daemon that inherited stdout and
	// stderr. Without the bounded drain Run would wait for the daemon (1000
	// s) and mustRun would fail the test after 30 s.
	script := writeScript(t, t.TempDir(), "daemon.sh", "echo $$\nsleep 1000 &\necho done\necho warn >&2")
	res := mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "daemon", Path: script}})
	pgid := firstLineInt(t, res.Stdout)
	killGroupAtCleanup(t, pgid)
	want := &Result{
		Exit:     0,
		Stdout:   res.Stdout,
		Stderr:   []byte("warn\n"),
		Duration: res.Duration,
	}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("Result (-want +got):\n%s", diff)
	}
	if !strings.HasSuffix(string(res.Stdout), "\ndone\n") {
		t.Errorf("Stdout %q lacks the script's output", res.Stdout)
	}
	// The background process is left alone: only timeouts and
	// cancellations kill the group.
	if len(liveInGroup(pgid)) == 0 {
		t.Error("the background process was killed after a normal exit")
	}
}

func TestRunOutputLimit(t *testing.T) {
	script := writeScript(t, t.TempDir(), "flood.sh", "head -c 50000000 /dev/zero\necho err >&2")
	res := mustRun(t, context.Background(), testRunner(), Request{
		Entry:       Entry{Name: "flood", Path: script},
		OutputLimit: 1 << 20,
	})
	if res.Exit != 0 || res.Error != "" {
		t.Fatalf("Exit %d, Error %q", res.Exit, res.Error)
	}
	if len(res.Stdout) != 1<<20 || !res.Truncated {
		t.Errorf("len(Stdout) = %d, Truncated = %v; want %d, true", len(res.Stdout), res.Truncated, 1<<20)
	}
	if string(res.Stderr) != "err\n" {
		t.Errorf("Stderr = %q, want %q", res.Stderr, "err\n")
	}
}

func TestRunOutputLimitEdges(t *testing.T) {
	script := writeScript(t, t.TempDir(), "five.sh", "printf 12345")
	for _, tc := range []struct {
		limit     int64
		stdout    string
		truncated bool
	}{
		{limit: 5, stdout: "12345"},
		{limit: 4, stdout: "1234", truncated: true},
		{limit: 0, stdout: "12345"}, // the 16 MiB default
		{limit: -1, stdout: "", truncated: true},
	} {
		res := mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "five", Path: script}, OutputLimit: tc.limit})
		if string(res.Stdout) != tc.stdout || res.Truncated != tc.truncated {
			t.Errorf("limit %d: Stdout %q, Truncated %v; want %q, %v", tc.limit, res.Stdout, res.Truncated, tc.stdout, tc.truncated)
		}
	}
}

func TestRunOnOutput(t *testing.T) {
	script := writeScript(t, t.TempDir(), "chatty.sh", `i=0
while [ $i -lt 300 ]; do echo out$i; echo err$i >&2; i=$((i+1)); done`)
	var inCall atomic.Int32
	var overlaps atomic.Int32
	got := map[string]*bytes.Buffer{"stdout": {}, "stderr": {}}
	res := mustRun(t, context.Background(), testRunner(), Request{
		Entry:       Entry{Name: "chatty", Path: script},
		OutputLimit: 1000,
		OnOutput: func(stream string, data []byte) {
			if inCall.Add(1) != 1 {
				overlaps.Add(1)
			}
			got[stream].Write(data)
			inCall.Add(-1)
		},
	})
	if overlaps.Load() != 0 {
		t.Errorf("OnOutput calls overlapped %d times", overlaps.Load())
	}
	if !res.Truncated || len(res.Stdout) != 1000 || len(res.Stderr) != 1000 {
		t.Errorf("Truncated %v, len(Stdout) %d, len(Stderr) %d; want true, 1000, 1000", res.Truncated, len(res.Stdout), len(res.Stderr))
	}
	if diff := cmp.Diff(string(res.Stdout), got["stdout"].String()); diff != "" {
		t.Errorf("stdout callbacks differ from Result.Stdout (-result +callbacks):\n%s", diff)
	}
	if diff := cmp.Diff(string(res.Stderr), got["stderr"].String()); diff != "" {
		t.Errorf("stderr callbacks differ from Result.Stderr (-result +callbacks):\n%s", diff)
	}
}

func TestRunExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       Result
	}{
		{"zero", "exit 0", Result{Exit: 0}},
		{"three", "echo fail >&2; exit 3", Result{Exit: 3, Stderr: []byte("fail\n")}},
		{"255", "exit 255", Result{Exit: 255}},
		{"segv", "ulimit -c 0; kill -SEGV $$", Result{Exit: ExitFailed, Signal: "SIGSEGV", Error: "killed by SIGSEGV"}},
		{"kill", "kill -KILL $$", Result{Exit: ExitFailed, Signal: "SIGKILL", Error: "killed by SIGKILL"}},
		{"usr1", "kill -USR1 $$", Result{Exit: ExitFailed, Signal: "SIGUSR1", Error: "killed by SIGUSR1"}},
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

func TestRunExecFailure(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, path, wantErr string
	}{
		{"not executable", writeFile(t, dir, "noexec.sh", "#!/bin/sh\necho hi\n", 0o644), "exec failed: permission denied"},
		{"missing interpreter", writeFile(t, dir, "nointerp.sh", "#!/nonexistent/interpreter\necho hi\n", 0o755),
			"exec failed: no such file or directory (the file exists: is its #! interpreter missing?)"},
		// No #! line: execve refuses it, and no shell steps in to run it.
		{"no interpreter line", writeFile(t, dir, "plain.sh", "echo hi\n", 0o755), "exec failed: exec format error"},
		{"missing file", filepath.Join(dir, "absent.sh"), "exec failed: no such file or directory"},
		{"directory", dir, "exec failed: permission denied"},
		{"relative path", "bin/true", `exec failed: path "bin/true" is not absolute`},
		{"empty path", "", "exec failed: path is empty"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "x", Path: tc.path}})
			want := &Result{Exit: ExitFailed, Error: tc.wantErr}
			if diff := cmp.Diff(want, res); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunRefusesBadRequest(t *testing.T) {
	script := writeScript(t, t.TempDir(), "s.sh", "exit 0")
	for _, tc := range []struct {
		name    string
		req     Request
		wantErr string
	}{
		{"NUL in argument", Request{Args: []string{"a", "b\x00c"}}, "exec failed: argument 2 contains a NUL byte"},
		{"too many arguments", Request{Args: make([]string, MaxArgs+1)}, "exec failed: too many arguments: 1025, the limit is 1024"},
		{"bad env name", Request{Env: map[string]string{"A=B": "x"}}, `exec failed: env name "A=B" must be non-empty, without '=' or NUL`},
		{"NUL in env value", Request{Env: map[string]string{"A": "x\x00"}}, "exec failed: env A: value contains a NUL byte"},
		{"unknown user", Request{Entry: Entry{User: "no-such-user-dispatcher-test"}}, `exec failed: unknown user "no-such-user-dispatcher-test"`},
		{"unknown group", Request{Entry: Entry{Group: "no-such-group-dispatcher-test"}}, `exec failed: unknown group "no-such-group-dispatcher-test"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.req.Entry.Name, tc.req.Entry.Path = "s", script
			res := mustRun(t, context.Background(), testRunner(), tc.req)
			want := &Result{Exit: ExitFailed, Error: tc.wantErr}
			if diff := cmp.Diff(want, res); diff != "" {
				t.Errorf("Result (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunCleanEnvironment(t *testing.T) {
	t.Setenv("DISPATCHER_EXEC_TEST_LEAK", "must not reach the script")
	t.Setenv("LANG", "de_DE.UTF-8")
	// What sh was started with, not what it adds itself (PWD and such).
	script := writeScript(t, t.TempDir(), "env.sh", `tr '\0' '\n' < /proc/$$/environ`)
	for _, tc := range []struct {
		name     string
		reqEnv   map[string]string
		entryEnv map[string]string
		want     []string
	}{
		{
			name: "base",
			want: []string{"HOME=/", "LANG=C.UTF-8", "PATH=" + DefaultPATH},
		},
		{
			name:     "request and entry env",
			reqEnv:   map[string]string{"DISPATCHER_REQID": "r-42", "DISPATCHER_PEER": "10.0.0.1", "MODE": "from request"},
			entryEnv: map[string]string{"MODE": "from entry", "LANG": "en_GB.UTF-8", "EMPTY": ""},
			want: []string{
				"DISPATCHER_PEER=10.0.0.1",
				"DISPATCHER_REQID=r-42",
				"EMPTY=",
				"HOME=/",
				"LANG=en_GB.UTF-8",
				"MODE=from entry",
				"PATH=" + DefaultPATH,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := mustRun(t, context.Background(), testRunner(), Request{
				Entry: Entry{Name: "env", Path: script, Env: tc.entryEnv},
				Env:   tc.reqEnv,
			})
			if res.Exit != 0 || res.Error != "" {
				t.Fatalf("Exit %d, Error %q", res.Exit, res.Error)
			}
			got := strings.Split(strings.TrimSuffix(string(res.Stdout), "\n"), "\n")
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("environment (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunWorkDir(t *testing.T) {
	script := writeScript(t, t.TempDir(), "pwd.sh", "pwd")
	res := mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "pwd", Path: script}})
	if string(res.Stdout) != WorkDir+"\n" {
		t.Errorf("working directory %q, want %q", res.Stdout, WorkDir)
	}
}

func TestRunScriptDirsRecheck(t *testing.T) {
	root := t.TempDir()
	scripts := filepath.Join(root, "scripts")
	marker := filepath.Join(root, "evil-ran")
	good := writeScript(t, scripts, "job.sh", `echo "$0"`)
	evil := writeScript(t, filepath.Join(root, "outside"), "evil.sh", "touch "+marker)
	link := filepath.Join(scripts, "link.sh")
	if err := os.Symlink(good, link); err != nil {
		t.Fatal(err)
	}
	al, warns := NewAllowlist([]Entry{{Name: "job", Path: good}, {Name: "link", Path: link}}, []string{scripts})
	if len(warns) != 0 {
		t.Fatalf("warnings: %v", warns)
	}
	r := testRunner()
	run := func(name string) *Result {
		e, err := al.Lookup(name)
		if err != nil {
			t.Fatal(err)
		}
		return mustRun(t, context.Background(), r, Request{Entry: e, ScriptDirs: al.ScriptDirs()})
	}

	// A link inside script_dirs runs what it resolves to.
	if res := run("link"); res.Exit != 0 || string(res.Stdout) != good+"\n" {
		t.Errorf("link: Exit %d, Error %q, $0 %q; want 0, %q", res.Exit, res.Error, res.Stdout, good)
	}

	// After load, the script is replaced by a link leading out.
	if err := os.Remove(good); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(evil, good); err != nil {
		t.Fatal(err)
	}
	res := run("job")
	want := &Result{Exit: ExitFailed, Error: "script path outside script_dirs"}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("Result (-want +got):\n%s", diff)
	}
	if _, err := os.Stat(marker); err == nil {
		t.Error("the script outside script_dirs ran")
	}

	// Gone altogether.
	if err := os.Remove(good); err != nil {
		t.Fatal(err)
	}
	want = &Result{Exit: ExitFailed, Error: "exec failed: no such file or directory"}
	if diff := cmp.Diff(want, run("job")); diff != "" {
		t.Errorf("Result (-want +got):\n%s", diff)
	}
}

func TestRunLogs(t *testing.T) {
	// A logger is used without trouble (and nothing is logged after Run
	// returns, which zaptest would report).
	script := writeScript(t, t.TempDir(), "daemon.sh", "echo $$\nsleep 1000 &")
	r := testRunner()
	r.Log = zaptest.NewLogger(t)
	res := mustRun(t, context.Background(), r, Request{Entry: Entry{Name: "daemon", Path: script}})
	killGroupAtCleanup(t, firstLineInt(t, res.Stdout))
	if res.Exit != 0 {
		t.Errorf("Exit %d, Error %q", res.Exit, res.Error)
	}
}

func TestRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("switching user needs root")
	}
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	dir := t.TempDir()
	// t.TempDir's directories are 0700: let nobody reach the script.
	for d := dir; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := writeScript(t, dir, "id.sh", `id -u; id -g; echo "$HOME $USER $LOGNAME"`)
	for _, tc := range []struct {
		name  string
		entry Entry
		want  string
	}{
		{"user", Entry{User: "nobody"}, nobody.Uid + "\n" + nobody.Gid + "\n" + nobody.HomeDir + " nobody nobody\n"},
		{"numeric user", Entry{User: nobody.Uid}, nobody.Uid + "\n" + nobody.Gid + "\n" + nobody.HomeDir + " nobody nobody\n"},
		{"user and group", Entry{User: "nobody", Group: "0"}, nobody.Uid + "\n0\n" + nobody.HomeDir + " nobody nobody\n"},
		{"group only", Entry{Group: nobody.Gid}, "0\n" + nobody.Gid + "\n/  \n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.entry.Name, tc.entry.Path = "id", script
			res := mustRun(t, context.Background(), testRunner(), Request{Entry: tc.entry})
			if res.Exit != 0 || res.Error != "" {
				t.Fatalf("Exit %d, Error %q, Stderr %q", res.Exit, res.Error, res.Stderr)
			}
			if diff := cmp.Diff(tc.want, string(res.Stdout)); diff != "" {
				t.Errorf("identity (-want +got):\n%s", diff)
			}
		})
	}
}

func TestRunAsUserWithoutRoot(t *testing.T) {
	nobody, err := user.Lookup("nobody")
	if err != nil {
		t.Skip("no user nobody")
	}
	// Pretend the agent runs as nobody.
	uid, gid := atoi(t, nobody.Uid), atoi(t, nobody.Gid)
	defer func(u, g func() int) { geteuid, getegid = u, g }(geteuid, getegid)
	geteuid = func() int { return uid }
	getegid = func() int { return gid }

	script := writeScript(t, t.TempDir(), "ok.sh", "echo ran")
	res := mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "ok", Path: script, User: "root"}})
	want := &Result{Exit: ExitFailed, Error: `exec failed: cannot run as user "root": the agent is not running as root (run the agent as root, or drop user/group from the scripts.conf entry)`}
	if diff := cmp.Diff(want, res); diff != "" {
		t.Errorf("Result (-want +got):\n%s", diff)
	}

	// Asking for who the agent already is needs no switch.
	res = mustRun(t, context.Background(), testRunner(), Request{Entry: Entry{Name: "ok", Path: script, User: "nobody"}})
	if res.Exit != 0 || string(res.Stdout) != "ran\n" {
		t.Errorf("as itself: Exit %d, Error %q, Stdout %q", res.Exit, res.Error, res.Stdout)
	}
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	n, err := parseID(s)
	if err != nil {
		t.Fatal(err)
	}
	return int(n)
}

func TestSignalName(t *testing.T) {
	for sig, want := range map[syscall.Signal]string{
		syscall.SIGKILL:     "SIGKILL",
		syscall.SIGTERM:     "SIGTERM",
		syscall.SIGSEGV:     "SIGSEGV",
		syscall.SIGPIPE:     "SIGPIPE",
		syscall.Signal(40):  "signal 40",
		syscall.Signal(0):   "signal 0",
		syscall.Signal(-10): "signal -10",
	} {
		if got := SignalName(sig); got != want {
			t.Errorf("SignalName(%d) = %q, want %q", int(sig), got, want)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		200 * time.Millisecond:             "200ms",
		5 * time.Second:                    "5s",
		90 * time.Second:                   "1m30s",
		time.Minute:                        "1m",
		time.Hour:                          "1h",
		time.Hour + 30*time.Second:         "1h0m30s",
		2*time.Hour + 10*time.Minute:       "2h10m",
		1500 * time.Millisecond:            "1.5s",
		time.Minute + 500*time.Millisecond: "1m0.5s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
