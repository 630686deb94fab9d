package pairing

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/httplimit/httplimittest"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// Hostile input on the real pairing listener, over TLS: what the client
// sees, and that a real POST /pair and its poll still work after each
// case.

// hostile is a listener over a world with room in its queue, counting the
// normal requests made: the only ones that may be queued.
type hostile struct {
	*listener
	normal []string // host names of the normal requests
}

func newHostile(t *testing.T, tune func(*server)) *hostile {
	t.Helper()
	w := newWorld(t, 1000)
	return &hostile{listener: startListenerWith(t, w, func(s *server) {
		s.maxPoll = 50 * time.Millisecond
		if tune != nil {
			tune(s)
		}
	})}
}

// dial opens a TLS connection to the listener, as an agent does.
func (h *hostile) dial(t *testing.T) *tls.Conn {
	t.Helper()
	c, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: h.ca.Pool(), ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// rawAnswer is what a raw request got: an answer, or an error when the
// server closed the connection without one.
type rawAnswer struct {
	resp *http.Response
	body []byte
	err  error
}

// rawExchange is httplimittest.Exchange as a rawAnswer.
func rawExchange(conn net.Conn, write func(io.Writer)) rawAnswer {
	resp, body, err := httplimittest.Exchange(conn, write)
	return rawAnswer{resp: resp, body: body, err: err}
}

// raw sends req as it is on a new TLS connection and returns the answer.
func (h *hostile) raw(t *testing.T, req []byte) rawAnswer {
	t.Helper()
	c := h.dial(t)
	defer c.Close()
	return rawExchange(c, func(w io.Writer) { _, _ = w.Write(req) })
}

// wantReason checks that a answered status with {"status":"error"} and a
// reason containing reason.
func wantReason(t *testing.T, name string, a rawAnswer, status int, reason string) {
	t.Helper()
	if a.resp == nil {
		t.Errorf("%s: no answer: %v", name, a.err)
		return
	}
	if a.resp.StatusCode != status {
		t.Errorf("%s: status %d, want %d\n%s", name, a.resp.StatusCode, status, a.body)
		return
	}
	if ct := a.resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%s: Content-Type %q, want application/json\n%s", name, ct, a.body)
	}
	var pr wire.PairResponse
	if err := json.Unmarshal(a.body, &pr); err != nil || pr.Status != wire.PairError || !strings.Contains(pr.Reason, reason) {
		t.Errorf("%s: body %s; want an error with %q", name, a.body, reason)
	}
}

// stillWorks asks to pair a new host, as request-pairing does, and polls
// for the answer.
func (h *hostile) stillWorks(t *testing.T, after string) {
	t.Helper()
	host := fmt.Sprintf("normal-%d", len(h.normal))
	a := newAgent(t, host)
	got := h.post(t, a.req)
	if got.status != http.StatusAccepted || got.resp.Status != wire.PairPending {
		t.Fatalf("after %s, POST /pair: %d %s", after, got.status, got.body)
	}
	if p := h.poll(t, got.resp.ReqID, a.req.Nonce); p.status != http.StatusOK || p.resp.Status != wire.PairPending {
		t.Fatalf("after %s, its poll: %d %s", after, p.status, p.body)
	}
	h.normal = append(h.normal, host)
}

// queued checks that the queue holds the normal requests and extra, and
// nothing else.
func (h *hostile) queued(t *testing.T, extra ...string) {
	t.Helper()
	reqs, err := h.p.ListRequests()
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for _, n := range append(append([]string(nil), h.normal...), extra...) {
		want[n] = true
	}
	var got []string
	for _, r := range reqs {
		got = append(got, r.Hostname)
		if !want[r.Hostname] {
			t.Errorf("queued: %s, which only a refused request asked for", r.Hostname)
		}
	}
	if len(got) != len(want) {
		t.Errorf("queued %v; want %v and %v", got, h.normal, extra)
	}
}

// pairBody is a's request as JSON with its top-level members edited.
func pairBody(t *testing.T, a agent, edit func(m map[string]any) string) string {
	t.Helper()
	b, err := json.Marshal(a.req)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return edit(m)
}

func postPair(body string) []byte {
	return fmt.Appendf(nil, "POST /pair HTTP/1.1\r\nHost: dispatcher\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

func TestHostileHeaders(t *testing.T) {
	h := newHostile(t, nil)
	var named, few bytes.Buffer
	named.WriteString("GET /pair/0123456789abcdef HTTP/1.1\r\nHost: dispatcher\r\n")
	for i := range 10000 {
		fmt.Fprintf(&named, "X-Hostile-%05d: x\r\n", i)
	}
	named.WriteString("\r\n")
	few.WriteString("POST /pair HTTP/1.1\r\nHost: dispatcher\r\nContent-Length: 2\r\n")
	for range 38 {
		few.WriteString("A: 1\r\n") // 240 bytes: far under 8 KiB
	}
	few.WriteString("\r\n{}")

	// 200 KB of headers: net/http's own 431, or the connection closed
	// while the client still writes. Never an answer from a handler.
	a := h.raw(t, named.Bytes())
	switch {
	case a.resp != nil && a.resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge:
		t.Errorf("10,000 headers: %d %s; want 431", a.resp.StatusCode, a.body)
	case a.resp == nil && !httplimittest.IsClosed(a.err):
		t.Errorf("10,000 headers: %v; want 431 or the connection closed", a.err)
	}
	h.stillWorks(t, "10,000 headers")

	// 40 lines under the byte limit: the listener's own 431.
	wantReason(t, "40 header lines", h.raw(t, few.Bytes()), http.StatusRequestHeaderFieldsTooLarge, "too many header lines: 40; the limit is 32")
	h.stillWorks(t, "40 header lines")
	h.queued(t)
}

func TestHostileBodies(t *testing.T) {
	h := newHostile(t, nil)
	evil := newAgent(t, "evil")

	// 10 MB announced: refused before a byte of it is read.
	a := h.raw(t, []byte("POST /pair HTTP/1.1\r\nHost: dispatcher\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n"))
	wantReason(t, "10 MB body", a, http.StatusRequestEntityTooLarge, "request too large: the limit is 73728 bytes")
	if a.resp != nil && !a.resp.Close {
		t.Error("10 MB body: the connection is kept open for the rest of the body")
	}
	h.stillWorks(t, "a 10 MB body")

	// 10 MB chunked: refused once the limit is read.
	c := h.dial(t)
	a = rawExchange(c, func(w io.Writer) {
		_, _ = io.WriteString(w, "POST /pair HTTP/1.1\r\nHost: dispatcher\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
		httplimittest.WriteChunked(w, 160)
	})
	c.Close()
	wantReason(t, "10 MB chunked body", a, http.StatusRequestEntityTooLarge, "request too large")
	h.stillWorks(t, "a 10 MB chunked body")

	deep := func(n int) string {
		return `{"hostname":` + strings.Repeat("[", n) + strings.Repeat("]", n) + `}`
	}
	for _, tc := range []struct {
		name, body string
		status     int
		reason     string
	}{
		{"invalid json", `{"hostname":"evil","csr":`, 400, "invalid json"},
		{"not json", "hostname=evil", 400, "must be a json object"},
		{"100,000 levels", deep(100000), 413, "request too large"},
		{"30,000 levels", deep(30000), 400, "nested more than 10000 levels deep"},
		{"Hostname beside hostname", pairBody(t, evil, func(m map[string]any) string {
			b, _ := json.Marshal(m)
			return strings.Replace(string(b), `{`, `{"Hostname":"normal-x",`, 1)
		}), 400, `field "Hostname" is not "hostname": field names are case-sensitive`},
		{"NONCE alone", pairBody(t, evil, func(m map[string]any) string {
			m["NONCE"] = m["nonce"]
			delete(m, "nonce")
			b, _ := json.Marshal(m)
			return string(b)
		}), 400, `field "NONCE" is not "nonce": field names are case-sensitive`},
		{"hostname twice", pairBody(t, evil, func(m map[string]any) string {
			b, _ := json.Marshal(m)
			return strings.Replace(string(b), `{`, `{"hostname":"normal-y",`, 1)
		}), 400, `duplicate field "hostname"`},
	} {
		wantReason(t, tc.name, h.raw(t, postPair(tc.body)), tc.status, tc.reason)
		h.stillWorks(t, tc.name)
	}

	// Unknown fields are ignored, as the protocol says.
	extra := newAgent(t, "extra-fields")
	body := pairBody(t, extra, func(m map[string]any) string {
		m["comment"] = "from a newer agent"
		b, _ := json.Marshal(m)
		return string(b)
	})
	if a := h.raw(t, postPair(body)); a.resp == nil || a.resp.StatusCode != http.StatusAccepted {
		t.Errorf("unknown field: %+v %s", a.err, a.body)
	}
	h.queued(t, "extra-fields")
}

func TestHostilePaths(t *testing.T) {
	h := newHostile(t, nil)
	// A request of the queue, and a copy of its file beside the queue's
	// directory: a poll that reached it would answer with its state.
	a := newAgent(t, "planted")
	pr, err := h.p.Submit(a.req, "127.0.0.1", h.srv.leafDER())
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(h.st.Dir(), "pairing", pr.ReqID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(h.st.Dir(), "planted.json"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	get := func(target string) []byte {
		return []byte("GET " + target + " HTTP/1.1\r\nHost: dispatcher\r\n" + wire.HeaderNonce + ": " + a.req.Nonce + "\r\n\r\n")
	}
	unknown := h.raw(t, get("/pair/ffffffffffffffff"))
	wantReason(t, "unknown request id", unknown, http.StatusNotFound, reasonUnknown)
	long := strings.Repeat("a", 10<<10)
	for _, tc := range []struct {
		target string
		status int
		reason string // "": the answer to an unknown request id, byte for byte
	}{
		{"/pair/../../etc/passwd", 400, "bad request path"},
		{"/pair/../planted", 400, "bad request path"},
		{"/pair/./" + pr.ReqID, 400, "bad request path"},
		{"/pair//" + pr.ReqID, 400, "bad request path"},
		{"/pair/..%2fplanted", 404, ""},
		{"/pair/%2e%2e%2fplanted", 404, ""},
		{"/pair/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 404, ""},
		{"/pair/%2e%2e", 404, ""},
		{"/pair/a%00b", 404, ""},
		{"/pair/" + pr.ReqID + "%00", 404, ""},
		{"/pair/" + long, 404, ""},
		{"/pair/" + strings.ToUpper(pr.ReqID), 404, ""},
		{"/etc/passwd", 404, "not found"},
	} {
		name := tc.target
		if len(name) > 60 {
			name = name[:60] + "…"
		}
		got := h.raw(t, get(tc.target))
		if tc.reason != "" {
			wantReason(t, name, got, tc.status, tc.reason)
		} else if got.resp == nil || got.resp.StatusCode != tc.status || !bytes.Equal(got.body, unknown.body) {
			t.Errorf("%s: %+v %s; want the answer to an unknown request id: %s", name, got.err, got.body, unknown.body)
		}
		h.stillWorks(t, name)
	}
	// A NUL byte as sent: net/http's own 400.
	if got := h.raw(t, get("/pair/a\x00b")); got.resp == nil || got.resp.StatusCode != http.StatusBadRequest {
		t.Errorf("raw NUL: %+v", got)
	}
	// The request itself still answers its agent.
	if p := h.poll(t, pr.ReqID, a.req.Nonce); p.status != http.StatusOK || p.resp.Status != wire.PairPending {
		t.Errorf("poll of the planted request: %d %s", p.status, p.body)
	}
	h.queued(t, "planted")
}

func TestSlowloris(t *testing.T) {
	h := newHostile(t, nil)
	const n = 500
	var (
		mu    sync.Mutex
		conns []net.Conn
		wg    sync.WaitGroup
		errs  = make(chan error, n)
		jobs  = make(chan int)
	)
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				raw, err := net.Dial("tcp", h.addr)
				if err != nil {
					errs <- err
					continue
				}
				mu.Lock()
				conns = append(conns, raw)
				mu.Unlock()
				if i%2 == 0 {
					// Half a TLS record header: the handshake never starts.
					_, _ = raw.Write([]byte{0x16, 0x03})
					continue
				}
				// A handshake, then half the headers.
				c := tls.Client(raw, &tls.Config{RootCAs: h.ca.Pool(), ServerName: "localhost"})
				if err := c.Handshake(); err != nil {
					errs <- err
					continue
				}
				_, _ = fmt.Fprintf(c, "POST /pair HTTP/1.1\r\nHost: dispatcher\r\nX-Slow-%d: ", i)
			}
		}()
	}
	for i := range n {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("slow client: %v", err)
	}
	ln := h.srv.listener.Load()
	waitFor500 := func() bool { return ln.Open() >= n }
	for deadline := time.Now().Add(10 * time.Second); !waitFor500() && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
	}
	if !waitFor500() {
		t.Fatalf("the listener holds %d connections, want the %d slow ones", ln.Open(), n)
	}
	h.stillWorks(t, fmt.Sprintf("%d slow clients", n))
	h.queued(t)
}

// TestDeadlines: a handshake, headers or a body that do not come are cut.
func TestDeadlines(t *testing.T) {
	const short = 300 * time.Millisecond
	h := newHostile(t, func(s *server) { s.readHeaderTimeout, s.readTimeout = short, short })
	var slow []net.Conn
	t.Cleanup(func() {
		for _, c := range slow {
			c.Close()
		}
	})
	for i := range 6 {
		raw, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, raw)
		if i%2 == 0 {
			_, _ = raw.Write([]byte{0x16, 0x03})
			continue
		}
		c := tls.Client(raw, &tls.Config{RootCAs: h.ca.Pool(), ServerName: "localhost"})
		if err := c.Handshake(); err != nil {
			t.Fatal(err)
		}
		_, _ = io.WriteString(c, "POST /pair HTTP/1.1\r\nHost: dispatcher\r\nX-Slow: ")
		slow[len(slow)-1] = c
	}
	for i, c := range slow {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		n, err := c.Read(make([]byte, 1))
		// A half-sent handshake gets nothing, or a TLS alert; either way
		// the connection is closed.
		if i%2 == 1 && n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("slow client %d: read %d bytes, %v; want the connection closed", i, n, err)
		}
	}
	c := h.dial(t)
	defer c.Close()
	a := rawExchange(c, func(w io.Writer) {
		_, _ = io.WriteString(w, "POST /pair HTTP/1.1\r\nHost: dispatcher\r\nContent-Length: 100\r\n\r\n{\"hostname\":")
	})
	wantReason(t, "slow body", a, http.StatusRequestTimeout, "request not received in time")
	h.stillWorks(t, "a slow body")
	h.queued(t)
}

func TestBusy(t *testing.T) {
	h := newHostile(t, func(s *server) { s.maxPoll = time.Minute })
	// Every submit slot taken: 429 with Retry-After, nothing queued.
	for range maxSubmits {
		h.srv.submits <- struct{}{}
	}
	a := newAgent(t, "busy")
	req, _ := json.Marshal(a.req)
	got := h.raw(t, postPair(string(req)))
	wantReason(t, "POST /pair while busy", got, http.StatusTooManyRequests, "the pairing listener is busy: 16 requests are being checked at once")
	if got.resp != nil && got.resp.Header.Get("Retry-After") != "1" {
		t.Errorf("busy: Retry-After %q", got.resp.Header.Get("Retry-After"))
	}
	h.queued(t)
	for range maxSubmits {
		<-h.srv.submits
	}
	p := h.post(t, a.req)
	if p.status != http.StatusAccepted {
		t.Fatalf("POST /pair once free: %d %s", p.status, p.body)
	}

	// Every poll slot taken: a poll is answered at once, not held for a
	// minute (the client gives up after 10 s).
	for range maxPolls {
		h.srv.polls <- struct{}{}
	}
	if got := h.poll(t, p.resp.ReqID, a.req.Nonce); got.status != http.StatusOK || got.resp.Status != wire.PairPending {
		t.Errorf("poll over the bound: %d %s", got.status, got.body)
	}
	if got := h.poll(t, "ffffffffffffffff", a.req.Nonce); got.status != http.StatusNotFound {
		t.Errorf("unknown poll over the bound: %d %s", got.status, got.body)
	}
	if _, err := h.p.Approve(p.resp.ReqID, false); err != nil {
		t.Fatal(err)
	}
	if got := h.poll(t, p.resp.ReqID, a.req.Nonce); got.status != http.StatusOK || got.resp.Status != wire.PairApproved || got.resp.Cert == "" {
		t.Errorf("approved poll over the bound: %d %s", got.status, got.body)
	}
	for range maxPolls {
		<-h.srv.polls
	}
}

func TestConnectionCap(t *testing.T) {
	h := newHostile(t, func(s *server) { s.maxConns = 2 })
	const ask = "GET /pair/ffffffffffffffff HTTP/1.1\r\nHost: dispatcher\r\n\r\n"
	roundTrip := func(c net.Conn, br *bufio.Reader) int {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, ask); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	// Two connections, handshaken and kept alive: the cap is reached.
	var conns []net.Conn
	var readers []*bufio.Reader
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range 2 {
		c := h.dial(t)
		conns = append(conns, c)
		readers = append(readers, bufio.NewReader(c))
		roundTrip(c, readers[len(readers)-1])
	}
	// The third waits to be accepted, its handshake with it.
	third := make(chan error, 1)
	go func() {
		c, err := tls.Dial("tcp", h.addr, &tls.Config{RootCAs: h.ca.Pool(), ServerName: "localhost"})
		if err != nil {
			third <- err
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, ask); err != nil {
			third <- err
			return
		}
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusNotFound {
				err = fmt.Errorf("status %d", resp.StatusCode)
			}
		}
		third <- err
	}()
	for range 3 {
		if status := roundTrip(conns[1], readers[1]); status != http.StatusNotFound {
			t.Fatalf("second connection: %d", status)
		}
	}
	ln := h.srv.listener.Load()
	if open, peak := ln.Open(), ln.Peak(); open != 2 || peak != 2 {
		t.Errorf("with a cap of 2: %d connections open, %d at most; want 2 and 2", open, peak)
	}
	conns[0].Close()
	if err := <-third; err != nil {
		t.Errorf("third connection after the first closed: %v", err)
	}
	if peak := ln.Peak(); peak != 2 {
		t.Errorf("%d connections were open at once with a cap of 2", peak)
	}
}
