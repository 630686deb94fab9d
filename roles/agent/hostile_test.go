package agent

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// The agent's port faces whatever can route to it. Each case below sends
// one kind of hostile input to the real server over real TLS on loopback
// and asserts the exact refusal, that the script it aims at ("touch",
// which creates the marker file) did not run, and that a normal run
// ("hello") still succeeds afterwards. testdata/script/hostile_agent.txtar
// does the same against the real binary.

// hostileWorld is an agent that allows "touch" and "hello", with its logs
// observed, and a good dispatcher certificate.
type hostileWorld struct {
	*world
	logs *observer.ObservedLogs
	disp tls.Certificate
}

// newHostileWorld starts an agent; withLimits keeps the default rate
// limits (setupWorld turns them off).
func newHostileWorld(t *testing.T, withLimits bool) *hostileWorld {
	t.Helper()
	return newHostileWorldWith(t, withLimits, nil)
}

// newHostileWorldWith is newHostileWorld with adjust applied to the server
// before it starts.
func newHostileWorldWith(t *testing.T, withLimits bool, adjust func(*Server)) *hostileWorld {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	w := setupWorld(t, zap.New(core))
	if withLimits {
		conf := filepath.Join(w.dir, "agent.conf")
		data, err := os.ReadFile(conf)
		if err != nil {
			t.Fatal(err)
		}
		write(t, conf, strings.Replace(string(data), "rate_limit_disable = true\n", "", 1), 0o640)
	}
	bin := filepath.Join(w.dir, "bin")
	w.allow(fmt.Sprintf("touch = %q\nhello = %q\n", filepath.Join(bin, "touch"), filepath.Join(bin, "hello")))
	if err := w.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if adjust != nil {
		adjust(w.srv)
	}
	w.start()
	return &hostileWorld{world: w, logs: logs, disp: w.ca.Dispatcher(t)}
}

// normalRun runs "hello" with the dispatcher's own client, whose connect
// timeout (TCP and TLS) and read timeout bound the run: a run slower than
// their sum fails by itself.
func (h *hostileWorld) normalRun(t *testing.T, connect, read time.Duration) {
	t.Helper()
	c := wire.NewClient(wire.ClientConfig{Cert: h.disp, Roots: h.ca.Pool(), ConnectTimeout: connect, ReadTimeout: read})
	defer c.Close()
	res, err := c.Run(context.Background(), wire.Target{Host: "web-01", Addr: h.addr}, wire.RunRequest{Script: "hello", ReqID: "normal"}, nil)
	if err != nil {
		t.Fatalf("normal run: %v", err)
	}
	if res.Exit != 0 || res.Stdout != "hello\n" || res.Error != "" {
		t.Fatalf("normal run: exit %d stdout %q error %q, want exit 0 and hello", res.Exit, res.Stdout, res.Error)
	}
}

// afterAttack asserts that nothing ran and that the agent still serves.
func (h *hostileWorld) afterAttack(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(h.marker); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the attack ran the script: marker file: %v", err)
	}
	h.normalRun(t, 10*time.Second, 10*time.Second)
}

// dialTLS connects from 127.0.0.1 presenting cert (none when nil) and
// completes the client's side of the handshake. Under TLS 1.3 the agent's
// verdict on the client certificate arrives with the first read.
func (h *hostileWorld) dialTLS(cert *tls.Certificate) (*tls.Conn, error) {
	cfg := &tls.Config{RootCAs: h.ca.Pool(), ServerName: "web-01"}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	return tls.DialWithDialer(d, "tcp", h.addr, cfg)
}

// exchange writes req on c while reading everything the agent sends until
// it closes the connection. The read error is nil for a clean close.
func exchange(c net.Conn, req []byte) ([]byte, error) {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	go func() { _, _ = c.Write(req) }() // may fail once the agent has answered and closed
	return io.ReadAll(c)
}

// httpRequest is a POST with a Content-Length body and extra header lines.
func httpRequest(path string, extra []string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: web-01\r\nContent-Type: application/json\r\nConnection: close\r\n", path)
	for _, l := range extra {
		b.WriteString(l + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(body))
	b.Write(body)
	return b.Bytes()
}

var touchBody = []byte(`{"script":"touch","reqid":"hostile"}`)

// answer parses an HTTP answer: its status and body.
func answer(t *testing.T, raw []byte) (int, string) {
	t.Helper()
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if err != nil {
		t.Fatalf("not an HTTP answer (%v): %q", err, raw)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("answer body: %v", err)
	}
	return resp.StatusCode, strings.TrimSpace(string(body))
}

// closedByPeer reports whether err is how a connection the other side
// closed ends: a clean close, or a reset when it closed with our bytes
// still unread.
func closedByPeer(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// dispatcherAt is a dispatcher certificate from the agent's CA issued as
// if the clock read at, valid for one day from then.
func (h *hostileWorld) dispatcherAt(t *testing.T, at time.Time) tls.Certificate {
	t.Helper()
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := h.ca.IssueDispatcher(pki.Options{Now: func() time.Time { return at }}, key.Public(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}

// rejected returns the reasons of the serial-reject events logged so far.
func (h *hostileWorld) rejected() []string {
	var out []string
	for _, e := range h.logs.FilterMessage(logging.ActionSerialReject).All() {
		if r, ok := e.ContextMap()["reason"].(string); ok {
			out = append(out, r)
		}
	}
	return out
}

func TestHostileControl(t *testing.T) {
	// The target of every attack works when asked properly, so its
	// absent marker below means the attack was refused.
	h := newHostileWorld(t, false)
	c, err := h.dialTLS(&h.disp)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	raw, err := exchange(c, httpRequest(wire.PathRun, nil, touchBody))
	if err != nil {
		t.Fatal(err)
	}
	if status, body := answer(t, raw); status != 200 || !strings.Contains(body, `"stdout":"touched\n"`) {
		t.Fatalf("well-formed run: %d %s", status, body)
	}
	if _, err := os.Stat(h.marker); err != nil {
		t.Fatalf("the well-formed run left no marker: %v", err)
	}
}

func TestHostileIdentity(t *testing.T) {
	for _, tc := range []struct {
		name   string
		cert   func(t *testing.T, h *hostileWorld) *tls.Certificate
		alert  string // what the client's first read fails with
		reason string // prefix of the reason the agent logs
	}{
		{"foreign CA", func(t *testing.T, h *hostileWorld) *tls.Certificate {
			c := pkitest.NewCA(t).Dispatcher(t)
			return &c
		}, "remote error: tls: bad certificate", "certificate not signed by the dispatcher ca"},
		{"expired dispatcher cert", func(t *testing.T, h *hostileWorld) *tls.Certificate {
			c := h.dispatcherAt(t, time.Now().Add(-48*time.Hour))
			return &c
		}, "remote error: tls: bad certificate", "certificate expired on "},
		{"not yet valid dispatcher cert", func(t *testing.T, h *hostileWorld) *tls.Certificate {
			c := h.dispatcherAt(t, time.Now().Add(48*time.Hour))
			return &c
		}, "remote error: tls: bad certificate", "certificate not valid before "},
		{"another agent's cert as client", func(t *testing.T, h *hostileWorld) *tls.Certificate {
			c := h.ca.Agent(t, "web-02")
			return &c
		}, "remote error: tls: bad certificate", "agent certificate presented as dispatcher"},
		{"this agent's own cert as client", func(t *testing.T, h *hostileWorld) *tls.Certificate {
			c, err := tls.LoadX509KeyPair(filepath.Join(h.dir, "agent.crt"), filepath.Join(h.dir, "agent.key"))
			if err != nil {
				t.Fatal(err)
			}
			return &c
		}, "remote error: tls: bad certificate", "agent certificate presented as dispatcher"},
		// crypto/tls refuses it before the agent's check: nothing to log.
		{"no client cert", func(*testing.T, *hostileWorld) *tls.Certificate { return nil },
			"remote error: tls: certificate required", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHostileWorld(t, false)
			c, err := h.dialTLS(tc.cert(t, h))
			if err != nil {
				t.Fatalf("client side of the handshake: %v", err)
			}
			defer c.Close()
			raw, err := exchange(c, httpRequest(wire.PathRun, nil, touchBody))
			if len(raw) != 0 || err == nil || !strings.Contains(err.Error(), tc.alert) {
				t.Fatalf("got %q and error %v, want no answer and %q", raw, err, tc.alert)
			}
			got := h.rejected()
			if tc.reason == "" && len(got) != 0 {
				t.Errorf("serial-reject reasons logged: %q, want none", got)
			}
			if tc.reason != "" && (len(got) != 1 || !strings.HasPrefix(got[0], tc.reason)) {
				t.Errorf("serial-reject reasons logged: %q, want one starting %q", got, tc.reason)
			}
			h.afterAttack(t)
		})
	}
}

func TestHostileNotTLS(t *testing.T) {
	for _, tc := range []struct {
		name   string
		send   []byte
		status int // 0: closed without a byte
		body   string
	}{
		{"plain HTTP", httpRequest(wire.PathRun, nil, touchBody), 400,
			`{"error":"plain http sent to the agent's tls port: use https with the dispatcher's client certificate"}`},
		{"plain HTTP GET", []byte("GET /capabilities HTTP/1.0\r\n\r\n"), 400,
			`{"error":"plain http sent to the agent's tls port: use https with the dispatcher's client certificate"}`},
		{"neither TLS nor HTTP", []byte("\x00\x01\x02garbage\r\n\r\n"), 0, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHostileWorld(t, false)
			c, err := net.Dial("tcp", h.addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			raw, err := exchange(c, tc.send)
			if !closedByPeer(err) {
				t.Fatalf("read: %v, want the agent to close the connection", err)
			}
			if tc.status == 0 {
				if len(raw) != 0 {
					t.Fatalf("the agent answered %q, want nothing", raw)
				}
			} else if status, body := answer(t, raw); status != tc.status || body != tc.body {
				t.Fatalf("answer %d %s, want %d %s", status, body, tc.status, tc.body)
			}
			h.afterAttack(t)
		})
	}
}

func TestHostileLimits(t *testing.T) {
	headers := func(n int) []string {
		l := make([]string, n)
		for i := range l {
			l[i] = fmt.Sprintf("X-Hostile-%d: %d", i, i)
		}
		return l
	}
	tenMB := func() []byte { // a run of touch, 10 MiB long
		prefix := `{"script":"touch","reqid":"`
		return []byte(prefix + strings.Repeat("x", 10<<20-len(prefix)-2) + `"}`)
	}
	chunked := func(body []byte) []byte {
		var b bytes.Buffer
		b.WriteString("POST /run HTTP/1.1\r\nHost: web-01\r\nContent-Type: application/json\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
		for len(body) > 0 {
			n := min(len(body), 64<<10)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
			body = body[n:]
		}
		b.WriteString("0\r\n\r\n")
		return b.Bytes()
	}
	for _, tc := range []struct {
		name      string
		req       []byte
		status    int
		body      string
		mayClose  bool // the agent may close the connection instead of answering
		wantAlert bool
	}{
		// net/http stops reading past MaxHeaderBytes (8 KiB, plus its
		// slack) and answers 431 in text; while the attacker is still
		// writing, the close may reach it before the answer.
		{name: "10,000 header lines", req: httpRequest(wire.PathRun, headers(10_000), touchBody),
			status: 431, body: "431 Request Header Fields Too Large", mayClose: true},
		// Under the byte limit, the protocol's 32 lines (WIRE.md): Host,
		// Content-Type, Connection, Content-Length and 29 more.
		{name: "33 header lines", req: httpRequest(wire.PathRun, headers(29), touchBody),
			status: 431, body: `{"error":"too many header lines"}`},
		{name: "10 MB body", req: httpRequest(wire.PathRun, nil, tenMB()),
			status: 413, body: `{"error":"request body too large"}`},
		{name: "10 MB chunked body", req: chunked(tenMB()),
			status: 413, body: `{"error":"request body too large"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHostileWorld(t, false)
			c, err := h.dialTLS(&h.disp)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			raw, err := exchange(c, tc.req)
			switch {
			case len(raw) == 0 && tc.mayClose && closedByPeer(err):
				t.Logf("the agent closed the connection without an answer: %v", err)
			case len(raw) == 0:
				t.Fatalf("no answer (%v), want %d", err, tc.status)
			default:
				if status, body := answer(t, raw); status != tc.status || body != tc.body {
					t.Fatalf("answer %d %s, want %d %s", status, body, tc.status, tc.body)
				}
			}
			h.afterAttack(t)
		})
	}
}

func TestHostileBodies(t *testing.T) {
	args := func(n int, script string) []byte {
		return []byte(`{"script":"` + script + `","args":[` + strings.TrimSuffix(strings.Repeat(`"a",`, n), ",") + `]}`)
	}
	deep := `{"script":"touch","args":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`
	for _, tc := range []struct {
		name   string
		body   string
		status int
		want   string // the whole answer body
	}{
		{"invalid JSON", `{"script":"touch",`, 400, `{"error":"invalid json at byte 18: unexpected end of JSON input"}`},
		{"not an object", `["touch"]`, 400, `{"error":"request body must be a json object"}`},
		{"100,000 nested arrays", deep, 400, `{"error":"invalid json at byte 10025: nested more than 10000 levels deep"}`},
		// encoding/json would match these keys to "script" ignoring
		// case and keep the last of repeated keys: each would run touch.
		{"upper-case key", `{"SCRIPT":"touch"}`, 400, `{"error":"field \"SCRIPT\" is not \"script\": field names are case-sensitive"}`},
		{"case variant beside the key", `{"script":"hello","Script":"touch"}`, 400,
			`{"error":"field \"Script\" is not \"script\": field names are case-sensitive"}`},
		{"unicode case folding", `{"\u017fcript":"touch"}`, 400, `{"error":"field \"ſcript\" is not \"script\": field names are case-sensitive"}`},
		{"duplicate key", `{"script":"hello","script":"touch"}`, 400, `{"error":"duplicate field \"script\""}`},
		{"NUL in an argument", `{"script":"touch","args":["a\u0000b"]}`, 400, `{"error":"argument 1 contains a NUL byte"}`},
		{"1,025 arguments", string(args(1025, "touch")), 400, `{"error":"too many arguments: 1025, the limit is 1024"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			h := newHostileWorld(t, false)
			c, err := h.dialTLS(&h.disp)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			raw, err := exchange(c, httpRequest(wire.PathRun, nil, []byte(tc.body)))
			if err != nil {
				t.Fatal(err)
			}
			if status, body := answer(t, raw); status != tc.status || body != tc.want {
				t.Fatalf("answer %d %s, want %d %s", status, body, tc.status, tc.want)
			}
			h.afterAttack(t)
		})
	}
	// The argument limit is where SPEC.md puts it: 1,024 are run.
	t.Run("1,024 arguments", func(t *testing.T) {
		t.Parallel()
		h := newHostileWorld(t, false)
		c, err := h.dialTLS(&h.disp)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		raw, err := exchange(c, httpRequest(wire.PathRun, nil, args(1024, "hello")))
		if err != nil {
			t.Fatal(err)
		}
		if status, body := answer(t, raw); status != 200 || !strings.Contains(body, `"exit":0,"stdout":"hello\n"`) {
			t.Fatalf("answer %d %s, want 200 and hello", status, body)
		}
	})
}

// activeFrom is the number of connections from a the agent holds.
func (l *limiter) activeFrom(a netip.Addr) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.peers[a]; ok {
		return e.Value.(*peer).active
	}
	return 0
}

// slowConn is one slowloris connection: stuck in the TLS handshake (a
// ClientHello that never completes) or, after a good handshake, in the
// request headers. It trickles a byte every 500 ms until the agent closes
// it or the test stops it.
type slowConn struct {
	src     string
	conn    net.Conn
	stop    chan struct{}
	done    chan struct{} // closed when the agent closed the connection
	answerN int64         // bytes the agent sent before closing
	err     error         // how reading ended
}

const slowAttackers, slowAddrs = 500, 10

// slowSrc is the source address of attacker i: 127.0.0.10 to 127.0.0.19.
func slowSrc(i int) string { return fmt.Sprintf("127.0.0.%d", 10+i%slowAddrs) }

// openSlow opens attacker i: even ones stall the handshake, odd ones the
// headers. A connection the agent refuses is returned already done.
func (h *hostileWorld) openSlow(i int) (*slowConn, error) {
	s := &slowConn{src: slowSrc(i), stop: make(chan struct{}), done: make(chan struct{})}
	raw, err := dialerFrom(s.src).Dial("tcp", h.addr)
	if err != nil {
		return nil, err
	}
	var first, drip []byte
	if i%2 == 0 {
		// A TLS record header announcing a 512-byte handshake record,
		// and the start of a ClientHello.
		s.conn, first, drip = raw, []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc}, []byte{0x03}
	} else {
		tc := tls.Client(raw, &tls.Config{Certificates: []tls.Certificate{h.disp}, RootCAs: h.ca.Pool(), ServerName: "web-01"})
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			raw.Close()
			s.err = err
			close(s.done)
			return s, nil
		}
		_ = tc.SetDeadline(time.Time{})
		s.conn, first, drip = tc, []byte("POST /run HTTP/1.1\r\nHost: web-01\r\nContent-Type: application/json\r\nX-Slow: "), []byte("a")
	}
	_ = s.conn.SetReadDeadline(time.Now().Add(60 * time.Second))
	go func() {
		s.answerN, s.err = io.Copy(io.Discard, s.conn)
		close(s.done)
	}()
	go func() {
		if _, err := s.conn.Write(first); err != nil {
			return
		}
		tick := time.NewTicker(500 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-s.done:
				return
			case <-tick.C:
				if _, err := s.conn.Write(drip); err != nil {
					return
				}
			}
		}
	}()
	return s, nil
}

// slowloris opens every attacker, 50 at a time, and closes them at the
// end of the test.
func (h *hostileWorld) slowloris(t *testing.T) []*slowConn {
	t.Helper()
	conns := make([]*slowConn, slowAttackers)
	errs := make([]error, slowAttackers)
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	for i := range conns {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			conns[i], errs[i] = h.openSlow(i)
		})
	}
	wg.Wait()
	t.Cleanup(func() {
		for _, s := range conns {
			if s != nil && s.conn != nil {
				close(s.stop)
				s.conn.Close()
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		t.Fatalf("open the attackers: %v", err)
	}
	return conns
}

func ended(conns []*slowConn) int {
	n := 0
	for _, s := range conns {
		select {
		case <-s.done:
			n++
		default:
		}
	}
	return n
}

// 500 slow connections from ten addresses (50 each, under the per-address
// cap of max_concurrent+16 = 80), rate limits off: the agent holds them
// all, serves a normal run meanwhile within the client's configured bound
// (connect 1 s + read 1 s), executes nothing for them, and closes every one
// itself at its handshake or header deadline without answering.
func TestHostileSlowloris(t *testing.T) {
	h := newHostileWorld(t, false)
	conns := h.slowloris(t)
	eventually(t, "the agent to hold all 500 connections", func() bool {
		for i := range slowAddrs {
			if h.srv.limiter.activeFrom(netip.MustParseAddr(slowSrc(i))) != slowAttackers/slowAddrs {
				return false
			}
		}
		return true
	})
	if n := ended(conns); n != 0 {
		t.Fatalf("%d attackers were refused; want all held", n)
	}

	h.normalRun(t, time.Second, time.Second)

	// The agent's own deadlines (10 s to finish the handshake, then 10 s
	// for the headers) end every attacker; 60 s is the hang detector.
	for _, s := range conns {
		<-s.done
		if s.answerN != 0 || !closedByPeer(s.err) {
			t.Fatalf("attacker from %s: the agent sent %d bytes, reading ended with %v; want a close without an answer", s.src, s.answerN, s.err)
		}
	}
	eventually(t, "the agent to release every attacker's slot", func() bool {
		for i := range slowAddrs {
			if h.srv.limiter.activeFrom(netip.MustParseAddr(slowSrc(i))) != 0 {
				return false
			}
		}
		return true
	})
	h.afterAttack(t)
}

// The same attack with the default rate limits (10 connections a minute
// per address that do not authenticate; 80 at once per address) and a
// 1 s handshake deadline: every attacker is admitted (50 per address, under
// the cap; handshakes in progress are not held against the volume limit,
// and the 25 that authenticated are not counted at all), the 25 stalled
// handshakes per address end at the deadline and stay counted — as
// abandoned handshakes, not as probes — so each address is blocked at its
// next connection, logged once. Addresses whose connections authenticated
// are not blocked: the cap and the header deadline bound them. A
// dispatcher at another address is served within the same bound
// throughout.
func TestHostileSlowlorisRateLimited(t *testing.T) {
	h := newHostileWorldWith(t, true, func(s *Server) { s.handshakeTimeout = time.Second })
	conns := h.slowloris(t)
	eventually(t, "the stalled handshakes to end at the deadline", func() bool {
		return ended(conns) >= slowAttackers/2
	})
	h.normalRun(t, time.Second, time.Second)
	// Attackers 0, 2, 4… (127.0.0.10, .12, …) stall handshakes; 1, 3, …
	// (127.0.0.11, .13, …) authenticate with the dispatcher's certificate
	// and stall their headers: those count against the per-address cap
	// and the header deadline only.
	for i := range slowAddrs {
		a := slowSrc(i)
		stalled := i%2 == 0
		if stalled && !rawRefused(t, h.addr, a) {
			t.Errorf("%s: a new connection was admitted after 25 abandoned handshakes", a)
		}
		if got := h.srv.limiter.blocked(netip.MustParseAddr(a), time.Now()); got != stalled {
			t.Errorf("%s blocked: %v, want %v", a, got, stalled)
		}
	}
	for _, s := range conns {
		select {
		case <-s.done:
			if s.answerN != 0 {
				t.Fatalf("the agent answered an attacker from %s", s.src)
			}
		default:
		}
	}
	if n := h.logs.FilterMessage(logging.ActionRateBlock).FilterField(zap.String("limit", "volume")).Len(); n != slowAddrs/2 {
		t.Errorf("volume rate-block logged %d times, want once per address that stalled handshakes", n)
	}
	if n := h.logs.FilterMessage(logging.ActionRateBlock).FilterField(zap.String("limit", "probe")).Len(); n != 0 {
		t.Errorf("probe rate-block logged %d times: abandoned handshakes are not probes", n)
	}

	h.normalRun(t, time.Second, time.Second)
	if _, err := os.Stat(h.marker); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the attack ran the script: marker file: %v", err)
	}
}
