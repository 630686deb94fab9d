package wire

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net"
	"net/http"
	"net/http/httptrace"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// Client defaults (SPEC §2 for the timeouts).
const (
	DefaultPort           = 7443
	DefaultConnectTimeout = 10 * time.Second
	DefaultReadTimeout    = 60 * time.Second
	// DefaultMaxIdlePerHost matches the agent's default max_concurrent:
	// the API running that many scripts on one agent at once keeps every
	// connection for the next run instead of a TLS handshake per run.
	DefaultMaxIdlePerHost  = 64
	DefaultMaxIdle         = 1024
	DefaultIdleTimeout     = 30 * time.Second
	DefaultMaxResponseSize = 65 << 20 // covers the largest /run answer at the default output_limit, 2 × 4/3 × 16 MiB = 42.7 MiB (output.go), with a third to spare
	DefaultUserAgent       = "dispatcher"

	sessionCacheSize = 16384 // TLS sessions kept, one per agent host name
	errorBodyLimit   = 64 << 10
	drainLimit       = 64 << 10
)

// ClientConfig configures a Client. Zero values take the defaults above.
type ClientConfig struct {
	Cert           tls.Certificate // the dispatcher's client certificate
	Roots          *x509.CertPool  // the dispatcher CA
	ConnectTimeout time.Duration   // TCP connect + TLS handshake
	// ReadTimeout bounds a request from the moment it has a connection to
	// the end of the answer, unless ctx ends sooner. For Run it is extended
	// by the request's Timeout, since the agent lets the script run that
	// long before answering.
	ReadTimeout time.Duration
	// VerifyPeer checks the agent's certificate chain for the host the
	// request is for, on every handshake including resumed ones. Nil means
	// pki.VerifyAgent(chain, Roots, host, nil, time.Now()).
	VerifyPeer      func(host string, chain []*x509.Certificate) error
	MaxIdlePerHost  int           // idle connections kept per agent (default 64)
	MaxIdle         int           // idle connections kept in all (default 1024)
	IdleTimeout     time.Duration // an idle connection is closed after this (default 30s)
	MaxResponseSize int64         // largest answer (or stream line) accepted, bytes
	UserAgent       string        // User-Agent header (default "dispatcher")
	Log             *zap.Logger   // nil: no logging
}

// Target is the agent a request is for.
type Target struct {
	Host string // identity expected in the agent certificate (DNS SAN), also the TLS server name
	Addr string // "ip:port" or "name:port" to dial; empty: Host on DefaultPort; no port: DefaultPort
}

// Client talks the operational protocol to agents: HTTP/1.1 over mutual
// TLS, with one connection pool and one TLS session cache for all agents.
// It is safe for concurrent use; make one per process.
type Client struct {
	tr             *http.Transport
	tlsConfig      *tls.Config
	dialer         net.Dialer
	verify         func(host string, chain []*x509.Certificate) error
	connectTimeout time.Duration
	readTimeout    time.Duration
	maxResponse    int64
	userAgent      string
	log            *zap.Logger
}

// NewClient returns a Client for cfg.
func NewClient(cfg ClientConfig) *Client {
	c := &Client{
		verify:         cfg.VerifyPeer,
		connectTimeout: orDefault(cfg.ConnectTimeout, DefaultConnectTimeout),
		readTimeout:    orDefault(cfg.ReadTimeout, DefaultReadTimeout),
		maxResponse:    cfg.MaxResponseSize,
		userAgent:      cfg.UserAgent,
		log:            cfg.Log,
	}
	if c.verify == nil {
		roots := cfg.Roots
		c.verify = func(host string, chain []*x509.Certificate) error {
			return pki.VerifyAgent(chain, roots, host, nil, time.Now())
		}
	}
	if c.maxResponse <= 0 {
		c.maxResponse = DefaultMaxResponseSize
	}
	if c.userAgent == "" {
		c.userAgent = DefaultUserAgent
	}
	if c.log == nil {
		c.log = zap.NewNop()
	}
	c.log = c.log.Named("wire")
	c.dialer = net.Dialer{KeepAlive: 30 * time.Second}
	cert := cfg.Cert
	c.tlsConfig = &tls.Config{
		MinVersion: tls.VersionTLS12,
		// The chain is checked by VerifyConnection against the dispatcher
		// CA and the host name, on full and resumed handshakes alike.
		InsecureSkipVerify: true,
		ClientSessionCache: tls.NewLRUClientSessionCache(sessionCacheSize),
		// Always present the dispatcher certificate, whatever CA names the
		// agent announces (Perl agents may announce none or other ones).
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &cert, nil
		},
	}
	maxIdlePerHost := cfg.MaxIdlePerHost
	if maxIdlePerHost <= 0 {
		maxIdlePerHost = DefaultMaxIdlePerHost
	}
	maxIdle := cfg.MaxIdle
	if maxIdle <= 0 {
		maxIdle = DefaultMaxIdle
	}
	c.tr = &http.Transport{
		Proxy:                  nil, // agents are dialled directly, whatever HTTPS_PROXY says
		DialTLSContext:         c.dialTLS,
		ForceAttemptHTTP2:      false,
		TLSNextProto:           map[string]func(string, *tls.Conn) http.RoundTripper{},
		DisableCompression:     true, // no Accept-Encoding: fewer headers, Perl agents do not compress
		MaxIdleConns:           maxIdle,
		MaxIdleConnsPerHost:    maxIdlePerHost,
		IdleConnTimeout:        orDefault(cfg.IdleTimeout, DefaultIdleTimeout),
		MaxResponseHeaderBytes: 64 << 10,
	}
	return c
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}

// Close closes the idle connections. The Client stays usable.
func (c *Client) Close() { c.tr.CloseIdleConnections() }

// Ping sends POST /ping.
func (c *Client) Ping(ctx context.Context, t Target, req PingRequest) (*PingResponse, error) {
	var out PingResponse
	if err := c.Do(ctx, t, http.MethodPost, PathPing, req, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Capabilities sends GET /capabilities.
func (c *Client) Capabilities(ctx context.Context, t Target) (*CapabilitiesResponse, error) {
	var out CapabilitiesResponse
	if err := c.Do(ctx, t, http.MethodGet, PathCapabilities, nil, &out); err != nil {
		return nil, err
	}
	return &out, nil
}

// Run sends POST /run. A refused run is not an error: it is a RunResponse
// with Exit -1 and Error set.
//
// With onEvent, Run asks for a streamed answer (Accept:
// application/x-ndjson) and calls onEvent, from the calling goroutine, for
// each chunk of output in order; an agent that does not stream (a Perl
// agent) answers plain JSON, and onEvent is then not called. Either way the
// result is the returned RunResponse, which holds the whole output.
//
// Cancelling ctx closes the connection, which makes the agent kill the
// script's process group.
func (c *Client) Run(ctx context.Context, t Target, req RunRequest, onEvent func(StreamEvent)) (*RunResponse, error) {
	if req.Args == nil {
		req.Args = []string{} // Perl agents expect an array, not null
	}
	var extra time.Duration
	if req.Timeout > 0 {
		extra = time.Duration(req.Timeout) * time.Second
	}
	var out *RunResponse
	err := c.roundTrip(ctx, t, http.MethodPost, PathRun, req, onEvent != nil, extra, func(resp *http.Response) error {
		if isNDJSON(resp.Header.Get("Content-Type")) {
			r, err := readStream(resp.Body, c.maxResponse, onEvent)
			out = r
			return err
		}
		var r RunResponse
		if err := decodeAnswer(resp.Body, c.maxResponse, &r); err != nil {
			return err
		}
		out = &r
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Do sends one request: in (if not nil) as a JSON body with
// Content-Length, and decodes a 200 answer, which must be a JSON object,
// into out (if not nil). Errors are *Error.
func (c *Client) Do(ctx context.Context, t Target, method, path string, in, out any) error {
	return c.roundTrip(ctx, t, method, path, in, false, 0, func(resp *http.Response) error {
		if out == nil {
			return nil
		}
		return decodeAnswer(resp.Body, c.maxResponse, out)
	})
}

type targetKey struct{}

var errReadTimeout = errors.New("read timeout")

// roundTrip sends the request and hands a 200 answer to handle. Every error
// it returns is an *Error with Host set.
func (c *Client) roundTrip(ctx context.Context, t Target, method, path string, in any, stream bool,
	extra time.Duration, handle func(*http.Response) error) error {
	start := time.Now()
	t, hostport, err := normalizeTarget(t)
	if err != nil {
		return err
	}
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return newError(t.Host, KindProtocol, err, "encode request: %v", err)
		}
		body = bytes.NewReader(b) // sets Content-Length: never chunked
	}

	// The read timeout runs from the moment the request has a connection.
	limit := c.readTimeout + extra
	rctx, cancel := context.WithCancelCause(context.WithValue(ctx, targetKey{}, t))
	defer cancel(nil)
	var (
		once      sync.Once
		connected bool
		timer     *time.Timer
	)
	trace := &httptrace.ClientTrace{GotConn: func(httptrace.GotConnInfo) {
		once.Do(func() {
			connected = true
			timer = time.AfterFunc(limit, func() { cancel(errReadTimeout) })
		})
	}}
	defer func() {
		once.Do(func() {})
		if timer != nil {
			timer.Stop()
		}
	}()
	isConnected := func() bool {
		once.Do(func() {}) // after this, connected and timer are stable
		return connected
	}

	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(rctx, trace), method, "https://"+hostport+path, body)
	if err != nil {
		return newError(t.Host, KindConnect, err, "invalid request for %q: %v", t.Host, err)
	}
	req.Header.Set("User-Agent", c.userAgent)
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if stream {
		req.Header.Set("Accept", ContentTypeNDJSON)
	}
	resp, err := c.tr.RoundTrip(req)
	if err != nil {
		return c.classify(ctx, rctx, t, start, limit, isConnected, err)
	}
	defer drainClose(resp.Body)
	recordPeer(ctx, resp)
	if resp.StatusCode != http.StatusOK {
		return statusError(t.Host, method, path, resp)
	}
	if err := handle(resp); err != nil {
		return c.classify(ctx, rctx, t, start, limit, isConnected, err)
	}
	return nil
}

// normalizeTarget fills in the default port and returns the host:port of
// the request URL. The URL carries the host name, so that connections are
// pooled per agent identity; the dialler dials t.Addr.
func normalizeTarget(t Target) (Target, string, error) {
	if !validHost(t.Host) {
		return t, "", newError(t.Host, KindConnect, nil, "invalid host name %q", t.Host)
	}
	port := strconv.Itoa(DefaultPort)
	switch {
	case t.Addr == "":
		t.Addr = net.JoinHostPort(t.Host, port)
	default:
		_, p, err := net.SplitHostPort(t.Addr)
		if err != nil {
			if ip := net.ParseIP(t.Addr); ip == nil && strings.Contains(t.Addr, ":") {
				return t, "", newError(t.Host, KindConnect, err, "invalid address %q", t.Addr)
			}
			t.Addr = net.JoinHostPort(t.Addr, port)
		} else {
			port = p
		}
	}
	return t, net.JoinHostPort(t.Host, port), nil
}

// validHost accepts DNS names and IP addresses: nothing that could change
// the meaning of a URL.
func validHost(h string) bool {
	if h == "" || len(h) > 253 {
		return false
	}
	for i := 0; i < len(h); i++ {
		switch b := h[i]; {
		case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		case b == '-', b == '.', b == '_', b == ':':
		default:
			return false
		}
	}
	return true
}

// dialTLS dials the Target carried by the request context and completes
// the TLS handshake with its Host as server name, within ConnectTimeout.
// Its errors are *Error.
func (c *Client) dialTLS(ctx context.Context, _, _ string) (net.Conn, error) {
	t, ok := ctx.Value(targetKey{}).(Target)
	if !ok {
		return nil, errors.New("wire: request without a target")
	}
	dctx, cancel := context.WithTimeout(ctx, c.connectTimeout)
	defer cancel()
	raw, err := c.dialer.DialContext(dctx, "tcp", t.Addr)
	if err != nil {
		return nil, c.connectError(t, dctx, err)
	}
	var idErr error
	cfg := c.tlsConfig.Clone()
	cfg.ServerName = t.Host
	cfg.VerifyConnection = func(cs tls.ConnectionState) error {
		if err := c.verify(t.Host, cs.PeerCertificates); err != nil {
			idErr = err
			return err
		}
		return nil
	}
	conn := tls.Client(raw, cfg)
	if err := conn.HandshakeContext(dctx); err != nil {
		raw.Close()
		return nil, c.handshakeError(t, dctx, idErr, err)
	}
	if ce := c.log.Check(zap.DebugLevel, "connected"); ce != nil {
		cs := conn.ConnectionState()
		ce.Write(zap.String("host", t.Host), zap.String("addr", t.Addr),
			zap.Bool("resumed", cs.DidResume), zap.String("tls", tls.VersionName(cs.Version)))
	}
	return conn, nil
}

func (c *Client) connectError(t Target, dctx context.Context, err error) error {
	if errors.Is(dctx.Err(), context.DeadlineExceeded) {
		return connectTimeoutError(t.Host, c.connectTimeout, err)
	}
	var dnsErr *net.DNSError
	var errno syscall.Errno
	switch {
	case errors.As(err, &dnsErr) && dnsErr.IsNotFound:
		return newError(t.Host, KindConnect, err, "connect to %s: unknown host", t.Addr)
	case errors.As(err, &dnsErr):
		return newError(t.Host, KindConnect, err, "connect to %s: cannot resolve: %s", t.Addr, dnsErr.Err)
	case errors.As(err, &errno):
		return newError(t.Host, KindConnect, err, "connect to %s: %s", t.Addr, errno.Error())
	}
	return newError(t.Host, KindConnect, err, "connect to %s: %v", t.Addr, err)
}

func (c *Client) handshakeError(t Target, dctx context.Context, idErr, err error) error {
	switch {
	case idErr != nil:
		return newError(t.Host, KindTLS, idErr, "agent identity check failed: %v", idErr)
	case errors.Is(dctx.Err(), context.DeadlineExceeded):
		return connectTimeoutError(t.Host, c.connectTimeout, err)
	}
	if e := tlsPeerError(t.Host, err); e != nil {
		return e
	}
	return newError(t.Host, KindTLS, err, "tls handshake: %v", err)
}

// tlsPeerError recognises an agent that aborted the TLS connection: with an
// alert (it refused the dispatcher certificate; under TLS 1.3 this is only
// seen when reading the answer) or by closing it (address not allowed,
// rate limit).
func tlsPeerError(host string, err error) *Error {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return newError(host, KindTLS, err, "agent refused the tls handshake: %v", op.Err)
	}
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) {
		return newError(host, KindTLS, err, "connection closed by agent during tls handshake (address not allowed or rate-limited?)")
	}
	return nil
}

// classify turns an error of the transport or of reading the answer into
// an *Error.
func (c *Client) classify(ctx, rctx context.Context, t Target, start time.Time, limit time.Duration,
	connected func() bool, err error) error {
	// The caller's context and the read timeout come first: what they cut
	// short may look like any other failure (a truncated stream, EOF).
	if context.Cause(rctx) == errReadTimeout {
		return readTimeoutError(t.Host, limit, context.DeadlineExceeded)
	}
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) {
			// The caller's deadline: say how long it allowed.
			d := time.Millisecond
			if dl, ok := ctx.Deadline(); ok && dl.Sub(start) > d {
				d = dl.Sub(start)
			}
			if d >= time.Second {
				d = d.Round(time.Second)
			} else {
				d = d.Round(time.Millisecond)
			}
			if connected() {
				return readTimeoutError(t.Host, d, cerr)
			}
			return connectTimeoutError(t.Host, d, cerr)
		}
		return newError(t.Host, KindCanceled, context.Cause(ctx), "cancelled")
	}
	var we *Error
	if errors.As(err, &we) {
		cp := *we
		cp.Host = t.Host
		return &cp
	}
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "remote error" {
		return tlsPeerError(t.Host, err)
	}
	switch {
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return newError(t.Host, KindProtocol, err, "connection closed by agent before the answer was complete")
	case errors.Is(err, syscall.ECONNRESET):
		return newError(t.Host, KindProtocol, err, "connection reset by agent before the answer was complete")
	}
	return newError(t.Host, KindProtocol, err, "connection lost: %v", err)
}

// statusError reads the {"error"} of a refusal.
func statusError(host, method, path string, resp *http.Response) *Error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, errorBodyLimit))
	code := resp.StatusCode
	if code == http.StatusNotFound {
		e := newError(host, KindHTTP, ErrNotFound, "not supported by this agent version (404 on %s %s)", method, path)
		e.Status = code
		return e
	}
	var er ErrorResponse
	text := ""
	if json.Unmarshal(b, &er) == nil {
		text = peerText(er.Error)
	}
	if text == "" {
		text = lowerASCII(http.StatusText(code))
	}
	if text == "" {
		text = "unexpected status"
	}
	e := newError(host, KindHTTP, nil, "agent refused: %d %s", code, text)
	e.Status = code
	return e
}

func lowerASCII(s string) string {
	b := []byte(s)
	for i, c := range b {
		if 'A' <= c && c <= 'Z' {
			b[i] = c + 'a' - 'A'
		}
	}
	return string(b)
}

// decodeAnswer reads a JSON object of at most max bytes into out. Read
// errors are returned as they are; what is wrong with the answer itself is a
// protocol *Error.
func decodeAnswer(r io.Reader, max int64, out any) error {
	b, err := io.ReadAll(io.LimitReader(r, max+1))
	if err != nil {
		return err
	}
	if int64(len(b)) > max {
		return protocolError("answer larger than %s (lower output_limit on the agent)", sizeString(max))
	}
	if !isObject(b) {
		return protocolError("bad answer: not a json object")
	}
	if err := json.Unmarshal(b, out); err != nil {
		return protocolError("bad answer: %v", err)
	}
	return nil
}

// isObject reports whether b, after leading white space, starts an object.
func isObject(b []byte) bool {
	b = bytes.TrimLeft(b, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

func isNDJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == ContentTypeNDJSON
}

// drainClose reads a little of what is left of body, so that a kept-alive
// connection can be reused, and closes it.
func drainClose(body io.ReadCloser) {
	_, _ = io.CopyN(io.Discard, body, drainLimit)
	_ = body.Close()
}
