package hook

import (
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// examplePath is the example hook shipped in packaging/.
const examplePath = "../packaging/auth-hook.example"

func exampleHook(t *testing.T) (path, text string) {
	t.Helper()
	path, err := filepath.Abs(examplePath)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, string(b)
}

// enable switches examples of the hook's text on the way its header tells
// operators to: the first "#" of every line from "## BEGIN example: NAME"
// to "## END example: NAME" goes.
func enable(t *testing.T, text string, names ...string) string {
	t.Helper()
	lines := strings.Split(text, "\n")
	for _, name := range names {
		begin, end := "## BEGIN example: "+name, "## END example: "+name
		in, found := false, false
		for i, line := range lines {
			if line == begin {
				if found {
					t.Fatalf("example %q begins twice", name)
				}
				in, found = true, true
			}
			if !in {
				continue
			}
			if !strings.HasPrefix(line, "#") {
				t.Fatalf("line %d of example %q is not commented out: %q", i+1, name, line)
			}
			lines[i] = line[1:]
			if line == end {
				in = false
			}
		}
		if !found || in {
			t.Fatalf("example %q has no BEGIN and END markers", name)
		}
	}
	return strings.Join(lines, "\n")
}

// writeExample writes text as an executable hook, the token file path
// replaced by tokens.
func writeExample(t *testing.T, text, tokens string) string {
	t.Helper()
	const shipped = "TOKENS=/etc/dispatcher/hook-tokens"
	if strings.Count(text, shipped) != 1 {
		t.Fatalf("the example does not set %s exactly once", shipped)
	}
	text = strings.Replace(text, shipped, "TOKENS="+tokens, 1)
	return writeFile(t, filepath.Join(t.TempDir(), "auth-hook"), text, 0o755)
}

func TestExampleHookSyntax(t *testing.T) {
	t.Parallel()
	path, text := exampleHook(t)
	if out, err := osexec.Command("/bin/sh", "-n", path).CombinedOutput(); err != nil {
		t.Errorf("sh -n %s: %v\n%s", examplePath, err, out)
	}
	all := enable(t, text, "token", "arguments", "per-script", "allow-rest")
	p := writeExample(t, all, "/nonexistent")
	if out, err := osexec.Command("/bin/sh", "-n", p).CombinedOutput(); err != nil {
		t.Errorf("sh -n on the example with every block enabled: %v\n%s", err, out)
	}
}

// As shipped, the example denies everything, and is run as it is.
func TestExampleHookDeniesByDefault(t *testing.T) {
	t.Parallel()
	path, _ := exampleHook(t)
	r := &Runner{Path: path, Timeout: testTimeout}
	for _, c := range []Context{
		testContext(),
		{Action: "ping", Username: "root", Token: testToken, SourceIP: "127.0.0.1"},
		{Action: "discovery", SourceIP: "192.0.2.1"},
	} {
		got := check(t, t.Context(), r, c)
		if diff := cmp.Diff(Decision{Denied, "denied by auth hook"}, got); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", c.Action, diff)
		}
	}
}

func TestExampleHookAllowAll(t *testing.T) {
	t.Parallel()
	_, text := exampleHook(t)
	r := &Runner{Path: writeExample(t, enable(t, text, "allow-rest"), "/nonexistent"), Timeout: testTimeout}
	for _, c := range []Context{
		testContext(),
		{Action: "ping"},
		{Action: "discovery", SourceIP: "192.0.2.1"},
	} {
		if got := check(t, t.Context(), r, c); !got.Allowed() {
			t.Errorf("%s: %v", c.Action, got)
		}
	}
}

func TestExampleHookToken(t *testing.T) {
	t.Parallel()
	_, text := exampleHook(t)
	tokens := writeFile(t, filepath.Join(t.TempDir(), "hook-tokens"),
		"# user token\n\nalice "+testToken+"\nbob other-token-of-bob\ncarol last-line-without-newline", 0o600)
	r := &Runner{Path: writeExample(t, enable(t, text, "token", "allow-rest"), tokens), Timeout: testTimeout}
	allow := Decision{Outcome: Allow}
	badCreds := Decision{BadCredentials, "bad credentials"}
	tests := []struct {
		user, token, action string
		want                Decision
	}{
		{"alice", testToken, "run", allow},
		{"bob", "other-token-of-bob", "ping", allow},
		{"carol", "last-line-without-newline", "run", allow},
		{"alice", "other-token-of-bob", "run", badCreds},
		{"bob", testToken, "run", badCreds},
		{"alice", testToken + "x", "run", badCreds},
		{"alice", "", "run", badCreds},
		{"", "", "run", badCreds},
		{"#", "user", "run", badCreds},
		{"", "", "discovery", allow},
	}
	for _, tt := range tests {
		c := testContext()
		c.Username, c.Token, c.Action = tt.user, tt.token, tt.action
		got := check(t, t.Context(), r, c)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s %q with token %q: (-want +got):\n%s", tt.action, tt.user, tt.token, diff)
		}
	}

	// No token file: denied, not skipped.
	r = &Runner{Path: writeExample(t, enable(t, text, "token", "allow-rest"), "/nonexistent/hook-tokens"), Timeout: testTimeout}
	if got := check(t, t.Context(), r, testContext()); got != (Decision{Denied, "denied by auth hook"}) {
		t.Errorf("without the token file: %v", got)
	}
}

func TestExampleHookArguments(t *testing.T) {
	t.Parallel()
	_, text := exampleHook(t)
	r := &Runner{Path: writeExample(t, enable(t, text, "arguments", "allow-rest"), "/nonexistent"), Timeout: testTimeout}
	denied := Decision{Denied, "denied by auth hook"}
	tests := []struct {
		name   string
		user   string
		script string
		args   []string
		want   Decision
		jq     bool // the answer depends on jq
	}{
		{"plain", "bob", "deploy", []string{"--env=staging"}, Decision{Outcome: Allow}, true},
		{"force", "alice", "deploy", []string{"x", "--force"}, denied, false},
		{"force inside an argument is not --force", "bob", "deploy", []string{"--force-color"}, Decision{Outcome: Allow}, true},
		{"production by bob", "bob", "deploy", []string{"--env=prod"}, Decision{InsufficientPrivilege, "insufficient privilege"}, true},
		{"production by alice", "alice", "deploy", []string{"--env=prod"}, Decision{Outcome: Allow}, true},
		{"an argument hiding --env=prod", "bob", "deploy", []string{"--note=\"--env=prod\""}, Decision{Outcome: Allow}, true},
		{"another script", "bob", "uptime", []string{"--env=prod"}, Decision{Outcome: Allow}, true},
	}
	_, jqErr := osexec.LookPath("jq")
	for _, tt := range tests {
		if tt.jq && jqErr != nil {
			continue // without jq the example denies every run: checked below
		}
		c := testContext()
		c.Username, c.Script, c.Args = tt.user, tt.script, tt.args
		got := check(t, t.Context(), r, c)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s: (-want +got):\n%s", tt.name, diff)
		}
	}
	if jqErr != nil {
		t.Logf("jq not installed: only checking that runs are denied")
		if got := check(t, t.Context(), r, testContext()); got != denied {
			t.Errorf("without jq: %v", got)
		}
	}
}

func TestExampleHookPerScript(t *testing.T) {
	t.Parallel()
	_, text := exampleHook(t)
	r := &Runner{Path: writeExample(t, enable(t, text, "per-script"), "/nonexistent"), Timeout: testTimeout}
	allow := Decision{Outcome: Allow}
	tests := []struct {
		action, script, user string
		want                 Decision
	}{
		{"ping", "", "anyone", allow},
		{"discovery", "", "", allow},
		{"run", "uptime", "anyone", allow},
		{"run", "disk-usage", "anyone", allow},
		{"run", "deploy", "alice", allow},
		{"run", "restart-web", "bob", allow},
		{"run", "deploy", "mallory", Decision{InsufficientPrivilege, "insufficient privilege"}},
		{"run", "restart-db", "mallory", Decision{InsufficientPrivilege, "insufficient privilege"}},
		{"run", "wipe-disks", "alice", Decision{Denied, "denied by auth hook"}},
	}
	for _, tt := range tests {
		c := testContext()
		c.Action, c.Script, c.Username = tt.action, tt.script, tt.user
		got := check(t, t.Context(), r, c)
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s %s by %s: (-want +got):\n%s", tt.action, tt.script, tt.user, diff)
		}
	}
}
