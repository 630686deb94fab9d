package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"
)

// Commands of testdata/script/hostile_exec.txtar: peak memory of the agent
// (a long-lived process, read from /proc) and of one CLI invocation (from
// the kernel's accounting when it exits).
func init() {
	scriptCmds["peak-rss-below"] = cmdPeakRSSBelow
	scriptCmds["peak-rss-reset"] = cmdPeakRSSReset
	scriptCmds["exec-peak-rss"] = cmdExecPeakRSS
}

// procPID resolves a process given as a pid or as an argument of exactly
// one process's command line (as pid and signal take it, e.g. the agent's
// $WORK/web-01/agent.conf).
func procPID(ts *testscript.TestScript, arg string) int {
	if pid, err := strconv.Atoi(arg); err == nil && pid > 1 {
		return pid
	}
	pids := findProcs(ts, arg)
	if len(pids) != 1 {
		ts.Fatalf("want one process with argument %q, found %v", arg, pids)
	}
	return pids[0]
}

// vmHWM returns the peak resident set size of pid in KiB: VmHWM in
// /proc/PID/status, the high-water mark the kernel keeps itself, so that a
// peak between two samples is not missed.
func vmHWM(pid int) (int, error) {
	status, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, fmt.Errorf("read status of process %d: %w", pid, err)
	}
	for line := range strings.SplitSeq(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				return 0, fmt.Errorf("parse VmHWM of process %d: %w", pid, err)
			}
			return kb, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in the status of process %d", pid)
}

// peak-rss-below PROC MB: the peak resident set (VmHWM) of PROC, since it
// started or since the last peak-rss-reset, is under MB MiB. PROC is a pid
// or an argument of exactly one process's command line.
func cmdPeakRSSBelow(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: peak-rss-below PROC MB")
	}
	limit, err := strconv.Atoi(args[1])
	if err != nil || limit <= 0 {
		ts.Fatalf("bad MB %q", args[1])
	}
	pid := procPID(ts, args[0])
	kb, err := vmHWM(pid)
	ts.Check(err)
	ts.Logf("peak RSS of %s (pid %d): %.1f MiB", args[0], pid, float64(kb)/1024)
	if raceBuild {
		ts.Logf("race detector build: peak RSS not checked (make test checks it without -race)")
		return
	}
	if kb >= limit<<10 {
		ts.Fatalf("peak RSS of %s (pid %d) is %.1f MiB, want under %d MiB", args[0], pid, float64(kb)/1024, limit)
	}
}

// peak-rss-reset PROC: start PROC's peak resident set (VmHWM) again from
// its current resident set, so that the next peak-rss-below measures what
// happens from now on (clear_refs, Linux 4.0 and later).
func cmdPeakRSSReset(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: peak-rss-reset PROC")
	}
	pid := procPID(ts, args[0])
	before, err := vmHWM(pid)
	ts.Check(err)
	if err := os.WriteFile(filepath.Join("/proc", strconv.Itoa(pid), "clear_refs"), []byte("5"), 0); err != nil {
		ts.Fatalf("reset the peak RSS of process %d: %v", pid, err)
	}
	after, err := vmHWM(pid)
	ts.Check(err)
	ts.Logf("peak RSS of %s (pid %d) reset: was %.1f MiB, now %.1f MiB", args[0], pid, float64(before)/1024, float64(after)/1024)
}

// peakRSSDirEnv names the directory through which exec-peak-rss and
// its helper process (TestPeakRSSHelperProcess) exchange output and
// results.
const peakRSSDirEnv = "DISPATCHER_TEST_PEAK_RSS_DIR"

// exec-peak-rss MB PROG ARGS...: run PROG as exec does (with !, it must
// fail) and check that its peak resident set stayed under MB MiB. stdout
// and stderr hold its output afterwards.
//
// The peak is ru_maxrss of the finished process, and PROG is started by a
// helper process (the test binary again) rather than from here: a process
// started with vfork, as Go starts every child, is charged with its
// parent's peak when it execs, and this process's peak is that of every
// script running in parallel. The helper's own peak, a few MiB, is logged
// too: what is measured is the larger of the two.
func cmdExecPeakRSS(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: exec-peak-rss MB PROG [ARGS...]")
	}
	limit, err := strconv.Atoi(args[0])
	if err != nil || limit <= 0 {
		ts.Fatalf("bad MB %q", args[0])
	}
	self, err := os.Executable()
	ts.Check(err)
	dir, err := os.MkdirTemp(ts.Getenv("TMPDIR"), "peak-rss-")
	ts.Check(err)
	defer os.RemoveAll(dir)
	ts.Setenv(peakRSSDirEnv, dir)
	err = ts.Exec(self, append([]string{"-test.run=^TestPeakRSSHelperProcess$", "--"}, args[1:]...)...)
	ts.Setenv(peakRSSDirEnv, "")
	if err != nil {
		ts.Fatalf("helper process: %v\n%s%s", err, ts.ReadFile("stdout"), ts.ReadFile("stderr"))
	}
	var exit int
	var peak, helper int64
	result, err := os.ReadFile(filepath.Join(dir, "result"))
	ts.Check(err)
	if _, err := fmt.Sscan(string(result), &exit, &peak, &helper); err != nil {
		ts.Fatalf("bad result %q from the helper process: %v", result, err)
	}
	for name, w := range map[string]io.Writer{"stdout": ts.Stdout(), "stderr": ts.Stderr()} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		ts.Check(err)
		_, err = w.Write(b)
		ts.Check(err)
	}
	ts.Logf("peak RSS of %s: %.1f MiB (helper process: %.1f MiB)", args[1], float64(peak)/1024, float64(helper)/1024)
	if (exit != 0) != neg {
		ts.Fatalf("%s exited %d, want %s", args[1], exit, map[bool]string{true: "failure", false: "success"}[neg])
	}
	if raceBuild {
		ts.Logf("race detector build: peak RSS not checked (make test checks it without -race)")
		return
	}
	if peak >= int64(limit)<<10 {
		ts.Fatalf("peak RSS of %s is %.1f MiB, want under %d MiB", args[1], float64(peak)/1024, limit)
	}
}

// TestPeakRSSHelperProcess is exec-peak-rss's helper, not a test: with
// peakRSSDirEnv set it runs the command after -- with its stdout and
// stderr in files of that directory, and writes there its exit code (-1
// when killed by a signal), its peak resident set and the helper's own,
// both in KiB.
func TestPeakRSSHelperProcess(t *testing.T) {
	dir := os.Getenv(peakRSSDirEnv)
	if dir == "" {
		t.Skip("the helper process of exec-peak-rss")
	}
	args := flag.Args()
	if len(args) == 0 {
		t.Fatal("no command")
	}
	own, err := vmHWM(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Env = slices.DeleteFunc(os.Environ(), func(kv string) bool { return strings.HasPrefix(kv, peakRSSDirEnv+"=") })
	cmd.Stdin = os.Stdin
	for name, dst := range map[string]*io.Writer{"stdout": &cmd.Stdout, "stderr": &cmd.Stderr} {
		f, err := os.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		*dst = f
	}
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s: %v", args[0], err)
	}
	ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	if !ok {
		t.Fatalf("no resource usage for %s", args[0])
	}
	result := fmt.Sprintf("%d %d %d\n", cmd.ProcessState.ExitCode(), ru.Maxrss, own) // ru_maxrss is in KiB on Linux
	if err := os.WriteFile(filepath.Join(dir, "result"), []byte(result), 0o644); err != nil {
		t.Fatal(err)
	}
}
