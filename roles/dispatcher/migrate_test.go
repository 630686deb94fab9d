package dispatcher

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/internal/testfs"
	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// perlWorld is /etc/dispatcher and /var/lib/dispatcher as the Perl
// dispatcher 0.5.x leaves them, under dir: RSA keys (2048 bits here, 4096
// there: the test would take seconds), v1 certificates, a legacy
// dispatcher.conf with a key this version does not know, Perl registry
// records (one pending after a rotation), rotation.json, a free lock file
// and revoked-serials in the Perl forms.
func perlWorld(t *testing.T) (dir, conf string) {
	t.Helper()
	dir = t.TempDir()
	etc, state := filepath.Join(dir, "etc"), filepath.Join(dir, "state")
	caKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	dKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	testfs.WriteFiles(t, etc, map[string]string{
		"ca.crt":         v1CertString(t, "Perl Dispatcher CA", "Perl Dispatcher CA", 0x3c1f, &caKey.PublicKey, caKey, now.AddDate(-1, 0, 0), now.AddDate(9, 0, 0)),
		"dispatcher.crt": v1CertString(t, "dispatcher", "Perl Dispatcher CA", 2, &dKey.PublicKey, caKey, now.AddDate(-1, 0, 0), now.AddDate(1, 0, 0)),
		"ca.serial":      "05\n",
	}, 0o644)
	testfs.WriteFiles(t, etc, map[string]string{
		"ca.key":         string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(caKey)})),
		"dispatcher.key": string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(dKey)})),
	}, 0o600)
	conf = filepath.Join(etc, "dispatcher.conf")
	testfs.WriteFiles(t, etc, map[string]string{"dispatcher.conf": "# Perl dispatcher 0.5.4\n" +
		"ca = " + etc + "/ca.crt\ncert = " + etc + "/dispatcher.crt\nkey = " + etc + "/dispatcher.key\n" +
		"state_dir = " + state + "   # registry, locks, runs\ntimeout = 60\nca_serial = " + etc + "/ca.serial\n"}, 0o640)
	exp := pki.FormatOpenSSLTime(now.AddDate(0, 11, 0))
	testfs.WriteFiles(t, state, map[string]string{
		"agents/web-01.json": `{"hostname":"web-01","ip":"10.0.0.5","paired":"2025-06-01T10:00:00Z","expiry":"` + exp + `","reqid":"a1b2c3d4e5f60718"}`,
		"agents/web-02.json": `{"hostname":"web-02","ip":"10.0.0.6","paired":"2025-09-01T10:00:00Z","expiry":"` + exp + `","reqid":"b1b2c3d4e5f60718",` +
			`"serial_status":"current","dispatcher_serial":"02","serial_confirmed":"2025-09-01T10:00:00Z"}`,
		"rotation.json":             `{"current_serial":"02","previous_serial":"01","rotated_at":"2025-08-30T00:00:00Z","overlap_expires":"2025-09-06T00:00:00Z"}`,
		"locks/web-01--deploy.lock": "",
		"revoked-serials":           "0A:1B\nserial=03\n",
	}, 0o640)
	return dir, conf
}

// The Perl world: the human report lists what was found section by
// section, changes nothing, and exits 0.
func TestMigrateCheckPerlWorld(t *testing.T) {
	dir, conf := perlWorld(t)
	w := &world{dir: dir, conf: conf}
	before := testfs.Snapshot(t, dir)

	stdout, stderr, code := w.cli(t, "migrate", "check")

	if diff := cmp.Diff(before, testfs.Snapshot(t, dir)); diff != "" {
		t.Errorf("migrate check changed files (-before +after):\n%s", diff)
	}
	if code != 0 || stderr != "" {
		t.Errorf("exit %d, stderr %q; want 0 and nothing", code, stderr)
	}
	lines := strings.Split(strings.ReplaceAll(stdout, dir, "DIR"), "\n")
	var got []string
	for _, l := range lines {
		// Certificate dates move with the clock: keep the lines without one.
		if !strings.Contains(l, "expires") && !strings.Contains(l, "days") {
			got = append(got, l)
		}
	}
	want := []string{
		"config",
		"  OK     DIR/etc/dispatcher.conf: the Perl dispatcher's key = value format; read as it is, with one config-warn line per command suggesting TOML (optional)",
		`  WARN   DIR/etc/dispatcher.conf:7: key "ca_serial": unknown key, ignored`,
		"ca",
		"  OK     DIR/etc/ca.key belongs to the CA certificate: new agent certificates are signed by this CA (RSA-2048), for the agent's own key (ECDSA P-256 for agents of this version)",
		"dispatcher certificate",
		"  OK     legacy certificate (no role SAN, made by the Perl dispatcher): agents pinned to serial 02 by their dispatcher-serial file (Perl agents, and agents of this version that keep that file) accept it; an agent without that pin answers 403 serial mismatch",
		"registry",
		"  OK     2 records in DIR/state/agents: 2 paired by the Perl dispatcher (no key_fingerprint), 0 by this version, 0 unreadable",
		"  INFO   web-01: paired by the Perl dispatcher (no key_fingerprint recorded): its legacy certificate (CN only, no role) is accepted at the first successful contact on chain to the CA and CN = host name, and its key is then pinned in the record (key_fingerprint, ACTION=key-pin); after that only that key",
		"  INFO   web-02: paired by the Perl dispatcher (no key_fingerprint recorded): its legacy certificate (CN only, no role) is accepted at the first successful contact on chain to the CA and CN = host name, and its key is then pinned in the record (key_fingerprint, ACTION=key-pin); after that only that key",
		"  OK     web-02: serial_status current, dispatcher_serial 02, confirmed 2025-09-01T10:00:00Z",
		"rotation",
		"  INFO   the overlap window is over: serial-status marks agents still pending stale (and writes that to their records)",
		"pairing",
		"  OK     no pairing requests",
		"locks",
		"  OK     1 lock files in DIR/state/locks, none held",
		"revocations",
		"  OK     DIR/state/revoked-serials: 2 entries, 2 serials refused (an all-digit line revokes both its hex and its decimal reading)",
		"what will happen",
		"  - dispatcher.conf is read as it is; converting it to TOML is optional (docs/CONFIG.md#legacy-format)",
		"  - 2 agents paired by the Perl dispatcher, without re-pairing: its legacy certificate (CN only, no role) is accepted at the first successful contact on chain to the CA and CN = host name, and its key is then pinned in the record (key_fingerprint, ACTION=key-pin); after that only that key",
		"  - the legacy dispatcher certificate is used as it is; dispatcher rotate-cert would replace it with one carrying the dispatcher role (Perl agents then learn the new serial through the update-dispatcher-serial script)",
		"  - registry records keep every Perl field; this version adds fields the Perl dispatcher ignores (key_fingerprint, serial, port, tags, last_contact, last_renewal, renewal_unsupported, revocations_pushed) and files under state_dir (contact/HOST, revoked-dispatcher-serials)",
		"  - host:script locks stay state_dir/locks/HOST--SCRIPT.lock with flock: a Perl dispatcher and this one on the same host see each other's locks",
		"nothing blocks a takeover",
		"",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("report (-want +got):\n%s\nfull output:\n%s", diff, stdout)
	}
}

// --json: the same report as an object; a mixed registry (Perl records
// and one paired by this version), and a lock held by a Perl dispatcher's
// run, which blocks (exit 1).
func TestMigrateCheckJSONMixed(t *testing.T) {
	dir, conf := perlWorld(t)
	ca := pkitest.NewCA(t)
	leaf := ca.Agent(t, "web-03").Leaf
	fp, _ := pki.Fingerprint(leaf.PublicKey)
	st := store.NewFiles(filepath.Join(dir, "state"))
	if err := st.PutAgent(store.Agent{Hostname: "web-03", IP: "10.0.0.7", Port: 7443, Paired: "2026-01-01T00:00:00Z",
		Expiry: pki.FormatOpenSSLTime(leaf.NotAfter), ReqID: "d1b2c3d4e5f60718", KeyFingerprint: fp, Serial: "0a0b"}); err != nil {
		t.Fatal(err)
	}
	// A Perl dispatcher's run in progress: flock held, nothing in the file.
	lock, err := os.Open(filepath.Join(dir, "state", "locks", "web-01--deploy.lock"))
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	w := &world{dir: dir, conf: conf}
	before := testfs.Snapshot(t, dir)

	stdout, stderr, code := w.cli(t, "migrate", "check", "--json")

	if diff := cmp.Diff(before, testfs.Snapshot(t, dir)); diff != "" {
		t.Errorf("migrate check changed files (-before +after):\n%s", diff)
	}
	var r struct {
		OK       bool   `json:"ok"`
		Blockers int    `json:"blockers"`
		Config   string `json:"config"`
		Sections []struct {
			Name     string `json:"name"`
			Findings []struct {
				Level, Text string
			} `json:"findings"`
		} `json:"sections"`
		Agents []struct {
			Hostname  string `json:"hostname"`
			PairedBy  string `json:"paired_by"`
			KeyPinned bool   `json:"key_pinned"`
			Renewal   string `json:"renewal"`
		} `json:"agents"`
		WillHappen []string `json:"will_happen"`
	}
	if err := json.Unmarshal([]byte(stdout), &r); err != nil || code != 1 || stderr != "" {
		t.Fatalf("exit %d, %v, stderr %q, stdout %s", code, err, stderr, stdout)
	}
	var blocks []string
	for _, s := range r.Sections {
		for _, f := range s.Findings {
			if f.Level == "block" {
				blocks = append(blocks, s.Name+": "+f.Text)
			}
		}
	}
	if diff := cmp.Diff([]string{"locks: web-01:deploy held by the Perl dispatcher (no holder details): a run is in progress; switch when it has ended (dispatcher list-locks)"}, blocks); diff != "" {
		t.Errorf("blocking findings (-want +got):\n%s", diff)
	}
	var sections []string
	for _, s := range r.Sections {
		sections = append(sections, s.Name)
	}
	if diff := cmp.Diff([]string{"config", "ca", "dispatcher certificate", "registry", "rotation", "pairing", "locks", "revocations"}, sections); diff != "" {
		t.Errorf("sections (-want +got):\n%s", diff)
	}
	type agent struct {
		Host, PairedBy string
		Pinned         bool
		Renewal        string
	}
	var agents []agent
	for _, a := range r.Agents {
		agents = append(agents, agent{a.Hostname, a.PairedBy, a.KeyPinned, a.Renewal})
	}
	if diff := cmp.Diff([]agent{{"web-01", "perl", false, "unknown"}, {"web-02", "perl", false, "unknown"}, {"web-03", "dispatcher", true, "unknown"}}, agents); diff != "" {
		t.Errorf("agents (-want +got):\n%s", diff)
	}
	if r.OK || r.Blockers != 1 || r.Config != conf || len(r.WillHappen) == 0 {
		t.Errorf("ok %t, blockers %d, config %q, %d will-happen lines", r.OK, r.Blockers, r.Config, len(r.WillHappen))
	}
}

// A fresh installation of this version (TOML, ECDSA CA, role
// certificate, a pinned agent): nothing blocks, exit 0, and no log file is
// written although dispatcher.conf names one.
func TestMigrateCheckOurs(t *testing.T) {
	w := newWorld(t, true)
	ca := pkitest.NewCA(t)
	agent := ca.Agent(t, "web-01").Leaf
	fp, _ := pki.Fingerprint(agent.PublicKey)
	if err := w.st.PutAgent(store.Agent{Hostname: "web-01", IP: "10.0.0.5", Port: 7443, Paired: "2026-01-01T00:00:00Z",
		Expiry: pki.FormatOpenSSLTime(time.Now().AddDate(1, 0, 0)), ReqID: "d1b2c3d4e5f60718", KeyFingerprint: fp, Serial: "0a0b"}); err != nil {
		t.Fatal(err)
	}
	before := testfs.Snapshot(t, w.dir)

	stdout, stderr, code := w.cli(t, "migrate", "check")

	if diff := cmp.Diff(before, testfs.Snapshot(t, w.dir)); diff != "" {
		t.Errorf("migrate check changed files (-before +after):\n%s", diff)
	}
	if code != 0 || stderr != "" || !strings.HasSuffix(stdout, "\nnothing blocks a takeover\n") || strings.Contains(stdout, "BLOCK") {
		t.Errorf("exit %d, stderr %q, stdout:\n%s", code, stderr, stdout)
	}
	for _, want := range []string{": TOML\n", "ECDSA P-256, X.509 v3", "certificate of this version (role urn:dispatcher:dispatcher)", "web-01: paired by this version: serial 0a0b, key pinned"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("report lacks %q:\n%s", want, stdout)
		}
	}
	if _, err := os.Stat(filepath.Join(w.dir, "log")); !os.IsNotExist(err) {
		t.Errorf("a log file was written: %v", err)
	}
}

// A broken dispatcher.conf blocks; an argument is a usage error.
func TestMigrateCheckBadConfig(t *testing.T) {
	w := newWorld(t, false)
	if err := os.WriteFile(w.conf, []byte("api_port = \"x\"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	stdout, _, code := w.cli(t, "migrate", "check")
	if code != 1 || !strings.Contains(stdout, "  BLOCK  "+w.conf+":1: key \"api_port\"") {
		t.Errorf("exit %d:\n%s", code, stdout)
	}
	if _, stderr, code := w.cli(t, "migrate", "check", "extra"); code != 2 {
		t.Errorf("with an argument: exit %d %q", code, stderr)
	}
}

// v1CertString is pkitest.V1Cert as a string, for the file maps.
func v1CertString(t *testing.T, subject, issuer string, serial int64, pub crypto.PublicKey, signer *rsa.PrivateKey, nb, na time.Time) string {
	return string(pkitest.V1Cert(t, subject, issuer, serial, pub, signer, nb, na))
}
