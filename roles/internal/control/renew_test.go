package control

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// oddAgent is an agent that does not behave: its /renew answers with the
// certificate request csr returns (another key, other names), or 404 when
// csr is nil, as a Perl agent does. It counts every request it gets. The
// real agent's renewal is tested with the engine in roles/agent.
type oddAgent struct {
	requests atomic.Int64
	renews   atomic.Int64
	installs atomic.Int64
	csr      func() []byte
	lastRun  atomic.Pointer[wire.RunRequest]
}

// startOdd starts an oddAgent for name with a certificate from ca valid
// for days (1: due for renewal) and registers it.
func (f *fleet) startOdd(name string, days int, a *oddAgent) crypto.Signer {
	f.t.Helper()
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		f.t.Fatal(err)
	}
	cert := f.sign(key, name, days)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ping", func(w http.ResponseWriter, r *http.Request) {
		wire.WriteJSON(w, http.StatusOK, wire.PingResponse{Status: "ok", Host: name, Version: "odd", Expiry: pki.FormatOpenSSLTime(cert.NotAfter)})
	})
	mux.HandleFunc("POST /run", func(w http.ResponseWriter, r *http.Request) {
		var req wire.RunRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		a.lastRun.Store(&req)
		wire.WriteJSON(w, http.StatusOK, wire.RunResponse{Script: req.Script, Stdout: "hi\n"})
	})
	if a.csr != nil {
		mux.HandleFunc("POST /renew", func(w http.ResponseWriter, r *http.Request) {
			a.renews.Add(1)
			wire.WriteJSON(w, http.StatusOK, wire.RenewResponse{Status: "ok", CSR: string(a.csr())})
		})
		mux.HandleFunc("POST /renew-complete", func(w http.ResponseWriter, r *http.Request) {
			a.installs.Add(1)
			wire.WriteJSON(w, http.StatusOK, wire.StatusResponse{Status: "ok"})
		})
	} else {
		mux.HandleFunc("POST /renew", func(w http.ResponseWriter, r *http.Request) {
			a.renews.Add(1)
			wire.WriteError(w, http.StatusNotFound, "not found")
		})
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.requests.Add(1)
		mux.ServeHTTP(w, r)
	}))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    f.ca.Pool(),
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	f.t.Cleanup(srv.Close)
	fp, err := pki.Fingerprint(key.Public())
	if err != nil {
		f.t.Fatal(err)
	}
	f.register(store.Agent{Hostname: name, IP: "127.0.0.1", Port: srv.Listener.Addr().(*net.TCPAddr).Port, KeyFingerprint: fp,
		Serial: pki.FormatSerial(cert.SerialNumber), Expiry: pki.FormatOpenSSLTime(cert.NotAfter)})
	return key
}

func (f *fleet) sign(key crypto.Signer, name string, days int) *x509.Certificate {
	f.t.Helper()
	csrPEM, err := pki.CreateCSR(pki.Options{}, key, name)
	if err != nil {
		f.t.Fatal(err)
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		f.t.Fatal(err)
	}
	cert, err := f.ca.SignAgentCSR(pki.Options{}, csr, name, days)
	if err != nil {
		f.t.Fatal(err)
	}
	return cert
}

// renewingEngine is an engine of the fleet that renews with the fleet's CA.
func (f *fleet) renewingEngine() *Engine {
	dir := f.t.TempDir()
	f.ca.WriteFiles(f.t, dir)
	return f.engine(func(o *Options) {
		o.Revocations = f.st
		o.CA = Pair{Cert: filepath.Join(dir, "ca.crt"), Key: filepath.Join(dir, "ca.key")}
		o.CertDays = 30
	})
}

func csrFor(t *testing.T, key crypto.Signer, tmpl *x509.CertificateRequest) []byte {
	t.Helper()
	der, err := x509.CreateCertificateRequest(nil, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	return pemBlock("CERTIFICATE REQUEST", der)
}

// A renewal request for another key than the pinned one, or asking for
// more than the host name, is refused and logged at error level; nothing
// is delivered, and the user's ping is unaffected.
func TestRenewalRefusesBadRequests(t *testing.T) {
	stranger, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		csr  func(t *testing.T, own crypto.Signer) []byte
		want string
	}{
		{"another key", func(t *testing.T, _ crypto.Signer) []byte {
			return csrFor(t, stranger, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web-01"}, DNSNames: []string{"web-01"}})
		}, "not the key pinned for web-01"},
		{"another name", func(t *testing.T, own crypto.Signer) []byte {
			return csrFor(t, own, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "web-01"}, DNSNames: []string{"web-01", "db-01"}})
		}, `asks for the name \"db-01\"`},
		{"an ip", func(t *testing.T, own crypto.Signer) []byte {
			return csrFor(t, own, &x509.CertificateRequest{DNSNames: []string{"web-01"}, IPAddresses: []net.IP{net.ParseIP("10.0.0.1")}})
		}, "asks for IP, URI or e-mail names"},
		{"a uri", func(t *testing.T, own crypto.Signer) []byte {
			u, _ := url.Parse(pki.RoleDispatcherURI)
			return csrFor(t, own, &x509.CertificateRequest{URIs: []*url.URL{u}})
		}, "asks for IP, URI or e-mail names"},
		{"not a csr", func(*testing.T, crypto.Signer) []byte { return []byte("hello") }, "not PEM"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFleet(t)
			a := &oddAgent{}
			var own crypto.Signer
			a.csr = func() []byte { return tc.csr(t, own) }
			own = f.startOdd("web-01", 1, a)
			e := f.renewingEngine()
			rep, err := e.Ping(context.Background(), PingRequest{Hosts: []string{"web-01"}})
			if err != nil {
				t.Fatal(err)
			}
			r := rep.Results[0]
			if !rep.OK || r.Status != StatusOK || r.Renewed != nil || r.Error != "" {
				t.Errorf("ping result changed: %+v", r)
			}
			if a.renews.Load() != 1 || a.installs.Load() != 0 {
				t.Errorf("/renew %d times, /renew-complete %d times; want 1 and 0", a.renews.Load(), a.installs.Load())
			}
			logs := f.logs()
			if !strings.Contains(logs, "ACTION=renew ") || !strings.Contains(logs, "LEVEL=error") || !strings.Contains(logs, tc.want) {
				t.Errorf("log lacks an error renew line with %q:\n%s", tc.want, logs)
			}
			if a, _ := f.st.GetAgent("web-01"); !a.ExtraTime(store.FieldLastRenewal).IsZero() {
				t.Error("a renewal was recorded")
			}
		})
	}
}

// A Perl agent answers 404: recorded once, warned once, not retried on
// every contact, shown by list-agents.
func TestRenewalUnsupported(t *testing.T) {
	f := newFleet(t)
	a := &oddAgent{}
	f.startOdd("web-01", 1, a)
	e := f.renewingEngine()
	for range 3 {
		rep, err := e.Ping(context.Background(), PingRequest{Hosts: []string{"web-01"}})
		if err != nil || !rep.OK {
			t.Fatalf("ping: %+v %v", rep, err)
		}
	}
	if n := a.renews.Load(); n != 1 {
		t.Errorf("/renew asked %d times, want once", n)
	}
	logs := f.logs()
	if n := strings.Count(logs, "STATUS=unsupported"); n != 1 || strings.Contains(logs, "LEVEL=error") {
		t.Errorf("want one warning and no error:\n%s", logs)
	}
	rec, _ := f.st.GetAgent("web-01")
	if rec.ExtraTime(store.FieldRenewalUnsupported).IsZero() {
		t.Errorf("not recorded: %+v", rec.Extra)
	}
	if c := DescribeAgentCert(rec, pki.SerialSet{}, time.Now()); !strings.Contains(c.Note, RenewalUnsupported) || !c.Warning {
		t.Errorf("list-agents note %q warning %t", c.Note, c.Warning)
	}
	// Forced renewal says so too.
	rr, err := e.Renew(context.Background(), RenewRequest{Hosts: []string{"web-01"}})
	if err != nil || rr.Results[0].Status != RenewUnsupported {
		t.Errorf("renew: %+v %v", rr, err)
	}
}

// revoke HOST: the agent gets no request at all (no token, no ping), and
// the host's result says why.
func TestRevokedAgentGetsNothing(t *testing.T) {
	f := newFleet(t)
	a := &oddAgent{csr: func() []byte { return nil }}
	f.startOdd("web-01", 365, a)
	e := f.renewingEngine()
	if rep, _ := e.Ping(context.Background(), PingRequest{Hosts: []string{"web-01"}}); !rep.OK {
		t.Fatalf("before revocation: %+v", rep.Results[0])
	}
	before := a.requests.Load()
	r, err := Revoke(RevokeOptions{Registry: f.st, Revocations: f.st, Dispatcher: f.st}, "web-01", "stolen")
	if err != nil || r.Kind != RevokedAgent || r.Host != "web-01" {
		t.Fatalf("revoke: %+v %v", r, err)
	}
	run, err := e.Run(context.Background(), RunRequest{Hosts: []string{"web-01"}, Script: "hello", Token: "s3cret-token"})
	if err != nil {
		t.Fatal(err)
	}
	if res := run.Results[0]; res.Exit != -1 || !strings.Contains(res.Error, "revoked") || !strings.Contains(res.Error, "pair web-01 again") {
		t.Errorf("run of a revoked agent: %+v", res)
	}
	rep, _ := e.Ping(context.Background(), PingRequest{Hosts: []string{"web-01"}})
	if rep.OK || !strings.Contains(rep.Results[0].Error, "revoked") {
		t.Errorf("ping of a revoked agent: %+v", rep.Results[0])
	}
	if n := a.requests.Load() - before; n != 0 {
		t.Errorf("the revoked agent got %d requests", n)
	}
	// The record stays, flagged.
	rec, err := f.st.GetAgent("web-01")
	set, _, _ := f.st.RevokedSerials()
	if err != nil || !DescribeAgentCert(rec, set, time.Now()).Revoked {
		t.Errorf("record after revoke: %+v %v", rec, err)
	}
}

func TestExpiredAgentSaysRepair(t *testing.T) {
	f := newFleet(t)
	now := time.Now()
	cert := f.ca.Issue(t, &x509.Certificate{
		Subject: pkix.Name{CommonName: "web-01"}, DNSNames: []string{"web-01"},
		URIs:        []*url.URL{mustParseURL(t, pki.RoleAgentURI)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		NotBefore:   now.Add(-48 * time.Hour), NotAfter: now.Add(-time.Hour),
	})
	srv := httptest.NewUnstartedServer(f.handler("web-01"))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	f.register(store.Agent{Hostname: "web-01", IP: "127.0.0.1", Port: srv.Listener.Addr().(*net.TCPAddr).Port})
	rep, err := f.renewingEngine().Ping(context.Background(), PingRequest{Hosts: []string{"web-01"}})
	if err != nil {
		t.Fatal(err)
	}
	if msg := rep.Results[0].Error; !strings.Contains(msg, "certificate expired on") || !strings.Contains(msg, "re-pair this agent (dispatcher-agent request-pairing)") {
		t.Errorf("error %q", msg)
	}
}

func mustParseURL(t *testing.T, s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestRevoke(t *testing.T) {
	ca := pkitest.NewCA(t)
	dir := t.TempDir()
	st := store.NewFiles(dir)
	own := ca.Dispatcher(t)
	ownPath := filepath.Join(dir, "dispatcher.crt")
	if err := pki.WriteFileAtomic(ownPath, pki.CertPEM(own.Leaf), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, a := range []store.Agent{{Hostname: "web-01", Serial: "0b0670"}, {Hostname: "db-01"}, {Hostname: "cafe", Serial: "abcdef"}} {
		if err := st.PutAgent(a); err != nil {
			t.Fatal(err)
		}
	}
	o := RevokeOptions{Registry: st, Revocations: st, Dispatcher: st, OwnCert: ownPath}
	for _, tc := range []struct {
		target string
		want   *Revocation
		err    string
	}{
		{"web-01", &Revocation{Kind: RevokedAgent, Host: "web-01", Serials: []string{"0b0670"}, Reason: "stolen"}, ""},
		{"0B:06:70", &Revocation{Kind: RevokedAgent, Host: "web-01", Serials: []string{"0b0670"}, Reason: "stolen"}, ""},
		{"cafe", &Revocation{Kind: RevokedAgent, Host: "cafe", Serials: []string{"abcdef"}, Reason: "stolen"}, ""},
		{"0x1f2e", &Revocation{Kind: RevokedDispatcher, Serials: []string{"1f2e"}, Reason: "stolen"}, ""},
		{"1234", &Revocation{Kind: RevokedDispatcher, Serials: []string{"1234", "04d2"}, Reason: "stolen"}, ""},
		{"db-01", nil, "no certificate serial in the registry"},
		{"web-99", nil, "neither a registered agent"},
		{pki.FormatSerial(own.Leaf.SerialNumber), nil, "this dispatcher's own certificate"},
	} {
		got, err := Revoke(o, tc.target, "stolen")
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("revoke %s: %v, want an error with %q", tc.target, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("revoke %s: %v", tc.target, err)
			continue
		}
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("revoke %s (-want +got):\n%s", tc.target, d)
		}
	}
	agents, _, _ := st.RevokedSerials()
	disp, _, _ := st.RevokedDispatcherSerials()
	for _, n := range []int64{0x0b0670, 0xabcdef, 0x1f2e, 0x1234, 1234} {
		if !agents.Contains(big.NewInt(n)) {
			t.Errorf("%x not in revoked-serials", n)
		}
	}
	if disp.Len() != 3 || !disp.Contains(big.NewInt(0x1f2e)) || disp.Contains(big.NewInt(0x0b0670)) {
		t.Errorf("revoked-dispatcher-serials: %v", disp.Values())
	}
}

func TestSerialStatusStale(t *testing.T) {
	st := store.NewFiles(t.TempDir())
	now := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	if err := st.PutRotation(store.Rotation{CurrentSerial: "0b", PreviousSerial: "0a", RotatedAt: now.Add(-8 * 24 * time.Hour),
		OverlapExpires: now.Add(-24 * time.Hour), OverlapDays: 7}); err != nil {
		t.Fatal(err)
	}
	for host, status := range map[string]string{"web-01": store.SerialPending, "web-02": store.SerialCurrent, "web-03": ""} {
		a := store.Agent{Hostname: host}
		a.SetExtraString(store.FieldSerialStatus, status)
		if err := st.PutAgent(a); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := SerialStatus(st, st, "", now, nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range rep.Agents {
		got = append(got, a.Hostname+"="+a.Status)
	}
	if d := cmp.Diff([]string{"web-01=stale", "web-02=current", "web-03=current"}, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if rep.PreviousSerial != "0a" || rep.OverlapExpires != "2026-05-31T00:00:00Z" {
		t.Errorf("report %+v", rep)
	}
	if a, _ := st.GetAgent("web-01"); a.ExtraString(store.FieldSerialStatus) != store.SerialStale {
		t.Error("stale not written back")
	}
}

func TestDaysLeft(t *testing.T) {
	now := time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		d    time.Duration
		want int
	}{
		{0, 0}, {time.Hour, 0}, {24 * time.Hour, 1}, {47 * time.Hour, 1}, {-time.Hour, -1}, {-24 * time.Hour, -1}, {-25 * time.Hour, -2},
	} {
		if got := DaysLeft(now.Add(tc.d), now); got != tc.want {
			t.Errorf("DaysLeft(%v) = %d, want %d", tc.d, got, tc.want)
		}
	}
}

func TestRotationJSONPerlFields(t *testing.T) {
	st := store.NewFiles(t.TempDir())
	r := store.Rotation{CurrentSerial: "deadbeef", PreviousSerial: "cafebabe", RotatedAt: time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC),
		OverlapExpires: time.Date(2025, 7, 1, 12, 0, 0, 0, time.UTC), OverlapDays: 30}
	if err := st.PutRotation(r); err != nil {
		t.Fatal(err)
	}
	data := string(mustRead(t, filepath.Join(st.Dir(), "rotation.json")))
	for _, want := range []string{`"current_serial": "deadbeef"`, `"previous_serial": "cafebabe"`, `"rotated_at": "2025-06-01T12:00:00Z"`,
		`"overlap_expires": "2025-07-01T12:00:00Z"`, `"overlap_days": 30`} {
		if !strings.Contains(data, want) {
			t.Errorf("rotation.json lacks %s:\n%s", want, data)
		}
	}
	got, err := st.GetRotation()
	if err != nil || !cmp.Equal(r, got) {
		t.Errorf("round trip: %+v %v", got, err)
	}
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// After a rotation, an agent without POST /dispatcher-serial (a Perl
// agent) is told the new serial through its update-dispatcher-serial
// script, and is then current.
func TestSerialPushThroughScript(t *testing.T) {
	f := newFleet(t)
	a := &oddAgent{}
	f.startOdd("web-01", 365, a)
	e := f.renewingEngine()
	ours := e.ownSerial()
	if err := f.st.PutRotation(store.Rotation{CurrentSerial: ours, PreviousSerial: "0a", RotatedAt: time.Now(),
		OverlapExpires: time.Now().Add(time.Hour), OverlapDays: 7}); err != nil {
		t.Fatal(err)
	}
	rec, _ := f.st.GetAgent("web-01")
	rec.SetExtraString(store.FieldSerialStatus, store.SerialPending)
	if err := f.st.PutAgent(rec); err != nil {
		t.Fatal(err)
	}
	if rep, err := e.Ping(context.Background(), PingRequest{Hosts: []string{"web-01"}}); err != nil || !rep.OK {
		t.Fatalf("ping: %+v %v", rep, err)
	}
	run := a.lastRun.Load()
	if run == nil || run.Script != UpdateSerialScript || len(run.Args) != 1 || run.Args[0] != ours {
		t.Errorf("run on the agent: %+v, want %s %s", run, UpdateSerialScript, ours)
	}
	rec, _ = f.st.GetAgent("web-01")
	if rec.ExtraString(store.FieldSerialStatus) != store.SerialCurrent || rec.ExtraString(store.FieldDispatcherSerial) != ours {
		t.Errorf("record after the push: %+v", rec.Extra)
	}
}
