package main

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// Commands of testdata/script/hostile_agent.txtar: attacks on the agent's
// port, each printing a one-line verdict for the script to assert.
func init() {
	scriptCmds["hostile"] = cmdHostile
}

// hostile KIND ADDR PKIDIR: make one attack of KIND on the agent at ADDR
// and print "KIND: VERDICT", where VERDICT is the agent's answer as
// "STATUS BODY", "refused in the tls handshake: ALERT" or "closed without
// an answer". PKIDIR holds the dispatcher's ca.crt, ca.key, dispatcher.crt
// and dispatcher.key: the attacks that need a client certificate the agent
// accepts use dispatcher.crt, the others make theirs with the CA (or with
// a CA of their own). Every attack that reaches the agent asks it to run
// the script "touch". KIND is one of the keys of hostileAttacks.
//
// hostile slowloris ADDR PKIDIR: open 500 connections from 127.0.0.10 to
// 127.0.0.19 (50 each, under the agent's per-address cap), half stalled
// in the TLS handshake, half stalled in the request headers after a good
// handshake, each trickling a byte every 500 ms; print how many are open.
//
// hostile slowloris-end: print how many of them are still open, then wait
// (up to 60 s) until the agent has closed them all and print how.
//
// hostile cli-args N PROG ARGS...: run PROG ARGS... -- 1 2 … N (the CLI
// with N script arguments) and print "cli-args: exit CODE: LINE", LINE
// being its error line ("PROG: …" on stderr) when it failed, else the
// last line of its stdout.
func cmdHostile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 {
		ts.Fatalf("usage: hostile KIND ADDR PKIDIR | hostile slowloris ADDR PKIDIR | hostile slowloris-end | hostile cli-args N PROG ARGS...")
	}
	switch kind := args[0]; kind {
	case "cli-args":
		hostileCLIArgs(ts, args[1:])
	case "slowloris-end":
		hostileSlowlorisEnd(ts)
	default:
		if len(args) != 3 {
			ts.Fatalf("usage: hostile %s ADDR PKIDIR", kind)
		}
		h := loadHostileTarget(ts, args[1], args[2])
		if kind == "slowloris" {
			hostileSlowloris(ts, h)
			return
		}
		attack, ok := hostileAttacks[kind]
		if !ok {
			ts.Fatalf("hostile: unknown attack %q", kind)
		}
		raw, err := attack(ts, h)
		fmt.Fprintf(ts.Stdout(), "%s: %s\n", kind, hostileVerdict(raw, err))
	}
}

// hostileTarget is the agent under attack and the dispatcher's PKI.
type hostileTarget struct {
	addr string
	ca   *pki.CA
	disp tls.Certificate
}

func loadHostileTarget(ts *testscript.TestScript, addr, dir string) *hostileTarget {
	dir = ts.MkAbs(dir)
	certPEM, err := os.ReadFile(filepath.Join(dir, "ca.crt"))
	ts.Check(err)
	keyPEM, err := os.ReadFile(filepath.Join(dir, "ca.key"))
	ts.Check(err)
	ca, err := pki.LoadCA(certPEM, keyPEM)
	ts.Check(err)
	disp, err := tls.LoadX509KeyPair(filepath.Join(dir, "dispatcher.crt"), filepath.Join(dir, "dispatcher.key"))
	ts.Check(err)
	return &hostileTarget{addr: addr, ca: ca, disp: disp}
}

// hostileTouch is a well-formed run of the script every attack aims at.
var hostileTouch = []byte(`{"script":"touch","reqid":"hostile"}`)

// hostileAttacks are the kinds of hostile: each sends its attack and
// returns what the agent sent back and how reading ended.
var hostileAttacks = map[string]func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error){
	// Client certificates the agent must refuse in the handshake.
	"foreign-ca": func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error) {
		other, err := pki.NewCA(pki.Options{}, "mallory")
		ts.Check(err)
		return h.overTLS(ts, hostileDispatcherCert(ts, other, time.Now()), hostilePost("/run", nil, hostileTouch))
	},
	"expired": func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error) {
		// Issued two days ago for one day.
		return h.overTLS(ts, hostileDispatcherCert(ts, h.ca, time.Now().Add(-48*time.Hour)), hostilePost("/run", nil, hostileTouch))
	},
	"not-yet-valid": func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error) {
		// Valid from two days from now.
		return h.overTLS(ts, hostileDispatcherCert(ts, h.ca, time.Now().Add(48*time.Hour)), hostilePost("/run", nil, hostileTouch))
	},
	"agent-cert": func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error) {
		// Another agent's certificate, as a thief of it would present it.
		key, err := pki.GenerateKey(pki.Options{})
		ts.Check(err)
		csrPEM, err := pki.CreateCSR(pki.Options{}, key, "web-02")
		ts.Check(err)
		csr, err := pki.ParseCSR(csrPEM)
		ts.Check(err)
		cert, err := h.ca.SignAgentCSR(pki.Options{}, csr, "web-02", 365)
		ts.Check(err)
		return h.overTLS(ts, &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}, hostilePost("/run", nil, hostileTouch))
	},
	"no-cert": func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error) {
		return h.overTLS(ts, nil, hostilePost("/run", nil, hostileTouch))
	},

	// Not TLS at all.
	"plain-http": func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error) {
		c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
		ts.Check(err)
		defer c.Close()
		return hostileExchange(c, hostilePost("/run", nil, hostileTouch))
	},
	"not-tls": func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error) {
		c, err := net.DialTimeout("tcp", h.addr, 5*time.Second)
		ts.Check(err)
		defer c.Close()
		return hostileExchange(c, []byte("\x00\x01\x02garbage\r\n\r\n"))
	},

	// A good dispatcher certificate and a hostile request.
	"headers-10000": func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error) {
		return h.overTLS(ts, &h.disp, hostilePost("/run", hostileHeaders(10_000), hostileTouch))
	},
	"headers-33": func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error) {
		// Host, Content-Type, Connection, Content-Length and 29 more.
		return h.overTLS(ts, &h.disp, hostilePost("/run", hostileHeaders(29), hostileTouch))
	},
	"body-10mb": func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error) {
		return h.overTLS(ts, &h.disp, hostilePost("/run", nil, hostileTenMB()))
	},
	"body-10mb-chunked": func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error) {
		var b bytes.Buffer
		b.WriteString("POST /run HTTP/1.1\r\nHost: web-01\r\nContent-Type: application/json\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n")
		for body := hostileTenMB(); len(body) > 0; {
			n := min(len(body), 64<<10)
			fmt.Fprintf(&b, "%x\r\n%s\r\n", n, body[:n])
			body = body[n:]
		}
		b.WriteString("0\r\n\r\n")
		return h.overTLS(ts, &h.disp, b.Bytes())
	},
	"json-invalid":   hostileBody(`{"script":"touch",`),
	"json-deep":      hostileBody(`{"script":"touch","args":` + strings.Repeat("[", 100_000) + strings.Repeat("]", 100_000) + `}`),
	"json-upper":     hostileBody(`{"SCRIPT":"touch"}`),
	"json-variant":   hostileBody(`{"script":"hello","Script":"touch"}`),
	"json-fold":      hostileBody(`{"\u017fcript":"touch"}`),
	"json-duplicate": hostileBody(`{"script":"hello","script":"touch"}`),
	"nul-arg":        hostileBody(`{"script":"touch","args":["a\u0000b"]}`),
	"args-1025":      hostileBody(`{"script":"touch","args":[` + strings.TrimSuffix(strings.Repeat(`"a",`, 1025), ",") + `]}`),
	"args-1024":      hostileBody(`{"script":"hello","args":[` + strings.TrimSuffix(strings.Repeat(`"a",`, 1024), ",") + `]}`),
}

// hostileBody posts body to /run with the dispatcher's certificate.
func hostileBody(body string) func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error) {
	return func(ts *testscript.TestScript, h *hostileTarget) ([]byte, error) {
		return h.overTLS(ts, &h.disp, hostilePost("/run", nil, []byte(body)))
	}
}

// hostileDispatcherCert is a dispatcher certificate from ca issued as if
// the clock read at, valid for one day from then.
func hostileDispatcherCert(ts *testscript.TestScript, ca *pki.CA, at time.Time) *tls.Certificate {
	key, err := pki.GenerateKey(pki.Options{})
	ts.Check(err)
	cert, err := ca.IssueDispatcher(pki.Options{Now: func() time.Time { return at }}, key.Public(), 1, nil)
	ts.Check(err)
	return &tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key}
}

// hostileTenMB is a run of touch, 10 MiB long.
func hostileTenMB() []byte {
	prefix := `{"script":"touch","reqid":"`
	return []byte(prefix + strings.Repeat("x", 10<<20-len(prefix)-2) + `"}`)
}

func hostileHeaders(n int) []string {
	l := make([]string, n)
	for i := range l {
		l[i] = fmt.Sprintf("X-Hostile-%d: %d", i, i)
	}
	return l
}

// hostilePost is a POST with a Content-Length body and extra header lines.
func hostilePost(path string, extra []string, body []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "POST %s HTTP/1.1\r\nHost: web-01\r\nContent-Type: application/json\r\nConnection: close\r\n", path)
	for _, l := range extra {
		b.WriteString(l + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n", len(body))
	b.Write(body)
	return b.Bytes()
}

// tlsConfig is an attacker's: it presents cert (none when nil) and does
// not care who answers.
func (h *hostileTarget) tlsConfig(cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

// overTLS sends req over TLS with cert. Under TLS 1.3 the agent's verdict
// on the certificate arrives with the first read, which hostileExchange
// reports.
func (h *hostileTarget) overTLS(ts *testscript.TestScript, cert *tls.Certificate, req []byte) ([]byte, error) {
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", h.addr, h.tlsConfig(cert))
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return hostileExchange(c, req)
}

// hostileExchange writes req on c while reading all the agent sends until
// it closes the connection (30 s at most).
func hostileExchange(c net.Conn, req []byte) ([]byte, error) {
	_ = c.SetDeadline(time.Now().Add(30 * time.Second))
	go func() { _, _ = c.Write(req) }() // may fail once the agent has answered and closed
	return io.ReadAll(c)
}

// hostileVerdict describes the agent's reaction in one line.
func hostileVerdict(raw []byte, err error) string {
	if len(raw) == 0 {
		var op *net.OpError
		switch {
		case errors.As(err, &op) && op.Op == "remote error":
			return "refused in the tls handshake: " + op.Err.Error()
		case hostileClosed(err):
			return "closed without an answer"
		}
		return "error: " + err.Error()
	}
	resp, perr := http.ReadResponse(bufio.NewReader(bytes.NewReader(raw)), nil)
	if perr != nil {
		return fmt.Sprintf("not an http answer: %q", raw)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return fmt.Sprintf("%d %s", resp.StatusCode, strings.TrimSpace(string(body)))
}

// hostileClosed reports whether err is how a connection the other side
// closed ends: cleanly, or with a reset when our bytes were still unread.
func hostileClosed(err error) bool {
	return err == nil || errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// hostileCLIArgs runs PROG ARGS... -- 1 … N.
func hostileCLIArgs(ts *testscript.TestScript, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: hostile cli-args N PROG ARGS...")
	}
	n, err := strconv.Atoi(args[0])
	ts.Check(err)
	argv := append(append([]string{}, args[2:]...), "--")
	for i := range n {
		argv = append(argv, strconv.Itoa(i+1))
	}
	err = ts.Exec(args[1], argv...)
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		ts.Fatalf("run %s: %v", args[1], err)
	}
	// The error line (PROG: …), or the script's last line of output.
	line := ""
	if code != 0 {
		prefix := filepath.Base(args[1]) + ": "
		for l := range strings.Lines(ts.ReadFile("stderr")) {
			if strings.HasPrefix(l, prefix) {
				line = strings.TrimSpace(l)
				break
			}
		}
	} else if out := strings.TrimSpace(ts.ReadFile("stdout")); out != "" {
		line = out[strings.LastIndexByte(out, '\n')+1:]
	}
	fmt.Fprintf(ts.Stdout(), "cli-args: exit %d: %s\n", code, line)
}

const (
	hostileSlowConns = 500
	hostileSlowAddrs = 10 // 127.0.0.10 to 127.0.0.19
)

// hostileSlow is one slowloris connection.
type hostileSlow struct {
	conn    net.Conn
	stop    chan struct{}
	done    chan struct{} // closed when reading ended
	answerN int64         // bytes the agent sent
	err     error         // how reading ended
}

var (
	hostileSlowMu sync.Mutex
	hostileSlows  = map[*testscript.TestScript][]*hostileSlow{}
)

func hostileSlowloris(ts *testscript.TestScript, h *hostileTarget) {
	conns := make([]*hostileSlow, hostileSlowConns)
	errs := make([]error, hostileSlowConns)
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
	hostileSlowMu.Lock()
	hostileSlows[ts] = conns
	hostileSlowMu.Unlock()
	ts.Defer(func() {
		hostileSlowMu.Lock()
		delete(hostileSlows, ts)
		hostileSlowMu.Unlock()
		for _, s := range conns {
			if s != nil {
				close(s.stop)
				s.conn.Close()
			}
		}
	})
	ts.Check(errors.Join(errs...))
	open := 0
	for _, s := range conns {
		select {
		case <-s.done:
		default:
			open++
		}
	}
	fmt.Fprintf(ts.Stdout(), "slowloris: %d of %d connections open from %d addresses\n", open, hostileSlowConns, hostileSlowAddrs)
}

// openSlow opens attacker i from 127.0.0.(10 + i%10): even ones stall the
// TLS handshake, odd ones the request headers after a good handshake.
func (h *hostileTarget) openSlow(i int) (*hostileSlow, error) {
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(10+i%hostileSlowAddrs))}
	raw, err := (&net.Dialer{Timeout: 5 * time.Second, LocalAddr: src}).Dial("tcp", h.addr)
	if err != nil {
		return nil, fmt.Errorf("attacker %d: %w", i, err)
	}
	s := &hostileSlow{conn: raw, stop: make(chan struct{}), done: make(chan struct{})}
	var first, drip []byte
	if i%2 == 0 {
		// A record header announcing a 512-byte handshake record and the
		// start of a ClientHello.
		first, drip = []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc}, []byte{0x03}
	} else {
		tc := tls.Client(raw, h.tlsConfig(&h.disp))
		_ = tc.SetDeadline(time.Now().Add(10 * time.Second))
		if err := tc.Handshake(); err != nil {
			raw.Close()
			return nil, fmt.Errorf("attacker %d: the agent refused a good handshake: %w", i, err)
		}
		_ = tc.SetDeadline(time.Time{})
		s.conn = tc
		first, drip = []byte("POST /run HTTP/1.1\r\nHost: web-01\r\nContent-Type: application/json\r\nX-Slow: "), []byte("a")
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

func hostileSlowlorisEnd(ts *testscript.TestScript) {
	hostileSlowMu.Lock()
	conns := hostileSlows[ts]
	hostileSlowMu.Unlock()
	if conns == nil {
		ts.Fatalf("hostile slowloris-end: no slowloris running")
	}
	open := 0
	for _, s := range conns {
		select {
		case <-s.done:
		default:
			open++
		}
	}
	closed, answered := 0, 0
	for _, s := range conns {
		<-s.done // the 60 s read deadline bounds the wait
		if s.answerN > 0 {
			answered++
		}
		if hostileClosed(s.err) {
			closed++
		} else {
			ts.Logf("slowloris connection ended with %v", s.err)
		}
	}
	fmt.Fprintf(ts.Stdout(), "slowloris: %d still open after the run; the agent closed %d itself and answered %d\n", open, closed, answered)
}
