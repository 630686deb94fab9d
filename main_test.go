package main

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// roleNames are the names the test binary is installed under in the
// scripts' PATH: every role, plus a name no role claims.
var roleNames = []string{"dispatcher", "dispatcher-agent", "dispatcher-api", "dispatcher-pairing", "dispatcher-linux-amd64"}

func TestMain(m *testing.M) {
	cmds := make(map[string]func(), len(roleNames))
	for _, n := range roleNames {
		cmds[n] = func() { os.Exit(run()) }
	}
	testscript.Main(m, cmds)
}

// scriptCmds are the custom commands of the scripts. Files other than this
// one add theirs from init.
var scriptCmds = map[string]func(ts *testscript.TestScript, neg bool, args []string){
	"mode":        cmdMode,
	"exits":       cmdExits,
	"expand":      cmdExpand,
	"issue-agent": cmdIssueAgent,
	"freeport":    cmdFreePort,
	"waitport":    cmdWaitPort,
	"pid":         cmdPid,
	"signal":      cmdSignal,
	"noproc":      cmdNoProc,
	"waitfile":    cmdWaitFile,
	"rss-below":   cmdRSSBelow,
	"eventually":  cmdEventually,
	"setvar":      cmdSetVar,
	"ca-spki":     cmdCASPKI,
	"mitm":        cmdMITM,
	"notintree":   cmdNotInTree,
	"http":        cmdHTTP,
	"samekey":     cmdSameKey,
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
		Cmds: scriptCmds,
		Condition: func(cond string) (bool, error) {
			if c, ok := scriptConds[cond]; ok {
				return c(), nil
			}
			return false, fmt.Errorf("unknown condition %q", cond)
		},
	})
}

// scriptConds are the conditions scripts may test besides testscript's
// own ([exec:prog], [unix], …); other test files add theirs in init.
var scriptConds = map[string]func() bool{}

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

// issue-agent CADIR HOST DIR [DAYS]: what pairing does, without the
// exchange — a key and a certificate for agent HOST signed by the CA in
// CADIR, valid DAYS days (365 when not given; a short life makes it due
// for renewal), written with the CA certificate to DIR/agent.key (0640),
// agent.crt, ca.crt.
func cmdIssueAgent(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 3 || len(args) > 4 {
		ts.Fatalf("usage: issue-agent CADIR HOST DIR [DAYS]")
	}
	caDir, host, dir := ts.MkAbs(args[0]), args[1], ts.MkAbs(args[2])
	days := 365
	if len(args) == 4 {
		var err error
		if days, err = strconv.Atoi(args[3]); err != nil {
			ts.Fatalf("bad DAYS %q", args[3])
		}
	}
	certPEM, err := os.ReadFile(filepath.Join(caDir, "ca.crt"))
	ts.Check(err)
	keyPEM, err := os.ReadFile(filepath.Join(caDir, "ca.key"))
	ts.Check(err)
	ca, err := pki.LoadCA(certPEM, keyPEM)
	ts.Check(err)
	key, err := pki.GenerateKey(pki.Options{})
	ts.Check(err)
	csrPEM, err := pki.CreateCSR(pki.Options{}, key, host)
	ts.Check(err)
	csr, err := pki.ParseCSR(csrPEM)
	ts.Check(err)
	cert, err := ca.SignAgentCSR(pki.Options{}, csr, host, days)
	ts.Check(err)
	der, err := pki.MarshalKeyPEM(key)
	ts.Check(err)
	ts.Check(os.MkdirAll(dir, 0o755))
	ts.Check(pki.WriteFileAtomic(filepath.Join(dir, "agent.key"), der, 0o640))
	ts.Check(pki.WriteFileAtomic(filepath.Join(dir, "agent.crt"), pki.CertPEM(cert), 0o644))
	ts.Check(pki.WriteFileAtomic(filepath.Join(dir, "ca.crt"), certPEM, 0o644))
}

// freeport VAR: set VAR to a TCP port free on 127.0.0.1 right now.
func cmdFreePort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: freeport VAR")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	port := ln.Addr().(*net.TCPAddr).Port
	ts.Check(ln.Close())
	ts.Setenv(args[0], strconv.Itoa(port))
}

// waitport ADDR: wait (up to 20 s) until something accepts on ADDR.
func cmdWaitPort(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitport HOST:PORT")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", args[0], time.Second)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("nothing listens on %s: %v", args[0], err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findProcs returns the pids whose command line has an argument equal to arg.
func findProcs(ts *testscript.TestScript, arg string) []int {
	ents, err := os.ReadDir("/proc")
	ts.Check(err)
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		for _, a := range strings.Split(string(b), "\x00") {
			if a == arg {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// pid VAR ARG: set VAR to the pid of the one process with argument ARG.
func cmdPid(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: pid VAR ARG")
	}
	pids := findProcs(ts, args[1])
	if len(pids) != 1 {
		ts.Fatalf("want one process with argument %q, found %v", args[1], pids)
	}
	ts.Setenv(args[0], strconv.Itoa(pids[0]))
}

// signal HUP|TERM|INT|KILL ARG: signal the process with argument ARG.
func cmdSignal(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: signal HUP|TERM|INT|KILL ARG")
	}
	sig := map[string]syscall.Signal{"HUP": syscall.SIGHUP, "TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "KILL": syscall.SIGKILL}[args[0]]
	if sig == 0 {
		ts.Fatalf("unknown signal %q", args[0])
	}
	pids := findProcs(ts, args[1])
	if len(pids) != 1 {
		ts.Fatalf("want one process with argument %q, found %v", args[1], pids)
	}
	ts.Check(syscall.Kill(pids[0], sig))
}

// noproc ARG: no process has argument ARG (e.g. a killed script's sleep).
func cmdNoProc(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: noproc ARG")
	}
	// A killed process may take a moment to be reaped.
	deadline := time.Now().Add(5 * time.Second)
	for {
		pids := findProcs(ts, args[0])
		if len(pids) == 0 {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("processes with argument %q still running: %v", args[0], pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitfile PATH: wait (up to 20 s) until PATH exists.
func cmdWaitFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfile PATH")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(ts.MkAbs(args[0])); err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s did not appear", args[0])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rss-below PID MB: the process's peak resident set (VmHWM) is under MB.
func cmdRSSBelow(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: rss-below PID MB")
	}
	limit, err := strconv.Atoi(args[1])
	ts.Check(err)
	status, err := os.ReadFile(filepath.Join("/proc", args[0], "status"))
	ts.Check(err)
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			ts.Check(err)
			ts.Logf("peak RSS of %s: %d MiB", args[0], kb/1024)
			if kb/1024 >= limit {
				ts.Fatalf("peak RSS of %s is %d MiB, want under %d", args[0], kb/1024, limit)
			}
			return
		}
	}
	ts.Fatalf("no VmHWM in /proc/%s/status", args[0])
}

// eventually PROG ARGS...: run PROG until it succeeds, for up to 20 s (for
// effects that land asynchronously, such as a reload after SIGHUP). The
// last run's output can be checked with stdout and stderr.
func cmdEventually(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: eventually PROG [ARGS...]")
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := ts.Exec(args[0], args[1:]...)
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			ts.Fatalf("%s kept failing: %v", args[0], err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// setvar VAR FILE [REGEXP]: set VAR to FILE's content (trimmed), or to the
// first group of REGEXP in it. FILE may be stdout or stderr of the last
// command.
func cmdSetVar(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: setvar VAR FILE [REGEXP]")
	}
	data := ts.ReadFile(args[1])
	val := strings.TrimSpace(data)
	if len(args) == 3 {
		m := regexp.MustCompile(args[2]).FindStringSubmatch(data)
		if len(m) < 2 {
			ts.Fatalf("%s: no match for %q in %q", args[1], args[2], data)
		}
		val = m[1]
	}
	ts.Setenv(args[0], val)
}

// ca-spki VAR CAFILE: set VAR to the CA's public key fingerprint, the form
// --ca-fingerprint takes.
func cmdCASPKI(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: ca-spki VAR CAFILE")
	}
	cert, err := pki.ParseCertPEM([]byte(ts.ReadFile(args[1])))
	ts.Check(err)
	fp, err := pki.Fingerprint(cert.PublicKey)
	ts.Check(err)
	ts.Setenv(args[0], fp)
}

// mitm VAR UPSTREAM: start a TLS-terminating man in the middle in front of
// UPSTREAM (host:port, TLS) with a certificate of its own, set VAR to its
// port. It forwards every request and answer unchanged, appends "METHOD
// PATH" of each request it sees to $WORK/mitm-requests, and stops with the
// script.
func cmdMITM(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: mitm VAR UPSTREAM")
	}
	ca, err := pki.NewCA(pki.Options{}, "mallory")
	ts.Check(err)
	key, err := pki.GenerateKey(pki.Options{})
	ts.Check(err)
	cert, err := ca.IssueDispatcher(pki.Options{}, key.Public(), 1, []string{"localhost", "127.0.0.1"})
	ts.Check(err)
	upstream := args[1]
	proxy := &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}
	counter := ts.MkAbs("mitm-requests")
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			f, err := os.OpenFile(counter, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
			if err == nil {
				fmt.Fprintf(f, "%s %s\n", r.Method, r.URL.Path)
				f.Close()
			}
			out, err := http.NewRequestWithContext(r.Context(), r.Method, "https://"+upstream+r.URL.RequestURI(), r.Body)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			out.Header = r.Header.Clone()
			out.ContentLength = r.ContentLength
			resp, err := proxy.RoundTrip(out)
			if err != nil {
				http.Error(w, err.Error(), http.StatusBadGateway)
				return
			}
			defer resp.Body.Close()
			for k, v := range resp.Header {
				w.Header()[k] = v
			}
			w.WriteHeader(resp.StatusCode)
			_, _ = io.Copy(w, resp.Body)
		}),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw, ca.Cert.Raw}, PrivateKey: key}}},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	ts.Check(err)
	go func() { _ = srv.ServeTLS(ln, "", "") }()
	ts.Defer(func() { _ = srv.Close() })
	ts.Setenv(args[0], strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
}

// notintree DIR STRING: no file under DIR contains STRING (a token that
// must never be stored or logged). Fails if DIR has no files at all, so
// a wrong path cannot pass by accident.
func cmdNotInTree(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: notintree DIR STRING")
	}
	files := 0
	err := filepath.WalkDir(ts.MkAbs(args[0]), func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		files++
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if strings.Contains(string(data), args[1]) {
			ts.Fatalf("%s contains %q", path, args[1])
		}
		return nil
	})
	ts.Check(err)
	if files == 0 {
		ts.Fatalf("no files under %s", args[0])
	}
}

// samekey CERT1 CERT2: the two PEM certificates hold the same public key
// (with !, different keys), e.g. an agent certificate before and after
// renewal.
func cmdSameKey(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: samekey CERT1 CERT2")
	}
	a, err := pki.ParseCertPEM([]byte(ts.ReadFile(args[0])))
	ts.Check(err)
	b, err := pki.ParseCertPEM([]byte(ts.ReadFile(args[1])))
	ts.Check(err)
	if pki.PublicKeysEqual(a.PublicKey, b.PublicKey) == neg {
		ts.Fatalf("%s and %s: same key %t, want %t", args[0], args[1], !neg, neg)
	}
}
