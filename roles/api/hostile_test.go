package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/roles/internal/httplimit/httplimittest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Hostile input on a real listener: what the client sees, and that a
// normal request still works after each case.

// hostile is an API server over a fleet with web-01, served on loopback by
// Serve (the bounded listener and the http.Server's limits included), and
// a client for normal requests.
type hostile struct {
	f      *fleet
	srv    *Server
	addr   string
	c      *client
	normal int // normal runs made: the only runs that may be stored
}

func newHostile(t *testing.T, mod func(*Options), tune func(*Server)) *hostile {
	t.Helper()
	f := newFleet(t)
	f.agent("web-01")
	f.agent("web-02")
	srv := f.newServer(mod)
	if tune != nil {
		tune(srv)
	}
	base, _ := serve(t, srv)
	return &hostile{f: f, srv: srv, addr: strings.TrimPrefix(base, "http://"), c: newClient(t, base)}
}

// rawAnswer is what a raw request got: an answer, or an error when the
// server closed the connection without one.
type rawAnswer struct {
	resp *http.Response
	body []byte
	err  error
}

// raw sends req as it is on a new connection, writing it while reading
// the answer (the server may answer before it has read everything), and
// returns the answer. The connection is closed.
func (h *hostile) raw(t *testing.T, req []byte) rawAnswer {
	t.Helper()
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	return rawExchange(conn, func(w io.Writer) { _, _ = w.Write(req) })
}

// rawExchange is httplimittest.Exchange as a rawAnswer.
func rawExchange(conn net.Conn, write func(io.Writer)) rawAnswer {
	resp, body, err := httplimittest.Exchange(conn, write)
	return rawAnswer{resp: resp, body: body, err: err}
}

// wantError checks that a answered status with a JSON error containing
// msg.
func wantError(t *testing.T, name string, a rawAnswer, status int, msg string) {
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
	var eb errorBody
	if err := json.Unmarshal(a.body, &eb); err != nil || eb.OK || !strings.Contains(eb.Error, msg) {
		t.Errorf("%s: body %s; want an error containing %q", name, a.body, msg)
	}
}

// stillWorks makes a normal run after a hostile request.
func (h *hostile) stillWorks(t *testing.T, after string) {
	t.Helper()
	r := h.c.do("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hello"})
	if r.status != http.StatusOK || r.json(t)["ok"] != true {
		t.Fatalf("after %s, a normal run: %d %s", after, r.status, r.body)
	}
	h.normal++
}

// storedRuns returns the scripts of the stored runs.
func (h *hostile) storedRuns(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(h.f.st.Dir(), "runs"))
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		t.Fatal(err)
	}
	var scripts []string
	for _, e := range entries {
		run, err := h.f.st.GetRun(strings.TrimSuffix(e.Name(), ".json"))
		if err != nil {
			t.Fatal(err)
		}
		scripts = append(scripts, run.Script)
	}
	return scripts
}

func TestHostileHeaders(t *testing.T) {
	h := newHostile(t, nil, nil)
	var named, tiny bytes.Buffer
	named.WriteString("GET /health HTTP/1.1\r\nHost: api\r\n")
	tiny.WriteString("GET /health HTTP/1.1\r\nHost: api\r\n")
	for i := range 10000 {
		fmt.Fprintf(&named, "X-Hostile-%05d: x\r\n", i)
		tiny.WriteString("A: 1\r\n") // 60 KB in all: under maxHeaderBytes
	}
	named.WriteString("\r\n")
	tiny.WriteString("\r\n")

	// Over 64 KiB (200 KB): net/http's own 431 (plain text), or the connection
	// closed while the client still writes. Never an answer from a handler.
	a := h.raw(t, named.Bytes())
	switch {
	case a.resp != nil && a.resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge:
		t.Errorf("10,000 headers, 200 KB: %d %s; want 431", a.resp.StatusCode, a.body)
	case a.resp == nil && !httplimittest.IsClosed(a.err):
		t.Errorf("10,000 headers, 200 KB: %v; want 431 or the connection closed", a.err)
	}
	h.stillWorks(t, "10,000 headers of 200 KB")

	// Under 64 KiB but 10,001 lines: the API's 431.
	wantError(t, "10,000 headers, 60 KB", h.raw(t, tiny.Bytes()), http.StatusRequestHeaderFieldsTooLarge,
		"too many header lines: 10001; the limit is 100")
	h.stillWorks(t, "10,000 headers of 60 KB")

	// 100 lines are fine.
	var ok bytes.Buffer
	ok.WriteString("GET /health HTTP/1.1\r\nHost: api\r\nConnection: close\r\n")
	for range 98 {
		ok.WriteString("A: 1\r\n")
	}
	ok.WriteString("\r\n")
	if a := h.raw(t, ok.Bytes()); a.resp == nil || a.resp.StatusCode != http.StatusOK {
		t.Errorf("100 header lines: %+v", a)
	}
}

func TestHostileBodies(t *testing.T) {
	h := newHostile(t, nil, nil)
	post := func(path, body string) []byte {
		return fmt.Appendf(nil, "POST %s HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", path, len(body), body)
	}
	nested := `{"hosts":` + strings.Repeat("[", 100000) + strings.Repeat("]", 100000) + `,"script":"hello"}`

	// 10 MB announced: refused before a byte of it is read.
	a := h.raw(t, []byte("POST /run HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nContent-Length: 10485760\r\n\r\n"))
	wantError(t, "10 MB body", a, http.StatusRequestEntityTooLarge, "request body too large: 10485760 bytes; the limit is 1 MiB")
	if a.resp != nil && !a.resp.Close {
		t.Error("10 MB body: the connection is kept open for the rest of the body")
	}
	h.stillWorks(t, "a 10 MB body")

	// 10 MB chunked: refused once 1 MiB is read.
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	a = rawExchange(conn, func(w io.Writer) {
		_, _ = io.WriteString(w, "POST /run HTTP/1.1\r\nHost: api\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
		httplimittest.WriteChunked(w, 160)
	})
	conn.Close()
	wantError(t, "10 MB chunked body", a, http.StatusRequestEntityTooLarge, "request body too large")
	h.stillWorks(t, "a 10 MB chunked body")

	for _, tc := range []struct{ name, body, msg string }{
		{"invalid JSON", `{"hosts":["web-01"],"script":"hello"`, "the JSON object is cut short"},
		{"not JSON", `hosts=web-01&script=hello`, "invalid JSON at byte 1"},
		{"100,000 levels", nested, "the JSON is nested deeper than 32 levels"},
		{"Script beside script", `{"hosts":["web-01"],"script":"hello","Script":"fail"}`,
			`request body: field "Script" is not "script": field names are case-sensitive`},
		{"Script before script", `{"Script":"fail","hosts":["web-01"],"script":"hello"}`, `field "Script"`},
		{"HOSTS alone", `{"HOSTS":["web-01"],"script":"hello"}`, `field "HOSTS" is not "hosts": field names are case-sensitive`},
		{"long s", `{"hosts":["web-01"],"ſcript":"hello"}`, `field "ſcript" is not "script": field names are case-sensitive`},
		{"async twice", `{"hosts":["web-01"],"script":"hello","async":true,"Async":false}`, `field "Async"`},
		{"script twice", `{"hosts":["web-01"],"script":"hello","script":"fail"}`, `duplicate field "script"`},
		{"unknown", `{"hosts":["web-01"],"script":"hello","asynch":true}`, `unknown field "asynch"`},
	} {
		wantError(t, tc.name, h.raw(t, post("/run", tc.body)), http.StatusBadRequest, tc.msg)
		h.stillWorks(t, tc.name)
	}
	// Refused, the same, on /ping and /discovery.
	wantError(t, "ping Hosts", h.raw(t, post("/ping", `{"Hosts":["web-01"]}`)), http.StatusBadRequest, `field "Hosts"`)
	wantError(t, "discovery hosts twice", h.raw(t, post("/discovery", `{"hosts":[],"hosts":["x"]}`)),
		http.StatusBadRequest, `duplicate field "hosts"`)

	// Nothing but the normal runs ran.
	scripts := h.storedRuns(t)
	if len(scripts) != h.normal {
		t.Errorf("%d runs stored (%v), want the %d normal ones", len(scripts), scripts, h.normal)
	}
	for _, s := range scripts {
		if s != "hello" {
			t.Errorf("a refused run was stored: %v", scripts)
		}
	}
}

// recordingRuns is the fleet's store, noting every run id it is asked for.
type recordingRuns struct {
	store.Runs
	mu  sync.Mutex
	ids []string
}

func (r *recordingRuns) GetRun(reqid string) (store.Run, error) {
	r.mu.Lock()
	r.ids = append(r.ids, reqid)
	r.mu.Unlock()
	return r.Runs.GetRun(reqid)
}

// asked returns the ids asked for since the last call.
func (r *recordingRuns) asked() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	ids := r.ids
	r.ids = nil
	return ids
}

// plantRun stores a run and copies its record beside the runs directory,
// as stolen.json: a path that reaches it would answer its contents.
func plantRun(t testing.TB, st *store.Files) store.Run {
	t.Helper()
	run := store.Run{ReqID: "0123456789abcdef", Script: "hello", Hosts: []string{"web-01"}, Status: store.RunDone,
		Started: time.Now().UTC(), Finished: time.Now().UTC()}
	if err := st.SaveRun(run); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile(filepath.Join(st.Dir(), "runs", run.ReqID+".json"))
	if err != nil {
		t.Fatal(err)
	}
	data = bytes.Replace(data, []byte(`"hello"`), []byte(`"PLANTED"`), 1)
	if err := os.WriteFile(filepath.Join(st.Dir(), "stolen.json"), data, 0o640); err != nil {
		t.Fatal(err)
	}
	return run
}

func TestHostilePaths(t *testing.T) {
	var runs *recordingRuns
	h := newHostile(t, func(o *Options) {
		runs = &recordingRuns{Runs: o.Runs}
		o.Runs = runs
	}, nil)
	run := plantRun(t, h.f.st)
	long := strings.Repeat("a", 10<<10)
	for _, tc := range []struct {
		method, target string
		status         int
		msg            string // "": net/http's own answer, not JSON
	}{
		{"GET", "/status/../../etc/passwd", 400, "bad request path"},
		{"GET", "/status/../stolen", 400, "bad request path"},
		{"GET", "/status/%2e%2e/stolen", 400, "bad request path"},
		{"GET", "/status/..%2fstolen", 400, "bad request path"},
		{"GET", "/status/%2e%2e%2f%2e%2e%2fetc%2fpasswd", 400, "bad request path"},
		{"GET", "/status/a%5c..%5cstolen", 400, `contains '\\'`},
		{"GET", "/status/%252e%252e%252fstolen", 400, "only letters, digits"},
		{"GET", "/status/....//stolen", 400, "bad request path"},
		{"GET", "http://api/status/../stolen", 400, "bad request path"},
		{"GET", "/runs/..%2fstolen/events", 400, "bad request path"},
		{"GET", "/runs/%2e%2e/events", 400, "bad request path"},
		{"DELETE", "/runs/%2e%2e%2fstolen", 400, "bad request path"},
		{"GET", "/status/abc%00def", 400, `contains '\x00'`},
		{"GET", "/status/%00", 400, `contains '\x00'`},
		{"GET", "/runs/%00/events", 400, `contains '\x00'`},
		{"GET", "/status/abc\x00def", 400, ""},
		{"GET", "/status/" + long, 400, "10240 characters long; the limit is 64"},
		{"GET", "/runs/" + long + "/events", 400, "10240 characters long"},
		{"DELETE", "/runs/" + long, 400, "10240 characters long"},
		{"GET", "/status/ffffffffffffffff", 404, "run ffffffffffffffff is not stored"},
		{"GET", "/runs/ffffffffffffffff/events", 404, "is not stored"},
		{"DELETE", "/runs/ffffffffffffffff", 404, "is not stored"},
		{"GET", "/status/stolen", 404, "is not stored"},
		{"GET", "/etc/passwd", 404, "no such endpoint"},
	} {
		name := tc.method + " " + tc.target
		if len(name) > 80 {
			name = name[:80] + "…"
		}
		a := h.raw(t, []byte(tc.method+" "+tc.target+" HTTP/1.1\r\nHost: api\r\n\r\n"))
		if tc.msg == "" {
			if a.resp == nil || a.resp.StatusCode != tc.status {
				t.Errorf("%s: %+v, want %d", name, a, tc.status)
			}
		} else {
			wantError(t, name, a, tc.status, tc.msg)
		}
		if bytes.Contains(a.body, []byte("PLANTED")) || bytes.Contains(a.body, []byte("root:")) {
			t.Errorf("%s: a file outside the runs was read:\n%s", name, a.body)
		}
		// The same route still answers.
		if r := h.c.do("GET", "/status/"+run.ReqID, nil); r.status != http.StatusOK || r.json(t)["script"] != "hello" {
			t.Fatalf("after %s: GET /status/%s: %d %s", name, run.ReqID, r.status, r.body)
		}
	}
	for _, id := range runs.asked() {
		if store.ValidReqID(id) != nil {
			t.Errorf("the store was asked for run %q", id)
		}
	}
}

func TestSlowloris(t *testing.T) {
	h := newHostile(t, nil, nil)
	const n = 500
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := range n {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
		if _, err := fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: api\r\nX-Slow-%d: ", i); err != nil {
			t.Fatal(err)
		}
	}
	ln := h.srv.listener.Load()
	waitFor(t, func() bool { return ln.Open() >= n }, "the server to hold every slow connection")
	if r := h.c.do("GET", "/health", nil); r.status != http.StatusOK || string(r.body) != "{\"status\":\"ok\"}\n" {
		t.Errorf("/health beside %d slow clients: %d %s", n, r.status, r.body)
	}
	h.stillWorks(t, fmt.Sprintf("%d slow clients", n))
}

// TestDeadlines: slow headers and a slow body are cut, and what lasts as
// long as a run — a sync run, an event stream — is not, with every
// timeout of the server shortened.
func TestDeadlines(t *testing.T) {
	const short = 300 * time.Millisecond
	h := newHostile(t, nil, func(s *Server) {
		s.readHeaderTimeout, s.bodyTimeout, s.writeTimeout = short, short, short
	})
	// Half-sent headers: the server hangs up.
	var slow []net.Conn
	t.Cleanup(func() {
		for _, c := range slow {
			c.Close()
		}
	})
	for range 5 {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		slow = append(slow, c)
		_, _ = io.WriteString(c, "GET /health HTTP/1.1\r\nHost: api\r\nX-Slow: ")
	}
	for i, c := range slow {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Second))
		if n, err := c.Read(make([]byte, 1)); n != 0 || !httplimittest.IsClosed(err) {
			t.Errorf("slow headers %d: read %d bytes, %v; want the connection closed", i, n, err)
		}
	}
	// A body that stops halfway: 408, and the connection is closed.
	conn, err := net.Dial("tcp", h.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	a := rawExchange(conn, func(w io.Writer) {
		_, _ = io.WriteString(w, "POST /run HTTP/1.1\r\nHost: api\r\nContent-Length: 100\r\n\r\n{\"hosts\":")
	})
	wantError(t, "slow body", a, http.StatusRequestTimeout, "request body not received in time")
	if a.resp != nil && !a.resp.Close {
		t.Error("slow body: the connection is kept open")
	}
	h.stillWorks(t, "a slow body")

	// A sync run and an event stream outlive every timeout.
	syncDone := make(chan *response, 1)
	go func() {
		r, err := h.c.try("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hold"})
		if err != nil {
			t.Error(err)
			r = &response{}
		}
		syncDone <- r
	}()
	r := h.c.do("POST", "/run", map[string]any{"hosts": []string{"web-02"}, "script": "hold", "async": true})
	if r.status != http.StatusAccepted {
		t.Fatalf("async run: %d %s", r.status, r.body)
	}
	reqid := r.json(t)["reqid"].(string)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	events := h.c.events(ctx, reqid)
	waitFor(t, func() bool { return h.f.holding.Load() == 2 }, "both runs to reach their agents")
	time.Sleep(4 * short) // past every deadline, were any armed for the whole request
	close(h.f.release)
	if r := <-syncDone; r.status != http.StatusOK || r.json(t)["ok"] != true {
		t.Errorf("sync run longer than the timeouts: %d %s", r.status, r.body)
	}
	var last sseEvent
	for ev := range events {
		last = ev
	}
	if last.kind != "done" || !strings.Contains(last.data, `"status":"done"`) || !strings.Contains(last.data, `"ok":true`) {
		t.Errorf("event stream longer than the timeouts ended with %+v", last)
	}
	if n := h.f.gone.Load(); n != 0 {
		t.Errorf("%d runs were cut", n)
	}
}

func TestConnectionCap(t *testing.T) {
	h := newHostile(t, func(o *Options) { o.MaxConns = 2 }, nil)
	ask := func(c net.Conn, br *bufio.Reader) *http.Response {
		t.Helper()
		_ = c.SetDeadline(time.Now().Add(20 * time.Second))
		if _, err := io.WriteString(c, "GET /health HTTP/1.1\r\nHost: api\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	var conns []net.Conn
	var readers []*bufio.Reader
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	for range 3 {
		c, err := net.Dial("tcp", h.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
		readers = append(readers, bufio.NewReader(c))
	}
	// Two connections are served and kept alive: the cap is reached.
	ask(conns[0], readers[0])
	ask(conns[1], readers[1])
	// The third waits to be accepted while the second is still served.
	third := make(chan *http.Response, 1)
	go func() {
		_, _ = io.WriteString(conns[2], "GET /health HTTP/1.1\r\nHost: api\r\n\r\n")
		_ = conns[2].SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(readers[2], nil)
		if err != nil {
			t.Error(err)
		}
		third <- resp
	}()
	for range 3 {
		if resp := ask(conns[1], readers[1]); resp.StatusCode != http.StatusOK {
			t.Fatalf("second connection: %d", resp.StatusCode)
		}
	}
	ln := h.srv.listener.Load()
	if open, peak := ln.Open(), ln.Peak(); open != 2 || peak != 2 {
		t.Errorf("with a cap of 2: %d connections open, %d at most; want 2 and 2", open, peak)
	}
	// One closes: the third is accepted and answered.
	conns[0].Close()
	if resp := <-third; resp == nil || resp.StatusCode != http.StatusOK {
		t.Errorf("third connection after the first closed: %+v", resp)
	}
	if peak := ln.Peak(); peak != 2 {
		t.Errorf("%d connections were open at once with a cap of 2", peak)
	}
}

func TestRunAndStreamBounds(t *testing.T) {
	h := newHostile(t, func(o *Options) { o.MaxAsyncRuns, o.MaxStreams = 1, 1 }, nil)
	c := h.c
	r := c.do("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hold", "async": true})
	if r.status != http.StatusAccepted {
		t.Fatalf("first async run: %d %s", r.status, r.body)
	}
	held := r.json(t)["reqid"].(string)

	// A second async run: 503, nothing started.
	r = c.do("POST", "/run", map[string]any{"hosts": []string{"web-02"}, "script": "noop", "async": true})
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "5" ||
		!strings.Contains(r.json(t)["error"].(string), "too many runs in the background: 1 async runs are in flight") {
		t.Errorf("second async run: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if got := h.storedRuns(t); len(got) != 1 {
		t.Errorf("runs stored: %v; want the held one only", got)
	}
	// Runs the caller waits for are not counted.
	h.stillWorks(t, "the async bound")

	// One stream at a time.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	first := c.events(ctx, held)
	waitFor(t, func() bool { return len(h.srv.streams) == 1 }, "the first stream")
	r = c.do("GET", "/runs/"+held+"/events", nil)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") != "5" ||
		!strings.Contains(r.json(t)["error"].(string), "too many event streams open: 1") {
		t.Errorf("second stream: %d Retry-After %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if r := c.do("GET", "/status/"+held, nil); r.status != http.StatusOK {
		t.Errorf("status beside the bounds: %d %s", r.status, r.body)
	}
	cancel()
	for range first {
	}
	waitFor(t, func() bool { return len(h.srv.streams) == 0 }, "the first stream to end")
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	second := c.events(ctx2, held)

	// The held run ends: its slot is free again.
	close(h.f.release)
	var last sseEvent
	for ev := range second {
		last = ev
	}
	if last.kind != "done" {
		t.Errorf("stream after the first ended: last event %+v", last)
	}
	waitFor(t, func() bool { return len(h.srv.async) == 0 }, "the async slot to be free")
	r = c.do("POST", "/run", map[string]any{"hosts": []string{"web-02"}, "script": "noop", "async": true})
	if r.status != http.StatusAccepted {
		t.Errorf("async run once the first is over: %d %s", r.status, r.body)
	}
}

// FuzzReqIDPath sends GET /status/S, GET /runs/S/events, DELETE /runs/S
// and GET S through the API's front door and routes, with a run stored
// and a copy of it planted beside the runs directory. Whatever S is, the
// answer is 200 for the stored run, 400, 404 or 405 with a JSON error —
// never 5xx, never the planted copy — and the store is only ever asked
// for valid request ids. A path that net/http cannot parse is its own
// business (it answers 400).
func FuzzReqIDPath(f *testing.F) {
	for _, s := range []string{
		"0123456789abcdef", "ffffffffffffffff", "../../etc/passwd", "..%2fstolen", "%2e%2e%2fstolen", "%2e%2e",
		"..", ".", "", "a%00b", "%00", "a/b", "stolen", "..%5cstolen", "%252e%252e", strings.Repeat("a", 65),
		strings.Repeat("a", 64), "/status/0123456789abcdef", "/runs/0123456789abcdef/events", "ſ", "a?b#c", "%zz",
	} {
		f.Add(s)
	}
	fl := newFleet(f)
	runs := &recordingRuns{}
	srv := fl.newServer(func(o *Options) {
		runs.Runs = o.Runs
		o.Runs = runs
		o.Log = zap.NewNop() // a long fuzzing session would keep every line
	})
	stored := plantRun(f, fl.st)
	f.Fuzz(func(t *testing.T, s string) {
		for _, target := range []struct{ method, path string }{
			{"GET", "/status/" + s}, {"GET", "/runs/" + s + "/events"}, {"DELETE", "/runs/" + s}, {"GET", s},
		} {
			req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(target.method + " " + target.path + " HTTP/1.1\r\nHost: api\r\n\r\n")))
			if err != nil {
				continue
			}
			req.RemoteAddr = "127.0.0.1:40000"
			rec := httptest.NewRecorder()
			srv.ServeHTTP(rec, req)
			status, body := rec.Code, rec.Body.String()
			what := fmt.Sprintf("%s %q", target.method, target.path)
			switch status {
			case http.StatusOK:
				// The stored run, on the routes of a run.
				if target.path != s && !strings.Contains(body, stored.ReqID) {
					t.Fatalf("%s: 200 without the stored run:\n%s", what, body)
				}
			case http.StatusBadRequest, http.StatusNotFound, http.StatusMethodNotAllowed:
				var eb errorBody
				if err := json.Unmarshal(rec.Body.Bytes(), &eb); err != nil || eb.Error == "" || rec.Header().Get("Content-Type") != "application/json" {
					t.Fatalf("%s: %d without a JSON error: %q", what, status, body)
				}
			default:
				t.Fatalf("%s: status %d: %s", what, status, body)
			}
			if strings.Contains(body, "PLANTED") {
				t.Fatalf("%s: the planted copy was read:\n%s", what, body)
			}
			// /status/ID: a valid id is looked up (200 or 404), anything
			// else in that segment is refused (400).
			if rest, ok := strings.CutPrefix(req.URL.Path, "/status/"); ok && target.method == "GET" && rest != "" && !strings.Contains(rest, "/") {
				valid := store.ValidReqID(rest) == nil
				if valid && status != http.StatusOK && status != http.StatusNotFound || !valid && status != http.StatusBadRequest {
					t.Fatalf("%s: request id %q answered %d: %s", what, rest, status, body)
				}
			}
		}
		for _, id := range runs.asked() {
			if store.ValidReqID(id) != nil {
				t.Fatalf("the store was asked for run %q", id)
			}
		}
	})
}
