package api

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
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

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// fleet is a set of small real agents: TLS servers with agent
// certificates from one CA that require the dispatcher's client
// certificate and answer /ping, /run and /capabilities as an agent does
// (the real agent is another role, which this package may not import).
// The API's engine talks to them with the real wire client.
//
// Scripts: "hello" prints a line per stream; "noop" and "noop-N" print
// nothing; "fail" exits 3; "tick" streams "tick N" lines every 20 ms until
// the dispatcher closes the connection (counted in gone), or — on hosts
// named quick-* — ends after two; "hold" waits until release is closed;
// "maybe" exits 3 on the hosts set failing (setFailing), else prints a
// line. Anything else is not permitted. Every run an agent receives is
// recorded (ran).
type fleet struct {
	t       testing.TB
	ca      *pkitest.CA
	st      *store.Files
	gone    atomic.Int64 // runs whose connection the dispatcher closed
	holding atomic.Int64 // "hold" runs waiting
	release chan struct{}
	logMu   sync.Mutex
	logBuf  bytes.Buffer

	mu      sync.Mutex
	failing map[string]bool // hosts where "maybe" fails
	runs    []string        // "host:script" of every run received, in order
}

func newFleet(t testing.TB) *fleet {
	f := &fleet{t: t, ca: pkitest.NewCA(t), st: store.NewFiles(t.TempDir()), release: make(chan struct{})}
	t.Cleanup(func() {
		select {
		case <-f.release:
		default:
			close(f.release)
		}
	})
	return f
}

// agent starts agent name and registers it; it returns its port.
func (f *fleet) agent(name string) int {
	f.t.Helper()
	cert := f.ca.Agent(f.t, name)
	srv := httptest.NewUnstartedServer(f.handler(name))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: f.ca.Pool()}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	f.t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	fp, err := pki.Fingerprint(cert.Leaf.PublicKey)
	if err != nil {
		f.t.Fatal(err)
	}
	expiry := pki.FormatOpenSSLTime(cert.Leaf.NotAfter)
	if err := f.st.PutAgent(store.Agent{Hostname: name, IP: "127.0.0.1", Port: port, KeyFingerprint: fp, Expiry: expiry}); err != nil {
		f.t.Fatal(err)
	}
	return port
}

// dead registers an agent where nothing listens.
func (f *fleet) dead(name string) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	if err := f.st.PutAgent(store.Agent{Hostname: name, IP: "127.0.0.1", Port: port}); err != nil {
		f.t.Fatal(err)
	}
}

func (f *fleet) handler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ping", func(w http.ResponseWriter, r *http.Request) {
		var req wire.PingRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		wire.WriteJSON(w, http.StatusOK, wire.PingResponse{Status: "ok", Host: name, Version: "test-1.0",
			Expiry: "Jun  7 16:28:00 2027 GMT", ReqID: req.ReqID})
	})
	mux.HandleFunc("GET /capabilities", func(w http.ResponseWriter, r *http.Request) {
		wire.WriteJSON(w, http.StatusOK, wire.CapabilitiesResponse{Status: "ok", Host: name, Version: "test-1.0",
			Tags: map[string]string{"name": name},
			Scripts: []wire.ScriptInfo{{Name: "hello", Path: "/bin/hello", Executable: true},
				{Name: "only-" + name, Path: "/bin/x", Executable: true}}})
	})
	mux.HandleFunc("POST /run", func(w http.ResponseWriter, r *http.Request) {
		var req wire.RunRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			wire.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		resp := wire.RunResponse{Script: req.Script, ReqID: req.ReqID}
		f.mu.Lock()
		f.runs = append(f.runs, name+":"+req.Script)
		failing := f.failing[name]
		f.mu.Unlock()
		switch {
		case req.Script == "maybe" && failing:
			resp.Exit = 3
			resp.SetOutput(nil, []byte("maybe failed on "+name+"\n"))
		case req.Script == "maybe":
			resp.SetOutput([]byte("maybe ok on "+name+"\n"), nil)
		case req.Script == "hello":
			resp.SetOutput([]byte("hello from "+name+"\n"), []byte("user "+req.Username+"\n"))
		case req.Script == "noop" || strings.HasPrefix(req.Script, "noop-"):
		case req.Script == "fail":
			resp.Exit = 3
		case req.Script == "hold":
			f.holding.Add(1)
			defer f.holding.Add(-1)
			select {
			case <-f.release:
			case <-r.Context().Done():
				f.gone.Add(1)
				return
			}
		case req.Script == "tick":
			sw := wire.NewStreamWriter(w)
			var out bytes.Buffer
			for n := 1; ; n++ {
				line := fmt.Sprintf("tick %d\n", n)
				out.WriteString(line)
				_ = sw.Event(wire.NewStreamEvent("stdout", []byte(line)))
				if strings.HasPrefix(name, "quick-") && n == 2 {
					resp.SetOutput(out.Bytes(), nil)
					_ = sw.Final(resp)
					return
				}
				select {
				case <-r.Context().Done():
					f.gone.Add(1)
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		default:
			resp.Exit, resp.Error = -1, wire.ErrScriptNotPermitted
		}
		wire.WriteJSON(w, http.StatusOK, resp)
	})
	return mux
}

// setFailing makes "maybe" fail on host, or succeed again.
func (f *fleet) setFailing(host string, fail bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failing == nil {
		f.failing = map[string]bool{}
	}
	f.failing[host] = fail
}

// ran returns the "host:script" of every run the agents received, in
// order.
func (f *fleet) ran() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.runs...)
}

// tag sets the tags of registered agent name in the registry, as a
// discovery would.
func (f *fleet) tag(name string, tags map[string]string) {
	f.t.Helper()
	a, err := f.st.GetAgent(name)
	if err != nil {
		f.t.Fatal(err)
	}
	a.Tags = tags
	if err := f.st.PutAgent(a); err != nil {
		f.t.Fatal(err)
	}
}

// server returns an API server over the fleet, as an httptest server.
func (f *fleet) server(mod func(*Options)) (*Server, *httptest.Server) {
	f.t.Helper()
	srv := f.newServer(mod)
	ts := httptest.NewServer(srv)
	f.t.Cleanup(ts.Close)
	return srv, ts
}

func (f *fleet) newServer(mod func(*Options)) *Server {
	f.t.Helper()
	lg, closeLog, err := logging.New(logging.Options{Output: "stderr", Stderr: &lockedWriter{mu: &f.logMu, w: &f.logBuf}})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = closeLog() })
	eng, err := control.New(control.Options{
		Identity:       control.Identity{Cert: f.ca.Dispatcher(f.t), Roots: f.ca.Pool()},
		ConnectTimeout: 2 * time.Second,
		ReadTimeout:    10 * time.Second,
		Registry:       f.st, Runs: f.st, Locks: f.st, Revocations: f.st,
		Resolve: func(context.Context, string) error { return errors.New("does not resolve") },
		Log:     lg,
	})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(eng.Close)
	o := Options{Engine: eng, Runs: f.st, Registry: f.st, AllowByDefault: true, Log: lg}
	if mod != nil {
		mod(&o)
	}
	srv, err := New(o)
	if err != nil {
		f.t.Fatal(err)
	}
	srv.pollEvery, srv.keepAliveEvery = 20*time.Millisecond, 50*time.Millisecond
	return srv
}

func (f *fleet) logs() string {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	return f.logBuf.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// client calls one API server and validates every answer against the
// embedded OpenAPI document.
type client struct {
	t       *testing.T
	base    string
	http    *http.Client
	spec    *spec
	headers map[string]string
}

func newClient(t *testing.T, base string) *client {
	return &client{t: t, base: base, http: &http.Client{Timeout: 20 * time.Second}, spec: loadSpec(t), headers: map[string]string{}}
}

// response is an answer, its body read.
type response struct {
	status int
	header http.Header
	body   []byte
}

// json decodes the body into a map.
func (r *response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v\n%s", err, r.body)
	}
	return m
}

// do sends a request (body: nil, a string, or a value sent as JSON) and
// checks the answer against the document.
func (c *client) do(method, path string, body any) *response {
	c.t.Helper()
	r, err := c.try(method, path, body)
	if err != nil {
		c.t.Fatal(err)
	}
	return r
}

// try is do for other goroutines than the test's: it fails the test only
// with Errorf (a mismatch with the document) and returns other errors.
func (c *client) try(method, path string, body any) (*response, error) {
	c.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	case []byte:
		rd = bytes.NewReader(b)
	default:
		data, err := json.Marshal(b)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(data)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: read body: %w", method, path, err)
	}
	out := &response{status: resp.StatusCode, header: resp.Header, body: data}
	c.spec.check(c.t, method, req.URL.Path, out)
	return out, nil
}

// events opens the event stream of reqid and returns its events as they
// come; the channel is closed when the stream ends.
func (c *client) events(ctx context.Context, reqid string) <-chan sseEvent {
	c.t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+"/runs/"+reqid+"/events", nil)
	if err != nil {
		c.t.Fatal(err)
	}
	resp, err := (&http.Client{}).Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		resp.Body.Close()
		c.t.Fatalf("events of %s: %s %s", reqid, resp.Status, resp.Header.Get("Content-Type"))
	}
	ch := make(chan sseEvent, 1024)
	go func() {
		defer close(ch)
		defer resp.Body.Close()
		for ev := range readSSE(resp.Body) {
			c.spec.checkEvent(c.t, ev)
			ch <- ev
		}
	}()
	return ch
}

// sseEvent is one Server-Sent Event.
type sseEvent struct {
	kind string
	data string
}

// readSSE parses a stream of events; comment lines are skipped.
func readSSE(r io.Reader) <-chan sseEvent {
	ch := make(chan sseEvent)
	go func() {
		defer close(ch)
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 16<<20)
		var ev sseEvent
		for sc.Scan() {
			line := sc.Text()
			switch {
			case line == "":
				if ev.kind != "" || ev.data != "" {
					ch <- ev
				}
				ev = sseEvent{}
			case strings.HasPrefix(line, ":"):
			case strings.HasPrefix(line, "event: "):
				ev.kind = strings.TrimPrefix(line, "event: ")
			case strings.HasPrefix(line, "data: "):
				ev.data += strings.TrimPrefix(line, "data: ")
			}
		}
	}()
	return ch
}

// spec validates answers against the embedded OpenAPI document: the
// schema of the operation's response for the status and content type, or
// for an event stream the schema of each event type (x-events).
type spec struct {
	doc      map[string]any
	compiler *jsonschema.Compiler
	mu       sync.Mutex
	schemas  map[string]*jsonschema.Schema
	sseRefs  map[string]string // event type → schema location
}

const specURL = "https://dispatcher.invalid/openapi.json"

var (
	specOnce   sync.Once
	specShared *spec
	specErr    error
)

func loadSpec(t *testing.T) *spec {
	t.Helper()
	specOnce.Do(func() {
		var doc map[string]any
		if specErr = json.Unmarshal(openapiDoc("test"), &doc); specErr != nil {
			return
		}
		raw, err := jsonschema.UnmarshalJSON(bytes.NewReader(openapiDoc("test")))
		if err != nil {
			specErr = err
			return
		}
		c := jsonschema.NewCompiler()
		c.DefaultDraft(jsonschema.Draft2020)
		c.AssertFormat()
		if specErr = c.AddResource(specURL, raw); specErr != nil {
			return
		}
		specShared = &spec{doc: doc, compiler: c, schemas: map[string]*jsonschema.Schema{}, sseRefs: map[string]string{}}
		events := dig(doc, "paths", "/runs/{reqid}/events", "get", "responses", "200", "content", "text/event-stream", "x-events")
		for kind, v := range events {
			specShared.sseRefs[kind] = v.(map[string]any)["$ref"].(string)
		}
	})
	if specErr != nil {
		t.Fatalf("openapi.json: %v", specErr)
	}
	return specShared
}

func dig(m map[string]any, keys ...string) map[string]any {
	for _, k := range keys {
		next, _ := m[k].(map[string]any)
		m = next
	}
	return m
}

// pointerEscape escapes a JSON pointer token.
func pointerEscape(s string) string {
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

func (s *spec) schema(t *testing.T, loc string) *jsonschema.Schema {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if sch, ok := s.schemas[loc]; ok {
		return sch
	}
	sch, err := s.compiler.Compile(specURL + "#" + loc)
	if err != nil {
		t.Errorf("compile %s: %v", loc, err)
		return nil
	}
	s.schemas[loc] = sch
	return sch
}

// template finds the document's path template for path: a segment
// {name} matches any one segment.
func (s *spec) template(path string) string {
	segs := strings.Split(path, "/")
	for tmpl := range dig(s.doc, "paths") {
		ts := strings.Split(tmpl, "/")
		if len(ts) != len(segs) {
			continue
		}
		match := true
		for i := range ts {
			if ts[i] != segs[i] && !(strings.HasPrefix(ts[i], "{") && segs[i] != "") {
				match = false
				break
			}
		}
		if match {
			return tmpl
		}
	}
	return ""
}

// check validates r, the answer to method path.
func (s *spec) check(t *testing.T, method, path string, r *response) {
	t.Helper()
	ct := r.header.Get("Content-Type")
	media := strings.TrimSpace(strings.SplitN(ct, ";", 2)[0])
	tmpl := s.template(path)
	op := dig(s.doc, "paths", tmpl, strings.ToLower(method))
	if tmpl == "" || op == nil {
		// No such endpoint: the answer is an Error all the same.
		if r.status != http.StatusNotFound && r.status != http.StatusMethodNotAllowed && r.status != http.StatusBadRequest &&
			r.status != http.StatusForbidden && r.status != http.StatusServiceUnavailable {
			t.Errorf("%s %s: status %d for a path the document does not have", method, path, r.status)
		}
		s.validate(t, method, path, "/components/schemas/Error", r.body)
		return
	}
	respObj := dig(op, "responses", fmt.Sprint(r.status))
	loc := "/paths/" + pointerEscape(tmpl) + "/" + strings.ToLower(method) + "/responses/" + fmt.Sprint(r.status)
	if respObj == nil {
		t.Errorf("%s %s: status %d is not documented\n%s", method, path, r.status, r.body)
		return
	}
	if ref, ok := respObj["$ref"].(string); ok {
		loc = strings.TrimPrefix(ref, "#")
		respObj = dig(s.doc, strings.Split(strings.TrimPrefix(loc, "/"), "/")...)
	}
	if dig(respObj, "content", media) == nil {
		t.Errorf("%s %s: %d answered %q, not documented", method, path, r.status, ct)
		return
	}
	if media == "text/event-stream" {
		for ev := range readSSE(bytes.NewReader(r.body)) {
			s.checkEvent(t, ev)
		}
		return
	}
	if media != "application/json" {
		return
	}
	s.validate(t, method, path, loc+"/content/"+pointerEscape(media)+"/schema", r.body)
}

func (s *spec) checkEvent(t *testing.T, ev sseEvent) {
	t.Helper()
	ref, ok := s.sseRefs[ev.kind]
	if !ok {
		t.Errorf("event type %q is not documented (data %s)", ev.kind, ev.data)
		return
	}
	s.validate(t, "event", ev.kind, strings.TrimPrefix(ref, "#"), []byte(ev.data))
}

func (s *spec) validate(t *testing.T, method, path, loc string, body []byte) {
	t.Helper()
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(body))
	if err != nil {
		t.Errorf("%s %s: body is not JSON: %v\n%s", method, path, err, body)
		return
	}
	sch := s.schema(t, loc)
	if sch == nil {
		return
	}
	if err := sch.Validate(inst); err != nil {
		t.Errorf("%s %s: answer does not match %s:\n%v\n%s", method, path, loc, err, body)
	}
}
