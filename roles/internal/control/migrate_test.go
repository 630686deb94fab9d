package control

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/internal/testfs"
	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// migrateNow is the fixed time of the migrate check tests.
var migrateNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)

var (
	rsaOnce sync.Once
	rsaKeys [2]*rsa.PrivateKey
)

// perlKeys are two RSA keys shared by the tests: RSA-2048, not the Perl
// dispatcher's 4096 bits, which take seconds to generate.
func perlKeys(t *testing.T) (ca, dispatcher *rsa.PrivateKey) {
	t.Helper()
	rsaOnce.Do(func() {
		for i := range rsaKeys {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			rsaKeys[i] = k
		}
	})
	return rsaKeys[0], rsaKeys[1]
}

// perlEtc writes what the Perl dispatcher 0.5.x leaves in /etc/dispatcher:
// an RSA CA (v1, openssl req -x509), its key in PKCS#1 (openssl genrsa of
// OpenSSL 1.x), the dispatcher certificate (v1, CN dispatcher, serial 02
// from ca.serial) and key, and a legacy dispatcher.conf.
func perlEtc(t *testing.T, etc, state, conf string) MigrateCheckOptions {
	t.Helper()
	caKey, dKey := perlKeys(t)
	nb := migrateNow.AddDate(-1, 0, 0)
	dKeyDER, err := x509.MarshalPKCS8PrivateKey(dKey)
	if err != nil {
		t.Fatal(err)
	}
	testfs.WriteFiles(t, etc, map[string]string{
		"ca.crt":         string(pkitest.V1Cert(t, "Perl Dispatcher CA", "Perl Dispatcher CA", 0x3c1f, &caKey.PublicKey, caKey, nb, nb.AddDate(10, 0, 0))),
		"dispatcher.crt": string(pkitest.V1Cert(t, "dispatcher", "Perl Dispatcher CA", 2, &dKey.PublicKey, caKey, nb, nb.AddDate(2, 0, 0))),
		"ca.serial":      "05\n",
	}, 0o644)
	testfs.WriteFiles(t, etc, map[string]string{
		"ca.key":         string(pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(caKey)})),
		"dispatcher.key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: dKeyDER})),
	}, 0o600)
	testfs.WriteFiles(t, etc, map[string]string{"dispatcher.conf": conf}, 0o640)
	return MigrateCheckOptions{
		Config:   MigrateConfig{Path: filepath.Join(etc, "dispatcher.conf"), Legacy: true},
		CA:       Pair{Cert: filepath.Join(etc, "ca.crt"), Key: filepath.Join(etc, "ca.key")},
		Identity: Pair{Cert: filepath.Join(etc, "dispatcher.crt"), Key: filepath.Join(etc, "dispatcher.key")},
		StateDir: state,
		CertDays: 365,
		Now:      migrateNow,
	}
}

// perlState writes a Perl dispatcher's state directory: three registry
// records (one after a rotation, pending; one whose agent answered 404 to
// /renew and expires soon), rotation.json, a lock file nobody holds, a run
// and revoked-serials in the Perl forms with one bad line.
func perlState(t *testing.T, state string) {
	t.Helper()
	testfs.WriteFiles(t, state, map[string]string{
		"agents/web-01.json": `{"hostname":"web-01","ip":"10.0.0.5","paired":"2025-06-01T10:00:00Z","expiry":"Jun  1 10:00:00 2027 GMT","reqid":"a1b2c3d4e5f60718"}`,
		"agents/web-02.json": `{"hostname":"web-02","ip":"10.0.0.6","paired":"2025-09-01T10:00:00Z","expiry":"Sep  1 10:00:00 2026 GMT","reqid":"b1b2c3d4e5f60718",` +
			`"serial_status":"pending","serial_broadcast":"2026-05-30T00:00:00Z","dispatcher_serial":"01"}`,
		"agents/db-01.json": `{"hostname":"db-01","ip":"10.0.0.9","paired":"2025-06-20T10:00:00Z","expiry":"Jun 20 10:00:00 2026 GMT","reqid":"c1b2c3d4e5f60718",` +
			`"serial_status":"current","dispatcher_serial":"02","serial_confirmed":"2026-05-30T01:00:00Z","renewal_unsupported":"2026-05-31T08:00:00Z"}`,
		"rotation.json":              `{"current_serial":"02","previous_serial":"01","rotated_at":"2026-05-30T00:00:00Z","overlap_expires":"2026-06-06T00:00:00Z"}`,
		"locks/web-01--deploy.lock":  "",
		"runs/0123456789abcdef.json": `{"reqid":"0123456789abcdef","script":"deploy","hosts":["web-01"],"results":[]}`,
		"revoked-serials":            "0A:1B\n2587 (0xa1b)\n# a comment\nserial=03\nnot-a-serial!\n",
	}, 0o640)
}

const perlConf = `# dispatcher.conf of the Perl dispatcher
ca = %ETC%/ca.crt
cert = %ETC%/dispatcher.crt
key = %ETC%/dispatcher.key
state_dir = %STATE%
timeout = 60
cert_days = 365
`

func findingTexts(r *MigrateReport) map[string][]string {
	out := map[string][]string{}
	for _, s := range r.Sections {
		for _, f := range s.Findings {
			out[s.Name] = append(out[s.Name], strings.ToUpper(f.Level)+" "+f.Text)
		}
	}
	return out
}

func TestMigrateCheckPerl(t *testing.T) {
	dir := t.TempDir()
	etc, state := filepath.Join(dir, "etc"), filepath.Join(dir, "state")
	conf := strings.NewReplacer("%ETC%", etc, "%STATE%", state).Replace(perlConf)
	o := perlEtc(t, etc, state, conf)
	perlState(t, state)
	before := testfs.Snapshot(t, dir)

	r := MigrateCheck(o)

	if diff := cmp.Diff(before, testfs.Snapshot(t, dir)); diff != "" {
		t.Errorf("migrate check changed files (-before +after):\n%s", diff)
	}
	want := map[string][]string{
		SectionConfig: {"OK " + etc + "/dispatcher.conf: the Perl dispatcher's key = value format; read as it is, with one config-warn line per command suggesting TOML (optional)"},
		SectionCA: {
			`OK ` + etc + `/ca.crt: CA "Perl Dispatcher CA", RSA-2048, X.509 v1 (no extensions), serial 3c1f, expires Jun  1 12:00:00 2035 GMT (3287 days)`,
			"OK " + etc + "/ca.key belongs to the CA certificate: new agent certificates are signed by this CA (RSA-2048), for the agent's own key (ECDSA P-256 for agents of this version)",
		},
		SectionIdentity: {
			`OK ` + etc + `/dispatcher.crt: "dispatcher", RSA-2048, serial 02, expires Jun  1 12:00:00 2027 GMT (365 days)`,
			"OK legacy certificate (no role SAN, made by the Perl dispatcher): agents pinned to serial 02 by their dispatcher-serial file (Perl agents, and agents of this version that keep that file) accept it; an agent without that pin answers 403 serial mismatch",
		},
		SectionRegistry: {
			"OK 3 records in " + state + "/agents: 3 paired by the Perl dispatcher (no key_fingerprint), 0 by this version, 0 unreadable",
			"INFO db-01: paired by the Perl dispatcher (no key_fingerprint recorded): " + legacyFirstUse,
			"WARN db-01: certificate expires Jun 20 10:00:00 2026 GMT: in 18 days; renewal due (under half of cert_days = 365 left): asked at its next contact; answered 404 to /renew on 2026-05-31T08:00:00Z (a Perl agent): renewal not supported by this agent version, asked again a day later",
			"OK db-01: serial_status current, dispatcher_serial 02, confirmed 2026-05-30T01:00:00Z",
			"INFO web-01: paired by the Perl dispatcher (no key_fingerprint recorded): " + legacyFirstUse,
			"OK web-01: certificate expires Jun  1 10:00:00 2027 GMT (364 days); renewal support unknown (a Perl agent answers 404 to /renew, recorded once)",
			"INFO web-02: paired by the Perl dispatcher (no key_fingerprint recorded): " + legacyFirstUse,
			"OK web-02: certificate expires Sep  1 10:00:00 2026 GMT (91 days); renewal due (under half of cert_days = 365 left): asked at its next contact; renewal support unknown (a Perl agent answers 404 to /renew, recorded once)",
			"INFO web-02: serial_status pending, dispatcher_serial 01: told serial 02 at its next contact (POST /dispatcher-serial, or the update-dispatcher-serial script on a Perl agent)",
		},
		SectionRotation: {"INFO rotation.json: current_serial 02, previous_serial 01, rotated_at 2026-05-30T00:00:00Z, overlap_expires 2026-06-06T00:00:00Z"},
		SectionPairing:  {"OK no pairing requests"},
		SectionLocks:    {"OK 1 lock files in " + state + "/locks, none held"},
		SectionRevocation: {
			"OK " + state + "/revoked-serials: 4 entries, 2 serials refused (an all-digit line revokes both its hex and its decimal reading)",
			"WARN " + state + "/revoked-serials line 5: serial \"not-a-serial!\" contains 'n', which is not a hex digit: skipped, so that serial is not revoked; fix the line",
		},
	}
	if diff := cmp.Diff(want, findingTexts(r)); diff != "" {
		t.Errorf("findings (-want +got):\n%s", diff)
	}
	if !r.OK || r.Blockers != 0 {
		t.Errorf("ok %t, %d blockers; want true, 0", r.OK, r.Blockers)
	}
	days := 18
	if diff := cmp.Diff(MigrateAgent{Hostname: "db-01", PairedBy: "perl", Expiry: "Jun 20 10:00:00 2026 GMT", ExpiresInDays: &days, RenewalDue: true,
		Renewal: RenewalNoSupport, SerialStatus: "current", DispatcherSerial: "02", SerialConfirmed: "2026-05-30T01:00:00Z"}, r.Agents[0]); diff != "" {
		t.Errorf("agent db-01 (-want +got):\n%s", diff)
	}
}

// A Perl dispatcher running a script holds its lock (flock, nothing
// written into the file): that blocks, and so do a CA key this user may
// not read and a registry record that does not parse.
func TestMigrateCheckBlocks(t *testing.T) {
	dir := t.TempDir()
	etc, state := filepath.Join(dir, "etc"), filepath.Join(dir, "state")
	o := perlEtc(t, etc, state, "")
	perlState(t, state)
	testfs.WriteFiles(t, state, map[string]string{"agents/bad-01.json": `{"hostname":`}, 0o640)
	if err := os.Chmod(filepath.Join(etc, "ca.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	st := store.NewFiles(state)
	release, err := st.Acquire(store.LockHolder{PID: 4242, User: "alice", ReqID: "0123456789abcdef"}, []store.LockKey{{Host: "web-01", Script: "deploy"}})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	before := testfs.Snapshot(t, dir)

	r := MigrateCheck(o)

	if diff := cmp.Diff(before, testfs.Snapshot(t, dir)); diff != "" {
		t.Errorf("migrate check changed files (-before +after):\n%s", diff)
	}
	var blocks []string
	for _, s := range r.Sections {
		for _, f := range s.Findings {
			if f.Level == LevelBlock {
				blocks = append(blocks, s.Name+": "+f.Text)
			}
		}
	}
	want := []string{
		"ca: CA key: no usable ca at " + etc + "/ca.key: private key " + etc + "/ca.key has mode 0644: readable or writable beyond 0600, so other users of this host may copy it; fix it with: chmod 600 " + etc + "/ca.key (and consider the key compromised if others had access): this dispatcher could not approve pairings nor renew certificates",
		"registry: read registry record " + state + "/agents/bad-01.json: unexpected end of JSON input: list-agents and every command that lists the registry fail on it; fix or remove the record",
		"locks: web-01:deploy held by pid 4242 (alice, reqid 0123456789abcdef): a run is in progress; switch when it has ended (dispatcher list-locks)",
	}
	if diff := cmp.Diff(want, blocks); diff != "" {
		t.Errorf("blocking findings (-want +got):\n%s", diff)
	}
	if r.OK {
		t.Error("ok with blocking findings")
	}
}

// An installation of this version: TOML, an ECDSA v3 CA, a dispatcher
// certificate with the role, agents with a pinned key. Nothing blocks.
func TestMigrateCheckOurs(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	ca := pkitest.NewCA(t)
	ca.WriteFiles(t, dir)
	certPEM, keyPEM := pkitest.PEM(t, ca.Dispatcher(t))
	testfs.WriteFiles(t, dir, map[string]string{"d.crt": string(certPEM)}, 0o644)
	testfs.WriteFiles(t, dir, map[string]string{"d.key": string(keyPEM)}, 0o600)
	agent := ca.Agent(t, "web-01").Leaf
	fp, err := pki.Fingerprint(agent.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	st := store.NewFiles(state)
	a := store.Agent{Hostname: "web-01", IP: "10.0.0.5", Port: 7443, Paired: "2026-05-01T00:00:00Z", Expiry: pki.FormatOpenSSLTime(agent.NotAfter),
		ReqID: "0123456789abcdef", KeyFingerprint: fp, Serial: pki.FormatSerial(agent.SerialNumber)}
	a.SetExtraString(store.FieldLastRenewal, "2026-05-01T12:00:00Z")
	if err := st.PutAgent(a); err != nil {
		t.Fatal(err)
	}
	before := testfs.Snapshot(t, dir)

	r := MigrateCheck(MigrateCheckOptions{
		Config:   MigrateConfig{Path: filepath.Join(dir, "dispatcher.conf")},
		CA:       Pair{Cert: filepath.Join(dir, "ca.crt"), Key: filepath.Join(dir, "ca.key")},
		Identity: Pair{Cert: filepath.Join(dir, "d.crt"), Key: filepath.Join(dir, "d.key")},
		StateDir: state, CertDays: 365, Now: time.Now(), // pkitest's certificates are valid from now on
	})

	if diff := cmp.Diff(before, testfs.Snapshot(t, dir)); diff != "" {
		t.Errorf("migrate check changed files (-before +after):\n%s", diff)
	}
	if !r.OK || r.Blockers != 0 {
		t.Errorf("ok %t, %d blockers; want true, 0: %v", r.OK, r.Blockers, findingTexts(r))
	}
	got := findingTexts(r)
	for sec, want := range map[string]string{
		SectionConfig:   "OK " + dir + "/dispatcher.conf: TOML",
		SectionCA:       "ECDSA P-256, X.509 v3",
		SectionIdentity: "certificate of this version (role urn:dispatcher:dispatcher)",
		SectionRegistry: "OK web-01: paired by this version: serial " + a.Serial + ", key pinned",
	} {
		if !strings.Contains(strings.Join(got[sec], "\n"), want) {
			t.Errorf("section %s lacks %q:\n%s", sec, want, strings.Join(got[sec], "\n"))
		}
	}
	if s := strings.Join(got[SectionRegistry], "\n"); !strings.Contains(s, "renewed by this version on 2026-05-01T12:00:00Z") {
		t.Errorf("registry: %s", s)
	}
}

// Nothing installed: nothing blocks, and the report says how to start.
func TestMigrateCheckEmpty(t *testing.T) {
	dir := t.TempDir()
	r := MigrateCheck(MigrateCheckOptions{
		Config:   MigrateConfig{Path: filepath.Join(dir, "dispatcher.conf"), Missing: true},
		CA:       Pair{Cert: filepath.Join(dir, "ca.crt"), Key: filepath.Join(dir, "ca.key")},
		Identity: Pair{Cert: filepath.Join(dir, "d.crt"), Key: filepath.Join(dir, "d.key")},
		StateDir: filepath.Join(dir, "state"), Now: migrateNow,
	})
	if !r.OK {
		t.Errorf("not ok: %v", findingTexts(r))
	}
	if diff := cmp.Diff([]string{"nothing to take over: set up with dispatcher setup-ca and dispatcher setup-dispatcher, then pair agents"}, r.WillHappen); diff != "" {
		t.Errorf("will happen (-want +got):\n%s", diff)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("migrate check created %d entries", len(entries))
	}
}
