package agent

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// These tests drive the real agent with the real control engine over
// real TLS: renewal, revocation and serial pushes end to end.

// shortLived gives the world's agent a new key and a certificate for it
// valid for one day (due for renewal under any cert_days above 2), and
// reloads. It returns the key.
func (w *world) shortLived(t *testing.T) crypto.Signer {
	t.Helper()
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, err := pki.CreateCSR(pki.Options{}, key, "web-01")
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := w.ca.SignAgentCSR(pki.Options{}, csr, "web-01", 1)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM, err := pki.MarshalKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(w.dir, "agent.key"), string(keyPEM), 0o640)
	write(t, filepath.Join(w.dir, "agent.crt"), string(pki.CertPEM(cert)), 0o644)
	if err := w.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	return key
}

// newLoggedWorld is newWorld with the agent's log lines captured.
func newLoggedWorld(t *testing.T) (*world, *syncBuffer) {
	t.Helper()
	var b syncBuffer
	log, closeLog, err := logging.New(logging.Options{Output: "stderr", Stderr: &b})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeLog() })
	return newWorldLog(t, log), &b
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// dispatcher is a control host for the world: the CA files, a store with
// web-01 registered at the agent's address (pinned to key when not nil),
// and a way to make engines.
type dispatcher struct {
	t    *testing.T
	w    *world
	dir  string
	st   *store.Files
	cert tls.Certificate
	log  syncBuffer
}

func newDispatcher(t *testing.T, w *world, key crypto.Signer) *dispatcher {
	t.Helper()
	d := &dispatcher{t: t, w: w, dir: t.TempDir(), cert: w.ca.Dispatcher(t)}
	w.ca.WriteFiles(t, d.dir)
	d.st = store.NewFiles(filepath.Join(d.dir, "state"))
	host, port, err := net.SplitHostPort(w.addr)
	if err != nil {
		t.Fatal(err)
	}
	p, _ := strconv.Atoi(port)
	a := store.Agent{Hostname: "web-01", IP: host, Port: p, Paired: "2026-01-01T00:00:00Z"}
	if key != nil {
		if a.KeyFingerprint, err = pki.Fingerprint(key.Public()); err != nil {
			t.Fatal(err)
		}
	}
	if err := d.st.PutAgent(a); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *dispatcher) engine() *control.Engine {
	d.t.Helper()
	log, closeLog, err := logging.New(logging.Options{Output: "stderr", Stderr: &d.log})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(func() { _ = closeLog() })
	e, err := control.New(control.Options{
		Identity:       control.Identity{Cert: d.cert, Roots: d.w.ca.Pool()},
		ConnectTimeout: 2 * time.Second,
		ReadTimeout:    5 * time.Second,
		Registry:       d.st, Runs: d.st, Locks: d.st, Revocations: d.st,
		CA:       control.Pair{Cert: filepath.Join(d.dir, "ca.crt"), Key: filepath.Join(d.dir, "ca.key")},
		CertDays: 30,
		Resolve:  func(context.Context, string) error { return errors.New("does not resolve") },
		Log:      log,
	})
	if err != nil {
		d.t.Fatal(err)
	}
	d.t.Cleanup(e.Close)
	return e
}

func (d *dispatcher) ping(e *control.Engine) control.PingResult {
	d.t.Helper()
	r, err := e.Ping(context.Background(), control.PingRequest{Hosts: []string{"web-01"}})
	if err != nil {
		d.t.Fatal(err)
	}
	if r.Results[0].Status != control.StatusOK {
		d.t.Fatalf("ping: %+v", r.Results[0])
	}
	return r.Results[0]
}

// served returns the certificate the agent presents in a new handshake.
func (w *world) served(t *testing.T) *x509.Certificate {
	t.Helper()
	conn, err := tls.Dial("tcp", w.addr, &tls.Config{RootCAs: w.ca.Pool(), ServerName: "web-01",
		Certificates: []tls.Certificate{w.ca.Dispatcher(t)}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0]
}

func TestRenewalOnContact(t *testing.T) {
	w, agentLog := newLoggedWorld(t)
	key := w.shortLived(t)
	old := w.served(t)
	oldFile, _ := os.ReadFile(filepath.Join(w.dir, "agent.crt"))
	keyFile, _ := os.ReadFile(filepath.Join(w.dir, "agent.key"))
	d := newDispatcher(t, w, key)
	e := d.engine()

	// One ping: the agent answers, then gets a new certificate on the same
	// connection.
	r := d.ping(e)
	if r.Serial != pki.FormatSerial(old.SerialNumber) || r.Renewed == nil || r.Renewed.Serial == r.Serial {
		t.Fatalf("first ping: serial %s renewed %+v; want the old serial and a renewal\nlog:\n%s", r.Serial, r.Renewed, d.log.String())
	}
	if r.ExpiresInDays == nil || *r.ExpiresInDays > 1 {
		t.Errorf("first ping: expires_in_days %v, want 0 or 1", r.ExpiresInDays)
	}
	now := w.served(t)
	if pki.FormatSerial(now.SerialNumber) != r.Renewed.Serial || !pki.PublicKeysEqual(now.PublicKey, key.Public()) {
		t.Fatalf("the agent serves serial %s, want %s with the same key", pki.FormatSerial(now.SerialNumber), r.Renewed.Serial)
	}
	if days := control.DaysLeft(now.NotAfter, time.Now()); days < 29 || days > 30 {
		t.Errorf("new certificate has %d days left, want cert_days = 30", days)
	}
	newFile, _ := os.ReadFile(filepath.Join(w.dir, "agent.crt"))
	if bytes.Equal(newFile, oldFile) {
		t.Error("agent.crt was not rewritten")
	}
	if c, err := pki.ParseCertPEM(newFile); err != nil || !c.Equal(now) {
		t.Errorf("agent.crt does not hold the served certificate: %v", err)
	}
	if k, _ := os.ReadFile(filepath.Join(w.dir, "agent.key")); !bytes.Equal(k, keyFile) {
		t.Error("agent.key changed")
	}
	if fi, err := os.Stat(filepath.Join(w.dir, "agent.crt")); err != nil || fi.Mode().Perm() != 0o644 {
		t.Errorf("agent.crt mode %v, %v", fi.Mode(), err)
	}

	// The registry follows.
	a, err := d.st.GetAgent("web-01")
	if err != nil {
		t.Fatal(err)
	}
	if a.Serial != r.Renewed.Serial || a.Expiry != pki.FormatOpenSSLTime(now.NotAfter) || a.ExtraTime(store.FieldLastRenewal).IsZero() {
		t.Errorf("registry after renewal: %+v", a)
	}

	// The same engine, on its pooled connection, does not renew again; a
	// new connection resuming the old TLS session is made to do a full
	// handshake and sees the new certificate.
	if r := d.ping(e); r.Renewed != nil {
		t.Errorf("second ping renewed again: %+v", r.Renewed)
	}
	e.Close()
	if r := d.ping(e); r.Serial != a.Serial || r.Renewed != nil {
		t.Errorf("after closing idle connections: serial %s renewed %+v, want %s and no renewal", r.Serial, r.Renewed, a.Serial)
	}
	// A new process (engine) sees the new certificate and leaves it.
	if r := d.ping(d.engine()); r.Serial != a.Serial || r.Renewed != nil || r.ExpiryWarning != true {
		t.Errorf("new engine: %+v, want serial %s, no renewal, expiry warning (30 days)", r, a.Serial)
	}
	for _, want := range []string{"ACTION=renew ", "ACTION=renew-complete ", "OK=true", "OLD_SERIAL=" + pki.FormatSerial(old.SerialNumber)} {
		if !strings.Contains(agentLog.String(), want) {
			t.Errorf("agent log lacks %q:\n%s", want, agentLog.String())
		}
	}
	if !strings.Contains(d.log.String(), "ACTION=renew ") || !strings.Contains(d.log.String(), "STATUS=renewed") {
		t.Errorf("dispatcher log:\n%s", d.log.String())
	}

	// A run right after works; a forced renewal renews again.
	rep, err := e.Renew(context.Background(), control.RenewRequest{Hosts: []string{"web-01"}})
	if err != nil || !rep.OK || rep.Results[0].Status != control.RenewRenewed || rep.Results[0].OldSerial != a.Serial {
		t.Errorf("forced renew: %+v %v", rep, err)
	}
}

// post sends body to path with cert as the client certificate.
func (w *world) postAs(t *testing.T, cert tls.Certificate, path string, body any) (int, string) {
	t.Helper()
	resp, b, err := w.post(w.client(cert), path, body)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

func TestRenewCompleteRefusals(t *testing.T) {
	w, _ := newLoggedWorld(t)
	disp := w.ca.Dispatcher(t)
	before := w.served(t)
	file, _ := os.ReadFile(filepath.Join(w.dir, "agent.crt"))
	other := pkitest.NewCA(t)
	for _, tc := range []struct {
		name   string
		cert   string
		status int
		want   string
	}{
		{"another key", string(pki.CertPEM(w.ca.Agent(t, "web-01").Leaf)), http.StatusConflict, "another key"},
		{"another host", "", http.StatusConflict, "not a valid agent certificate"},
		{"another ca", "", http.StatusConflict, "not a valid agent certificate"},
		{"garbage", "not a certificate", http.StatusBadRequest, "cert:"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cert := tc.cert
			switch tc.name {
			case "another host":
				cert = string(pki.CertPEM(signFor(t, w.ca.CA, w.srv, "web-02")))
			case "another ca":
				cert = string(pki.CertPEM(signFor(t, other.CA, w.srv, "web-01")))
			}
			code, body := w.postAs(t, disp, wire.PathRenewComplete, wire.RenewCompleteRequest{Cert: cert, ReqID: "r"})
			if code != tc.status || !strings.Contains(body, tc.want) || !strings.Contains(body, "keeps its current certificate") {
				t.Errorf("%d %s; want %d %q", code, body, tc.status, tc.want)
			}
			if now := w.served(t); !now.Equal(before) {
				t.Error("the agent serves another certificate")
			}
			if f, _ := os.ReadFile(filepath.Join(w.dir, "agent.crt")); !bytes.Equal(f, file) {
				t.Error("agent.crt changed")
			}
		})
	}
}

// signFor issues a certificate from ca for the agent's own key under host.
func signFor(t *testing.T, ca *pki.CA, srv *Server, host string) *x509.Certificate {
	t.Helper()
	key, err := srv.snap.Load().signer()
	if err != nil {
		t.Fatal(err)
	}
	csrPEM, err := pki.CreateCSR(pki.Options{}, key, host)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.SignAgentCSR(pki.Options{}, csr, host, 30)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestRevocationsEndpoint(t *testing.T) {
	w, _ := newLoggedWorld(t)
	disp, retired := w.ca.Dispatcher(t), w.ca.Dispatcher(t)
	retiredSerial := pki.FormatSerial(retired.Leaf.SerialNumber)
	if code, _ := w.postAs(t, retired, wire.PathPing, wire.PingRequest{}); code != http.StatusOK {
		t.Fatalf("the retired certificate is refused before its revocation: %d", code)
	}
	for _, tc := range []struct {
		name   string
		cert   tls.Certificate
		body   wire.RevocationsRequest
		status int
	}{
		{"empty", disp, wire.RevocationsRequest{}, http.StatusBadRequest},
		{"not a serial", disp, wire.RevocationsRequest{Serials: []string{"xyz!"}}, http.StatusBadRequest},
		{"own serial", disp, wire.RevocationsRequest{Serials: []string{pki.FormatSerial(disp.Leaf.SerialNumber)}}, http.StatusConflict},
	} {
		if code, body := w.postAs(t, tc.cert, wire.PathRevocations, tc.body); code != tc.status {
			t.Errorf("%s: %d %s, want %d", tc.name, code, body, tc.status)
		}
	}
	// A legacy certificate admitted by the serial pin may not push.
	legacy := w.ca.Legacy(t, "dispatcher")
	write(t, filepath.Join(w.dir, "dispatcher-serial"), pki.FormatSerial(legacy.Leaf.SerialNumber)+"\n", 0o644)
	if err := w.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, body := w.postAs(t, legacy, wire.PathRevocations, wire.RevocationsRequest{Serials: []string{retiredSerial}}); code != http.StatusForbidden {
		t.Errorf("legacy push: %d %s, want 403", code, body)
	}

	// A kept-alive connection of the retired certificate, made before the
	// push, is refused from its next request on.
	kept := w.client(retired)
	if resp, _, err := w.post(kept, wire.PathPing, wire.PingRequest{}); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("kept-alive connection before the push: %v %v", resp, err)
	}
	code, body := w.postAs(t, disp, wire.PathRevocations, wire.RevocationsRequest{Serials: []string{retiredSerial, "0x0a"}, ReqID: "r1"})
	if code != http.StatusOK || !strings.Contains(body, `"added":2`) {
		t.Fatalf("push: %d %s", code, body)
	}
	if code, body := w.postAs(t, disp, wire.PathRevocations, wire.RevocationsRequest{Serials: []string{retiredSerial}}); code != http.StatusOK || !strings.Contains(body, `"added":0`) {
		t.Errorf("second push: %d %s, want added 0", code, body)
	}
	data, _ := os.ReadFile(filepath.Join(w.dir, "revoked-serials"))
	if !strings.Contains(string(data), retiredSerial+"\n") || !strings.Contains(string(data), "\n0a\n") || !strings.Contains(string(data), "# pushed by the dispatcher") {
		t.Errorf("revoked-serials:\n%s", data)
	}
	if _, _, err := w.post(w.client(retired), wire.PathPing, wire.PingRequest{}); err == nil {
		t.Error("the revoked certificate is still accepted")
	}
	if resp, body, err := w.post(kept, wire.PathPing, wire.PingRequest{}); err == nil && resp.StatusCode != http.StatusForbidden {
		t.Errorf("kept-alive connection after the push: %d %s, want 403 or a closed connection", resp.StatusCode, body)
	}
	// The file is what a reload reads: still refused after SIGHUP.
	if err := w.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, _, err := w.post(w.client(retired), wire.PathPing, wire.PingRequest{}); err == nil {
		t.Error("the revoked certificate is accepted after a reload")
	}
	if code, _ := w.postAs(t, disp, wire.PathPing, wire.PingRequest{}); code != http.StatusOK {
		t.Errorf("the pushing dispatcher is refused: %d", code)
	}
}

func TestDispatcherSerialEndpoint(t *testing.T) {
	w, _ := newLoggedWorld(t)
	disp := w.ca.Dispatcher(t)
	own := pki.FormatSerial(disp.Leaf.SerialNumber)
	if code, _ := w.postAs(t, disp, wire.PathDispatcherSerial, wire.DispatcherSerialRequest{Serial: "0x0b"}); code != http.StatusConflict {
		t.Errorf("another serial: %d, want 409", code)
	}
	if code, body := w.postAs(t, disp, wire.PathDispatcherSerial, wire.DispatcherSerialRequest{Serial: own}); code != http.StatusOK {
		t.Fatalf("own serial: %d %s", code, body)
	}
	if data, _ := os.ReadFile(filepath.Join(w.dir, "dispatcher-serial")); string(data) != own+"\n" {
		t.Errorf("dispatcher-serial = %q, want %q", data, own)
	}
	if pin := w.srv.snap.Load().pin; pin == nil || pin.Cmp(disp.Leaf.SerialNumber) != 0 {
		t.Errorf("live pin %v", pin)
	}
}

// After revoke SERIAL, the engine pushes the dispatcher revocation list
// on contact, once; after rotate-cert it pushes its serial to pending
// agents and marks them current.
func TestPushesOnContact(t *testing.T) {
	w, agentLog := newLoggedWorld(t)
	d := newDispatcher(t, w, nil)
	retired := w.ca.Dispatcher(t)
	r, err := control.Revoke(control.RevokeOptions{Registry: d.st, Revocations: d.st, Dispatcher: d.st},
		pki.FormatSerial(retired.Leaf.SerialNumber), "retired node")
	if err != nil || r.Kind != control.RevokedDispatcher {
		t.Fatalf("revoke: %+v %v", r, err)
	}
	e := d.engine()
	d.ping(e)
	if _, _, err := w.post(w.client(retired), wire.PathPing, wire.PingRequest{}); err == nil {
		t.Error("the retired certificate is accepted after the push")
	}
	a, _ := d.st.GetAgent("web-01")
	if a.ExtraString(store.FieldRevocationsPushed) == "" {
		t.Errorf("revocations_pushed not recorded: %+v", a.Extra)
	}
	d.ping(e)
	if n := strings.Count(agentLog.String(), "ACTION=revoke "); n != 1 {
		t.Errorf("%d pushes, want 1:\n%s", n, agentLog.String())
	}

	// rotate-cert: a new dispatcher identity; the agent is pending until
	// the new identity contacts it.
	dispKey := filepath.Join(d.dir, "dispatcher.key")
	dispCrt := filepath.Join(d.dir, "dispatcher.crt")
	res, err := control.RotateCert(control.RotateOptions{
		Identity:    control.DispatcherIdentity{CA: control.Pair{Cert: filepath.Join(d.dir, "ca.crt"), Key: filepath.Join(d.dir, "ca.key")}, At: control.Pair{Cert: dispCrt, Key: dispKey}, Days: 30},
		OverlapDays: 7, Registry: d.st, Rotations: d.st, Revocations: d.st,
	})
	if err != nil || res.Pending != 1 {
		t.Fatalf("rotate: %+v %v", res, err)
	}
	if rep, _ := control.SerialStatus(d.st, d.st, dispCrt, time.Now(), nil); rep.Agents[0].Status != store.SerialPending {
		t.Errorf("after rotation: %+v", rep.Agents)
	}
	// The old identity (another HA node) does not push its serial.
	d.ping(e)
	if a, _ := d.st.GetAgent("web-01"); a.ExtraString(store.FieldSerialStatus) != store.SerialPending {
		t.Errorf("an engine with the old certificate changed the status: %+v", a.Extra)
	}
	id, err := control.LoadIdentity(dispCrt, dispKey, filepath.Join(d.dir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	d.cert = id.Cert
	d.ping(d.engine())
	rep, _ := control.SerialStatus(d.st, d.st, dispCrt, time.Now(), nil)
	if a := rep.Agents[0]; a.Status != store.SerialCurrent || a.DispatcherSerial != res.Rotation.CurrentSerial || a.Confirmed == "" {
		t.Errorf("after the new identity's contact: %+v", a)
	}
	if data, _ := os.ReadFile(filepath.Join(w.dir, "dispatcher-serial")); strings.TrimSpace(string(data)) != res.Rotation.CurrentSerial {
		t.Errorf("agent's dispatcher-serial = %q, want %s", data, res.Rotation.CurrentSerial)
	}
}

func TestSweepRenewals(t *testing.T) {
	w := newWorld(t)
	key := w.shortLived(t)
	d := newDispatcher(t, w, key)
	e := d.engine()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.SweepRenewals(ctx, 50*time.Millisecond); close(done) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if a, _ := d.st.GetAgent("web-01"); !a.ExtraTime(store.FieldLastRenewal).IsZero() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no renewal by the sweep:\n%s", d.log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if !strings.Contains(d.log.String(), "STATUS=sweep") {
		t.Errorf("no sweep line:\n%s", d.log.String())
	}
	// Zero turns it off: it returns at once.
	e.SweepRenewals(context.Background(), 0)
}

// A run and a discovery renew too, and a failed renewal never changes
// their result.
func TestRenewalAfterRunAndDiscover(t *testing.T) {
	for _, op := range []string{"run", "discover"} {
		t.Run(op, func(t *testing.T) {
			w := newWorld(t)
			key := w.shortLived(t)
			d := newDispatcher(t, w, key)
			e := d.engine()
			switch op {
			case "run":
				rep, err := e.Run(context.Background(), control.RunRequest{Hosts: []string{"web-01"}, Script: "touch"})
				if err != nil || !rep.OK {
					t.Fatalf("run: %+v %v", rep, err)
				}
			case "discover":
				rep, err := e.Discover(context.Background(), control.DiscoverRequest{Hosts: []string{"web-01"}})
				if err != nil || !rep.OK {
					t.Fatalf("discover: %+v %v", rep, err)
				}
			}
			if a, _ := d.st.GetAgent("web-01"); a.ExtraTime(store.FieldLastRenewal).IsZero() {
				t.Errorf("not renewed after %s:\n%s", op, d.log.String())
			}
		})
	}
	// The dispatcher signs with a CA the agent does not trust: the agent
	// refuses the certificate, the renewal failure is logged at error
	// level, and the run is as successful as it was.
	w, agentLog := newLoggedWorld(t)
	key := w.shortLived(t)
	d := newDispatcher(t, w, key)
	pkitest.NewCA(t).WriteFiles(t, d.dir)
	rep, err := d.engine().Run(context.Background(), control.RunRequest{Hosts: []string{"web-01"}, Script: "touch"})
	if err != nil || !rep.OK || rep.Results[0].Error != "" {
		t.Fatalf("run: %+v %v", rep, err)
	}
	if logs := d.log.String(); !strings.Contains(logs, "ACTION=renew ") || !strings.Contains(logs, "LEVEL=error") || !strings.Contains(logs, "409") {
		t.Errorf("no renew error logged:\n%s", logs)
	}
	if !strings.Contains(agentLog.String(), "ACTION=renew-complete ") || !strings.Contains(agentLog.String(), "OK=false") {
		t.Errorf("agent log:\n%s", agentLog.String())
	}
	if a, _ := d.st.GetAgent("web-01"); !a.ExtraTime(store.FieldLastRenewal).IsZero() {
		t.Error("a failed renewal was recorded")
	}
}
