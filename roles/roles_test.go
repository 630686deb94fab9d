package roles

import (
	"bytes"
	"context"
	"regexp"
	"strings"
	"testing"
)

func TestRoleOf(t *testing.T) {
	for _, c := range []struct{ argv0, want string }{
		{"dispatcher", Dispatcher},
		{"/usr/local/bin/dispatcher", Dispatcher},
		{"dispatcher-agent", Agent},
		{"/usr/local/bin/dispatcher-agent", Agent},
		{"./dispatcher-api", API},
		{"dispatcher-pairing", Pairing},
		{"dispatcher-linux-amd64", Dispatcher},
		{"dispatcher-agent.old", Dispatcher},
		{"", Dispatcher},
	} {
		if got := RoleOf(c.argv0); got != c.want {
			t.Errorf("RoleOf(%q) = %q, want %q", c.argv0, got, c.want)
		}
	}
}

func runMain(args ...string) (code int, stdout, stderr string) {
	var out, errb bytes.Buffer
	code = Main(context.Background(), args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

func TestMainVersionAndUsage(t *testing.T) {
	for _, c := range []struct {
		args     []string
		code     int
		stdout   string // regexp
		stderrRE string
	}{
		{[]string{"dispatcher", "--version"}, 0, `^dispatcher \S+ \(commit \S+, go`, `^$`},
		{[]string{"dispatcher", "agent", "version"}, 0, `^dispatcher-agent `, `^$`},
		{[]string{"/opt/x/dispatcher-api", "--version"}, 0, `^dispatcher-api `, `^$`},
		{[]string{"dispatcher", "pairing", "--version"}, 0, `^dispatcher-pairing `, `^$`},
		{[]string{"dispatcher", "nope"}, 2, `^$`, `unknown command "nope"`},
		{[]string{"dispatcher-agent", "nope"}, 2, `^$`, `^dispatcher-agent: unknown command "nope"`},
		{[]string{"dispatcher", "setup-ca", "--bogus"}, 2, `^$`, `^dispatcher: flag provided but not defined: -bogus \(see dispatcher setup-ca --help\)`},
		{[]string{"dispatcher"}, 2, `^$`, `USAGE`},
	} {
		code, out, errs := runMain(c.args...)
		if code != c.code {
			t.Errorf("%q: exit %d, want %d (stderr %q)", c.args, code, c.code, errs)
		}
		if !regexp.MustCompile(c.stdout).MatchString(out) {
			t.Errorf("%q: stdout %q does not match %q", c.args, out, c.stdout)
		}
		if !regexp.MustCompile(c.stderrRE).MatchString(errs) {
			t.Errorf("%q: stderr %q does not match %q", c.args, errs, c.stderrRE)
		}
	}
}
