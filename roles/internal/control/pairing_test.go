package control

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// pairWorld is a dispatcher's pairing side in a temporary directory: a CA
// on disk, a files store and the dispatcher leaf the listener would serve.
type pairWorld struct {
	t     *testing.T
	ca    *pkitest.CA
	st    *store.Files
	leaf  tls.Certificate
	clock *clock
	p     *Pairing
	log   bytes.Buffer
	logMu sync.Mutex
}

func newPairWorld(t *testing.T, mod func(*PairingOptions)) *pairWorld {
	t.Helper()
	dir := t.TempDir()
	w := &pairWorld{t: t, ca: pkitest.NewCA(t), st: store.NewFiles(filepath.Join(dir, "state")), clock: &clock{t: time.Now()}}
	w.ca.WriteFiles(t, dir)
	w.leaf = w.ca.Dispatcher(t)
	lg, closeLog, err := logging.New(logging.Options{Output: "stderr", Stderr: &lockedWriter{mu: &w.logMu, w: &w.log}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeLog() })
	o := PairingOptions{
		Queue: w.st, Registry: w.st, Revocations: w.st,
		CA:       Pair{Cert: filepath.Join(dir, "ca.crt"), Key: filepath.Join(dir, "ca.key")},
		CertDays: 30,
		PKI:      pki.Options{Now: w.clock.Now},
		Log:      lg,
	}
	if mod != nil {
		mod(&o)
	}
	w.p, err = NewPairing(o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *pairWorld) logs() string {
	w.logMu.Lock()
	defer w.logMu.Unlock()
	return w.log.String()
}

// agentRequest is what an agent for host sends: a fresh key's CSR, a
// nonce and its serving port.
func (w *pairWorld) agentRequest(host string, port int) (wire.PairRequest, crypto.Signer) {
	w.t.Helper()
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		w.t.Fatal(err)
	}
	csr, err := pki.CreateCSR(pki.Options{}, key, host)
	if err != nil {
		w.t.Fatal(err)
	}
	return wire.PairRequest{Hostname: host, CSR: string(csr), Nonce: "0123456789abcdef0123456789abcdef", Port: port}, key
}

func (w *pairWorld) submit(host string, port int) (PendingRequest, crypto.Signer) {
	w.t.Helper()
	req, key := w.agentRequest(host, port)
	pr, err := w.p.Submit(req, "127.0.0.1", w.leaf.Certificate[0])
	if err != nil {
		w.t.Fatalf("Submit(%s): %v", host, err)
	}
	return pr, key
}

func csrDER(t *testing.T, csrPEM string) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(csrPEM))
	if b == nil {
		t.Fatal("no PEM")
	}
	return b.Bytes
}

func TestPairingApprove(t *testing.T) {
	w := newPairWorld(t, nil)
	pr, key := w.submit("web-01", 7450)
	if pr.AlreadyPaired || pr.Status != store.PairPending || pr.IP != "127.0.0.1" || pr.Port != 7450 {
		t.Errorf("queued %+v", pr)
	}
	if want := wire.PairingCode(csrDER(t, pr.CSR), w.leaf.Certificate[0]); pr.Code != want || len(pr.Code) != 6 {
		t.Errorf("code %q, want %q (CSR and the served leaf)", pr.Code, want)
	}
	if !pr.Expires.Equal(pr.Created.Add(defaultPairingTimeout)) {
		t.Errorf("expires %v, created %v: want pairing_timeout later", pr.Expires, pr.Created)
	}
	list, err := w.p.ListRequests()
	if err != nil || len(list) != 1 || list[0].ReqID != pr.ReqID {
		t.Fatalf("ListRequests = %+v, %v", list, err)
	}

	ap, err := w.p.Approve(pr.ReqID, false)
	if err != nil {
		t.Fatal(err)
	}
	now := w.clock.Now()
	cert := ap.Cert
	if err := pki.VerifyAgent([]*x509.Certificate{cert}, w.ca.Pool(), "web-01", key.Public(), now); err != nil {
		t.Errorf("issued certificate: %v", err)
	}
	if days := cert.NotAfter.Sub(now).Hours() / 24; days < 29.9 || days > 30.1 {
		t.Errorf("validity %.1f days, want cert_days 30", days)
	}
	fp, _ := pki.Fingerprint(key.Public())
	got, err := w.st.GetAgent("web-01")
	if err != nil {
		t.Fatal(err)
	}
	want := store.Agent{Hostname: "web-01", IP: "127.0.0.1", Port: 7450, Paired: now.UTC().Format(time.RFC3339),
		Expiry: pki.FormatOpenSSLTime(cert.NotAfter), ReqID: pr.ReqID, KeyFingerprint: fp, Serial: pki.FormatSerial(cert.SerialNumber)}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("registry record (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want, ap.Agent); d != "" {
		t.Errorf("Approval.Agent (-want +got):\n%s", d)
	}

	// The agent's poll: the certificate, the CA and its own nonce.
	r, err := w.p.Poll(pr.ReqID, pr.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	if r.Status != store.PairApproved || r.Cert != string(pki.CertPEM(cert)) || r.CA != string(w.ca.CertPEM()) || r.Nonce != pr.Nonce {
		t.Errorf("poll after approval: %+v", r)
	}
	// A wrong nonce and an unknown reqid look the same.
	for _, c := range [][2]string{{pr.ReqID, "0123456789abcdef0123456789abcdee"}, {pr.ReqID, ""}, {"ffffffffffffffff", pr.Nonce}, {"../x", pr.Nonce}} {
		if _, err := w.p.Poll(c[0], c[1]); !errors.Is(err, ErrUnknownPairRequest) {
			t.Errorf("Poll(%q, %q) = %v, want ErrUnknownPairRequest", c[0], c[1], err)
		}
	}
	if l, _ := w.p.ListRequests(); len(l) != 0 {
		t.Errorf("approved request still listed: %+v", l)
	}
	logs := w.logs()
	for _, want := range []string{"ACTION=pair-request", "ACTION=pair-approve", "CODE=" + pr.Code, "SERIAL=" + want.Serial} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, pr.Nonce) {
		t.Errorf("the nonce was logged:\n%s", logs)
	}
}

// queue puts a request for host with tags in the queue as Submit leaves
// it, and returns its request id.
func (w *pairWorld) queue(host string, tags map[string]string) string {
	w.t.Helper()
	req, _ := w.agentRequest(host, 7443)
	now := w.clock.Now()
	r, err := w.st.AddPairRequest(store.PairRequest{Hostname: host, IP: "127.0.0.1", Port: req.Port, CSR: req.CSR, Nonce: req.Nonce,
		Code: "123456", Created: now, Expires: now.Add(time.Hour), Tags: tags}, 0)
	if err != nil {
		w.t.Fatal(err)
	}
	return r.ReqID
}

// TestPairingApproveTags: the registry record holds exactly the tags the
// agent sent, and none when it sent none.
func TestPairingApproveTags(t *testing.T) {
	w := newPairWorld(t, nil)
	for _, c := range []struct {
		host string
		tags map[string]string
		want map[string]string
	}{
		{"web-01", map[string]string{"role": "web", "env": "prod", "rack.row-2_b": "a b=c,d"}, map[string]string{"role": "web", "env": "prod", "rack.row-2_b": "a b=c,d"}},
		{"web-02", nil, nil},
		{"web-03", map[string]string{}, nil},
	} {
		req, _ := w.agentRequest(c.host, 7443)
		req.Tags = c.tags
		pr, err := w.p.Submit(req, "127.0.0.1", w.leaf.Certificate[0])
		if err != nil {
			t.Fatalf("%s: %v", c.host, err)
		}
		if d := cmp.Diff(c.want, pr.Tags); d != "" {
			t.Errorf("%s: queued tags (-want +got):\n%s", c.host, d)
		}
		ap, err := w.p.Approve(pr.ReqID, false)
		if err != nil {
			t.Fatalf("%s: %v", c.host, err)
		}
		got, err := w.st.GetAgent(c.host)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(c.want, got.Tags); d != "" {
			t.Errorf("%s: registry record tags (-want +got):\n%s", c.host, d)
		}
		if d := cmp.Diff(c.want, ap.Agent.Tags); d != "" {
			t.Errorf("%s: Approval.Agent tags (-want +got):\n%s", c.host, d)
		}
	}
	rec, err := os.ReadFile(filepath.Join(w.st.Dir(), "agents", "web-02.json"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(rec), "tags") {
		t.Errorf("record of a request without tags has a tags field:\n%s", rec)
	}
	for _, action := range []string{"pair-request", "pair-approve"} {
		if !regexp.MustCompile(`(?m)^ACTION=` + action + ` .*HOST=web-01 .*TAGS="\{\\"env\\":\\"prod\\",`).MatchString(w.logs()) {
			t.Errorf("%s does not log the tags:\n%s", action, w.logs())
		}
	}

	// A queued request whose tags an agent.conf could not hold (a queue
	// file from elsewhere) is not approved.
	bad := w.queue("web-04", map[string]string{"role": "web", "bad name": "x"})
	_, err = w.p.Approve(bad, false)
	var ie *InvalidPairRequestError
	if !errors.As(err, &ie) || !strings.Contains(err.Error(), `"tags.bad name"`) || !strings.Contains(err.Error(), "deny it") {
		t.Errorf("approve with a bad tag: %v, want *InvalidPairRequestError naming it", err)
	}
	if r, _ := w.st.GetPairRequest(bad); r.Status != store.PairPending {
		t.Errorf("refused approval decided the request: %s", r.Status)
	}
	if _, err := w.st.GetAgent("web-04"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("refused approval wrote a record: %v", err)
	}
}

func TestPairingSubmitRefusals(t *testing.T) {
	w := newPairWorld(t, func(o *PairingOptions) { o.MaxQueue = 2 })
	good, _ := w.agentRequest("web-01", 7443)
	badSig := func() string {
		der := csrDER(t, good.CSR)
		der[len(der)-5] ^= 0xff // inside the signature
		return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}))
	}()
	huge := strings.Repeat("A", 100<<10)
	for _, c := range []struct {
		name string
		mod  func(*wire.PairRequest)
		want string
	}{
		{"dot-dot", func(r *wire.PairRequest) { r.Hostname = "../x" }, `"../x"`},
		{"space", func(r *wire.PairRequest) { r.Hostname = "a b" }, "contains ' '"},
		{"300 chars", func(r *wire.PairRequest) { r.Hostname = strings.Repeat("a", 300) }, "the limit is 253"},
		{"empty host", func(r *wire.PairRequest) { r.Hostname = "" }, "empty"},
		{"short nonce", func(r *wire.PairRequest) { r.Nonce = "0123456789abcde" }, "nonce must be 16 to 128 hex digits"},
		{"nonce not hex", func(r *wire.PairRequest) { r.Nonce = "0123456789abcdefg" }, "hex digits only"},
		{"port 0", func(r *wire.PairRequest) { r.Port = 0 }, "port 0 is out of range"},
		{"port 70000", func(r *wire.PairRequest) { r.Port = 70000 }, "out of range"},
		{"csr garbage", func(r *wire.PairRequest) { r.CSR = "hello" }, "not PEM"},
		{"csr 100 KiB", func(r *wire.PairRequest) { r.CSR = huge }, "the limit is 65536"},
		{"csr bad signature", func(r *wire.PairRequest) { r.CSR = badSig }, "signature is invalid"},
		{"tag name", func(r *wire.PairRequest) { r.Tags = map[string]string{"env": "prod", "a/b": "x"} }, `key "tags.a/b": tag names are`},
		{"tag value", func(r *wire.PairRequest) { r.Tags = map[string]string{"env": "line\nbreak"} }, `key "tags.env": tag values are printable`},
	} {
		req := good
		c.mod(&req)
		_, err := w.p.Submit(req, "192.0.2.1", w.leaf.Certificate[0])
		var ie *InvalidPairRequestError
		if !errors.As(err, &ie) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want *InvalidPairRequestError with %q", c.name, err, c.want)
		}
	}
	if l, _ := w.p.ListRequests(); len(l) != 0 {
		t.Fatalf("refused requests were queued: %+v", l)
	}
	if n := strings.Count(w.logs(), "ACTION=pair-reject"); n != 13 {
		t.Errorf("%d pair-reject events, want 13:\n%s", n, w.logs())
	}

	w.submit("web-01", 7443)
	_, err := w.p.Submit(good, "192.0.2.1", w.leaf.Certificate[0])
	var pe *store.PendingExistsError
	if !errors.As(err, &pe) {
		t.Errorf("second request for web-01: %v, want *store.PendingExistsError", err)
	}
	w.submit("web-02", 7443)
	third, _ := w.agentRequest("web-03", 7443)
	_, err = w.p.Submit(third, "192.0.2.1", w.leaf.Certificate[0])
	var qf *store.QueueFullError
	if !errors.As(err, &qf) || !strings.Contains(err.Error(), "queue full: 2 requests pending") {
		t.Errorf("third request, pairing_max_queue 2: %v", err)
	}
}

func TestPairingReplace(t *testing.T) {
	w := newPairWorld(t, nil)
	first, _ := w.submit("web-01", 7443)
	old, err := w.p.Approve(first.ReqID, false)
	if err != nil {
		t.Fatal(err)
	}
	oldSerial := pki.FormatSerial(old.Cert.SerialNumber)

	// A registered host name is queued, flagged.
	again, key := w.submit("web-01", 7450)
	if !again.AlreadyPaired || again.PairedSerial != oldSerial {
		t.Errorf("re-pairing request not flagged: %+v", again)
	}
	if l, _ := w.p.ListRequests(); len(l) != 1 || !l[0].AlreadyPaired {
		t.Errorf("ListRequests: %+v", l)
	}
	_, err = w.p.Approve(again.ReqID, false)
	var ap *AlreadyPairedError
	if !errors.As(err, &ap) {
		t.Fatalf("approve without replace: %v, want *AlreadyPairedError", err)
	}
	if want := "web-01 is already paired (serial " + oldSerial + "); approve with --replace to re-pair it and revoke the old certificate"; err.Error() != want {
		t.Errorf("message:\n got %s\nwant %s", err, want)
	}
	if r, _ := w.st.GetPairRequest(again.ReqID); r.Status != store.PairPending {
		t.Errorf("refused approval changed the request: %s", r.Status)
	}
	if a, _ := w.st.GetAgent("web-01"); a.Serial != oldSerial {
		t.Errorf("refused approval changed the registry: %+v", a)
	}
	if set, _, _ := w.st.RevokedSerials(); set.Len() != 0 {
		t.Error("refused approval revoked something")
	}

	ne, err := w.p.Approve(again.ReqID, true)
	if err != nil {
		t.Fatal(err)
	}
	if ne.Revoked != oldSerial {
		t.Errorf("Approval.Revoked = %q, want %q", ne.Revoked, oldSerial)
	}
	set, _, _ := w.st.RevokedSerials()
	if !set.Contains(old.Cert.SerialNumber) || set.Contains(ne.Cert.SerialNumber) {
		t.Errorf("revoked %v: want the old serial only", set.Values())
	}
	a, _ := w.st.GetAgent("web-01")
	fp, _ := pki.Fingerprint(key.Public())
	if a.Serial != pki.FormatSerial(ne.Cert.SerialNumber) || a.KeyFingerprint != fp || a.Port != 7450 || a.ReqID != again.ReqID {
		t.Errorf("record after replace: %+v", a)
	}
	if !strings.Contains(w.logs(), "ACTION=revoke") {
		t.Errorf("no revoke event:\n%s", w.logs())
	}
}

func TestPairingDenyAndExpire(t *testing.T) {
	w := newPairWorld(t, nil)
	pr, _ := w.submit("web-01", 7443)
	if _, err := w.p.Deny(pr.ReqID, "  "); err != nil {
		t.Fatal(err)
	}
	r, err := w.p.Poll(pr.ReqID, pr.Nonce)
	if err != nil || r.Status != store.PairDenied || r.Reason != DefaultDenyReason || r.Cert != "" {
		t.Errorf("poll after deny: %+v, %v", r, err)
	}
	_, err = w.p.Approve(pr.ReqID, false)
	var de *store.DecidedError
	if !errors.As(err, &de) || !strings.Contains(err.Error(), "already denied") {
		t.Errorf("approve after deny: %v", err)
	}
	if _, err := w.st.GetAgent("web-01"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a denied host was registered: %v", err)
	}

	late, _ := w.submit("web-02", 7443)
	w.clock.Add(defaultPairingTimeout + time.Second)
	r, err = w.p.Poll(late.ReqID, late.Nonce)
	if err != nil || r.Status != store.PairDenied || r.Reason != store.ReasonExpired {
		t.Errorf("poll after expiry: %+v, %v", r, err)
	}
	if l, _ := w.p.ListRequests(); len(l) != 0 {
		t.Errorf("expired request listed: %+v", l)
	}
	expired, err := w.p.Expire()
	if err != nil || len(expired) != 1 || expired[0].ReqID != late.ReqID {
		t.Errorf("Expire = %+v, %v", expired, err)
	}
	if !strings.Contains(w.logs(), "ACTION=pair-deny") || !strings.Contains(w.logs(), "REASON=expired") {
		t.Errorf("logs:\n%s", w.logs())
	}
	if _, err := w.p.Approve(late.ReqID, false); !errors.As(err, &de) {
		t.Errorf("approve after expiry: %v", err)
	}
	// pairing_timeout after the decisions, the answers are gone.
	w.clock.Add(defaultPairingTimeout + time.Second)
	if _, err := w.p.Expire(); err != nil {
		t.Fatal(err)
	}
	if _, err := w.p.Poll(late.ReqID, late.Nonce); !errors.Is(err, ErrUnknownPairRequest) {
		t.Errorf("purged request: %v", err)
	}
}

func TestPairingApproveRace(t *testing.T) {
	w := newPairWorld(t, nil)
	pr, _ := w.submit("web-01", 7443)
	var (
		wg    sync.WaitGroup
		start = make(chan struct{})
		errs  [4]error
	)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			_, errs[i] = w.p.Approve(pr.ReqID, i%2 == 1)
		}()
	}
	close(start)
	wg.Wait()
	ok := 0
	for _, err := range errs {
		var de *store.DecidedError
		switch {
		case err == nil:
			ok++
		case !errors.As(err, &de):
			t.Errorf("losing approval: %v, want *store.DecidedError", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d approvals succeeded, want 1", ok)
	}
	if n := strings.Count(w.logs(), "ACTION=pair-approve"); n != 1 {
		t.Errorf("%d certificates issued (pair-approve events), want 1", n)
	}
	if set, _, _ := w.st.RevokedSerials(); set.Len() != 0 {
		t.Errorf("a racing approval revoked %v", set.Values())
	}
}

func TestPairingMissingCA(t *testing.T) {
	w := newPairWorld(t, func(o *PairingOptions) { o.CA = Pair{Cert: "/nonexistent/ca.crt", Key: "/nonexistent/ca.key"} })
	pr, _ := w.submit("web-01", 7443)
	_, err := w.p.Approve(pr.ReqID, false)
	var mc *MissingCAError
	if !errors.As(err, &mc) {
		t.Errorf("approve without a CA: %v", err)
	}
	if r, _ := w.st.GetPairRequest(pr.ReqID); r.Status != store.PairPending {
		t.Errorf("request %s after a failed approval", r.Status)
	}
}

// pairedAgent pairs host through Submit and Approve, then serves it with
// the issued certificate on 127.0.0.1, as the agent would. It returns the
// certificate, its port and a counter of the requests the agent received.
func pairedAgent(t *testing.T, w *pairWorld, f *fleet, host string, replace bool) (*x509.Certificate, int, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	pr, key := w.submit(host, port)
	ap, err := w.p.Approve(pr.ReqID, replace)
	if err != nil {
		t.Fatal(err)
	}
	var hits atomic.Int64
	h := f.handler(host)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		h.ServeHTTP(rw, r)
	}))
	srv.Listener.Close()
	srv.Listener = ln
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{ap.Cert.Raw}, PrivateKey: key, Leaf: ap.Cert}},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    w.ca.Pool(),
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return ap.Cert, port, &hits
}

func TestRevokedAgentRefused(t *testing.T) {
	w := newPairWorld(t, nil)
	f := &fleet{t: t, ca: w.ca, st: w.st}
	engine := func() *Engine {
		return f.engine(func(o *Options) {
			o.Identity = Identity{Cert: w.leaf, Roots: w.ca.Pool()}
			o.Revocations = w.st
		})
	}
	_, _, hits := pairedAgent(t, w, f, "web-01", false)
	report, err := engine().Ping(context.Background(), PingRequest{Hosts: []string{"web-01"}})
	if err != nil || !report.OK {
		t.Fatalf("ping a freshly paired agent: %+v, %v", report, err)
	}

	// Unpair: the record goes and the serial is revoked. Even with the
	// record put back (a restored backup), the agent is refused before
	// any request reaches it.
	rec, _ := w.st.GetAgent("web-01")
	removed, err := w.p.Unpair("web-01")
	if err != nil || removed.Serial != rec.Serial {
		t.Fatalf("Unpair = %+v, %v", removed, err)
	}
	if _, err := w.st.GetAgent("web-01"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("record still there: %v", err)
	}
	if _, err := w.p.Unpair("web-01"); !errors.Is(err, store.ErrNotFound) || !strings.Contains(err.Error(), "not paired") {
		t.Errorf("second unpair: %v", err)
	}
	if err := w.st.PutAgent(rec); err != nil {
		t.Fatal(err)
	}
	before := hits.Load()
	report, err = engine().Ping(context.Background(), PingRequest{Hosts: []string{"web-01"}})
	if err != nil {
		t.Fatal(err)
	}
	res := report.Results[0]
	if res.Status != StatusError || !strings.Contains(res.Error, "certificate serial "+rec.Serial+" is revoked") || !strings.Contains(res.Error, "pair web-01 again") {
		t.Errorf("ping a revoked agent: %+v", res)
	}
	if hits.Load() != before {
		t.Error("a request reached the revoked agent")
	}
	if !strings.Contains(f.logs(), "ACTION=serial-reject") {
		t.Errorf("no serial-reject event:\n%s", f.logs())
	}
	if !strings.Contains(w.logs(), "ACTION=unpair") || !strings.Contains(w.logs(), "ACTION=revoke") {
		t.Errorf("pairing logs:\n%s", w.logs())
	}

	// Re-paired with --replace: the old certificate, still served by the
	// old agent, is refused as revoked; the new one works.
	oldCert, oldPort, oldHits := pairedAgent(t, w, f, "web-02", false)
	_, newPort, _ := pairedAgent(t, w, f, "web-02", true)
	if rec, _ := w.st.GetAgent("web-02"); rec.Port != newPort {
		t.Fatalf("record after replace: %+v, want port %d", rec, newPort)
	}
	report, err = engine().Ping(context.Background(), PingRequest{Hosts: []string{"web-02"}})
	if err != nil || !report.OK {
		t.Errorf("ping the re-paired agent: %+v, %v", report, err)
	}
	before = oldHits.Load()
	report, err = engine().Ping(context.Background(), PingRequest{Hosts: []string{"web-02:" + strconv.Itoa(oldPort)}})
	if err != nil {
		t.Fatal(err)
	}
	want := "certificate serial " + pki.FormatSerial(oldCert.SerialNumber) + " is revoked"
	if res := report.Results[0]; res.Status != StatusError || !strings.Contains(res.Error, want) {
		t.Errorf("ping the replaced agent: %+v, want %q", res, want)
	}
	if oldHits.Load() != before {
		t.Error("a request reached the replaced agent")
	}
}

func TestRevocationListUnreadable(t *testing.T) {
	w := newPairWorld(t, nil)
	f := &fleet{t: t, ca: w.ca, st: w.st}
	path := filepath.Join(w.st.Dir(), "revoked-serials")
	if err := os.MkdirAll(path, 0o750); err != nil { // a directory cannot be read as a file
		t.Fatal(err)
	}
	e := f.engine(func(o *Options) { o.Revocations = w.st })
	_, err := e.Ping(context.Background(), PingRequest{Hosts: []string{"web-01"}})
	if err == nil || !strings.Contains(err.Error(), "revoked serials") {
		t.Errorf("ping with an unreadable revocation list: %v", err)
	}
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte("zz-not-a-serial\n"+pki.FormatSerial(big.NewInt(0xabc))+"\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	f.register(store.Agent{Hostname: "web-01", IP: "127.0.0.1", Port: deadPort(t)})
	if _, err := e.Ping(context.Background(), PingRequest{Hosts: []string{"web-01"}}); err != nil {
		t.Errorf("a bad line stopped the ping: %v", err)
	}
	if !strings.Contains(f.logs(), "ACTION=config-warn") {
		t.Errorf("bad line not logged:\n%s", f.logs())
	}
}
