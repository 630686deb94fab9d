package pairing

import (
	"bytes"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// syncBuffer is a bytes.Buffer safe for a writer and a reader in two
// goroutines.
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

// waitFor waits until buf contains want.
func waitFor(t *testing.T, buf *syncBuffer, want string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if strings.Contains(buf.String(), want) {
			return
		}
	}
	t.Fatalf("output never showed %q:\n%s", want, buf.String())
}

// world is a dispatcher with a CA on disk, a files store and the pairing
// operations over them.
type world struct {
	dir string
	ca  *pkitest.CA
	st  *store.Files
	p   *control.Pairing
	log *syncBuffer
}

func newWorld(t *testing.T, maxQueue int) *world {
	t.Helper()
	dir := t.TempDir()
	w := &world{dir: dir, ca: pkitest.NewCA(t), st: store.NewFiles(filepath.Join(dir, "state")), log: &syncBuffer{}}
	w.ca.WriteFiles(t, dir)
	lg, closeLog, err := logging.New(logging.Options{Output: "stderr", Stderr: w.log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = closeLog() })
	w.p, err = control.NewPairing(control.PairingOptions{
		Queue: w.st, Registry: w.st, Revocations: w.st,
		CA:       control.Pair{Cert: filepath.Join(dir, "ca.crt"), Key: filepath.Join(dir, "ca.key")},
		MaxQueue: maxQueue,
		Log:      lg,
	})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// listener is a pairing server of w on 127.0.0.1 with short polls, and a
// client that trusts w's CA and records the leaf certificate it saw.
type listener struct {
	*world
	srv    *server
	addr   string
	client *http.Client

	mu    sync.Mutex
	chain []*x509.Certificate // as the client saw it
}

func startListener(t *testing.T, w *world) *listener {
	t.Helper()
	return startListenerWith(t, w, nil)
}

// startListenerWith is startListener with tune applied to the server
// before it serves.
func startListenerWith(t *testing.T, w *world, tune func(*server)) *listener {
	t.Helper()
	d := w.ca.Dispatcher(t)
	cert := d
	cert.Certificate = [][]byte{d.Certificate[0], w.ca.Cert.Raw}
	lg, _, _ := logging.New(logging.Options{Output: "stderr", Stderr: w.log})
	l := &listener{world: w, srv: newServer(w.p, cert, lg)}
	l.srv.maxPoll, l.srv.pollEvery = 2*time.Second, 20*time.Millisecond
	if tune != nil {
		tune(l.srv)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- l.srv.serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
	l.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs:    w.ca.Pool(),
		ServerName: "localhost",
		VerifyConnection: func(cs tls.ConnectionState) error {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.chain = cs.PeerCertificates
			return nil
		},
	}}}
	t.Cleanup(l.client.CloseIdleConnections)
	return l
}

func (l *listener) seenLeaf() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.chain[0].Raw
}

// agent is what request-pairing sends.
type agent struct {
	key crypto.Signer
	req wire.PairRequest
}

func newAgent(t *testing.T, host string) agent {
	t.Helper()
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.CreateCSR(pki.Options{}, key, host)
	if err != nil {
		t.Fatal(err)
	}
	return agent{key: key, req: wire.PairRequest{Hostname: host, CSR: string(csr), Nonce: "00112233445566778899aabbccddeeff", Port: 7443}}
}

type answer struct {
	status int
	body   []byte
	resp   wire.PairResponse
}

func (l *listener) do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := l.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode}
	a.body, _ = io.ReadAll(resp.Body)
	if err := json.Unmarshal(a.body, &a.resp); err != nil {
		t.Fatalf("%s %s: %d %q: %v", req.Method, req.URL.Path, a.status, a.body, err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s %s: Content-Type %q", req.Method, req.URL.Path, ct)
	}
	return a
}

func (l *listener) post(t *testing.T, body any) answer {
	t.Helper()
	var b []byte
	switch v := body.(type) {
	case string:
		b = []byte(v)
	default:
		var err error
		if b, err = json.Marshal(v); err != nil {
			t.Fatal(err)
		}
	}
	req, _ := http.NewRequest(http.MethodPost, "https://"+l.addr+wire.PathPair, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	return l.do(t, req)
}

func (l *listener) poll(t *testing.T, reqid, nonce string) answer {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, "https://"+l.addr+wire.PathPairPrefix+reqid, nil)
	req.Header.Set(wire.HeaderNonce, nonce)
	return l.do(t, req)
}

func csrDER(t *testing.T, csrPEM string) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(csrPEM))
	return b.Bytes
}

func TestPairOverTLS(t *testing.T) {
	w := newWorld(t, 10)
	l := startListener(t, w)
	a := newAgent(t, "web-01")
	tags := map[string]string{"role": "web", "env": "prod"}
	a.req.Tags = tags

	got := l.post(t, a.req)
	if got.status != http.StatusAccepted || got.resp.Status != wire.PairPending || len(got.resp.ReqID) != 16 {
		t.Fatalf("POST /pair: %d %s", got.status, got.body)
	}
	reqid := got.resp.ReqID

	// The listener sends its certificate and the CA, so the agent can
	// pin the CA by its key; the code binds the leaf the agent saw.
	l.mu.Lock()
	chain := l.chain
	l.mu.Unlock()
	if len(chain) != 2 || !chain[1].Equal(w.ca.Cert) {
		t.Fatalf("served chain has %d certificates; want the dispatcher's and the CA", len(chain))
	}
	reqs, err := w.p.ListRequests()
	if err != nil || len(reqs) != 1 {
		t.Fatalf("ListRequests: %+v, %v", reqs, err)
	}
	if want := wire.PairingCode(csrDER(t, a.req.CSR), l.seenLeaf()); reqs[0].Code != want || reqs[0].IP != "127.0.0.1" {
		t.Errorf("dispatcher code %s from %s; the agent computes %s", reqs[0].Code, reqs[0].IP, want)
	}
	if !maps.Equal(reqs[0].Tags, tags) {
		t.Errorf("queued tags %v, want %v", reqs[0].Tags, tags)
	}

	// Nothing decided: the poll waits maxPoll and says pending.
	start := time.Now()
	if p := l.poll(t, reqid, a.req.Nonce); p.status != http.StatusOK || p.resp.Status != wire.PairPending {
		t.Errorf("poll before a decision: %d %s", p.status, p.body)
	}
	if waited := time.Since(start); waited < l.srv.maxPoll/2 {
		t.Errorf("pending poll answered after %v; it should hold the request", waited)
	}

	// Approved from elsewhere while the agent polls: the answer comes at once.
	go func() {
		time.Sleep(100 * time.Millisecond)
		if _, err := w.p.Approve(reqid, false); err != nil {
			t.Error(err)
		}
	}()
	p := l.poll(t, reqid, a.req.Nonce)
	if p.status != http.StatusOK || p.resp.Status != wire.PairApproved || p.resp.Nonce != a.req.Nonce || p.resp.CA != string(w.ca.CertPEM()) {
		t.Fatalf("poll with an approval: %d %s", p.status, p.body)
	}
	cert, err := pki.ParseCertPEM([]byte(p.resp.Cert))
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.VerifyAgent([]*x509.Certificate{cert}, w.ca.Pool(), "web-01", a.key.Public(), time.Now()); err != nil {
		t.Errorf("certificate received: %v", err)
	}
	rec, err := w.st.GetAgent("web-01")
	if err != nil || rec.IP != "127.0.0.1" || rec.Port != 7443 || rec.Serial != pki.FormatSerial(cert.SerialNumber) || !maps.Equal(rec.Tags, tags) {
		t.Errorf("registry: %+v, %v", rec, err)
	}

	// A wrong nonce gets exactly what an unknown request id gets.
	wrong := l.poll(t, reqid, "ffffffffffffffffffffffffffffffff")
	unknown := l.poll(t, "0123456789abcdef", a.req.Nonce)
	noNonce := l.poll(t, reqid, "")
	badID := l.poll(t, "..%2fagents%2fweb-01", a.req.Nonce)
	for name, g := range map[string]answer{"wrong nonce": wrong, "no nonce": noNonce, "bad id": badID} {
		if g.status != http.StatusNotFound || !bytes.Equal(g.body, unknown.body) {
			t.Errorf("%s: %d %q; unknown reqid: %d %q", name, g.status, g.body, unknown.status, unknown.body)
		}
	}
	if unknown.status != http.StatusNotFound || unknown.resp.Status != wire.PairError {
		t.Errorf("unknown reqid: %d %s", unknown.status, unknown.body)
	}
	if !strings.Contains(w.log.String(), "ACTION=pair-request") || !strings.Contains(w.log.String(), "ACTION=pair-approve") {
		t.Errorf("logs:\n%s", w.log)
	}
}

func TestPairDeniedOverTLS(t *testing.T) {
	w := newWorld(t, 10)
	l := startListener(t, w)
	a := newAgent(t, "web-01")
	reqid := l.post(t, a.req).resp.ReqID
	if _, err := w.p.Deny(reqid, "not ours"); err != nil {
		t.Fatal(err)
	}
	p := l.poll(t, reqid, a.req.Nonce)
	if p.status != http.StatusOK || p.resp.Status != wire.PairDenied || p.resp.Reason != "not ours" || p.resp.Cert != "" {
		t.Errorf("denied: %d %s", p.status, p.body)
	}
}

func TestPairRefusalsOverTLS(t *testing.T) {
	w := newWorld(t, 2)
	l := startListener(t, w)
	good := newAgent(t, "web-01").req
	with := func(mod func(*wire.PairRequest)) wire.PairRequest {
		r := good
		mod(&r)
		return r
	}
	bigCSR := "-----BEGIN CERTIFICATE REQUEST-----\n" + strings.Repeat(strings.Repeat("A", 64)+"\n", 1600) + "-----END CERTIFICATE REQUEST-----\n"
	for _, c := range []struct {
		name   string
		body   any
		status int
		want   string
	}{
		{"host ../x", with(func(r *wire.PairRequest) { r.Hostname = "../x" }), 400, "host name"},
		{"host a b", with(func(r *wire.PairRequest) { r.Hostname = "a b" }), 400, "host name"},
		{"host 300 chars", with(func(r *wire.PairRequest) { r.Hostname = strings.Repeat("a", 300) }), 400, "253"},
		{"csr 100 KiB", with(func(r *wire.PairRequest) { r.CSR = bigCSR }), 413, "request too large"},
		{"csr 60 KiB of nonsense", with(func(r *wire.PairRequest) { r.CSR = bigCSR[:60<<10] }), 400, "certificate request"},
		{"csr not pem", with(func(r *wire.PairRequest) { r.CSR = "x" }), 400, "not PEM"},
		{"nonce short", with(func(r *wire.PairRequest) { r.Nonce = "abc" }), 400, "nonce"},
		{"port 0", with(func(r *wire.PairRequest) { r.Port = 0 }), 400, "port"},
		{"port 65536", with(func(r *wire.PairRequest) { r.Port = 65536 }), 400, "port"},
		{"not json", "hello", 400, "json"},
		{"array", "[1]", 400, "object"},
		{"wrong type", `{"hostname":"web-01","port":"7443"}`, 400, "port"},
		{"tag name with a space", with(func(r *wire.PairRequest) { r.Tags = map[string]string{"role": "web", "web server": "x"} }), 400,
			`key "tags.web server": tag names are 1-64 letters, digits, '_', '.' or '-'`},
		{"tag name 5000 chars", with(func(r *wire.PairRequest) { r.Tags = map[string]string{strings.Repeat("n", 5000): "x"} }), 400,
			`key "tags.` + strings.Repeat("n", 64) + `…": tag names are`},
		{"tag value with a control character", with(func(r *wire.PairRequest) { r.Tags = map[string]string{"env": "a\x1bb"} }), 400,
			`key "tags.env": tag values are printable text of at most 1024 bytes`},
		{"tag value 1025 bytes", with(func(r *wire.PairRequest) { r.Tags = map[string]string{"env": strings.Repeat("v", 1025)} }), 400, `key "tags.env"`},
		{"65 tags", with(func(r *wire.PairRequest) {
			r.Tags = map[string]string{}
			for i := range 65 {
				r.Tags[fmt.Sprint("t", i)] = "x"
			}
		}), 400, "65 tags; a dispatcher takes at most 64"},
		{"tags not an object", strings.Replace(string(mustJSON(t, good)), `{`, `{"tags":"role=web",`, 1), 400, "tags"},
		{"tag given twice", strings.Replace(string(mustJSON(t, good)), `{`, `{"tags":{"role":"web","role":"db"},`, 1), 400, `duplicate field "tags.role"`},
	} {
		got := l.post(t, c.body)
		if got.status != c.status || got.resp.Status != wire.PairError || !strings.Contains(got.resp.Reason, c.want) {
			t.Errorf("%s: %d %s; want %d with %q", c.name, got.status, got.body, c.status, c.want)
		}
		if len(got.resp.Reason) > 512 {
			t.Errorf("%s: a reason of %d bytes", c.name, len(got.resp.Reason))
		}
	}
	if reqs, _ := w.p.ListRequests(); len(reqs) != 0 {
		t.Fatalf("refused requests were queued: %+v", reqs)
	}

	if got := l.post(t, good); got.status != http.StatusAccepted {
		t.Fatalf("good request: %d %s", got.status, got.body)
	}
	got := l.post(t, newAgent(t, "web-01").req)
	if got.status != http.StatusConflict || !strings.Contains(got.resp.Reason, "already pending") {
		t.Errorf("second request for web-01: %d %s", got.status, got.body)
	}
	// A registered host name is queued (approving it will need --replace).
	if err := w.st.PutAgent(store.Agent{Hostname: "web-02", IP: "10.0.0.2", Serial: "0a1b"}); err != nil {
		t.Fatal(err)
	}
	if got := l.post(t, newAgent(t, "web-02").req); got.status != http.StatusAccepted {
		t.Errorf("registered host: %d %s", got.status, got.body)
	}
	got = l.post(t, newAgent(t, "web-03").req)
	if got.status != http.StatusTooManyRequests || got.resp.Reason != "queue full: 2 requests pending; approve or deny some, or raise pairing_max_queue" {
		t.Errorf("third request: %d %s", got.status, got.body)
	}
	if n := strings.Count(w.log.String(), "ACTION=pair-reject"); n < 21 {
		t.Errorf("%d pair-reject events, want one per refusal:\n%s", n, w.log)
	}

	// Anything else is 404, in the protocol's shape.
	req, _ := http.NewRequest(http.MethodGet, "https://"+l.addr+"/", nil)
	if got := l.do(t, req); got.status != http.StatusNotFound || got.resp.Status != wire.PairError {
		t.Errorf("GET /: %d %s", got.status, got.body)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestPollExpired(t *testing.T) {
	w := newWorld(t, 10)
	w.p, _ = control.NewPairing(control.PairingOptions{Queue: w.st, Registry: w.st, Revocations: w.st, Timeout: 300 * time.Millisecond})
	l := startListener(t, w)
	a := newAgent(t, "web-01")
	reqid := l.post(t, a.req).resp.ReqID
	p := l.poll(t, reqid, a.req.Nonce)
	if p.status != http.StatusOK || p.resp.Status != wire.PairDenied || p.resp.Reason != store.ReasonExpired {
		t.Errorf("poll past the expiry: %d %s", p.status, p.body)
	}
	// The sweep records the denial (and the queue no longer counts it).
	l.srv.expire()
	if r, err := w.st.GetPairRequest(reqid); err != nil || r.Status != store.PairDenied {
		t.Errorf("after the sweep: %+v, %v", r, err)
	}
}

// TestPollEndsWithTheListener: a long poll in flight when the listener
// stops answers "pending" at once instead of holding the shutdown.
func TestPollEndsWithTheListener(t *testing.T) {
	w := newWorld(t, 10)
	d := w.ca.Dispatcher(t)
	srv := newServer(w.p, d, nil)
	srv.maxPoll = time.Minute
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.serve(ctx, ln) }()
	a := newAgent(t, "web-01")
	pr, err := w.p.Submit(a.req, "127.0.0.1", d.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: w.ca.Pool(), ServerName: "localhost"}}}
	done := make(chan string, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("https://%s/pair/%s", ln.Addr(), pr.ReqID), nil)
		req.Header.Set(wire.HeaderNonce, a.req.Nonce)
		resp, err := client.Do(req)
		if err != nil {
			done <- err.Error()
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- string(b)
	}()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case got := <-done:
		if !strings.Contains(got, `"status":"pending"`) {
			t.Errorf("poll at shutdown: %s", got)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the poll outlived the listener")
	}
	if err := <-errc; err != nil {
		t.Errorf("serve: %v", err)
	}
	if d := time.Since(start); d > shutdownTimeout {
		t.Errorf("shutdown took %v", d)
	}
}

// TestServeCommand runs the role as dispatcher-pairing --config --port does,
// without a terminal: it serves the chain from the configured files, says
// what agents can pin, and stops with its context.
func TestServeCommand(t *testing.T) {
	w := newWorld(t, 10)
	certPEM, keyPEM := pkitest.PEM(t, w.ca.Dispatcher(t))
	for name, data := range map[string][]byte{"d.crt": certPEM, "d.key": keyPEM} {
		if err := os.WriteFile(filepath.Join(w.dir, name), data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(w.dir, "dispatcher.conf")
	body := fmt.Sprintf("ca = %q\ncert = %q\nkey = %q\nstate_dir = %q\nlog = %q\npairing_max_queue = 1\n",
		filepath.Join(w.dir, "ca.crt"), filepath.Join(w.dir, "d.crt"), filepath.Join(w.dir, "d.key"),
		filepath.Join(w.dir, "state"), filepath.Join(w.dir, "log"))
	if err := os.WriteFile(conf, []byte(body), 0o640); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	var stdout, stderr syncBuffer
	app := &cli.App{Name: "dispatcher-pairing", Flags: Flags(), Action: Serve, Commands: Commands(),
		Reader: strings.NewReader(""), Writer: &stdout, ErrWriter: &stderr, ExitErrHandler: func(*cli.Context, error) {}}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		errc <- app.RunContext(ctx, []string{"dispatcher-pairing", "serve", "--config", conf, "--port", strconv.Itoa(port), "--bind", "127.0.0.1"})
	}()
	fp, _ := pki.Fingerprint(w.ca.Cert.PublicKey)
	waitFor(t, &stderr, "--ca-fingerprint "+fp)

	l := &listener{world: w, addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	l.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{
		RootCAs: w.ca.Pool(), ServerName: "localhost",
		VerifyConnection: func(cs tls.ConnectionState) error {
			l.mu.Lock()
			defer l.mu.Unlock()
			l.chain = cs.PeerCertificates
			return nil
		},
	}}}
	defer l.client.CloseIdleConnections()
	if got := l.post(t, newAgent(t, "web-01").req); got.status != http.StatusAccepted {
		t.Fatalf("POST /pair: %d %s", got.status, got.body)
	}
	if len(l.chain) != 2 || !l.chain[1].Equal(w.ca.Cert) {
		t.Errorf("served %d certificates, want the dispatcher's and the CA", len(l.chain))
	}
	// pairing_max_queue = 1 from dispatcher.conf.
	if got := l.post(t, newAgent(t, "web-02").req); got.status != http.StatusTooManyRequests {
		t.Errorf("second request with pairing_max_queue 1: %d %s", got.status, got.body)
	}
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("serve: %v", err)
	}
	if stdout.String() != "" {
		t.Errorf("without a terminal nothing goes to stdout: %q", stdout.String())
	}
	logs, _ := os.ReadFile(filepath.Join(w.dir, "log"))
	for _, want := range []string{"ACTION=start", "ACTION=pair-request", "ACTION=pair-reject", "ACTION=stop"} {
		if !strings.Contains(string(logs), want) {
			t.Errorf("log lacks %s:\n%s", want, logs)
		}
	}
}
