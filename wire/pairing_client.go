package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// Pairing client defaults.
const (
	// DefaultPairConnectTimeout bounds the TCP connect and TLS handshake
	// of each pairing request.
	DefaultPairConnectTimeout = 10 * time.Second
	// pairReadTimeout bounds the answer to POST /pair.
	pairReadTimeout = 30 * time.Second
	// pairPollSlack is how long a poll may take beyond the MaxPairPoll
	// seconds the dispatcher holds it.
	pairPollSlack = 15 * time.Second
	// maxPairAnswer is the largest pairing answer read (a certificate and
	// a CA in PEM take a few KiB).
	maxPairAnswer = 1 << 20
	// minPollInterval spaces polls a dispatcher answers at once with
	// "pending", and retryDelay* the polls after a failure.
	minPollInterval = time.Second
	retryDelayMin   = time.Second
	retryDelayMax   = 5 * time.Second
	maxReqIDLen     = 128
)

// Errors a pairing caller can test for with errors.Is.
var (
	// ErrCAMismatch: the dispatcher's certificate does not chain to the CA
	// pinned with PairingConfig.CAFingerprint. The handshake was aborted:
	// nothing was sent.
	ErrCAMismatch = errors.New("dispatcher certificate does not match the pinned ca fingerprint")
	// ErrRequestUnknown: the dispatcher answered 404 to a poll. It does not
	// know the request id with that nonce, or has expired the request.
	ErrRequestUnknown = errors.New("request unknown or expired")

	errNotDispatcher = errors.New("the server presented an agent certificate")
)

// PairingConfig configures a PairingClient.
type PairingConfig struct {
	// Addr is the dispatcher's pairing listener, "host:port".
	Addr string
	// CAFingerprint pins the dispatcher CA: "sha256:HEX", the SHA-256 of
	// the CA certificate's SubjectPublicKeyInfo (pki.Fingerprint of its
	// public key; any letter case and colons are accepted). With a pin,
	// every handshake requires the dispatcher to send a certificate with
	// that key and its leaf to verify against it for server
	// authentication; otherwise the handshake is aborted before anything
	// is sent. Empty: no pin, the dispatcher is authenticated by the
	// operator comparing the pairing code.
	CAFingerprint string
	// ConnectTimeout bounds TCP connect plus TLS handshake (default
	// DefaultPairConnectTimeout).
	ConnectTimeout time.Duration
	// Log gets debug lines about connections and retries; nil: none.
	Log *zap.Logger
}

// PairingClient is the agent's side of the pairing protocol (port 7444,
// WIRE.md): POST /pair and the long-poll GET /pair/{reqid}, over TLS with
// no client certificate. The agent has no CA yet, so the dispatcher's
// certificate is not verified against one: it is captured on every
// connection for the pairing code and, when a CA fingerprint is pinned,
// checked against the pinned CA. It is safe for concurrent use.
type PairingClient struct {
	addr           string
	serverName     string // SNI: the host of addr when it is a name
	pin            string // normalised "sha256:hex"; "" = none
	connectTimeout time.Duration
	dialer         net.Dialer
	tr             *http.Transport
	log            *zap.Logger
}

// PairTicket is the dispatcher's acceptance of a pairing request.
type PairTicket struct {
	ReqID string
	// Code is the 6-digit code to show the user: PairingCode over the DER
	// of the request's CSR and of Leaf.
	Code string
	// Leaf is the dispatcher certificate seen on the connection that
	// carried the request; Chain is every certificate the dispatcher sent.
	Leaf  *x509.Certificate
	Chain []*x509.Certificate
	// CA is the certificate of Chain matching the pinned fingerprint; nil
	// without a pin.
	CA *x509.Certificate
}

// PairAnswer is the answer to one poll: Status is PairPending,
// PairApproved (Cert, CA and Nonce set) or PairDenied (Reason may be set).
type PairAnswer struct {
	PairResponse
	// Leaf is the dispatcher certificate seen on the connection that
	// carried the answer.
	Leaf *x509.Certificate
}

// PairingError is the error of every PairingClient method. Its message is
// short and lowercase and says what to do next where there is something to
// do. The cause stays reachable: errors.Is finds ErrCAMismatch,
// ErrRequestUnknown, context errors and syscall errors.
type PairingError struct {
	Addr   string    // the dispatcher's pairing address, host:port
	Kind   ErrorKind // stage that failed: KindConnect, KindTLS, KindTimeout, KindHTTP, KindProtocol, KindCanceled
	Status int       // HTTP status, for KindHTTP
	Reason string    // the dispatcher's reason for a refusal ({"status":"error","reason"}), as sent
	Err    error     // the cause; its message is the message of PairingError
}

func (e *PairingError) Error() string {
	if e.Err == nil {
		return string(e.Kind) + " error"
	}
	return e.Err.Error()
}

func (e *PairingError) Unwrap() error { return e.Err }

// Temporary reports whether the same call may succeed later: a failed
// connection, a timeout, a broken answer, a handshake that failed for
// another reason than the pin, or a dispatcher that is not in pairing mode
// (503) or busy (429).
func (e *PairingError) Temporary() bool {
	switch e.Kind {
	case KindConnect, KindTimeout, KindProtocol:
		return true
	case KindTLS:
		return !errors.Is(e.Err, ErrCAMismatch) && !errors.Is(e.Err, errNotDispatcher)
	case KindHTTP:
		return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests ||
			e.Status == http.StatusBadGateway || e.Status == http.StatusGatewayTimeout
	}
	return false
}

func (c *PairingClient) errorf(kind ErrorKind, cause error, format string, args ...any) *PairingError {
	return &PairingError{Addr: c.addr, Kind: kind, Err: &msgError{msg: fmt.Sprintf(format, args...), err: cause}}
}

// NewPairingClient returns a client for the pairing listener at cfg.Addr.
// It fails on an address without a port or a malformed fingerprint.
func NewPairingClient(cfg PairingConfig) (*PairingClient, error) {
	host, port, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return nil, fmt.Errorf("dispatcher pairing address %q: want host:port", cfg.Addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return nil, fmt.Errorf("dispatcher pairing address %q: port must be 1-65535", cfg.Addr)
	}
	if host == "" || !validHost(host) {
		return nil, fmt.Errorf("dispatcher pairing address %q: invalid host", cfg.Addr)
	}
	c := &PairingClient{
		addr:           cfg.Addr,
		connectTimeout: orDefault(cfg.ConnectTimeout, DefaultPairConnectTimeout),
		dialer:         net.Dialer{KeepAlive: 30 * time.Second},
		log:            cfg.Log,
	}
	if net.ParseIP(host) == nil {
		c.serverName = host
	}
	if cfg.CAFingerprint != "" {
		if c.pin, err = pki.ParseFingerprint(cfg.CAFingerprint); err != nil {
			return nil, fmt.Errorf("ca fingerprint: %w", err)
		}
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	c.log = c.log.Named("pairing")
	c.tr = &http.Transport{
		Proxy:                  nil, // the dispatcher is dialled directly
		DialTLSContext:         c.dialTLS,
		ForceAttemptHTTP2:      false,
		TLSNextProto:           map[string]func(string, *tls.Conn) http.RoundTripper{},
		DisableCompression:     true,
		MaxIdleConnsPerHost:    1,
		IdleConnTimeout:        DefaultIdleTimeout,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return c, nil
}

// Close closes idle connections. The client stays usable.
func (c *PairingClient) Close() { c.tr.CloseIdleConnections() }

// Addr returns the dispatcher's pairing address.
func (c *PairingClient) Addr() string { return c.addr }

// Request sends POST /pair and returns the request id with the pairing
// code computed from req.CSR and the dispatcher certificate of the
// connection. A refusal (400, 409, 429, 503) is a *PairingError of KindHTTP
// with the dispatcher's Reason.
func (c *PairingClient) Request(ctx context.Context, req PairRequest) (*PairTicket, error) {
	block, _ := pem.Decode([]byte(req.CSR))
	if block == nil {
		return nil, c.errorf(KindProtocol, nil, "pairing request: the csr is not PEM")
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, c.errorf(KindProtocol, err, "encode pairing request: %v", err)
	}
	var out PairResponse
	cs, err := c.roundTrip(ctx, http.MethodPost, PathPair, "", body, pairReadTimeout, &out, http.StatusAccepted, http.StatusOK)
	if err != nil {
		return nil, err
	}
	if out.Status != PairPending || !validReqID(out.ReqID) {
		return nil, c.errorf(KindProtocol, nil, "bad answer to POST %s: want status %q and a request id, got status %q request id %q",
			PathPair, PairPending, peerText(out.Status), peerText(out.ReqID))
	}
	leaf := cs.PeerCertificates[0]
	t := &PairTicket{
		ReqID: out.ReqID,
		Code:  PairingCode(block.Bytes, leaf.Raw),
		Leaf:  leaf,
		Chain: cs.PeerCertificates,
	}
	if c.pin != "" {
		t.CA = findKey(cs.PeerCertificates, c.pin)
	}
	return t, nil
}

// Poll sends one GET /pair/{reqid} with the request's nonce. The
// dispatcher holds it up to MaxPairPoll seconds while the request is
// pending. A 404 is a *PairingError wrapping ErrRequestUnknown.
func (c *PairingClient) Poll(ctx context.Context, reqid, nonce string) (*PairAnswer, error) {
	if !validReqID(reqid) {
		return nil, c.errorf(KindProtocol, nil, "invalid request id %q", reqid)
	}
	if nonce == "" || strings.ContainsAny(nonce, "\r\n") {
		return nil, c.errorf(KindProtocol, nil, "invalid nonce")
	}
	var out PairResponse
	limit := MaxPairPoll*time.Second + pairPollSlack
	cs, err := c.roundTrip(ctx, http.MethodGet, PathPairPrefix+url.PathEscape(reqid), nonce, nil, limit, &out, http.StatusOK)
	if err != nil {
		return nil, err
	}
	switch out.Status {
	case PairPending, PairDenied:
	case PairApproved:
		if out.Cert == "" || out.CA == "" || out.Nonce == "" {
			return nil, c.errorf(KindProtocol, nil, "bad approval: cert, ca and nonce are all required")
		}
	default:
		return nil, c.errorf(KindProtocol, nil, "bad answer to GET %s%s: unknown status %q", PathPairPrefix, reqid, peerText(out.Status))
	}
	return &PairAnswer{PairResponse: out, Leaf: cs.PeerCertificates[0]}, nil
}

// Wait polls until the request is approved or denied and returns that
// answer. Failures that may pass (Temporary) are retried, spaced by a few
// seconds, until ctx ends; others are returned at once. When ctx's
// deadline passes first, the error is a *PairingError of KindTimeout wrapping
// context.DeadlineExceeded, naming the last failure if there was one.
func (c *PairingClient) Wait(ctx context.Context, reqid, nonce string) (*PairAnswer, error) {
	var last error
	delay := retryDelayMin
	for {
		start := time.Now()
		a, err := c.Poll(ctx, reqid, nonce)
		pause := time.Duration(0)
		switch {
		case err == nil && a.Status != PairPending:
			return a, nil
		case err == nil:
			last, delay = nil, retryDelayMin
			if took := time.Since(start); took < minPollInterval {
				pause = minPollInterval - took
			}
		default:
			var pe *PairingError
			if ctx.Err() != nil {
				return nil, c.waitEnded(ctx, last)
			}
			if !errors.As(err, &pe) || !pe.Temporary() {
				return nil, err
			}
			c.log.Debug("poll failed, retrying", zap.String("reqid", reqid), zap.Error(err), zap.Duration("delay", delay))
			last, pause = err, delay
			delay = min(2*delay, retryDelayMax)
		}
		if pause > 0 {
			t := time.NewTimer(pause)
			select {
			case <-ctx.Done():
				t.Stop()
				return nil, c.waitEnded(ctx, last)
			case <-t.C:
			}
		}
	}
}

// waitEnded is Wait's error once ctx is done.
func (c *PairingClient) waitEnded(ctx context.Context, last error) error {
	if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return c.errorf(KindCanceled, context.Cause(ctx), "cancelled")
	}
	if last != nil {
		return c.errorf(KindTimeout, context.DeadlineExceeded, "no answer from the dispatcher in time (last error: %v)", last)
	}
	return c.errorf(KindTimeout, context.DeadlineExceeded, "no answer from the dispatcher in time")
}

// roundTrip sends one request and decodes an answer with one of the ok
// statuses into out. It returns the TLS state of the connection that
// carried it, which always has a peer certificate.
func (c *PairingClient) roundTrip(ctx context.Context, method, path, nonce string, body []byte, limit time.Duration,
	out *PairResponse, ok ...int) (*tls.ConnectionState, error) {
	rctx, cancel := context.WithTimeout(ctx, c.connectTimeout+limit)
	defer cancel()
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body) // Content-Length, never chunked
	}
	req, err := http.NewRequestWithContext(rctx, method, "https://"+c.addr+path, rd)
	if err != nil {
		return nil, c.errorf(KindProtocol, err, "invalid pairing request: %v", err)
	}
	req.Header.Set("User-Agent", DefaultUserAgent)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if nonce != "" {
		req.Header.Set(HeaderNonce, nonce)
	}
	resp, err := c.tr.RoundTrip(req)
	if err != nil {
		return nil, c.classify(ctx, rctx, limit, err)
	}
	defer drainClose(resp.Body)
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxPairAnswer+1))
	if err != nil {
		return nil, c.classify(ctx, rctx, limit, err)
	}
	if len(b) > maxPairAnswer {
		return nil, c.errorf(KindProtocol, nil, "answer to %s %s larger than %s", method, path, sizeString(maxPairAnswer))
	}
	good := false
	for _, s := range ok {
		good = good || resp.StatusCode == s
	}
	if !good {
		return nil, c.statusError(method, path, resp.StatusCode, b)
	}
	if resp.TLS == nil || len(resp.TLS.PeerCertificates) == 0 {
		return nil, c.errorf(KindTLS, nil, "the dispatcher sent no certificate")
	}
	if !isObject(b) {
		return nil, c.errorf(KindProtocol, nil, "bad answer to %s %s: not a json object", method, path)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return nil, c.errorf(KindProtocol, err, "bad answer to %s %s: %v", method, path, err)
	}
	return resp.TLS, nil
}

// statusError turns a refusal into a *PairingError with a hint for each
// status the protocol defines.
func (c *PairingClient) statusError(method, path string, status int, body []byte) *PairingError {
	var er PairResponse
	reason := ""
	if json.Unmarshal(body, &er) == nil {
		reason = peerText(er.Reason)
	}
	text := reason
	if text == "" {
		text = lowerASCII(http.StatusText(status))
	}
	var e *PairingError
	switch {
	case status == http.StatusNotFound && method == http.MethodGet:
		e = c.errorf(KindHTTP, ErrRequestUnknown, "%s", ErrRequestUnknown.Error())
	case status == http.StatusNotFound:
		e = c.errorf(KindHTTP, nil, "no pairing listener at %s (404 on %s %s): is it the dispatcher's pairing port?", c.addr, method, path)
	case status == http.StatusBadRequest:
		e = c.errorf(KindHTTP, nil, "the dispatcher refused the pairing request: %s", text)
	case status == http.StatusConflict:
		e = c.errorf(KindHTTP, nil, "the dispatcher refused the pairing request: %s (the host name is already paired: "+
			"the operator must approve with --replace or unpair it first)", text)
	case status == http.StatusTooManyRequests:
		e = c.errorf(KindHTTP, nil, "the dispatcher refused the pairing request: %s (its pairing queue is full, or it is "+
			"busy with other requests: try again shortly, or once pending requests are approved or denied)", text)
	case status == http.StatusRequestEntityTooLarge, status == http.StatusRequestHeaderFieldsTooLarge:
		e = c.errorf(KindHTTP, nil, "the dispatcher refused the pairing request as too large: %s (the certificate request "+
			"may be at most 64 KiB; is something between here and the dispatcher adding to it?)", text)
	case status == http.StatusRequestTimeout:
		e = c.errorf(KindHTTP, nil, "the dispatcher gave up waiting for the pairing request: %s (the network is too slow "+
			"or something between here and the dispatcher holds the data back)", text)
	case status == http.StatusServiceUnavailable:
		e = c.errorf(KindHTTP, nil, "the dispatcher refused the pairing request: %s (it is not in pairing mode: "+
			"run `dispatcher pairing-mode` on it first)", text)
	default:
		e = c.errorf(KindHTTP, nil, "the dispatcher answered %d %s to %s %s", status, text, method, path)
	}
	e.Status, e.Reason = status, reason
	return e
}

// dialTLS connects to the dispatcher and completes the handshake, checking
// the pin in VerifyConnection so that a mismatch aborts the handshake
// before any request byte is written. Its errors are *PairingError.
func (c *PairingClient) dialTLS(ctx context.Context, _, _ string) (net.Conn, error) {
	dctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	raw, err := c.dialer.DialContext(dctx, "tcp", c.addr)
	if err != nil {
		return nil, c.connectError(dctx, err)
	}
	var pinErr error
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ServerName: c.serverName,
		// No CA yet: the dispatcher is authenticated by the pairing code
		// (which covers the certificate seen here) and, when given, the
		// pinned CA checked below.
		InsecureSkipVerify: true,
		NextProtos:         []string{"http/1.1"},
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				pinErr = errors.New("the dispatcher sent no certificate")
				return pinErr
			}
			// The CA signs agents too: a (stolen) agent certificate must
			// not pass for the pairing listener, pinned or not.
			if pki.CertRole(cs.PeerCertificates[0]) == pki.RoleAgent {
				pinErr = &msgError{msg: fmt.Sprintf("the server at %s presented an agent certificate, not a dispatcher's: refusing to pair with it", c.addr), err: errNotDispatcher}
				return pinErr
			}
			if c.pin == "" {
				return nil
			}
			if err := checkPin(cs.PeerCertificates, c.pin); err != nil {
				pinErr = &msgError{msg: fmt.Sprintf("dispatcher certificate does not match --ca-fingerprint %s: refusing to pair with it (%v)", c.pin, err), err: ErrCAMismatch}
				return pinErr
			}
			return nil
		},
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(dctx); err != nil {
		raw.Close()
		return nil, c.handshakeError(dctx, pinErr, err)
	}
	if ce := c.log.Check(zap.DebugLevel, "connected"); ce != nil {
		cs := conn.ConnectionState()
		ce.Write(zap.String("addr", c.addr), zap.String("tls", tls.VersionName(cs.Version)),
			zap.String("leaf", pki.CertFingerprint(cs.PeerCertificates[0])))
	}
	return conn, nil
}

// checkPin requires a certificate of chain with the pinned key, and the
// leaf to verify against it alone, for server authentication.
func checkPin(chain []*x509.Certificate, pin string) error {
	ca := findKey(chain, pin)
	if ca == nil {
		var sent []string
		for _, cert := range chain[1:] {
			fp, _ := pki.Fingerprint(cert.PublicKey)
			sent = append(sent, fmt.Sprintf("%q %s", cert.Subject.CommonName, fp))
		}
		if len(sent) == 0 {
			return errors.New("it sent no ca certificate")
		}
		return fmt.Errorf("no certificate it sent has that key; it sent ca %s", strings.Join(sent, ", "))
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, cert := range chain[1:] {
		if cert != ca {
			inter.AddCert(cert)
		}
	}
	_, err := chain[0].Verify(x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("its certificate does not verify against ca %q: %v", ca.Subject.CommonName, err)
	}
	return nil
}

// findKey returns the certificate of chain whose public key has
// fingerprint pin, or nil.
func findKey(chain []*x509.Certificate, pin string) *x509.Certificate {
	for _, cert := range chain {
		if fp, err := pki.Fingerprint(cert.PublicKey); err == nil && fp == pin {
			return cert
		}
	}
	return nil
}

func (c *PairingClient) connectError(dctx context.Context, err error) *PairingError {
	const hint = " (is `dispatcher pairing-mode` running?)"
	if errors.Is(dctx.Err(), context.DeadlineExceeded) {
		return c.errorf(KindTimeout, err, "connect to %s: timeout after %ss (is it reachable? a firewall may drop the connection)",
			c.addr, seconds(c.connectTimeout))
	}
	var dnsErr *net.DNSError
	var errno syscall.Errno
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return c.errorf(KindConnect, err, "connect to %s: unknown host", c.addr)
	case errors.As(err, &dnsErr):
		return c.errorf(KindConnect, err, "connect to %s: cannot resolve: %s", c.addr, dnsErr.Err)
	case errors.Is(err, syscall.ECONNREFUSED):
		return c.errorf(KindConnect, err, "connect to %s: connection refused"+hint, c.addr)
	case errors.As(err, &errno):
		return c.errorf(KindConnect, err, "connect to %s: %s", c.addr, errno.Error())
	}
	return c.errorf(KindConnect, err, "connect to %s: %v", c.addr, err)
}

func (c *PairingClient) handshakeError(dctx context.Context, pinErr, err error) *PairingError {
	switch {
	case pinErr != nil:
		return c.errorf(KindTLS, pinErr, "%s", pinErr.Error())
	case errors.Is(dctx.Err(), context.DeadlineExceeded):
		return c.errorf(KindTimeout, err, "connect to %s: tls handshake timeout after %ss", c.addr, seconds(c.connectTimeout))
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET):
		return c.errorf(KindTLS, err, "connect to %s: connection closed during the tls handshake (is it the dispatcher's pairing port?)", c.addr)
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return c.errorf(KindTLS, err, "connect to %s: the server does not speak tls (is it the dispatcher's pairing port?)", c.addr)
	}
	return c.errorf(KindTLS, err, "tls handshake with %s: %v", c.addr, err)
}

// classify turns an error of the transport or of reading the answer into
// a *PairingError.
func (c *PairingClient) classify(ctx, rctx context.Context, limit time.Duration, err error) *PairingError {
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) {
			return c.errorf(KindTimeout, cerr, "no answer from the dispatcher in time")
		}
		return c.errorf(KindCanceled, context.Cause(ctx), "cancelled")
	}
	var pe *PairingError
	if errors.As(err, &pe) {
		return pe
	}
	if errors.Is(rctx.Err(), context.DeadlineExceeded) {
		return c.errorf(KindTimeout, context.DeadlineExceeded, "read timeout after %ss", seconds(limit))
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return c.errorf(KindProtocol, err, "connection closed by the dispatcher before the answer was complete")
	case errors.Is(err, syscall.ECONNRESET):
		return c.errorf(KindProtocol, err, "connection reset by the dispatcher before the answer was complete")
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return c.errorf(KindTLS, err, "the dispatcher refused the connection: %v", op.Err)
	}
	return c.errorf(KindProtocol, err, "connection lost: %v", err)
}

// validReqID accepts the request ids a dispatcher makes: letters, digits,
// '-', '_' and '.', never a path separator.
func validReqID(id string) bool {
	if id == "" || len(id) > maxReqIDLen || id == "." || id == ".." {
		return false
	}
	for i := 0; i < len(id); i++ {
		switch b := id[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9', b == '-', b == '_', b == '.':
		default:
			return false
		}
	}
	return true
}
