package wire

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
)

// agent is a Go agent on loopback: real mutual TLS with certificates of a
// test CA, the wire server helpers, and counters of what the server saw.
type agent struct {
	srv      *httptest.Server
	target   Target
	newConns atomic.Int32 // TCP connections accepted
	resumed  atomic.Int32 // handshakes that resumed a session
}

type agentOpts struct {
	cert      *tls.Certificate // server certificate (default: ca.Agent for the host)
	clientCAs *x509.CertPool   // default: the test CA
	handler   http.Handler     // default: agentMux
	maxTLS    uint16           // highest TLS version (default: 1.3)
}

func startAgent(t testing.TB, ca *pkitest.CA, host string, o agentOpts) *agent {
	t.Helper()
	if o.cert == nil {
		c := ca.Agent(t, host)
		o.cert = &c
	}
	if o.clientCAs == nil {
		o.clientCAs = ca.Pool()
	}
	if o.handler == nil {
		o.handler = agentMux(host)
	}
	a := &agent{}
	a.srv = httptest.NewUnstartedServer(LimitRequests(checkRequest(t, o.handler)))
	a.srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{*o.cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    o.clientCAs,
		MinVersion:   tls.VersionTLS12,
		MaxVersion:   o.maxTLS,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if cs.DidResume {
				a.resumed.Add(1)
			}
			return nil
		},
	}
	a.srv.Config.MaxHeaderBytes = MaxHeaderBytes
	a.srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			a.newConns.Add(1)
		}
	}
	a.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // handshake failures are the point of some tests
	a.srv.StartTLS()
	t.Cleanup(a.srv.Close)
	a.target = Target{Host: host, Addr: a.srv.Listener.Addr().String()}
	return a
}

// checkRequest asserts what every request from the Client looks like: a
// body always with Content-Length (Perl agents read exactly that many
// bytes), never chunked, and few header lines.
func checkRequest(t testing.TB, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			if r.Header.Get("Content-Length") == "" || r.ContentLength < 0 {
				t.Errorf("%s %s without Content-Length", r.Method, r.URL.Path)
			}
		}
		if len(r.TransferEncoding) != 0 {
			t.Errorf("%s %s with Transfer-Encoding %v", r.Method, r.URL.Path, r.TransferEncoding)
		}
		if n := headerLines(r); n > 8 {
			t.Errorf("%s %s with %d header lines: %v", r.Method, r.URL.Path, n, r.Header)
		}
		next.ServeHTTP(w, r)
	})
}

// agentMux answers /ping, /run (streaming when asked) and /capabilities as
// a Go agent would; other paths are 404.
func agentMux(host string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+PathPing, func(w http.ResponseWriter, r *http.Request) {
		var req PingRequest
		if err := DecodeRequest(r, &req); err != nil {
			var re *RequestError
			errors.As(err, &re)
			WriteError(w, re.Status, re.Msg)
			return
		}
		WriteJSON(w, http.StatusOK, PingResponse{Status: "ok", Host: host, Version: "1.0.0",
			Expiry: "Jun  7 16:28:00 2027 GMT", ReqID: req.ReqID})
	})
	mux.HandleFunc("POST "+PathRun, func(w http.ResponseWriter, r *http.Request) {
		var req RunRequest
		if err := DecodeRequest(r, &req); err != nil {
			var re *RequestError
			errors.As(err, &re)
			WriteError(w, re.Status, re.Msg)
			return
		}
		res := RunResponse{Script: req.Script, ReqID: req.ReqID, Exit: 3, DurationMS: 5}
		res.SetOutput([]byte("one\ntwo\n"), []byte("bad\xff\n"))
		if !WantsStream(r) {
			WriteJSON(w, http.StatusOK, res)
			return
		}
		sw := NewStreamWriter(w)
		for _, e := range []StreamEvent{
			NewStreamEvent("stdout", []byte("one\n")),
			NewStreamEvent("stderr", []byte("bad\xff\n")),
			NewStreamEvent("stdout", []byte("two\n")),
		} {
			if err := sw.Event(e); err != nil {
				return
			}
		}
		_ = sw.Final(res)
	})
	mux.HandleFunc("GET "+PathCapabilities, func(w http.ResponseWriter, r *http.Request) {
		WriteJSON(w, http.StatusOK, CapabilitiesResponse{Status: "ok", Host: host, Version: "1.0.0",
			Tags:    map[string]string{"env": "test"},
			Scripts: []ScriptInfo{{Name: "deploy", Path: "/opt/scripts/deploy", Executable: true}}})
	})
	return mux
}

func newClient(t testing.TB, ca *pkitest.CA, mod func(*ClientConfig)) *Client {
	t.Helper()
	cfg := ClientConfig{
		Cert:           ca.Dispatcher(t),
		Roots:          ca.Pool(),
		ConnectTimeout: 5 * time.Second,
		ReadTimeout:    5 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	c := NewClient(cfg)
	t.Cleanup(c.Close)
	return c
}

// wireError asserts err is an *Error of kind for host and returns it.
func wireError(t *testing.T, err error, host string, kind ErrorKind) *Error {
	t.Helper()
	var we *Error
	if !errors.As(err, &we) {
		t.Fatalf("error %v (%T) is not a *wire.Error", err, err)
	}
	if we.Kind != kind || we.Host != host {
		t.Fatalf("error %q: kind %q host %q, want kind %q host %q", we, we.Kind, we.Host, kind, host)
	}
	return we
}

func TestRoundTrips(t *testing.T) {
	ca := pkitest.NewCA(t)
	a := startAgent(t, ca, "web-01", agentOpts{})
	c := newClient(t, ca, nil)
	ctx := context.Background()

	pong, err := c.Ping(ctx, a.target, PingRequest{ReqID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	wantPong := &PingResponse{Status: "ok", Host: "web-01", Version: "1.0.0", Expiry: "Jun  7 16:28:00 2027 GMT", ReqID: "r1"}
	if d := cmp.Diff(wantPong, pong); d != "" {
		t.Errorf("ping (-want +got):\n%s", d)
	}

	run, err := c.Run(ctx, a.target, RunRequest{Script: "deploy", ReqID: "r2"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	stdout, stderr := run.Output()
	if run.Exit != 3 || string(stdout) != "one\ntwo\n" || string(stderr) != "bad\xff\n" || run.ReqID != "r2" {
		t.Errorf("run: %+v (stdout %q stderr %q)", run, stdout, stderr)
	}

	caps, err := c.Capabilities(ctx, a.target)
	if err != nil {
		t.Fatal(err)
	}
	wantCaps := &CapabilitiesResponse{Status: "ok", Host: "web-01", Version: "1.0.0", Tags: map[string]string{"env": "test"},
		Scripts: []ScriptInfo{{Name: "deploy", Path: "/opt/scripts/deploy", Executable: true}}}
	if d := cmp.Diff(wantCaps, caps); d != "" {
		t.Errorf("capabilities (-want +got):\n%s", d)
	}
}

func TestRunStream(t *testing.T) {
	ca := pkitest.NewCA(t)
	a := startAgent(t, ca, "web-01", agentOpts{})
	c := newClient(t, ca, nil)
	var events []StreamEvent
	run, err := c.Run(context.Background(), a.target, RunRequest{Script: "deploy", ReqID: "r3"}, func(e StreamEvent) {
		events = append(events, e)
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []StreamEvent{
		{Stream: "stdout", Data: "one\n"},
		{Stream: "stderr", Data: "bad\uFFFD\n", DataB64: "YmFk/wo="},
		{Stream: "stdout", Data: "two\n"},
	}
	if d := cmp.Diff(want, events); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
	if got := string(events[1].Bytes()); got != "bad\xff\n" {
		t.Errorf("event bytes %q", got)
	}
	wantRun := RunResponse{Script: "deploy", Exit: 3, Stdout: "one\ntwo\n", Stderr: "bad\uFFFD\n", StderrB64: "YmFk/wo=", ReqID: "r3", DurationMS: 5}
	if d := cmp.Diff(wantRun, *run); d != "" {
		t.Errorf("result (-want +got):\n%s", d)
	}
}

func TestRunStreamPlainAnswer(t *testing.T) {
	ca := pkitest.NewCA(t)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !WantsStream(r) {
			t.Errorf("request does not ask for a stream: Accept %q", r.Header.Get("Accept"))
		}
		WriteJSON(w, http.StatusOK, RunResponse{Script: "deploy", Exit: 0, Stdout: "all\n", ReqID: "r4"})
	})
	a := startAgent(t, ca, "web-01", agentOpts{handler: h})
	c := newClient(t, ca, nil)
	calls := 0
	run, err := c.Run(context.Background(), a.target, RunRequest{Script: "deploy", ReqID: "r4"}, func(StreamEvent) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if calls != 0 || run.Stdout != "all\n" || run.ReqID != "r4" {
		t.Errorf("calls %d, run %+v", calls, run)
	}
}

func TestAgentIdentity(t *testing.T) {
	ca := pkitest.NewCA(t)
	other := pkitest.NewCA(t)
	otherHost := ca.Agent(t, "web-02")
	otherCA := other.Agent(t, "web-01")
	dispatcherCert := ca.Dispatcher(t)
	for _, tc := range []struct {
		name string
		cert *tls.Certificate
		want pki.IdentityKind
	}{
		{"cert for another host", &otherHost, pki.IdentityHostMismatch},
		{"cert from another ca", &otherCA, pki.IdentityUntrusted},
		{"dispatcher cert", &dispatcherCert, pki.IdentityWrongRole},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var handled atomic.Bool
			h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) { handled.Store(true) })
			a := startAgent(t, ca, "web-01", agentOpts{cert: tc.cert, handler: h})
			c := newClient(t, ca, nil)
			_, err := c.Ping(context.Background(), a.target, PingRequest{ReqID: "x"})
			we := wireError(t, err, "web-01", KindTLS)
			var ie *pki.IdentityError
			if !errors.As(err, &ie) || ie.Kind != tc.want {
				t.Fatalf("error %q does not wrap a *pki.IdentityError of kind %v (got %v)", err, tc.want, ie)
			}
			if !strings.HasPrefix(we.Error(), "agent identity check failed: ") {
				t.Errorf("message %q", we.Error())
			}
			if handled.Load() {
				t.Error("the request reached an agent that failed the identity check")
			}
		})
	}
}

// tlsVersions runs f under TLS 1.3 and under TLS 1.2 (what older Perl
// agents speak), where client certificates and resumption work differently.
func tlsVersions(t *testing.T, f func(t *testing.T, maxTLS uint16)) {
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		t.Run(tls.VersionName(v), func(t *testing.T) { f(t, v) })
	}
}

func TestAgentRefusesDispatcherCert(t *testing.T) {
	tlsVersions(t, func(t *testing.T, maxTLS uint16) {
		ca := pkitest.NewCA(t)
		other := pkitest.NewCA(t)
		a := startAgent(t, ca, "web-01", agentOpts{maxTLS: maxTLS})
		c := newClient(t, ca, func(cfg *ClientConfig) { cfg.Cert = other.Dispatcher(t) })
		_, err := c.Ping(context.Background(), a.target, PingRequest{})
		we := wireError(t, err, "web-01", KindTLS)
		if !strings.HasPrefix(we.Error(), "agent refused the tls handshake: ") {
			t.Errorf("message %q", we.Error())
		}
	})
}

func TestConnectRefused(t *testing.T) {
	ca := pkitest.NewCA(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	c := newClient(t, ca, nil)
	start := time.Now()
	_, err = c.Ping(context.Background(), Target{Host: "web-01", Addr: addr}, PingRequest{})
	we := wireError(t, err, "web-01", KindConnect)
	if elapsed := time.Since(start); elapsed > 3*time.Second {
		t.Errorf("refused connection took %v", elapsed)
	}
	if !errors.Is(err, syscall.ECONNREFUSED) || we.Error() != "connect to "+addr+": connection refused" {
		t.Errorf("message %q", we.Error())
	}
}

// silentListener accepts connections and never says a word.
func silentListener(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	return ln.Addr().String()
}

func TestConnectTimeout(t *testing.T) {
	ca := pkitest.NewCA(t)
	addr := silentListener(t) // TCP connects, TLS never answers
	c := newClient(t, ca, func(cfg *ClientConfig) { cfg.ConnectTimeout = 300 * time.Millisecond })
	_, err := c.Ping(context.Background(), Target{Host: "web-01", Addr: addr}, PingRequest{})
	we := wireError(t, err, "web-01", KindTimeout)
	if we.Error() != "connect timeout after 0.3s" || !we.Timeout() {
		t.Errorf("message %q", we.Error())
	}
}

func TestReadTimeout(t *testing.T) {
	ca := pkitest.NewCA(t)
	gone := make(chan struct{})
	stop := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // net/http watches for a hang-up once the body is read
		select {
		case <-r.Context().Done(): // never answers; notices when the dispatcher hangs up
			close(gone)
		case <-stop:
		}
	})
	a := startAgent(t, ca, "web-01", agentOpts{handler: h})
	t.Cleanup(func() { close(stop) })
	c := newClient(t, ca, func(cfg *ClientConfig) { cfg.ReadTimeout = time.Second })
	start := time.Now()
	_, err := c.Ping(context.Background(), a.target, PingRequest{})
	we := wireError(t, err, "web-01", KindTimeout)
	if we.Error() != "read timeout after 1s" {
		t.Errorf("message %q, want %q", we.Error(), "read timeout after 1s")
	}
	if elapsed := time.Since(start); elapsed < time.Second || elapsed > 4*time.Second {
		t.Errorf("timed out after %v", elapsed)
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Error("the agent did not see the connection close")
	}
}

// A caller's deadline shorter than the read timeout wins and is reported in
// the same words.
func TestCallerDeadline(t *testing.T) {
	ca := pkitest.NewCA(t)
	stop := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		select {
		case <-r.Context().Done():
		case <-stop:
		}
	})
	a := startAgent(t, ca, "web-01", agentOpts{handler: h})
	t.Cleanup(func() { close(stop) })
	c := newClient(t, ca, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 1200*time.Millisecond)
	defer cancel()
	_, err := c.Run(ctx, a.target, RunRequest{Script: "x"}, nil)
	we := wireError(t, err, "web-01", KindTimeout)
	if we.Error() != "read timeout after 1s" || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("message %q", we.Error())
	}
}

// Cancelling a run closes its connection: that is how the agent learns to
// kill the script.
func TestRunCancel(t *testing.T) {
	ca := pkitest.NewCA(t)
	started := make(chan struct{})
	gone := make(chan struct{})
	stop := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req RunRequest
		if err := DecodeRequest(r, &req); err != nil {
			t.Error(err)
		}
		sw := NewStreamWriter(w)
		_ = sw.Event(NewStreamEvent("stdout", []byte("working\n")))
		close(started)
		select {
		case <-r.Context().Done():
			close(gone)
		case <-stop:
		}
	})
	a := startAgent(t, ca, "web-01", agentOpts{handler: h})
	t.Cleanup(func() { close(stop) })
	c := newClient(t, ca, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var got []string
	_, err := c.Run(ctx, a.target, RunRequest{Script: "long"}, func(e StreamEvent) {
		got = append(got, e.Data)
		<-started
		cancel() // the dispatcher gives up while the script runs
	})
	we := wireError(t, err, "web-01", KindCanceled)
	if we.Error() != "cancelled" || !errors.Is(err, context.Canceled) {
		t.Errorf("message %q", we.Error())
	}
	select {
	case <-gone:
	case <-time.After(5 * time.Second):
		t.Error("the agent did not see the connection close")
	}
	if d := cmp.Diff([]string{"working\n"}, got); d != "" {
		t.Errorf("events before cancel (-want +got):\n%s", d)
	}
}

func TestRefusals(t *testing.T) {
	ca := pkitest.NewCA(t)
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ping", func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusForbidden, ErrSerialMismatch)
	})
	mux.HandleFunc("POST /run", func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "boom", http.StatusInternalServerError) // text, not JSON
	})
	mux.HandleFunc("GET /capabilities", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `["not", "an", "object"]`)
	})
	a := startAgent(t, ca, "web-01", agentOpts{handler: mux})
	c := newClient(t, ca, nil)
	ctx := context.Background()

	_, err := c.Ping(ctx, a.target, PingRequest{})
	we := wireError(t, err, "web-01", KindHTTP)
	if we.Error() != "agent refused: 403 serial mismatch" || we.Status != 403 || errors.Is(err, ErrNotFound) {
		t.Errorf("403: %q status %d", we, we.Status)
	}

	_, err = c.Run(ctx, a.target, RunRequest{Script: "x"}, nil)
	we = wireError(t, err, "web-01", KindHTTP)
	if we.Error() != "agent refused: 500 internal server error" {
		t.Errorf("500: %q", we)
	}

	err = c.Do(ctx, a.target, http.MethodPost, PathRenew, PingRequest{ReqID: "r"}, nil)
	we = wireError(t, err, "web-01", KindHTTP)
	if !errors.Is(err, ErrNotFound) || we.Status != 404 {
		t.Errorf("404: %q status %d, want ErrNotFound", we, we.Status)
	}

	_, err = c.Capabilities(ctx, a.target)
	we = wireError(t, err, "web-01", KindProtocol)
	if we.Error() != "bad answer: not a json object" {
		t.Errorf("non-object answer: %q", we)
	}
}

func TestAnswerTooLarge(t *testing.T) {
	ca := pkitest.NewCA(t)
	big := strings.Repeat("x", 4096)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if WantsStream(r) {
			sw := NewStreamWriter(w)
			_ = sw.Event(StreamEvent{Stream: "stdout", Data: "small"})
			_ = sw.Final(RunResponse{Stdout: big})
			return
		}
		WriteJSON(w, http.StatusOK, RunResponse{Stdout: big})
	})
	a := startAgent(t, ca, "web-01", agentOpts{handler: h})
	c := newClient(t, ca, func(cfg *ClientConfig) { cfg.MaxResponseSize = 1024 })
	_, err := c.Run(context.Background(), a.target, RunRequest{Script: "x"}, nil)
	we := wireError(t, err, "web-01", KindProtocol)
	if we.Error() != "answer larger than 1024 bytes (lower output_limit on the agent)" {
		t.Errorf("plain: %q", we)
	}
	_, err = c.Run(context.Background(), a.target, RunRequest{Script: "x"}, func(StreamEvent) {})
	we = wireError(t, err, "web-01", KindProtocol)
	if !strings.HasPrefix(we.Error(), "stream line larger than 1024 bytes") {
		t.Errorf("stream: %q", we)
	}
}

func TestSessionResumption(t *testing.T) {
	tlsVersions(t, testSessionResumption)
}

func testSessionResumption(t *testing.T, maxTLS uint16) {
	ca := pkitest.NewCA(t)
	a := startAgent(t, ca, "web-01", agentOpts{maxTLS: maxTLS})
	var verified atomic.Int32
	pool := ca.Pool()
	c := newClient(t, ca, func(cfg *ClientConfig) {
		cfg.VerifyPeer = func(host string, chain []*x509.Certificate) error {
			verified.Add(1)
			return pki.VerifyAgent(chain, pool, host, nil, time.Now())
		}
	})
	ctx := context.Background()
	if _, err := c.Ping(ctx, a.target, PingRequest{}); err != nil {
		t.Fatal(err)
	}
	c.Close() // the next request needs a new connection
	if _, err := c.Ping(ctx, a.target, PingRequest{}); err != nil {
		t.Fatal(err)
	}
	got := []int32{a.newConns.Load(), a.resumed.Load(), verified.Load()}
	if d := cmp.Diff([]int32{2, 1, 2}, got); d != "" {
		t.Errorf("[connections resumed verifications] (-want +got):\n%s", d)
	}
}

// A resumed session is checked again: an agent whose identity is no longer
// accepted is refused even though its session is cached.
func TestResumedSessionStillVerified(t *testing.T) {
	ca := pkitest.NewCA(t)
	a := startAgent(t, ca, "web-01", agentOpts{})
	var refuse atomic.Bool
	pool := ca.Pool()
	c := newClient(t, ca, func(cfg *ClientConfig) {
		cfg.VerifyPeer = func(host string, chain []*x509.Certificate) error {
			if refuse.Load() {
				return &pki.IdentityError{Kind: pki.IdentityKeyMismatch, Reason: "public key does not match the pinned key"}
			}
			return pki.VerifyAgent(chain, pool, host, nil, time.Now())
		}
	})
	ctx := context.Background()
	if _, err := c.Ping(ctx, a.target, PingRequest{}); err != nil {
		t.Fatal(err)
	}
	c.Close()
	refuse.Store(true)
	_, err := c.Ping(ctx, a.target, PingRequest{})
	wireError(t, err, "web-01", KindTLS)
	var ie *pki.IdentityError
	if !errors.As(err, &ie) || ie.Kind != pki.IdentityKeyMismatch {
		t.Errorf("error %q does not wrap the identity error", err)
	}
	// The agent counts the resumption in its own goroutine, which may
	// still be finishing the handshake the client has already given up on.
	for deadline := time.Now().Add(2 * time.Second); a.resumed.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if n := a.resumed.Load(); n != 1 {
		t.Errorf("%d resumed handshakes, want 1", n)
	}
}

func TestKeepAlive(t *testing.T) {
	ca := pkitest.NewCA(t)
	a := startAgent(t, ca, "web-01", agentOpts{})
	c := newClient(t, ca, nil)
	for i := range 3 {
		if _, err := c.Ping(context.Background(), a.target, PingRequest{ReqID: strconv.Itoa(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.Run(context.Background(), a.target, RunRequest{Script: "s"}, func(StreamEvent) {}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Ping(context.Background(), a.target, PingRequest{}); err != nil {
		t.Fatal(err)
	}
	if n := a.newConns.Load(); n != 1 {
		t.Errorf("%d TCP connections for sequential requests, want 1", n)
	}
}

// Many requests to several agents at once: each goes to its own agent.
func TestConcurrentTargets(t *testing.T) {
	ca := pkitest.NewCA(t)
	var agents []*agent
	for _, h := range []string{"web-01", "web-02", "db-01"} {
		agents = append(agents, startAgent(t, ca, h, agentOpts{}))
	}
	c := newClient(t, ca, nil)
	var wg sync.WaitGroup
	for i := range 60 {
		a := agents[i%len(agents)]
		wg.Go(func() {
			pong, err := c.Ping(context.Background(), a.target, PingRequest{ReqID: strconv.Itoa(i)})
			if err != nil {
				t.Error(err)
				return
			}
			if pong.Host != a.target.Host || pong.ReqID != strconv.Itoa(i) {
				t.Errorf("ping %d to %s answered by %s for %s", i, a.target.Host, pong.Host, pong.ReqID)
			}
		})
	}
	wg.Wait()
}

// Connections are pooled per agent identity: a connection verified for one
// host name is never used for another.
func TestPoolPerHost(t *testing.T) {
	ca := pkitest.NewCA(t)
	cert := ca.Agent(t, "web-01")
	a := startAgent(t, ca, "web-01", agentOpts{cert: &cert})
	c := newClient(t, ca, nil)
	if _, err := c.Ping(context.Background(), a.target, PingRequest{}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Ping(context.Background(), Target{Host: "web-02", Addr: a.target.Addr}, PingRequest{})
	wireError(t, err, "web-02", KindTLS)
}

func TestInvalidTarget(t *testing.T) {
	ca := pkitest.NewCA(t)
	c := newClient(t, ca, nil)
	for _, target := range []Target{{Host: ""}, {Host: "a/b"}, {Host: "web-01", Addr: "[::1"}} {
		_, err := c.Ping(context.Background(), target, PingRequest{})
		wireError(t, err, target.Host, KindConnect)
	}
}

// perlAgent is a minimal agent in the manner of the Perl one: it reads the
// request line, at most 32 header lines and exactly Content-Length bytes,
// answers HTTP/1.0 with a Content-Length and closes the connection.
func perlAgent(t *testing.T, ca *pkitest.CA, host string) (Target, *atomic.Int32) {
	t.Helper()
	cert := ca.Agent(t, host)
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    ca.Pool(),
	})
	if err != nil {
		t.Fatal(err)
	}
	var conns atomic.Int32
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			conns.Add(1)
			serveLikePerl(t, conn, host)
		}
	}()
	return Target{Host: host, Addr: ln.Addr().String()}, &conns
}

func serveLikePerl(t *testing.T, conn net.Conn, host string) {
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	requestLine, err := br.ReadString('\n')
	if err != nil {
		t.Errorf("perl agent: read request line: %v", err)
		return
	}
	method, path, _ := strings.Cut(strings.TrimSpace(requestLine), " ")
	path, _, _ = strings.Cut(path, " ")
	length := 0
	for n := 0; ; n++ {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Errorf("perl agent: read header: %v", err)
			return
		}
		line = strings.TrimRight(line, "\r\n")
		if line == "" {
			break
		}
		if n == 32 {
			t.Errorf("perl agent: more than 32 header lines")
			return
		}
		name, value, _ := strings.Cut(line, ":")
		switch strings.ToLower(name) {
		case "content-length":
			length, _ = strconv.Atoi(strings.TrimSpace(value))
		case "transfer-encoding":
			t.Errorf("perl agent: Transfer-Encoding %s", value)
		}
	}
	body := make([]byte, length)
	if _, err := io.ReadFull(br, body); err != nil {
		t.Errorf("perl agent: read body: %v", err)
		return
	}
	var answer string
	switch {
	case method == "POST" && path == PathPing:
		answer = fmt.Sprintf(`{"status":"ok","host":%q,"version":"0.5.2","expiry":"Jun  7 16:28:00 2027 GMT","reqid":"p"}`, host)
	case method == "POST" && path == PathRun:
		answer = `{"script":"deploy","exit":0,"stdout":"perl says hi\n","stderr":"","reqid":"p"}`
	default:
		_, _ = io.WriteString(conn, "HTTP/1.0 404 Not Found\r\nContent-Type: text/plain\r\nContent-Length: 9\r\n\r\nnot found")
		return
	}
	_, _ = fmt.Fprintf(conn, "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(answer), answer)
}

func TestPerlAgent(t *testing.T) {
	ca := pkitest.NewCA(t)
	target, conns := perlAgent(t, ca, "web-09")
	c := newClient(t, ca, nil)
	ctx := context.Background()
	for range 2 {
		pong, err := c.Ping(ctx, target, PingRequest{ReqID: "p"})
		if err != nil {
			t.Fatal(err)
		}
		if pong.Status != "ok" || pong.Host != "web-09" || pong.Version != "0.5.2" {
			t.Errorf("ping: %+v", pong)
		}
	}
	calls := 0
	run, err := c.Run(ctx, target, RunRequest{Script: "deploy", ReqID: "p"}, func(StreamEvent) { calls++ })
	if err != nil {
		t.Fatal(err)
	}
	if run.Stdout != "perl says hi\n" || calls != 0 {
		t.Errorf("run: %+v, %d events", run, calls)
	}
	_, err = c.Capabilities(ctx, target)
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("capabilities on a perl agent: %v, want ErrNotFound", err)
	}
	if n := conns.Load(); n != 4 {
		t.Errorf("%d connections to an HTTP/1.0 agent for 4 requests, want 4", n)
	}
}

func BenchmarkPingWarm(b *testing.B) {
	ca := pkitest.NewCA(b)
	a := startAgent(b, ca, "web-01", agentOpts{})
	c := newClient(b, ca, nil)
	ctx := context.Background()
	if _, err := c.Ping(ctx, a.target, PingRequest{}); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Ping(ctx, a.target, PingRequest{ReqID: "bench"}); err != nil {
			b.Fatal(err)
		}
	}
	if n := a.newConns.Load(); n != 1 {
		b.Errorf("%d connections, want 1", n)
	}
}
