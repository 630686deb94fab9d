package dispatcher

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// The lifecycle commands in-process; testdata/script/lifecycle.txtar runs
// them against real agents.
func TestLifecycleCommands(t *testing.T) {
	w := newWorld(t, true)
	serialOf := func() string {
		c, err := pki.ParseCertPEM(mustReadFile(t, filepath.Join(w.dir, "d.crt")))
		if err != nil {
			t.Fatal(err)
		}
		return pki.FormatSerial(c.SerialNumber)
	}
	first := serialOf()

	stdout, _, code := w.cli(t, "serial-status")
	if code != 0 || stdout != "dispatcher certificate serial "+first+"\nno agents registered\n" {
		t.Errorf("serial-status, no agents: exit %d %q", code, stdout)
	}
	for _, a := range []store.Agent{{Hostname: "web-01", Serial: "0b0670"}, {Hostname: "web-02"}} {
		if err := w.st.PutAgent(a); err != nil {
			t.Fatal(err)
		}
	}

	// Agents are registered: rotate-cert asks, and without an answer
	// changes nothing.
	before := mustReadFile(t, filepath.Join(w.dir, "d.crt"))
	_, stderr, code := w.cli(t, "rotate-cert")
	if code != 1 || !strings.Contains(stderr, "2 agent(s) are registered") || !strings.Contains(stderr, "not confirmed") {
		t.Errorf("rotate-cert unconfirmed: exit %d %q", code, stderr)
	}
	if !bytes.Equal(before, mustReadFile(t, filepath.Join(w.dir, "d.crt"))) {
		t.Fatal("the certificate changed without confirmation")
	}
	stdout, _, code = w.cli(t, "rotate-cert", "--yes", "--json")
	var rot map[string]any
	if err := json.Unmarshal([]byte(stdout), &rot); code != 0 || err != nil {
		t.Fatalf("rotate-cert: exit %d %v %q", code, err, stdout)
	}
	second := serialOf()
	if rot["previous_serial"] != first || rot["serial"] != second || second == first || rot["agents_pending"] != float64(2) {
		t.Errorf("rotate-cert --json: %v", rot)
	}
	stdout, _, _ = w.cli(t, "serial-status")
	if !strings.Contains(stdout, "rotated ") || !strings.Contains(stdout, "from serial "+first) ||
		!strings.Contains(stdout, "\nweb-01    pending") || !strings.Contains(stdout, "\nweb-02    pending") {
		t.Errorf("serial-status after rotation:\n%s", stdout)
	}

	for _, tc := range []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{[]string{"revoke"}, 2, "", "revoke needs one host name or serial"},
		{[]string{"revoke", "web-99"}, 1, "", "neither a registered agent"},
		{[]string{"revoke", "web-02"}, 1, "", "no certificate serial in the registry"},
		{[]string{"revoke", second}, 1, "", "this dispatcher's own certificate"},
		{[]string{"revoke", "web-01", "--reason", "stolen"}, 0, "revoked web-01: certificate serial 0b0670", ""},
		{[]string{"revoke", first, "--json"}, 0, `"kind": "dispatcher"`, ""},
		{[]string{"renew"}, 2, "", "renew needs at least one host"},
	} {
		stdout, stderr, code := w.cli(t, tc.args...)
		if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
			t.Errorf("%v: exit %d\nstdout %q\nstderr %q\nwant exit %d, %q, %q", tc.args, code, stdout, stderr, tc.code, tc.stdout, tc.stderr)
		}
	}
	if set, _, _ := w.st.RevokedDispatcherSerials(); set.Len() != 1 {
		t.Errorf("dispatcher revocations: %v", set.Values())
	}
	stdout, _, _ = w.cli(t, "list-agents")
	if !strings.Contains(stdout, "revoked") {
		t.Errorf("list-agents does not flag the revoked agent:\n%s", stdout)
	}

	// A second rotation retires the certificate it replaces at once.
	stdout, _, code = w.cli(t, "rotate-cert", "--yes", "--revoke-old")
	if code != 0 || !strings.Contains(stdout, "the old certificate (serial "+second+") is revoked") {
		t.Errorf("rotate-cert --revoke-old: exit %d\n%s", code, stdout)
	}
	if set, _, _ := w.st.RevokedDispatcherSerials(); set.Len() != 2 {
		t.Errorf("dispatcher revocations after --revoke-old: %v", set.Values())
	}

	// renew signs with the CA key: without it nothing is contacted.
	if err := os.Remove(filepath.Join(w.dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	_, stderr, code = w.cli(t, "renew", "web-01")
	if code != 1 || !strings.Contains(stderr, "renewing signs with the CA key") {
		t.Errorf("renew without the CA key: exit %d %q", code, stderr)
	}
}
