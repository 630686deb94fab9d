package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/dispatcher-dev/dispatcher/roles"
)

// roleNames are the names the test binary is installed under in the
// scripts' PATH: every role, plus a name no role claims.
var roleNames = []string{"dispatcher", "dispatcher-agent", "dispatcher-api", "dispatcher-pairing", "dispatcher-linux-amd64"}

func TestMain(m *testing.M) {
	cmds := make(map[string]func(), len(roleNames))
	for _, n := range roleNames {
		cmds[n] = func() {
			os.Exit(roles.Main(context.Background(), os.Args, os.Stdin, os.Stdout, os.Stderr))
		}
	}
	testscript.Main(m, cmds)
}

// TestScripts runs testdata/script/*.txtar against the real binary.
func TestScripts(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		UpdateScripts:       os.Getenv("UPDATE_SCRIPTS") != "",
		Setup: func(e *testscript.Env) error {
			// Scripts must name their config; a forgotten --config
			// fails instead of reading /etc.
			e.Setenv("DISPATCHER_CONFIG", e.WorkDir+"/no-config-given.conf")
			e.Setenv("USER", "tester")
			e.Setenv("DISPATCHER_TOKEN", "")
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mode":   cmdMode,
			"exits":  cmdExits,
			"expand": cmdExpand,
		},
	})
}

// mode FILE 0640: the file's permission bits are exactly 0640.
func cmdMode(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: mode FILE OCTAL")
	}
	want, err := strconv.ParseUint(args[1], 8, 32)
	if err != nil {
		ts.Fatalf("bad mode %q: %v", args[1], err)
	}
	fi, err := os.Lstat(ts.MkAbs(args[0]))
	ts.Check(err)
	got := fi.Mode().Perm()
	if (uint64(got) == want) == neg {
		ts.Fatalf("%s has mode %04o, want %s%04o", args[0], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

// exits CODE PROG ARGS...: PROG exits with exactly CODE; its output can be
// checked with stdout and stderr afterwards.
func cmdExits(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: exits CODE PROG [ARGS...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("bad exit code %q", args[0])
	}
	err = ts.Exec(args[1], args[2:]...)
	got := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		got = ee.ExitCode()
	case err != nil:
		ts.Fatalf("run %s: %v", args[1], err)
	}
	if got != want {
		ts.Fatalf("%s exited %d, want %d", args[1], got, want)
	}
}

// expand SRC DST: copy SRC to DST with $VARS of the script's environment
// expanded, so config files can name paths under $WORK.
func cmdExpand(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: expand SRC DST")
	}
	data := ts.ReadFile(args[0])
	out := os.Expand(data, ts.Getenv)
	dst := ts.MkAbs(args[1])
	ts.Check(os.MkdirAll(filepath.Dir(dst), 0o755))
	ts.Check(os.WriteFile(dst, []byte(out), 0o640))
}
