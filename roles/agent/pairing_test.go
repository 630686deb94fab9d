package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
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
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// pairListener is a pairing listener on loopback for the agent's tests:
// real TLS with a dispatcher certificate sent as [leaf, CA], the protocol
// of WIRE.md, and the operator's decision played by the test.
type pairListener struct {
	t        *testing.T
	ca       *pkitest.CA
	srv      *httptest.Server
	leaf     *x509.Certificate
	requests atomic.Int32

	mu      sync.Mutex
	entries map[string]*pairEntry
	decide  func(e *pairEntry) wire.PairResponse // nil: pending
}

type pairEntry struct {
	id   string
	req  wire.PairRequest
	body []byte // as sent
	csr  *x509.CertificateRequest
	code string // the code the dispatcher shows, from its own leaf
}

func startPairListener(t *testing.T, ca *pkitest.CA) *pairListener {
	t.Helper()
	cert := ca.Dispatcher(t)
	cert.Certificate = append(cert.Certificate, ca.Cert.Raw)
	l := &pairListener{t: t, ca: ca, leaf: cert.Leaf, entries: map[string]*pairEntry{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathPair, l.handlePair)
	mux.HandleFunc("GET "+wire.PathPairPrefix+"{reqid}", l.handlePoll)
	l.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		l.requests.Add(1)
		mux.ServeHTTP(w, r)
	}))
	l.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	l.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	l.srv.StartTLS()
	t.Cleanup(l.srv.Close)
	return l
}

func (l *pairListener) port() string {
	_, p, _ := strings.Cut(l.srv.Listener.Addr().String(), ":")
	return p
}

func (l *pairListener) setDecide(f func(e *pairEntry) wire.PairResponse) {
	l.mu.Lock()
	l.decide = f
	l.mu.Unlock()
}

func (l *pairListener) handlePair(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		wire.WriteJSON(w, http.StatusBadRequest, wire.PairResponse{Status: wire.PairError, Reason: err.Error()})
		return
	}
	r.Body = io.NopCloser(bytes.NewReader(body))
	var req wire.PairRequest
	if err := wire.DecodeRequest(r, &req); err != nil {
		wire.WriteJSON(w, http.StatusBadRequest, wire.PairResponse{Status: wire.PairError, Reason: err.Error()})
		return
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		wire.WriteJSON(w, http.StatusBadRequest, wire.PairResponse{Status: wire.PairError, Reason: err.Error()})
		return
	}
	l.mu.Lock()
	e := &pairEntry{id: fmt.Sprintf("%016x", 0xabc0+len(l.entries)), req: req, body: body, csr: csr, code: wire.PairingCode(csr.Raw, l.leaf.Raw)}
	l.entries[e.id] = e
	l.mu.Unlock()
	wire.WriteJSON(w, http.StatusAccepted, wire.PairResponse{Status: wire.PairPending, ReqID: e.id})
}

func (l *pairListener) handlePoll(w http.ResponseWriter, r *http.Request) {
	l.mu.Lock()
	e := l.entries[r.PathValue("reqid")]
	decide := l.decide
	l.mu.Unlock()
	if e == nil || r.Header.Get(wire.HeaderNonce) != e.req.Nonce {
		wire.WriteJSON(w, http.StatusNotFound, wire.PairResponse{Status: wire.PairError, Reason: "unknown request"})
		return
	}
	answer := wire.PairResponse{Status: wire.PairPending}
	if decide != nil {
		answer = decide(e)
	}
	wire.WriteJSON(w, http.StatusOK, answer)
}

// approve signs the entry's CSR with ca as the dispatcher does.
func approve(t *testing.T, ca *pkitest.CA, e *pairEntry) wire.PairResponse {
	cert, err := ca.SignAgentCSR(pki.Options{}, e.csr, e.req.Hostname, pkitest.Days)
	if err != nil {
		t.Errorf("sign: %v", err)
		return wire.PairResponse{Status: wire.PairDenied}
	}
	return wire.PairResponse{Status: wire.PairApproved, Cert: string(pki.CertPEM(cert)), CA: string(ca.CertPEM()), Nonce: e.req.Nonce}
}

func (l *pairListener) only(t *testing.T) *pairEntry {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.entries) != 1 {
		t.Fatalf("listener has %d requests, want 1", len(l.entries))
	}
	for _, e := range l.entries {
		return e
	}
	return nil
}

// pairAgent is an unpaired agent's directory: agent.conf naming
// dir/etc/{agent.crt,agent.key,ca.crt}, none of which exists yet.
type pairAgent struct {
	dir, etc, conf string
}

func newPairAgent(t *testing.T, extra string) *pairAgent {
	t.Helper()
	a := &pairAgent{dir: t.TempDir()}
	a.etc = filepath.Join(a.dir, "etc")
	a.conf = filepath.Join(a.dir, "agent.conf")
	write(t, a.conf, fmt.Sprintf(`hostname = "web-01"
port = 7543
cert = %q
key = %q
ca = %q
log = "stderr"
%s`, a.path("agent.crt"), a.path("agent.key"), a.path("ca.crt"), extra), 0o640)
	return a
}

func (a *pairAgent) path(name string) string { return filepath.Join(a.etc, name) }

// pair runs request-pairing against l with args added.
func (a *pairAgent) pair(t *testing.T, l *pairListener, args ...string) result {
	t.Helper()
	return agentCmd(t, append([]string{"request-pairing", "--dispatcher", "127.0.0.1", "--port", l.port(), "--config", a.conf}, args...)...)
}

// assertModes checks each file's permission bits; mode 0 means absent.
func assertModes(t *testing.T, want map[string]fs.FileMode) {
	t.Helper()
	got := map[string]fs.FileMode{}
	for p := range want {
		fi, err := os.Lstat(p)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			got[p] = 0
		case err != nil:
			t.Fatal(err)
		default:
			got[p] = fi.Mode().Perm()
		}
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("files (-want +got, 0 = absent):\n%s", d)
	}
}

func (a *pairAgent) nothingStored(t *testing.T) {
	t.Helper()
	assertModes(t, map[string]fs.FileMode{
		a.path("agent.crt"): 0, a.path("agent.key"): 0, a.path("ca.crt"): 0,
		a.path("agent.key.pending"): 0, a.path("agent.csr"): 0, a.path("pairing.json"): 0,
	})
}

var codeLine = regexp.MustCompile(`(?m)^Pairing code: ([0-9]{6}) — check that the dispatcher shows the same code before approving$`)

func TestRequestPairingApproved(t *testing.T) {
	ca := pkitest.NewCA(t)
	l := startPairListener(t, ca)
	l.setDecide(func(e *pairEntry) wire.PairResponse { return approve(t, ca, e) })
	a := newPairAgent(t, "")

	r := a.pair(t, l, "--timeout", "20")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	e := l.only(t)
	lines := strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n")
	if len(lines) != 3 || lines[0] != "Request ID: "+e.id || !codeLine.MatchString(lines[1]) ||
		!strings.HasPrefix(lines[2], "Paired as web-01: certificate stored in "+a.path("agent.crt")+" (expires ") {
		t.Errorf("stdout:\n%s", r.stdout)
	}
	if got := codeLine.FindStringSubmatch(r.stdout)[1]; got != e.code {
		t.Errorf("agent shows %s, dispatcher %s", got, e.code)
	}
	if e.req.Hostname != "web-01" || e.req.Port != 7543 || len(e.req.Nonce) != 32 {
		t.Errorf("request sent: %+v", e.req)
	}
	assertModes(t, map[string]fs.FileMode{
		a.path("agent.key"): 0o640, a.path("agent.crt"): 0o644, a.path("ca.crt"): 0o644,
		a.path("agent.key.pending"): 0, a.path("agent.csr"): 0, a.path("pairing.json"): 0,
	})
	// The stored pair works as the daemon loads it, and is what was asked.
	cert, err := tls.LoadX509KeyPair(a.path("agent.crt"), a.path("agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	if !pki.PublicKeysEqual(cert.Leaf.PublicKey, e.csr.PublicKey) {
		t.Error("stored certificate is not for the key of the request")
	}
	if err := pki.VerifyAgent([]*x509.Certificate{cert.Leaf}, ca.Pool(), "web-01", nil, time.Time{}); err != nil {
		t.Error(err)
	}
	if !strings.Contains(r.stderr, "ACTION=pair-approve") {
		t.Errorf("no pair-approve event in the log:\n%s", r.stderr)
	}

	st := agentCmd(t, "pairing-status", "--config", a.conf)
	if st.code != 0 || !strings.Contains(st.stdout, "paired:   yes\n") || !strings.Contains(st.stdout, "hostname: web-01\n") {
		t.Errorf("pairing-status after pairing: exit %d\n%s", st.code, st.stdout)
	}

	// Paired now: another request is refused before anything is sent...
	before := l.requests.Load()
	again := a.pair(t, l)
	if again.code != 1 || !strings.Contains(again.stderr, "already paired as web-01") || !strings.Contains(again.stderr, "--force") {
		t.Errorf("second request: exit %d\n%s", again.code, again.stderr)
	}
	if l.requests.Load() != before {
		t.Error("a request was sent for an agent that is already paired")
	}
	// ... unless forced: the new certificate replaces the old one.
	forced := a.pair(t, l, "--force", "--timeout", "20")
	if forced.code != 0 {
		t.Fatalf("forced: exit %d\n%s", forced.code, forced.stderr)
	}
	now, err := tls.LoadX509KeyPair(a.path("agent.crt"), a.path("agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	if now.Leaf.Equal(cert.Leaf) || pki.PublicKeysEqual(now.Leaf.PublicKey, cert.Leaf.PublicKey) {
		t.Error("--force kept the old certificate or key")
	}
	if !strings.Contains(forced.stderr, "SIGHUP") {
		t.Errorf("no reload hint after re-pairing:\n%s", forced.stderr)
	}
}

// TestRequestPairingTags: the request carries agent.conf's [tags] (no
// "tags" at all without them, as older agents send it), and more tags
// than a dispatcher takes are refused before anything is sent.
func TestRequestPairingTags(t *testing.T) {
	ca := pkitest.NewCA(t)
	for _, c := range []struct {
		name, conf string
		want       map[string]string
	}{
		{"tags", "[tags]\nrole = \"web\"\nenv = \"prod\"\n", map[string]string{"role": "web", "env": "prod"}},
		{"no tags", "", nil},
	} {
		l := startPairListener(t, ca)
		l.setDecide(func(e *pairEntry) wire.PairResponse { return approve(t, ca, e) })
		a := newPairAgent(t, c.conf)
		if r := a.pair(t, l, "--timeout", "20"); r.code != 0 {
			t.Fatalf("%s: exit %d: %s", c.name, r.code, r.stderr)
		}
		e := l.only(t)
		if d := cmp.Diff(c.want, e.req.Tags); d != "" {
			t.Errorf("%s: tags sent (-want +got):\n%s", c.name, d)
		}
		if strings.Contains(string(e.body), `"tags"`) != (c.want != nil) {
			t.Errorf("%s: body sent: %s", c.name, e.body)
		}
	}

	l := startPairListener(t, ca)
	var many strings.Builder
	many.WriteString("[tags]\n")
	for i := range 65 {
		fmt.Fprintf(&many, "t%d = \"x\"\n", i)
	}
	a := newPairAgent(t, many.String())
	r := a.pair(t, l, "--timeout", "1")
	if r.code != 1 || !strings.Contains(r.stderr, "[tags] of agent.conf cannot be sent for pairing") ||
		!strings.Contains(r.stderr, "65 tags; a dispatcher takes at most 64, remove some") {
		t.Errorf("65 tags: exit %d\n%s", r.code, r.stderr)
	}
	if n := l.requests.Load(); n != 0 {
		t.Errorf("65 tags: %d requests sent", n)
	}
	a.nothingStored(t)
}

func TestRequestPairingDenied(t *testing.T) {
	l := startPairListener(t, pkitest.NewCA(t))
	l.setDecide(func(*pairEntry) wire.PairResponse {
		return wire.PairResponse{Status: wire.PairDenied, Reason: "unknown host"}
	})
	a := newPairAgent(t, "")
	r := a.pair(t, l)
	if r.code != ExitPairDenied || !strings.Contains(r.stderr, "denied by the dispatcher (unknown host): nothing stored") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
	a.nothingStored(t)
}

func TestRequestPairingTimeout(t *testing.T) {
	l := startPairListener(t, pkitest.NewCA(t))
	a := newPairAgent(t, "")
	start := time.Now()
	r := a.pair(t, l, "--timeout", "1")
	if r.code != ExitPairTimeout || !strings.Contains(r.stderr, "no answer to pairing request") {
		t.Errorf("exit %d\n%s", r.code, r.stderr)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("--timeout 1 took %v", d)
	}
	a.nothingStored(t)
	if st := agentCmd(t, "pairing-status", "--config", a.conf); st.code != 1 || !strings.Contains(st.stdout, "paired:   no (no certificate at ") {
		t.Errorf("pairing-status unpaired: exit %d\n%s", st.code, st.stdout)
	}
}

func TestRequestPairingRefusesBadApprovals(t *testing.T) {
	ca := pkitest.NewCA(t)
	evil := pkitest.NewCA(t)
	for name, tc := range map[string]struct {
		answer func(e *pairEntry) wire.PairResponse
		want   string
	}{
		"nonce mismatch": {func(e *pairEntry) wire.PairResponse {
			r := approve(t, ca, e)
			r.Nonce = strings.Repeat("0", 32)
			return r
		}, "does not carry the request's nonce"},
		"certificate from a CA that did not sign the dispatcher": {func(e *pairEntry) wire.PairResponse {
			return approve(t, evil, e)
		}, "did not sign the dispatcher certificate"},
		"certificate for another host": {func(e *pairEntry) wire.PairResponse {
			e.req.Hostname = "web-02"
			return approve(t, ca, e)
		}, "host name mismatch"},
		"certificate for another key": {func(e *pairEntry) wire.PairResponse {
			other := ca.Agent(t, "web-01")
			return wire.PairResponse{Status: wire.PairApproved, Cert: string(pki.CertPEM(other.Leaf)), CA: string(ca.CertPEM()), Nonce: e.req.Nonce}
		}, "another key"},
	} {
		t.Run(name, func(t *testing.T) {
			l := startPairListener(t, ca)
			l.setDecide(tc.answer)
			a := newPairAgent(t, "")
			r := a.pair(t, l, "--timeout", "20")
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stderr, "nothing stored") {
				t.Errorf("exit %d, want 1 and %q\n%s", r.code, tc.want, r.stderr)
			}
			a.nothingStored(t)
		})
	}
}

func TestRequestPairingCAFingerprint(t *testing.T) {
	ca := pkitest.NewCA(t)
	l := startPairListener(t, ca)
	l.setDecide(func(e *pairEntry) wire.PairResponse { return approve(t, ca, e) })

	other, err := pki.Fingerprint(pkitest.NewCA(t).Cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	a := newPairAgent(t, "")
	r := a.pair(t, l, "--ca-fingerprint", other)
	if r.code != 1 || !strings.Contains(r.stderr, "does not match --ca-fingerprint "+other+": refusing to pair with it") {
		t.Errorf("wrong pin: exit %d\n%s", r.code, r.stderr)
	}
	if n := l.requests.Load(); n != 0 {
		t.Errorf("%d requests reached a dispatcher of another CA", n)
	}
	a.nothingStored(t)

	right, _ := pki.Fingerprint(ca.Cert.PublicKey)
	if r := a.pair(t, l, "--ca-fingerprint", right, "--timeout", "20"); r.code != 0 {
		t.Errorf("right pin: exit %d\n%s", r.code, r.stderr)
	}

	if r := a.pair(t, l, "--force", "--ca-fingerprint", "sha1:abcd"); r.code != 2 || !strings.Contains(r.stderr, "--ca-fingerprint") {
		t.Errorf("malformed pin: exit %d\n%s", r.code, r.stderr)
	}
}

func TestRequestPairingPreflight(t *testing.T) {
	l := startPairListener(t, pkitest.NewCA(t))
	a := newPairAgent(t, "")
	// The certificate directory cannot be created: a file is in the way
	// (permissions would not stop root).
	blocker := filepath.Join(a.dir, "blocker")
	write(t, blocker, "not a directory\n", 0o644)
	write(t, a.conf, fmt.Sprintf("hostname = \"web-01\"\ncert = %q\nkey = %q\nca = %q\nlog = \"stderr\"\n",
		filepath.Join(blocker, "sub", "agent.crt"), a.path("agent.key"), a.path("ca.crt")), 0o640)
	r := a.pair(t, l)
	want := "cannot create " + filepath.Join(blocker, "sub") + ", the directory of cert"
	if r.code != 1 || !strings.Contains(r.stderr, want) || !strings.Contains(r.stderr, "sudo") {
		t.Errorf("exit %d, want 1 and %q\n%s", r.code, want, r.stderr)
	}
	if n := l.requests.Load(); n != 0 {
		t.Errorf("%d requests sent despite the failed preflight", n)
	}
	if _, err := os.Stat(a.path("agent.key.pending")); !errors.Is(err, fs.ErrNotExist) {
		t.Error("a key was made despite the failed preflight")
	}

	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--hostname", "../x"}, "--hostname"},
		{[]string{"--hostname", "a b"}, "--hostname"},
		{[]string{"--hostname", strings.Repeat("a", 300)}, "--hostname"},
		{[]string{"--timeout", "601"}, "--timeout must be 1-600"},
		{[]string{"--timeout", "0"}, "--timeout must be 1-600"},
	} {
		if r := a.pair(t, l, tc.args...); r.code != 2 || !strings.Contains(r.stderr, tc.want) {
			t.Errorf("%v: exit %d, want 2 and %q\n%s", tc.args, r.code, tc.want, r.stderr)
		}
	}
	if r := agentCmd(t, "request-pairing", "--config", a.conf); r.code != 2 || !strings.Contains(r.stderr, "--dispatcher is required") {
		t.Errorf("no --dispatcher: exit %d\n%s", r.code, r.stderr)
	}
	if l.requests.Load() != 0 {
		t.Error("a refused command sent a request")
	}
}

func TestDispatcherAddr(t *testing.T) {
	for _, tc := range []struct {
		arg     string
		port    int
		portSet bool
		want    string
		ok      bool
	}{
		{"ctl-01", 7444, false, "ctl-01:7444", true},
		{"ctl-01:9000", 7444, false, "ctl-01:9000", true},
		{"ctl-01:9000", 9000, true, "ctl-01:9000", true},
		{"ctl-01:9000", 9001, true, "", false},
		{"10.0.0.1", 7444, false, "10.0.0.1:7444", true},
		{"::1", 7444, false, "[::1]:7444", true},
		{"[::1]:7000", 7444, false, "[::1]:7000", true},
		{"a/b", 7444, false, "", false},
		{"", 7444, false, "", false},
		{"ctl-01", 0, true, "", false},
	} {
		got, err := dispatcherAddr(tc.arg, tc.port, tc.portSet)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("dispatcherAddr(%q, %d, %v) = %q, %v; want %q ok=%v", tc.arg, tc.port, tc.portSet, got, err, tc.want, tc.ok)
		}
	}
}

// Background mode prints the request id alone and returns at once; the
// waiting process (this test binary started as dispatcher-agent) stores
// the certificate once the request is approved.
func TestRequestPairingBackground(t *testing.T) {
	ca := pkitest.NewCA(t)
	l := startPairListener(t, ca)
	a := newPairAgent(t, "")
	start := time.Now()
	r := a.pair(t, l, "--background", "--timeout", "30")
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("--background took %v to return", d)
	}
	e := l.only(t)
	if r.stdout != e.id+"\n" {
		t.Errorf("stdout %q, want the request id alone on one line", r.stdout)
	}
	// The code is the first six digits on stderr, where scripts find it.
	if m := regexp.MustCompile(`[0-9]{6}`).FindString(r.stderr); m != e.code {
		t.Errorf("first 6 digits on stderr %q, want the code %s\n%s", m, e.code, r.stderr)
	}
	st := agentCmd(t, "pairing-status", "--config", a.conf)
	if st.code != 1 || !strings.Contains(st.stdout, "pending:  request "+e.id) || !strings.Contains(st.stdout, "code "+e.code) {
		t.Errorf("pairing-status while pending: exit %d\n%s", st.code, st.stdout)
	}

	l.setDecide(func(e *pairEntry) wire.PairResponse { return approve(t, ca, e) })
	deadline := time.Now().Add(20 * time.Second)
	for agentCmd(t, "pairing-status", "--config", a.conf).code != 0 {
		if time.Now().After(deadline) {
			logData, _ := os.ReadFile(a.path("pairing.log"))
			t.Fatalf("not paired 20s after approval; waiting process log:\n%s", logData)
		}
		time.Sleep(200 * time.Millisecond)
	}
	assertModes(t, map[string]fs.FileMode{
		a.path("agent.key"): 0o640, a.path("agent.crt"): 0o644, a.path("ca.crt"): 0o644,
		a.path("agent.key.pending"): 0, a.path("agent.csr"): 0, a.path("pairing.json"): 0,
	})
	// The outcome is logged where the waiting process's stderr went.
	for time.Now().Before(deadline) {
		if b, _ := os.ReadFile(a.path("pairing.log")); strings.Contains(string(b), "ACTION=pair-approve") {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Error("no pair-approve line in pairing.log")
}

// resumePairing is the background waiting process's work, tested in
// process.
func TestResumePairing(t *testing.T) {
	ca := pkitest.NewCA(t)
	l := startPairListener(t, ca)
	a := newPairAgent(t, "")
	cfg, err := loadConfig(paths{config: a.conf, configSet: true}, zap.NewNop())
	if err != nil {
		t.Fatal(err)
	}
	port, _ := strconv.Atoi(l.port())
	submit := func(wait time.Duration) *pairState {
		t.Helper()
		pr := newPairer(pairFilesFor(cfg), nil)
		if err := checkWritable(pr.files); err != nil {
			t.Fatal(err)
		}
		st, _, err := pr.submit(context.Background(), pairOptions{dispatcher: fmt.Sprintf("127.0.0.1:%d", port), hostname: "web-01", port: 7543, wait: wait})
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	state := pairFilesFor(cfg).state()

	t.Run("pending material on disk", func(t *testing.T) {
		st := submit(time.Minute)
		assertModes(t, map[string]fs.FileMode{a.path("agent.key.pending"): 0o600, a.path("agent.csr"): 0o644, state: 0o600})
		var onDisk pairState
		b, _ := os.ReadFile(state)
		if err := json.Unmarshal(b, &onDisk); err != nil {
			t.Fatal(err)
		}
		if onDisk.ReqID != st.ReqID || onDisk.Dispatcher != st.Dispatcher || onDisk.Code != st.Code || len(onDisk.Leaf) == 0 {
			t.Errorf("state on disk %+v", onDisk)
		}
		// A newer request replaces it; the older one's answer is then
		// ignored and the newer request's files are left alone.
		newer := submit(time.Minute)
		l.setDecide(func(e *pairEntry) wire.PairResponse { return approve(t, ca, e) })
		_, err := newPairer(st.Files, nil).await(context.Background(), st)
		if err == nil || !strings.Contains(err.Error(), "replaced by a newer request") {
			t.Errorf("superseded request: %v", err)
		}
		assertModes(t, map[string]fs.FileMode{a.path("agent.key.pending"): 0o600, a.path("agent.csr"): 0o644, state: 0o600, a.path("agent.crt"): 0})
		if cur, _ := readState(state); cur == nil || cur.ReqID != newer.ReqID {
			t.Errorf("state now %+v, want the newer request %s", cur, newer.ReqID)
		}
	})

	t.Run("approved", func(t *testing.T) {
		l.setDecide(func(e *pairEntry) wire.PairResponse { return approve(t, ca, e) })
		cert, err := resumePairing(context.Background(), state, nil)
		if err != nil {
			t.Fatal(err)
		}
		if certName(cert) != "web-01" {
			t.Errorf("certificate for %s", certName(cert))
		}
		a.storedOnly(t)
	})

	t.Run("denied", func(t *testing.T) {
		os.RemoveAll(a.etc)
		submit(time.Minute)
		l.setDecide(func(*pairEntry) wire.PairResponse { return wire.PairResponse{Status: wire.PairDenied} })
		_, err := resumePairing(context.Background(), state, nil)
		if code := exitCode(err); code != ExitPairDenied {
			t.Errorf("exit %d: %v", code, err)
		}
		a.nothingStored(t)
	})

	t.Run("timeout", func(t *testing.T) {
		submit(time.Second)
		l.setDecide(nil)
		_, err := resumePairing(context.Background(), state, nil)
		if code := exitCode(err); code != ExitPairTimeout {
			t.Errorf("exit %d: %v", code, err)
		}
		a.nothingStored(t)
	})

	t.Run("forgotten by the dispatcher", func(t *testing.T) {
		st := submit(time.Minute)
		l.mu.Lock()
		delete(l.entries, st.ReqID)
		l.mu.Unlock()
		_, err := resumePairing(context.Background(), state, nil)
		if code := exitCode(err); code != ExitPairTimeout || !strings.Contains(err.Error(), "request unknown or expired") {
			t.Errorf("exit %d: %v", code, err)
		}
		a.nothingStored(t)
	})

	t.Run("cancelled", func(t *testing.T) {
		submit(time.Minute)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := resumePairing(ctx, state, nil)
		if code := exitCode(err); code != 1 || !strings.Contains(err.Error(), "cancelled") {
			t.Errorf("exit %d: %v", code, err)
		}
		a.nothingStored(t)
	})

	t.Run("no state", func(t *testing.T) {
		if _, err := resumePairing(context.Background(), state, nil); err == nil {
			t.Error("resumed without a state file")
		}
	})
}

func (a *pairAgent) storedOnly(t *testing.T) {
	t.Helper()
	assertModes(t, map[string]fs.FileMode{
		a.path("agent.key"): 0o640, a.path("agent.crt"): 0o644, a.path("ca.crt"): 0o644,
		a.path("agent.key.pending"): 0, a.path("agent.csr"): 0, a.path("pairing.json"): 0,
	})
}

func exitCode(err error) int { return cmdutil.Code(err) }
