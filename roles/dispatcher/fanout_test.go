package dispatcher

import (
	"bytes"
	"encoding/json"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// world is a dispatcher set up in a temporary directory: CA, identity and
// a config file, and a state directory with a registry.
type world struct {
	dir  string
	conf string
	st   *store.Files
}

func newWorld(t *testing.T, withIdentity bool) *world {
	t.Helper()
	dir := t.TempDir()
	w := &world{dir: dir, conf: filepath.Join(dir, "dispatcher.conf"), st: store.NewFiles(filepath.Join(dir, "state"))}
	conf := "ca = \"" + dir + "/ca.crt\"\ncert = \"" + dir + "/d.crt\"\nkey = \"" + dir + "/d.key\"\n" +
		"state_dir = \"" + dir + "/state\"\nlog = \"" + dir + "/log\"\nconnect_timeout = 2\n"
	if err := os.WriteFile(w.conf, []byte(conf), 0o640); err != nil {
		t.Fatal(err)
	}
	if withIdentity {
		ca := pkitest.NewCA(t)
		ca.WriteFiles(t, dir)
		certPEM, keyPEM := pkitest.PEM(t, ca.Dispatcher(t))
		for name, b := range map[string][]byte{"d.crt": certPEM, "d.key": keyPEM} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return w
}

// cli runs the dispatcher commands as roles.Main does (options anywhere,
// exit code from the error) and returns stdout, stderr and the exit code.
func (w *world) cli(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	app := &cli.App{
		Name: "dispatcher", Writer: &stdout, ErrWriter: &stderr, Reader: strings.NewReader(""),
		Commands:       Commands(),
		ExitErrHandler: func(*cli.Context, error) {},
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return cmdutil.Usagef("%v", err)
		},
	}
	for _, c := range app.Commands {
		c.OnUsageError = app.OnUsageError
	}
	args = append([]string{"--config", w.conf}, args...)
	err := app.Run(append([]string{"dispatcher"}, cmdutil.Permute(app, args)...))
	if err != nil {
		var ee *cmdutil.ExitError
		if !(errorsAs(err, &ee) && ee.Err == nil) {
			stderr.WriteString("dispatcher: " + err.Error() + "\n")
		}
	}
	return stdout.String(), stderr.String(), cmdutil.Code(err)
}

func errorsAs(err error, target **cmdutil.ExitError) bool {
	ee, ok := err.(*cmdutil.ExitError)
	if ok {
		*target = ee
	}
	return ok
}

func deadPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestRunUnreachableThenStatus(t *testing.T) {
	w := newWorld(t, true)
	if err := w.st.PutAgent(store.Agent{Hostname: "web-01.invalid", IP: "127.0.0.1", Port: deadPort(t)}); err != nil {
		t.Fatal(err)
	}
	stdout, stderr, code := w.cli(t, "run", "web-01.invalid", "deploy", "--token", "tok", "--", "--json", "x")
	if code != 1 {
		t.Errorf("exit %d, want 1\n%s%s", code, stdout, stderr)
	}
	if !regexp.MustCompile(`^==> web-01\.invalid  \[FAIL  exit:-1  \d+ms\]\nERROR: connect to 127\.0\.0\.1:\d+: connection refused\n$`).MatchString(stdout) {
		t.Errorf("stdout:\n%s", stdout)
	}
	m := regexp.MustCompile(`reqid ([0-9a-f]{16}): 1 hosts, 1 failed`).FindStringSubmatch(stderr)
	if m == nil {
		t.Fatalf("no reqid on stderr:\n%s", stderr)
	}

	// The run was stored, with the arguments after -- untouched.
	stdout, _, code = w.cli(t, "status", m[1], "--json")
	if code != 1 {
		t.Errorf("status of a failed run: exit %d, want 1", code)
	}
	var st struct {
		OK      bool     `json:"ok"`
		Status  string   `json:"status"`
		Args    []string `json:"args"`
		Results []store.Result
	}
	if err := json.Unmarshal([]byte(stdout), &st); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if st.OK || st.Status != "done" || !cmp.Equal(st.Args, []string{"--json", "x"}) || len(st.Results) != 1 || st.Results[0].Exit != -1 {
		t.Errorf("status: %+v", st)
	}
	stdout, _, _ = w.cli(t, "status", m[1])
	if !strings.Contains(stdout, "reqid     "+m[1]+"\n") || !strings.Contains(stdout, "==> web-01.invalid  [FAIL") {
		t.Errorf("status:\n%s", stdout)
	}

	// --json: the SPEC shape, exit 1, nothing on stderr but the log.
	stdout, _, code = w.cli(t, "--json", "run", "web-01.invalid", "deploy")
	var rep struct {
		OK      *bool          `json:"ok"`
		ReqID   string         `json:"reqid"`
		Results []store.Result `json:"results"`
	}
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil || rep.OK == nil || *rep.OK || code != 1 || len(rep.ReqID) != 16 {
		t.Errorf("run --json: exit %d, %v\n%s", code, err, stdout)
	}
	if log, _ := os.ReadFile(filepath.Join(w.dir, "log")); bytes.Contains(log, []byte("tok")) || !bytes.Contains(log, []byte("ACTION=dispatch")) {
		t.Errorf("log:\n%s", log)
	}
}

func TestPingUnreachable(t *testing.T) {
	w := newWorld(t, true)
	if err := w.st.PutAgent(store.Agent{Hostname: "web-01.invalid", IP: "127.0.0.1", Port: deadPort(t)}); err != nil {
		t.Fatal(err)
	}
	stdout, _, code := w.cli(t, "ping", "web-01.invalid")
	lines := strings.Split(stdout, "\n")
	if code != 1 || len(lines) != 4 || !strings.HasPrefix(lines[0], "HOST ") || !strings.HasPrefix(lines[1], "----") ||
		!strings.HasPrefix(lines[2], "web-01.invalid  error") {
		t.Errorf("ping: exit %d\n%s", code, stdout)
	}
}

func TestRunRefusals(t *testing.T) {
	w := newWorld(t, true)
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run", "deploy"}, 2, "at least one host (or --all, or --tag key=value) and a script"},
		{[]string{"run"}, 2, "at least one host (or --all, or --tag key=value) and a script"},
		{[]string{"run", "h", "s", "--timeout", "soon"}, 2, "--timeout"},
		{[]string{"run", "h", "s", "--stream", "--json"}, 2, "cannot be combined"},
		{[]string{"run", "h", "s", "--parallel", "-1"}, 2, "--parallel"},
		{[]string{"run", "../h", "s"}, 1, `host "../h"`},
		{[]string{"run", "h", "h:7443", "s"}, 1, "given twice"},
		{[]string{"run", "help", "s", "--timeout", "x"}, 2, "--timeout"}, // "help" is a host here
		{[]string{"run", "h", "s", "--max-failures", "1"}, 2, "--max-failures is checked between batches: set --batch too, or use --fail-fast"},
		{[]string{"run", "h", "s", "--batch-wait", "5s"}, 2, "--batch-wait is the pause between batches: set --batch too"},
		{[]string{"run", "h", "s", "--batch", "0%"}, 2, "--batch 0%: want at least 1 host"},
		{[]string{"run", "h", "s", "--batch", "x"}, 2, `--batch "x": want a number of hosts`},
		{[]string{"run", "--not-tag", "env=prod", "s"}, 2, "--not-tag narrows --all or --tag"},
		{[]string{"run", "--retry-failed", "0123456789abcdef", "h", "s"}, 2, "--retry-failed takes the script"},
		{[]string{"ping"}, 2, "at least one host"},
		{[]string{"status"}, 2, "one request id"},
		{[]string{"status", "../x"}, 1, "request id"},
	} {
		stdout, stderr, code := w.cli(t, c.args...)
		if code != c.code || !strings.Contains(stdout+stderr, c.want) { // --json errors are on stdout
			t.Errorf("%q: exit %d, output %q; want %d and %q", c.args, code, stdout+stderr, c.code, c.want)
		}
	}
	// Without the dispatcher identity: say what to do.
	bare := newWorld(t, false)
	_, stderr, code := bare.cli(t, "run", "web-01", "deploy")
	if code != 1 || !strings.Contains(stderr, "setup-dispatcher") {
		t.Errorf("without identity: exit %d, %q", code, stderr)
	}
	stdout, _, code := bare.cli(t, "ping", "web-01", "--json")
	if code != 1 || !strings.Contains(stdout, `"ok": false`) || !strings.Contains(stdout, "setup-dispatcher") {
		t.Errorf("ping --json without identity: exit %d, %q", code, stdout)
	}
}

func TestLockConflictJSON(t *testing.T) {
	w := newWorld(t, true)
	release, err := w.st.Acquire(store.LockHolder{PID: 1, ReqID: "other", User: "bob", Started: time.Now()},
		[]store.LockKey{{Host: "web-02", Script: "deploy"}})
	if err != nil {
		t.Fatal(err)
	}
	defer release()

	stdout, _, code := w.cli(t, "list-locks")
	if code != 0 || !regexp.MustCompile(`(?m)^web-02  deploy  1    bob   other `).MatchString(stdout) {
		t.Errorf("list-locks: exit %d\n%s", code, stdout)
	}
	stdout, _, code = w.cli(t, "run", "web-01", "web-02", "deploy", "--json")
	var v struct {
		OK        bool     `json:"ok"`
		Error     string   `json:"error"`
		Conflicts []string `json:"conflicts"`
	}
	if err := json.Unmarshal([]byte(stdout), &v); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if code != 1 || v.OK || !cmp.Equal(v.Conflicts, []string{"web-02:deploy"}) || !strings.Contains(v.Error, "web-02:deploy") {
		t.Errorf("conflict: exit %d %+v", code, v)
	}
	if names, _ := os.ReadDir(filepath.Join(w.dir, "state", "runs")); len(names) != 0 {
		t.Errorf("a refused run was stored: %v", names)
	}
}

func TestSplitRunArgs(t *testing.T) {
	hosts, script, args, err := splitRunArgs([]string{"a", "b:7450", "deploy", "--", "--x", "--", "y z"}, false)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]any{[]string{"a", "b:7450"}, "deploy", []string{"--x", "--", "y z"}}, []any{hosts, script, args}); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if _, _, args, _ := splitRunArgs([]string{"a", "s"}, false); args != nil {
		t.Errorf("args without --: %q", args)
	}
	for in, want := range map[string]time.Duration{"": 0, "0": 0, "30": 30 * time.Second, "90s": 90 * time.Second, "1m": time.Minute} {
		if got, err := parseTimeout(in); err != nil || got != want {
			t.Errorf("parseTimeout(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := parseTimeout("-5"); err == nil {
		t.Error("negative timeout accepted")
	}
}
