package wire

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
)

// pairServer is a pairing listener on loopback: real TLS with a dispatcher
// certificate of a test CA, sent as the chain [leaf, CA] as the pairing
// role does, and an operator played by the test through decide.
type pairServer struct {
	t        *testing.T
	ca       *pkitest.CA
	srv      *httptest.Server
	leaf     *x509.Certificate
	requests atomic.Int32 // HTTP requests seen, of any kind

	mu      sync.Mutex
	pending map[string]*pairEntry
	decide  func(e *pairEntry) PairResponse // nil: pending
	refuse  func(r *http.Request) (int, string)
	// override, when set, answers every request instead of the listener.
	override http.HandlerFunc
	mux      *http.ServeMux
}

type pairEntry struct {
	req   PairRequest
	csr   *x509.CertificateRequest
	code  string // computed from the server's own leaf
	polls int
}

// startPairServer starts a listener; leafOnly makes it send its leaf
// certificate without the CA.
func startPairServer(t *testing.T, ca *pkitest.CA, leafOnly ...bool) *pairServer {
	t.Helper()
	cert := ca.Dispatcher(t)
	if len(leafOnly) == 0 || !leafOnly[0] {
		cert.Certificate = append(cert.Certificate, ca.Cert.Raw)
	}
	s := &pairServer{t: t, ca: ca, leaf: cert.Leaf, pending: map[string]*pairEntry{}}
	mux := http.NewServeMux()
	s.mux = mux
	mux.HandleFunc("POST "+PathPair, s.handlePair)
	mux.HandleFunc("GET "+PathPairPrefix+"{reqid}", s.handlePoll)
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.requests.Add(1)
		s.mu.Lock()
		override := s.override
		s.mu.Unlock()
		if override != nil {
			override(w, r)
			return
		}
		mux.ServeHTTP(w, r)
	}))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	s.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // aborted handshakes are the point of some tests
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	return s
}

func (s *pairServer) addr() string { return s.srv.Listener.Addr().String() }

func (s *pairServer) handlePair(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	refuse := s.refuse
	s.mu.Unlock()
	if refuse != nil {
		if status, reason := refuse(r); status != 0 {
			WriteJSON(w, status, PairResponse{Status: PairError, Reason: reason})
			return
		}
	}
	var req PairRequest
	if err := DecodeRequest(r, &req); err != nil {
		WriteJSON(w, http.StatusBadRequest, PairResponse{Status: PairError, Reason: err.Error()})
		return
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		WriteJSON(w, http.StatusBadRequest, PairResponse{Status: PairError, Reason: err.Error()})
		return
	}
	s.mu.Lock()
	id := fmt.Sprintf("%016x", len(s.pending)+1)
	s.pending[id] = &pairEntry{req: req, csr: csr, code: PairingCode(csr.Raw, s.leaf.Raw)}
	s.mu.Unlock()
	WriteJSON(w, http.StatusAccepted, PairResponse{Status: PairPending, ReqID: id})
}

func (s *pairServer) handlePoll(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	e := s.pending[r.PathValue("reqid")]
	if e == nil || r.Header.Get(HeaderNonce) != e.req.Nonce {
		s.mu.Unlock()
		WriteJSON(w, http.StatusNotFound, PairResponse{Status: PairError, Reason: "not found"})
		return
	}
	e.polls++
	decide := s.decide
	s.mu.Unlock()
	answer := PairResponse{Status: PairPending}
	if decide != nil {
		answer = decide(e)
	}
	WriteJSON(w, http.StatusOK, answer)
}

// approve signs the entry's CSR with the server's CA.
func (s *pairServer) approve(e *pairEntry) PairResponse {
	cert, err := s.ca.SignAgentCSR(pki.Options{}, e.csr, e.req.Hostname, pkitest.Days)
	if err != nil {
		s.t.Errorf("sign: %v", err)
		return PairResponse{Status: PairDenied, Reason: err.Error()}
	}
	return PairResponse{Status: PairApproved, Cert: string(pki.CertPEM(cert)), CA: string(s.ca.CertPEM()), Nonce: e.req.Nonce}
}

func (s *pairServer) entry(id string) *pairEntry {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending[id]
}

// newPairRequest makes a key and a request for host.
func newPairRequest(t *testing.T, host string) PairRequest {
	t.Helper()
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.CreateCSR(pki.Options{}, key, host)
	if err != nil {
		t.Fatal(err)
	}
	return PairRequest{Hostname: host, CSR: string(csr), Nonce: "00112233445566778899aabbccddeeff", Port: 7443}
}

func csrDER(t *testing.T, req PairRequest) []byte {
	t.Helper()
	b, _ := pem.Decode([]byte(req.CSR))
	if b == nil {
		t.Fatal("csr is not PEM")
	}
	return b.Bytes
}

func newPairingClient(t *testing.T, addr, pin string) *PairingClient {
	t.Helper()
	c, err := NewPairingClient(PairingConfig{Addr: addr, CAFingerprint: pin, ConnectTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

func caPin(t *testing.T, ca *pkitest.CA) string {
	t.Helper()
	fp, err := pki.Fingerprint(ca.Cert.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	return fp
}

// pairError asserts err is a *PairingError of kind and returns it.
func pairError(t *testing.T, err error, kind ErrorKind) *PairingError {
	t.Helper()
	var pe *PairingError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *wire.PairingError", err, err)
	}
	if pe.Kind != kind {
		t.Fatalf("error %q: kind %q, want %q", pe, pe.Kind, kind)
	}
	return pe
}

func TestPairingHappyPath(t *testing.T) {
	ca := pkitest.NewCA(t)
	s := startPairServer(t, ca)
	c := newPairingClient(t, s.addr(), "")
	req := newPairRequest(t, "web-01")
	ctx := context.Background()

	ticket, err := c.Request(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	e := s.entry(ticket.ReqID)
	if e == nil {
		t.Fatalf("server has no request %q", ticket.ReqID)
	}
	// Both screens show the same code: the server's from its own leaf.
	if ticket.Code != e.code {
		t.Errorf("agent code %s, dispatcher code %s", ticket.Code, e.code)
	}
	if want := PairingCode(csrDER(t, req), s.leaf.Raw); ticket.Code != want {
		t.Errorf("code %s, want %s", ticket.Code, want)
	}
	if !ticket.Leaf.Equal(s.leaf) || len(ticket.Chain) != 2 || ticket.CA != nil {
		t.Errorf("ticket leaf/chain/ca: %v %d %v", ticket.Leaf.Subject, len(ticket.Chain), ticket.CA)
	}
	if e.req.Hostname != "web-01" || e.req.Port != 7443 || e.req.Nonce != req.Nonce {
		t.Errorf("server saw %+v", e.req)
	}

	// Two polls pending, then approved.
	s.mu.Lock()
	s.decide = func(e *pairEntry) PairResponse {
		if e.polls < 3 {
			return PairResponse{Status: PairPending}
		}
		return s.approve(e)
	}
	s.mu.Unlock()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	a, err := c.Wait(wctx, ticket.ReqID, req.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	if a.Status != PairApproved || a.Nonce != req.Nonce || !a.Leaf.Equal(s.leaf) {
		t.Fatalf("answer %+v", a.PairResponse)
	}
	cert, err := pki.ParseCertPEM([]byte(a.Cert))
	if err != nil {
		t.Fatal(err)
	}
	if err := pki.VerifyAgent([]*x509.Certificate{cert}, ca.Pool(), "web-01", nil, time.Time{}); err != nil {
		t.Errorf("issued certificate: %v", err)
	}

	// A wrong nonce is an unknown request.
	_, err = c.Poll(ctx, ticket.ReqID, "ffff")
	pe := pairError(t, err, KindHTTP)
	if !errors.Is(err, ErrRequestUnknown) || pe.Status != http.StatusNotFound || pe.Temporary() {
		t.Errorf("poll with a wrong nonce: %v (status %d)", err, pe.Status)
	}
	if err.Error() != "request unknown or expired" {
		t.Errorf("message %q", err)
	}
}

func TestPairingDenied(t *testing.T) {
	s := startPairServer(t, pkitest.NewCA(t))
	s.mu.Lock()
	s.decide = func(*pairEntry) PairResponse { return PairResponse{Status: PairDenied, Reason: "not ours"} }
	s.mu.Unlock()
	c := newPairingClient(t, s.addr(), "")
	req := newPairRequest(t, "web-01")
	ticket, err := c.Request(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	a, err := c.Wait(context.Background(), ticket.ReqID, req.Nonce)
	if err != nil || a.Status != PairDenied || a.Reason != "not ours" {
		t.Fatalf("wait: %v %+v", err, a)
	}
}

func TestPairingCAFingerprint(t *testing.T) {
	ca := pkitest.NewCA(t)
	s := startPairServer(t, ca)
	req := newPairRequest(t, "web-01")

	// The right CA, in any letter case: paired as usual.
	pin := strings.ToUpper(caPin(t, ca))
	pin = "sha256:" + pin[len("sha256:"):]
	ticket, err := newPairingClient(t, s.addr(), pin).Request(context.Background(), req)
	if err != nil {
		t.Fatalf("right pin: %v", err)
	}
	if ticket.CA == nil || !ticket.CA.Equal(ca.Cert) {
		t.Errorf("ticket CA %v", ticket.CA)
	}
	if n := s.requests.Load(); n != 1 {
		t.Fatalf("server saw %d requests, want 1", n)
	}

	// Another CA: the handshake is aborted, nothing reaches the server.
	other := pkitest.NewCA(t)
	otherPin := caPin(t, other)
	_, err = newPairingClient(t, s.addr(), otherPin).Request(context.Background(), req)
	pe := pairError(t, err, KindTLS)
	if !errors.Is(err, ErrCAMismatch) || pe.Temporary() {
		t.Errorf("wrong pin: %v", err)
	}
	want := "dispatcher certificate does not match --ca-fingerprint " + otherPin + ": refusing to pair with it"
	if !strings.HasPrefix(err.Error(), want) {
		t.Errorf("message %q\nwant prefix %q", err, want)
	}
	if n := s.requests.Load(); n != 1 {
		t.Errorf("server saw %d requests, want still 1: the request was sent to an unpinned dispatcher", n)
	}
	// Polls are held to the pin too.
	_, err = newPairingClient(t, s.addr(), otherPin).Poll(context.Background(), ticket.ReqID, req.Nonce)
	if !errors.Is(err, ErrCAMismatch) || s.requests.Load() != 1 {
		t.Errorf("poll with the wrong pin: %v, %d requests", err, s.requests.Load())
	}

	// A server that sends its leaf alone cannot be checked against a pin.
	leafOnly := startPairServer(t, ca, true)
	_, err = newPairingClient(t, leafOnly.addr(), caPin(t, ca)).Request(context.Background(), req)
	if !errors.Is(err, ErrCAMismatch) || !strings.Contains(err.Error(), "sent no ca certificate") || leafOnly.requests.Load() != 0 {
		t.Errorf("leaf without its CA: %v", err)
	}

	// A server with an agent certificate of the right CA (a stolen one).
	agentCert := ca.Agent(t, "web-07")
	agentCert.Certificate = append(agentCert.Certificate, ca.Cert.Raw)
	thief := httptest.NewUnstartedServer(http.NotFoundHandler())
	thief.TLS = &tls.Config{Certificates: []tls.Certificate{agentCert}}
	thief.Config.ErrorLog = log.New(io.Discard, "", 0)
	thief.StartTLS()
	defer thief.Close()
	for _, pin := range []string{caPin(t, ca), ""} {
		_, err = newPairingClient(t, thief.Listener.Addr().String(), pin).Request(context.Background(), req)
		pe := pairError(t, err, KindTLS)
		if !strings.Contains(err.Error(), "presented an agent certificate") || pe.Temporary() {
			t.Errorf("agent certificate as the listener (pin %q): %v", pin, err)
		}
	}

	if _, err := NewPairingClient(PairingConfig{Addr: s.addr(), CAFingerprint: "md5:abcd"}); err == nil {
		t.Error("a malformed fingerprint was accepted")
	}
}

// mitm terminates TLS with its own certificate and forwards each request to
// the real listener, as a man in the middle on port 7444 would.
func startMITM(t *testing.T, upstream string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	evil := pkitest.NewCA(t)
	cert := evil.Dispatcher(t)
	cert.Certificate = append(cert.Certificate, evil.Cert.Raw)
	fwd := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	var seen atomic.Int32
	m := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Add(1)
		out, _ := http.NewRequest(r.Method, "https://"+upstream+r.URL.Path, r.Body)
		out.ContentLength = r.ContentLength
		out.Header = r.Header.Clone()
		resp, err := fwd.Do(out)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	m.TLS = &tls.Config{Certificates: []tls.Certificate{cert}}
	m.Config.ErrorLog = log.New(io.Discard, "", 0)
	m.StartTLS()
	t.Cleanup(m.Close)
	t.Cleanup(fwd.CloseIdleConnections)
	return m, &seen
}

func TestPairingManInTheMiddle(t *testing.T) {
	ca := pkitest.NewCA(t)
	s := startPairServer(t, ca)
	m, seen := startMITM(t, s.addr())
	req := newPairRequest(t, "web-01")

	ticket, err := newPairingClient(t, m.Listener.Addr().String(), "").Request(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	e := s.entry(ticket.ReqID)
	if e == nil {
		t.Fatal("the request did not reach the real listener through the man in the middle")
	}
	// The agent saw the intruder's certificate, the dispatcher its own.
	if ticket.Leaf.Equal(s.leaf) {
		t.Fatal("the agent saw the real certificate through the man in the middle")
	}
	if ticket.Code == e.code {
		t.Errorf("both screens show %s through a man in the middle", e.code)
	}
	if want := PairingCode(csrDER(t, req), ticket.Leaf.Raw); ticket.Code != want {
		t.Errorf("agent code %s, want %s (its own view)", ticket.Code, want)
	}

	// Pinned to the real CA, the agent sends the intruder nothing.
	before := seen.Load()
	_, err = newPairingClient(t, m.Listener.Addr().String(), caPin(t, ca)).Request(context.Background(), req)
	if !errors.Is(err, ErrCAMismatch) {
		t.Fatalf("pinned, through the man in the middle: %v", err)
	}
	if seen.Load() != before {
		t.Error("the man in the middle received a request despite the pin")
	}
}

func TestPairingRefusals(t *testing.T) {
	for _, tc := range []struct {
		status    int
		reason    string
		want      []string
		temporary bool
	}{
		{http.StatusBadRequest, "hostname \"../x\" is not a valid DNS name", []string{"refused the pairing request", "../x"}, false},
		{http.StatusConflict, "web-01 is already paired", []string{"already paired", "--replace"}, false},
		{http.StatusTooManyRequests, "queue full", []string{"queue full", "pairing queue is full"}, true},
		{http.StatusServiceUnavailable, "not in pairing mode", []string{"not in pairing mode", "dispatcher pairing-mode"}, true},
		{http.StatusInternalServerError, "", []string{"answered 500 internal server error"}, false},
	} {
		t.Run(fmt.Sprint(tc.status), func(t *testing.T) {
			s := startPairServer(t, pkitest.NewCA(t))
			s.mu.Lock()
			s.refuse = func(*http.Request) (int, string) { return tc.status, tc.reason }
			s.mu.Unlock()
			_, err := newPairingClient(t, s.addr(), "").Request(context.Background(), newPairRequest(t, "web-01"))
			pe := pairError(t, err, KindHTTP)
			if pe.Status != tc.status || pe.Reason != tc.reason || pe.Temporary() != tc.temporary {
				t.Errorf("status %d reason %q temporary %v", pe.Status, pe.Reason, pe.Temporary())
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("message %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestPairingConnectErrors(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	_, err = newPairingClient(t, addr, "").Request(context.Background(), newPairRequest(t, "web-01"))
	pe := pairError(t, err, KindConnect)
	want := "connect to " + addr + ": connection refused (is `dispatcher pairing-mode` running?)"
	if err.Error() != want || !pe.Temporary() {
		t.Errorf("got %q, want %q", err, want)
	}

	// A plain HTTP server on the port.
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	_, err = newPairingClient(t, plain.Listener.Addr().String(), "").Request(context.Background(), newPairRequest(t, "web-01"))
	pairError(t, err, KindTLS)
	if !strings.Contains(err.Error(), "pairing port") {
		t.Errorf("plain http: %q", err)
	}

	for _, bad := range []string{"", "host", "host:0", "host:x", "a b:7444"} {
		if _, err := NewPairingClient(PairingConfig{Addr: bad}); err == nil {
			t.Errorf("address %q accepted", bad)
		}
	}
}

func TestPairingWait(t *testing.T) {
	t.Run("timeout", func(t *testing.T) {
		s := startPairServer(t, pkitest.NewCA(t))
		c := newPairingClient(t, s.addr(), "")
		req := newPairRequest(t, "web-01")
		ticket, err := c.Request(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
		defer cancel()
		_, err = c.Wait(ctx, ticket.ReqID, req.Nonce)
		pairError(t, err, KindTimeout)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("timeout does not wrap DeadlineExceeded: %v", err)
		}
		// Answered at once with "pending", polls are spaced, not spun.
		if n := s.entry(ticket.ReqID).polls; n < 1 || n > 3 {
			t.Errorf("%d polls in 1.5s", n)
		}
	})
	t.Run("retries while the listener is away", func(t *testing.T) {
		s := startPairServer(t, pkitest.NewCA(t))
		c := newPairingClient(t, s.addr(), "")
		req := newPairRequest(t, "web-01")
		ticket, err := c.Request(context.Background(), req)
		if err != nil {
			t.Fatal(err)
		}
		var n atomic.Int32
		s.mu.Lock()
		s.decide = func(e *pairEntry) PairResponse { return s.approve(e) }
		s.override = func(w http.ResponseWriter, r *http.Request) {
			if n.Add(1) <= 2 {
				WriteJSON(w, http.StatusServiceUnavailable, PairResponse{Status: PairError, Reason: "not in pairing mode"})
				return
			}
			s.mu.Lock()
			s.override = nil
			s.mu.Unlock()
			s.mux.ServeHTTP(w, r)
		}
		s.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		a, err := c.Wait(ctx, ticket.ReqID, req.Nonce)
		if err != nil || a.Status != PairApproved {
			t.Fatalf("wait: %v %+v", err, a)
		}
		if n.Load() != 3 {
			t.Errorf("%d polls, want 3", n.Load())
		}
	})
	t.Run("unknown request ends the wait", func(t *testing.T) {
		s := startPairServer(t, pkitest.NewCA(t))
		c := newPairingClient(t, s.addr(), "")
		_, err := c.Wait(context.Background(), "0000000000000009", "abcd")
		if !errors.Is(err, ErrRequestUnknown) {
			t.Errorf("wait for an unknown request: %v", err)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		s := startPairServer(t, pkitest.NewCA(t))
		c := newPairingClient(t, s.addr(), "")
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Wait(ctx, "0000000000000001", "abcd")
		pairError(t, err, KindCanceled)
	})
}

func TestPairingBadAnswers(t *testing.T) {
	for name, body := range map[string]string{
		"reqid with a slash": `{"status":"pending","reqid":"../etc"}`,
		"no reqid":           `{"status":"pending"}`,
		"not an object":      `["pending"]`,
		"wrong status":       `{"status":"approved","reqid":"1"}`,
	} {
		t.Run(name, func(t *testing.T) {
			s := startPairServer(t, pkitest.NewCA(t))
			s.mu.Lock()
			s.override = func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusAccepted)
				_, _ = io.WriteString(w, body)
			}
			s.mu.Unlock()
			_, err := newPairingClient(t, s.addr(), "").Request(context.Background(), newPairRequest(t, "web-01"))
			pairError(t, err, KindProtocol)
		})
	}
	s := startPairServer(t, pkitest.NewCA(t))
	s.mu.Lock()
	s.override = func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(PairResponse{Status: PairApproved, Cert: "x"})
	}
	s.mu.Unlock()
	_, err := newPairingClient(t, s.addr(), "").Poll(context.Background(), "1", "abcd")
	if pe := pairError(t, err, KindProtocol); !strings.Contains(pe.Error(), "cert, ca and nonce") {
		t.Errorf("incomplete approval: %v", err)
	}
}
