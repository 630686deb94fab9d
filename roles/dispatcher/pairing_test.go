package dispatcher

import (
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// request queues a pairing request for host as the pairing listener
// would, and returns it.
func (w *world) request(t *testing.T, host string) control.PendingRequest {
	t.Helper()
	p, err := control.NewPairing(control.PairingOptions{Queue: w.st, Registry: w.st, Revocations: w.st})
	if err != nil {
		t.Fatal(err)
	}
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.CreateCSR(pki.Options{}, key, host)
	if err != nil {
		t.Fatal(err)
	}
	pr, err := p.Submit(wire.PairRequest{Hostname: host, CSR: string(csr), Nonce: "feedfacefeedfacefeedfacefeedface", Port: 7450},
		"192.0.2.5", []byte("leaf"))
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

func TestPairingCommands(t *testing.T) {
	w := newWorld(t, true)

	stdout, _, code := w.cli(t, "list-requests")
	if code != 0 || stdout != "no pairing requests pending\n" {
		t.Errorf("list-requests, none: exit %d %q", code, stdout)
	}
	r1 := w.request(t, "web-01")
	r2 := w.request(t, "web-02")

	stdout, _, code = w.cli(t, "list-requests")
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if code != 0 || len(lines) != 4 || !regexp.MustCompile(`^REQID +HOSTNAME +IP +CODE +AGE +TAGS +FLAG$`).MatchString(lines[0]) ||
		!regexp.MustCompile(`^-+  -+  -+  -+  -+  -+  -+$`).MatchString(lines[1]) ||
		!regexp.MustCompile(`^`+r1.ReqID+`  web-01    192\.0\.2\.5  `+r1.Code+`  [0-9]+s$`).MatchString(lines[2]) ||
		!strings.HasPrefix(lines[3], r2.ReqID+"  web-02") {
		t.Errorf("list-requests: exit %d\n%s", code, stdout)
	}
	stdout, _, code = w.cli(t, "list-requests", "--json")
	var lr struct {
		OK       bool             `json:"ok"`
		Requests []map[string]any `json:"requests"`
	}
	if err := json.Unmarshal([]byte(stdout), &lr); err != nil || code != 0 || !lr.OK || len(lr.Requests) != 2 {
		t.Fatalf("list-requests --json: exit %d %v\n%s", code, err, stdout)
	}
	if got := lr.Requests[0]; got["reqid"] != r1.ReqID || got["code"] != r1.Code || got["hostname"] != "web-01" ||
		got["port"] != float64(7450) || got["already_paired"] != false || !cmp.Equal(got["tags"], map[string]any{}) {
		t.Errorf("list-requests --json: %v", got)
	}
	if strings.Contains(stdout, r1.Nonce) || strings.Contains(stdout, "CERTIFICATE REQUEST") {
		t.Errorf("list-requests shows the nonce or the CSR:\n%s", stdout)
	}

	// approve signs and registers.
	stdout, stderr, code := w.cli(t, "approve", r1.ReqID)
	if code != 0 || !regexp.MustCompile(`^approved web-01 \(reqid `+r1.ReqID+`\): certificate serial [0-9a-f]{32}, expires [A-Z][a-z]{2} [ 0-9]\d \d\d:\d\d:\d\d \d{4} GMT\n$`).MatchString(stdout) {
		t.Errorf("approve: exit %d %q %q", code, stdout, stderr)
	}
	rec, err := w.st.GetAgent("web-01")
	if err != nil || rec.IP != "192.0.2.5" || rec.Port != 7450 || rec.ReqID != r1.ReqID || rec.KeyFingerprint == "" {
		t.Errorf("registry after approve: %+v, %v", rec, err)
	}
	_, stderr, code = w.cli(t, "approve", r1.ReqID)
	if code != 1 || !strings.Contains(stderr, "already approved") {
		t.Errorf("approve twice: exit %d %q", code, stderr)
	}

	// deny tells the agent why.
	stdout, _, code = w.cli(t, "deny", r2.ReqID, "--reason", "unknown machine", "--json")
	var dj map[string]any
	if err := json.Unmarshal([]byte(stdout), &dj); err != nil || code != 0 || dj["ok"] != true || dj["reason"] != "unknown machine" {
		t.Errorf("deny --json: exit %d %s", code, stdout)
	}
	if r, _ := w.st.GetPairRequest(r2.ReqID); r.Status != store.PairDenied || r.Reason != "unknown machine" {
		t.Errorf("denied request: %+v", r)
	}

	// Re-pairing web-01: flagged, refused without --replace, revoking with it.
	r3 := w.request(t, "web-01")
	stdout, _, _ = w.cli(t, "list-requests")
	if !regexp.MustCompile(`(?m)^` + r3.ReqID + `  web-01 .*  ALREADY PAIRED$`).MatchString(stdout) {
		t.Errorf("re-pairing request not flagged:\n%s", stdout)
	}
	_, stderr, code = w.cli(t, "approve", r3.ReqID)
	if code != 1 || !strings.Contains(stderr, "web-01 is already paired (serial "+rec.Serial+"); approve with --replace to re-pair it and revoke the old certificate") {
		t.Errorf("approve a registered host: exit %d %q", code, stderr)
	}
	stdout, _, code = w.cli(t, "approve", r3.ReqID, "--replace", "--json")
	var aj map[string]any
	if err := json.Unmarshal([]byte(stdout), &aj); err != nil || code != 0 || aj["revoked"] != rec.Serial || aj["hostname"] != "web-01" {
		t.Errorf("approve --replace --json: exit %d %s", code, stdout)
	}
	if revoked := string(mustReadFile(t, filepath.Join(w.dir, "state", "revoked-serials"))); !strings.Contains(revoked, "\n"+rec.Serial+"\n") {
		t.Errorf("revoked-serials:\n%s", revoked)
	}

	// Usage mistakes and unknown ids.
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"approve"}, 2, "approve needs one request id"},
		{[]string{"deny", "a", "b"}, 2, "deny needs one request id"},
		{[]string{"unpair"}, 2, "unpair needs one host name"},
		{[]string{"approve", "0000000000000000"}, 1, "see dispatcher list-requests"},
		{[]string{"approve", "../x"}, 1, "request id"},
		{[]string{"deny", "0000000000000000", "--json"}, 1, `"ok": false`},
	} {
		stdout, stderr, code := w.cli(t, c.args...)
		if code != c.code || !strings.Contains(stdout+stderr, c.want) {
			t.Errorf("%q: exit %d %q %q; want %d and %q", c.args, code, stdout, stderr, c.code, c.want)
		}
	}
}

// TestListRequestsTags: the operator sees the tags an agent claims before
// approving, written as list-agents writes them.
func TestListRequestsTags(t *testing.T) {
	w := newWorld(t, true)
	now := time.Now()
	r, err := w.st.AddPairRequest(store.PairRequest{Hostname: "web-01", IP: "192.0.2.5", Port: 7450, Code: "123456",
		Created: now, Expires: now.Add(time.Hour), Tags: map[string]string{"role": "web", "env": "prod"}}, 0)
	if err != nil {
		t.Fatal(err)
	}
	stdout, _, code := w.cli(t, "list-requests")
	lines := strings.Split(strings.TrimSuffix(stdout, "\n"), "\n")
	if code != 0 || len(lines) != 3 ||
		!regexp.MustCompile(`^`+r.ReqID+`  web-01    192\.0\.2\.5  123456  [0-9]+s +env=prod,role=web$`).MatchString(lines[2]) {
		t.Errorf("list-requests: exit %d\n%s", code, stdout)
	}
	stdout, _, code = w.cli(t, "list-requests", "--json")
	var lr struct {
		Requests []struct {
			Tags map[string]string `json:"tags"`
		} `json:"requests"`
	}
	if err := json.Unmarshal([]byte(stdout), &lr); err != nil || code != 0 || len(lr.Requests) != 1 {
		t.Fatalf("list-requests --json: exit %d %v\n%s", code, err, stdout)
	}
	if d := cmp.Diff(map[string]string{"env": "prod", "role": "web"}, lr.Requests[0].Tags); d != "" {
		t.Errorf("list-requests --json tags (-want +got):\n%s", d)
	}
}

func TestListAgentsAndUnpair(t *testing.T) {
	w := newWorld(t, true)
	stdout, _, code := w.cli(t, "list-agents")
	if code != 0 || !strings.HasPrefix(stdout, "no agents registered") {
		t.Errorf("list-agents, none: exit %d %q", code, stdout)
	}
	stdout, _, _ = w.cli(t, "list-agents", "--json")
	if strings.TrimSpace(stdout) != "[]" {
		t.Errorf("list-agents --json, none: %q", stdout)
	}
	contact := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	// Expiries relative to now: far off, within the 30-day warning, and
	// long past (a Perl record: no port, no serial).
	now := time.Now()
	far, soon := pki.FormatOpenSSLTime(now.Add(400*24*time.Hour)), pki.FormatOpenSSLTime(now.Add(10*24*time.Hour))
	for _, a := range []store.Agent{
		{Hostname: "web-02", IP: "10.0.0.2", Port: 7450, Paired: "2026-04-01T10:00:00Z", Expiry: soon, Serial: "c0ffee", Tags: map[string]string{"role": "web", "env": "prod"}, LastContact: contact},
		{Hostname: "db-01", IP: "10.0.0.9", Paired: "2025-01-01T00:00:00", Expiry: "Jan  1 00:00:00 2026 GMT"},
		{Hostname: "web-01", IP: "10.0.0.1", Port: 7443, Paired: "2026-04-02T10:00:00Z", Expiry: far, Serial: "1234"},
	} {
		if err := w.st.PutAgent(a); err != nil {
			t.Fatal(err)
		}
	}
	stdout, _, code = w.cli(t, "list-agents")
	want := `HOSTNAME  IP        PORT  PAIRED                EXPIRY                    SERIAL  TAGS               LAST CONTACT          NOTE
--------  --------  ----  --------------------  ------------------------  ------  -----------------  --------------------  ---------------------------------------------------
db-01     10.0.0.9        2025-01-01T00:00:00   Jan  1 00:00:00 2026 GMT                                                   EXPIRED: re-pair (dispatcher-agent request-pairing)
web-01    10.0.0.1  7443  2026-04-02T10:00:00Z  ` + far + `  1234
web-02    10.0.0.2  7450  2026-04-01T10:00:00Z  ` + soon + `  c0ffee  env=prod,role=web  2026-05-01T12:00:00Z  WARN expires in 9d
`
	if d := cmp.Diff(want, stdout); code != 0 || d != "" {
		t.Errorf("list-agents: exit %d (-want +got):\n%s", code, d)
	}
	stdout, _, _ = w.cli(t, "list-agents", "--json")
	var got []map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); err != nil {
		t.Fatalf("%v\n%s", err, stdout)
	}
	if v, ok := got[0]["expires_in_days"].(float64); !ok || v >= 0 {
		t.Errorf("db-01 expires_in_days = %v, want negative", got[0]["expires_in_days"])
	}
	delete(got[0], "expires_in_days")
	wantJSON := []map[string]any{
		{"hostname": "db-01", "ip": "10.0.0.9", "paired_at": "2025-01-01T00:00:00", "cert_expiry": "Jan  1 00:00:00 2026 GMT", "serial": "", "tags": map[string]any{},
			"expired": true, "note": "EXPIRED: re-pair (dispatcher-agent request-pairing)"},
		{"hostname": "web-01", "ip": "10.0.0.1", "port": float64(7443), "paired_at": "2026-04-02T10:00:00Z", "cert_expiry": far, "serial": "1234", "tags": map[string]any{},
			"expires_in_days": float64(399)},
		{"hostname": "web-02", "ip": "10.0.0.2", "port": float64(7450), "paired_at": "2026-04-01T10:00:00Z", "cert_expiry": soon, "serial": "c0ffee",
			"tags": map[string]any{"role": "web", "env": "prod"}, "last_contact": "2026-05-01T12:00:00Z",
			"expires_in_days": float64(9), "expiry_warning": true, "note": "WARN expires in 9d"},
	}
	if d := cmp.Diff(wantJSON, got); d != "" {
		t.Errorf("list-agents --json (-want +got):\n%s", d)
	}

	stdout, _, code = w.cli(t, "unpair", "web-01")
	if code != 0 || stdout != "unpaired web-01: record removed, certificate serial 1234 revoked\n" {
		t.Errorf("unpair: exit %d %q", code, stdout)
	}
	set, _, err := w.st.RevokedSerials()
	if err != nil || !set.Contains(big.NewInt(0x1234)) || set.Contains(big.NewInt(1234)) {
		t.Errorf("revoked after unpair: %v %v", set.Values(), err)
	}
	if _, err := w.st.GetAgent("web-01"); err == nil {
		t.Error("web-01 still registered")
	}
	_, stderr, code := w.cli(t, "unpair", "web-01")
	if code != 1 || !strings.Contains(stderr, "web-01 is not paired (see dispatcher list-agents)") {
		t.Errorf("unpair twice: exit %d %q", code, stderr)
	}
	stdout, _, code = w.cli(t, "unpair", "db-01")
	if code != 0 || !strings.Contains(stdout, "no certificate serial recorded") {
		t.Errorf("unpair a Perl record: exit %d %q", code, stdout)
	}
	logs := string(mustReadFile(t, filepath.Join(w.dir, "log")))
	if !strings.Contains(logs, "ACTION=unpair") || !strings.Contains(logs, "ACTION=revoke") {
		t.Errorf("log:\n%s", logs)
	}
}

func TestApproveWithoutCA(t *testing.T) {
	w := newWorld(t, true)
	r := w.request(t, "web-01")
	if err := os.Remove(filepath.Join(w.dir, "ca.key")); err != nil {
		t.Fatal(err)
	}
	_, stderr, code := w.cli(t, "approve", r.ReqID)
	if code != 1 || !strings.Contains(stderr, "no usable ca") || !strings.Contains(stderr, "approving signs with the CA key") {
		t.Errorf("approve without the CA key: exit %d %q", code, stderr)
	}
	if got, _ := w.st.GetPairRequest(r.ReqID); got.Status != store.PairPending {
		t.Errorf("request after a failed approval: %s", got.Status)
	}
}

func mustReadFile(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
