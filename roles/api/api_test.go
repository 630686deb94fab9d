package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/hook"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// every endpoint with a request that would work.
var endpoints = []struct {
	method, path string
	body         any
}{
	{"GET", "/", nil},
	{"POST", "/ping", map[string]any{"hosts": []string{"web-01"}}},
	{"POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hello"}},
	{"GET", "/discovery", nil},
	{"POST", "/discovery", map[string]any{}},
	{"GET", "/status/0123456789abcdef", nil},
	{"GET", "/runs/0123456789abcdef/events", nil},
	{"DELETE", "/runs/0123456789abcdef", nil},
	{"GET", "/openapi.json", nil},
	{"GET", "/openapi-live.json", nil},
	{"GET", "/metrics", nil},
	{"GET", "/no-such-endpoint", nil},
}

func TestDefaultDeny(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01")
	_, ts := f.server(func(o *Options) { o.AllowByDefault = false })
	c := newClient(t, ts.URL)
	for _, e := range endpoints {
		r := c.do(e.method, e.path, e.body)
		if r.status != http.StatusForbidden {
			t.Errorf("%s %s: %d, want 403\n%s", e.method, e.path, r.status, r.body)
			continue
		}
		body := r.json(t)
		if body["code"] != float64(1) || !strings.Contains(body["error"].(string), "api_auth_default") {
			t.Errorf("%s %s: %s", e.method, e.path, r.body)
		}
	}
	if r := c.do("GET", "/health", nil); r.status != http.StatusOK || string(r.body) != "{\"status\":\"ok\"}\n" {
		t.Errorf("/health: %d %s", r.status, r.body)
	}
	if runs, _ := os.ReadDir(filepath.Join(f.st.Dir(), "runs")); len(runs) != 0 {
		t.Errorf("a denied run was stored: %v", runs)
	}
	if !strings.Contains(f.logs(), "ACTION=auth-deny") {
		t.Errorf("no auth-deny logged:\n%s", f.logs())
	}
}

func TestRunAndStatus(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01")
	f.agent("web-02")
	_, ts := f.server(nil)
	c := newClient(t, ts.URL)
	c.headers["Authorization"] = "Bearer s3cret-token"
	c.headers[headerUsername] = "alice"

	r := c.do("POST", "/run", map[string]any{"hosts": []string{"web-02", "web-01"}, "script": "hello", "args": []string{"a b"}, "timeout": "90s"})
	if r.status != http.StatusOK {
		t.Fatalf("run: %d %s", r.status, r.body)
	}
	var report struct {
		OK      bool           `json:"ok"`
		ReqID   string         `json:"reqid"`
		Results []store.Result `json:"results"`
	}
	if err := json.Unmarshal(r.body, &report); err != nil {
		t.Fatal(err)
	}
	if !report.OK || len(report.Results) != 2 || report.Results[0].Stdout != "hello from web-02\n" ||
		report.Results[1].Stdout != "hello from web-01\n" || report.Results[0].Stderr != "user alice\n" {
		t.Fatalf("run report: %s", r.body)
	}

	s := c.do("GET", "/status/"+report.ReqID, nil)
	if s.status != http.StatusOK {
		t.Fatalf("status: %d %s", s.status, s.body)
	}
	var status struct {
		OK       bool           `json:"ok"`
		Status   string         `json:"status"`
		Username string         `json:"username"`
		Args     []string       `json:"args"`
		Results  []store.Result `json:"results"`
	}
	if err := json.Unmarshal(s.body, &status); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(report.Results, status.Results); d != "" || !status.OK || status.Status != "done" || status.Username != "alice" || status.Args[0] != "a b" {
		t.Errorf("status %s; results (-run +status):\n%s", s.body, d)
	}

	for path, want := range map[string]int{
		"/status/ffffffffffffffff":           http.StatusNotFound,
		"/status/..%2Fetc%2Fpasswd":          http.StatusBadRequest,
		"/status/..%2f..%2fetc":              http.StatusBadRequest,
		"/status/%2e%2e":                     http.StatusBadRequest,
		"/status/a.b":                        http.StatusBadRequest,
		"/runs/ffffffffffffffff/events":      http.StatusNotFound,
		"/runs/x%20y/events":                 http.StatusBadRequest,
		"/status/" + strings.Repeat("a", 65): http.StatusBadRequest,
	} {
		if r := c.do("GET", path, nil); r.status != want {
			t.Errorf("GET %s: %d, want %d\n%s", path, r.status, want, r.body)
		}
	}
	if r := c.do("DELETE", "/runs/ffffffffffffffff", nil); r.status != http.StatusNotFound {
		t.Errorf("DELETE unknown: %d", r.status)
	}
	// A run that is over is returned as it is.
	if r := c.do("DELETE", "/runs/"+report.ReqID, nil); r.status != http.StatusOK || r.json(t)["status"] != "done" {
		t.Errorf("DELETE of a finished run: %d %s", r.status, r.body)
	}

	// A host that fails is a result; an unknown script too.
	r = c.do("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "fail"})
	if r.status != http.StatusOK || r.json(t)["ok"] != false {
		t.Errorf("failing run: %d %s", r.status, r.body)
	}
	r = c.do("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "../x"})
	if r.status != http.StatusOK || !strings.Contains(string(r.body), "script not permitted") {
		t.Errorf("bad script: %d %s", r.status, r.body)
	}

	logs := f.logs()
	if strings.Contains(logs, "s3cret-token") {
		t.Errorf("the token was logged:\n%s", logs)
	}
	for _, want := range []string{`ACTION=api-request`, `ROUTE="POST /run"`, "REQID=" + report.ReqID, "USERNAME=alice", "SOURCE_IP=127.0.0.1"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %s:\n%s", want, logs)
		}
	}
	data, _ := os.ReadFile(filepath.Join(f.st.Dir(), "runs", report.ReqID+".json"))
	if len(data) == 0 || strings.Contains(string(data), "s3cret-token") {
		t.Errorf("stored run missing or with the token: %s", data)
	}
}

func TestBadRequests(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01")
	_, ts := f.server(nil)
	c := newClient(t, ts.URL)
	for _, tc := range []struct {
		method, path string
		body         any
		status       int
		msg          string
	}{
		{"POST", "/run", "", 400, "empty request body"},
		{"POST", "/run", "[1]", 400, "want a JSON object"},
		{"POST", "/run", `{"hosts":["web-01"],"script":"hello"} x`, 400, "after the JSON object"},
		{"POST", "/run", `{"hosts":["web-01"],"script":"hello","asynch":true}`, 400, `unknown field \"asynch\"`},
		{"POST", "/run", `{"hosts":"web-01","script":"hello"}`, 400, `field \"hosts\": want []string`},
		{"POST", "/run", map[string]any{"hosts": []string{}, "script": "hello"}, 400, "no hosts given"},
		{"POST", "/run", map[string]any{"hosts": []string{"web-01", "WEB-01:1"}, "script": "hello"}, 400, "given twice"},
		{"POST", "/run", map[string]any{"hosts": []string{"web-01"}}, 400, "no script given"},
		{"POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hello", "args": []string{"a\x00"}}, 400, "NUL"},
		{"POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hello", "timeout": -1}, 400, "timeout"},
		{"POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hello", "timeout": "soon"}, 400, "timeout"},
		{"POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hello", "port": 70000}, 400, "port"},
		{"POST", "/run", `{"hosts":["web-01"],"script":"` + strings.Repeat("x", maxBody) + `"}`, 413, "too large"},
		{"POST", "/ping", map[string]any{"hosts": []string{"bad host"}}, 400, "bad host"},
		{"POST", "/ping", map[string]any{}, 400, "no hosts given"},
		{"GET", "/discovery?parallel=x", nil, 400, "parallel"},
		{"POST", "/health", nil, 405, "not allowed"},
		{"PUT", "/run", nil, 405, "POST"},
		{"GET", "/nothing/here", nil, 404, "no such endpoint"},
	} {
		r := c.do(tc.method, tc.path, tc.body)
		if r.status != tc.status || !strings.Contains(string(r.body), tc.msg) {
			t.Errorf("%s %s %.60v: %d %s; want %d and %q", tc.method, tc.path, tc.body, r.status, r.body, tc.status, tc.msg)
		}
	}
	if r := c.do("PUT", "/run", nil); r.header.Get("Allow") != "POST" {
		t.Errorf("405 Allow: %q", r.header.Get("Allow"))
	}
	if runs, _ := os.ReadDir(filepath.Join(f.st.Dir(), "runs")); len(runs) != 0 {
		t.Errorf("bad requests stored runs: %v", runs)
	}
}

func TestAsyncEventsCancel(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01")
	f.agent("quick-01")
	srv, ts := f.server(nil)
	c := newClient(t, ts.URL)

	start := time.Now()
	r := c.do("POST", "/run", map[string]any{"hosts": []string{"web-01", "quick-01"}, "script": "tick", "async": true})
	if r.status != http.StatusAccepted {
		t.Fatalf("async run: %d %s", r.status, r.body)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("202 took %v", took)
	}
	reqid := r.json(t)["reqid"].(string)
	if r.header.Get("Location") != "/status/"+reqid {
		t.Errorf("Location %q", r.header.Get("Location"))
	}

	// A second run of the same host:script is refused while it runs.
	r = c.do("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "tick"})
	body := r.json(t)
	if r.status != http.StatusConflict || body["code"] != float64(4) || fmt.Sprint(body["conflicts"]) != "[web-01:tick]" {
		t.Errorf("second run: %d %s", r.status, r.body)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	events := c.events(ctx, reqid)
	var seen []sseEvent
	for ev := range events {
		seen = append(seen, ev)
		if ev.kind == "output" && strings.Contains(ev.data, `"host":"web-01"`) && strings.Contains(ev.data, `"tick 3\n"`) {
			break
		}
	}
	if len(seen) == 0 || seen[len(seen)-1].kind != "output" {
		t.Fatalf("no tick 3 from web-01 in %v", seen)
	}

	// While it runs, status shows quick-01 done.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := c.do("GET", "/status/"+reqid, nil).json(t)
		if s["status"] == "running" && len(s["results"].([]any)) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("status never showed quick-01 done: %v", s)
		}
		time.Sleep(50 * time.Millisecond)
	}

	start = time.Now()
	r = c.do("DELETE", "/runs/"+reqid, nil)
	if took := time.Since(start); r.status != http.StatusOK || took > 2*time.Second {
		t.Fatalf("cancel: %d in %v: %s", r.status, took, r.body)
	}
	if got := r.json(t); got["status"] != "cancelled" || got["ok"] != false {
		t.Errorf("cancelled run: %s", r.body)
	}
	if f.gone.Load() != 1 {
		t.Errorf("the agent saw %d closed runs, want 1", f.gone.Load())
	}
	// The open stream ends with the summary.
	for ev := range events {
		seen = append(seen, ev)
	}
	last := seen[len(seen)-1]
	if last.kind != "done" || !strings.Contains(last.data, `"status":"cancelled"`) || !strings.Contains(last.data, `"error":"cancelled"`) {
		t.Errorf("last event: %+v", last)
	}
	var results int
	for _, ev := range seen {
		if ev.kind == "result" {
			results++
		}
	}
	if results != 2 {
		t.Errorf("%d result events, want 2", results)
	}
	// Once over, the stream is replayed from the store.
	replay := collect(c.events(ctx, reqid))
	if len(replay) != 5 || replay[1].kind != "output" || replay[len(replay)-1].kind != "done" {
		t.Errorf("replay: %v", replay)
	}
	if srv.tracker.InFlight() != 0 {
		t.Error("runs still in flight")
	}
	// The sync form: the caller going away cancels the run.
	rctx, rcancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(rctx, "POST", ts.URL+"/run", strings.NewReader(`{"hosts":["web-01"],"script":"hold"}`))
	done := make(chan struct{})
	go func() {
		defer close(done)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
	}()
	waitFor(t, func() bool { return f.holding.Load() == 1 }, "the sync run to reach the agent")
	rcancel()
	<-done
	waitFor(t, func() bool { return srv.tracker.InFlight() == 0 && f.gone.Load() == 2 }, "the abandoned run to be cancelled")
}

func collect(ch <-chan sseEvent) []sseEvent {
	var out []sseEvent
	for ev := range ch {
		out = append(out, ev)
	}
	return out
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestEventsOfAnotherProcess(t *testing.T) {
	f := newFleet(t)
	_, ts := f.server(nil)
	c := newClient(t, ts.URL)
	run := store.Run{ReqID: "00000000000000aa", Script: "deploy", Args: []string{}, Hosts: []string{"a", "b"}, Username: "cli",
		Status: store.RunRunning, Started: time.Now().UTC(),
		Results: []store.Result{{Host: "b", Stdout: "b done\n", RTT: "3ms", ReqID: "00000000000000aa"}}}
	if err := f.st.SaveRun(run); err != nil {
		t.Fatal(err)
	}
	// Not ours: it cannot be cancelled here.
	if r := c.do("DELETE", "/runs/"+run.ReqID, nil); r.status != http.StatusConflict || r.json(t)["code"] != nil {
		t.Errorf("DELETE of another process's run: %d %s", r.status, r.body)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	events := c.events(ctx, run.ReqID)
	var got []string
	for ev := range events {
		got = append(got, ev.kind)
		if ev.kind == "result" && len(got) == 2 {
			run.Status, run.Finished = store.RunDone, time.Now().UTC()
			run.Results = []store.Result{{Host: "a", Exit: 1, RTT: "1ms", ReqID: run.ReqID}, run.Results[0]}
			if err := f.st.SaveRun(run); err != nil {
				t.Fatal(err)
			}
		}
	}
	if d := cmp.Diff([]string{"output", "result", "result", "done"}, got); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
}

// writeHook writes an auth hook that records each request's stdin in
// dir/requests (one line each) and decides by token: good allows, bad is
// bad credentials, low insufficient privilege, anything else denied.
func writeHook(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "hook")
	script := "#!/bin/sh\ncat >> " + filepath.Join(dir, "requests") + "\necho >> " + filepath.Join(dir, "requests") + `
case "$DISPATCHER_TOKEN" in
good) exit 0 ;;
bad) exit 2 ;;
low) exit 3 ;;
esac
exit 1
`
	if err := os.WriteFile(path, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return path
}

func hookRequests(t *testing.T, dir string) []hook.Context {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "requests"))
	if err != nil {
		t.Fatal(err)
	}
	var out []hook.Context
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		if line == "" {
			continue
		}
		var hc hook.Context
		if err := json.Unmarshal([]byte(line), &hc); err != nil {
			t.Fatalf("hook stdin %q: %v", line, err)
		}
		out = append(out, hc)
	}
	return out
}

func TestAuthHook(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01")
	dir := t.TempDir()
	proxies := []string{"127.0.0.0/8", "10.0.0.0/8"}
	_, ts := f.server(func(o *Options) {
		o.AllowByDefault = true // a hook decides, whatever the default says
		o.Hook = &hook.Runner{Path: writeHook(t, dir), Timeout: 5 * time.Second}
		for _, p := range proxies {
			pfx, err := config.ParseAddrOrPrefix(p)
			if err != nil {
				t.Fatal(err)
			}
			o.TrustedProxies = append(o.TrustedProxies, pfx)
		}
	})
	c := newClient(t, ts.URL)

	// The token in the header; the body's wins.
	c.headers["Authorization"] = "Bearer bad"
	if r := c.do("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hello"}); r.status != 403 || r.json(t)["code"] != float64(2) {
		t.Errorf("bad credentials: %d %s", r.status, r.body)
	}
	if r := c.do("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hello", "token": "low", "args": []string{"x"}}); r.status != 403 || r.json(t)["code"] != float64(3) {
		t.Errorf("insufficient privilege: %d %s", r.status, r.body)
	}
	c.headers["Authorization"] = "Bearer nope"
	if r := c.do("GET", "/metrics", nil); r.status != 403 || r.json(t)["code"] != float64(1) {
		t.Errorf("denied: %d %s", r.status, r.body)
	}
	c.headers["Authorization"] = "Bearer good"
	c.headers[headerForward] = "198.51.100.9, 203.0.113.7, 10.1.2.3"
	r := c.do("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hello", "username": "bob"})
	if r.status != 200 {
		t.Fatalf("allowed run: %d %s", r.status, r.body)
	}
	reqid := r.json(t)["reqid"].(string)
	for _, path := range []string{"/status/" + reqid, "/runs/" + reqid + "/events", "/", "/openapi.json", "/metrics", "/openapi-live.json", "/discovery?host=web-01"} {
		if r := c.do("GET", path, nil); r.status != 200 {
			t.Errorf("GET %s: %d %s", path, r.status, r.body)
		}
	}
	if r := c.do("DELETE", "/runs/"+reqid, nil); r.status != 200 {
		t.Errorf("DELETE: %d %s", r.status, r.body)
	}
	if r := c.do("POST", "/ping", map[string]any{"hosts": []string{"web-01"}}); r.status != 200 {
		t.Errorf("ping: %d %s", r.status, r.body)
	}
	if r := c.do("GET", "/health", nil); r.status != 200 {
		t.Errorf("health: %d", r.status)
	}
	reqs := hookRequests(t, dir)
	var actions []string
	for _, hc := range reqs {
		actions = append(actions, hc.Action)
	}
	want := []string{"run", "run", "metrics", "run", "status", "status", "api", "api", "metrics", "discovery", "discovery", "cancel", "ping"}
	if d := cmp.Diff(want, actions); d != "" {
		t.Errorf("hook actions (-want +got):\n%s", d)
	}
	first, allowed, status := reqs[0], reqs[3], reqs[4]
	if first.SourceIP != "127.0.0.1" || first.Token != "bad" || first.Script != "hello" || fmt.Sprint(first.Hosts) != "[web-01]" {
		t.Errorf("first hook request: %+v", first)
	}
	if reqs[1].Token != "low" || fmt.Sprint(reqs[1].Args) != "[x]" {
		t.Errorf("second hook request: %+v", reqs[1])
	}
	// Behind trusted proxies the client is the first untrusted address
	// from the right.
	if allowed.SourceIP != "203.0.113.7" || allowed.Username != "bob" {
		t.Errorf("allowed run: %+v", allowed)
	}
	if status.Script != "hello" || fmt.Sprint(status.Hosts) != "[web-01]" {
		t.Errorf("status request: %+v", status)
	}
	if live := reqs[9]; fmt.Sprint(live.Hosts) != "[web-01]" {
		t.Errorf("openapi-live request: %+v", live)
	}
	if strings.Contains(f.logs(), "good") || strings.Contains(f.logs(), "Bearer") {
		t.Errorf("a token was logged:\n%s", f.logs())
	}
}

func TestForwardedFor(t *testing.T) {
	s := &Server{}
	for _, p := range []string{"10.0.0.0/8", "::1"} {
		pfx, _ := config.ParseAddrOrPrefix(p)
		s.o.TrustedProxies = append(s.o.TrustedProxies, pfx)
	}
	for _, tc := range []struct {
		peer string
		xff  []string
		want string
	}{
		{"192.0.2.1", []string{"203.0.113.7"}, "192.0.2.1"},           // not a trusted proxy: ignored
		{"10.0.0.1", nil, "10.0.0.1"},                                 // a proxy without the header
		{"10.0.0.1", []string{"203.0.113.7"}, "203.0.113.7"},          // one proxy
		{"10.0.0.1", []string{"1.1.1.1, 203.0.113.7"}, "203.0.113.7"}, // the client forged 1.1.1.1
		{"10.0.0.1", []string{"1.1.1.1", "203.0.113.7, 10.9.9.9"}, "203.0.113.7"},
		{"10.0.0.1", []string{"10.1.1.1, 10.2.2.2"}, "10.1.1.1"}, // all trusted: the leftmost
		{"10.0.0.1", []string{"203.0.113.7, junk"}, "10.0.0.1"},  // garbage stops the walk
		{"::1", []string{"2001:db8::5"}, "2001:db8::5"},
	} {
		peer, _ := config.ParseAddrOrPrefix(tc.peer)
		if got := s.clientAddr(peer.Addr(), tc.xff).String(); got != tc.want {
			t.Errorf("peer %s X-Forwarded-For %q: %s, want %s", tc.peer, tc.xff, got, tc.want)
		}
	}
}

func TestConcurrentRuns(t *testing.T) {
	f := newFleet(t)
	hosts := []string{"web-01", "web-02", "web-03"}
	for _, h := range hosts {
		f.agent(h)
	}
	_, ts := f.server(nil)
	c := newClient(t, ts.URL)
	const n = 50
	var wg sync.WaitGroup
	responses := make([]*response, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := c.try("POST", "/run", map[string]any{"hosts": hosts, "script": fmt.Sprintf("noop-%d", i)})
			if err != nil {
				t.Error(err)
			}
			responses[i] = r
		}()
	}
	wg.Wait()
	reqids := map[string]bool{}
	for i, r := range responses {
		if r == nil {
			continue
		}
		if r.status != 200 || r.json(t)["ok"] != true || len(r.json(t)["results"].([]any)) != 3 {
			t.Errorf("run %d: %d %s", i, r.status, r.body)
			continue
		}
		reqids[r.json(t)["reqid"].(string)] = true
	}
	if len(reqids) != n {
		t.Errorf("%d distinct reqids, want %d", len(reqids), n)
	}
}

func TestMaxRequests(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01")
	srv, ts := f.server(func(o *Options) { o.MaxRequests = 1 })
	c := newClient(t, ts.URL)
	go func() { _, _ = c.try("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hold"}) }()
	waitFor(t, func() bool { return srv.tracker.InFlight() == 1 }, "the held run")
	r := c.do("GET", "/", nil)
	if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "api_max_requests = 1") {
		t.Errorf("over the limit: %d %s", r.status, r.body)
	}
	if r := c.do("GET", "/health", nil); r.status != 200 {
		t.Errorf("/health over the limit: %d", r.status)
	}
	if r := c.do("GET", "/metrics", nil); r.status != 200 {
		t.Errorf("/metrics over the limit: %d", r.status)
	}
	close(f.release)
	waitFor(t, func() bool { return srv.tracker.InFlight() == 0 }, "the run to end")
}

func TestDiscoveryAndLiveOpenAPI(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01")
	f.agent("web-02")
	f.dead("web-03")
	_, ts := f.server(nil)
	c := newClient(t, ts.URL)

	r := c.do("GET", "/discovery", nil)
	var report struct {
		OK      bool `json:"ok"`
		Results []struct {
			Host   string `json:"host"`
			Status string `json:"status"`
		} `json:"results"`
	}
	if err := json.Unmarshal(r.body, &report); err != nil || r.status != 200 || report.OK || len(report.Results) != 3 {
		t.Fatalf("discovery of all: %d %s", r.status, r.body)
	}
	r = c.do("POST", "/discovery", map[string]any{"hosts": []string{"web-02"}})
	if r.status != 200 || !strings.Contains(string(r.body), `"only-web-02"`) || strings.Contains(string(r.body), "web-01") {
		t.Errorf("discovery of web-02: %s", r.body)
	}
	if r := c.do("POST", "/discovery", ""); r.status != 200 || len(r.json(t)["results"].([]any)) != 3 {
		t.Errorf("discovery with an empty body: %d %s", r.status, r.body)
	}

	r = c.do("GET", "/openapi-live.json", nil)
	var doc struct {
		OpenAPI string `json:"openapi"`
		Info    struct {
			Version string `json:"version"`
		} `json:"info"`
		Components struct {
			Schemas map[string]struct {
				Enum []string `json:"enum"`
			} `json:"schemas"`
		} `json:"components"`
		Live liveInfo `json:"x-dispatcher-live"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil || r.status != 200 {
		t.Fatalf("live document: %d %v", r.status, err)
	}
	if !regexp.MustCompile(`^[0-9]+\.[0-9]+\.[0-9]+\+[0-9]{10}$`).MatchString(doc.Info.Version) || doc.OpenAPI != "3.1.0" {
		t.Errorf("live version %q, openapi %q", doc.Info.Version, doc.OpenAPI)
	}
	if d := cmp.Diff([]string{"web-01", "web-02"}, doc.Components.Schemas["Host"].Enum); d != "" {
		t.Errorf("Host enum (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"hello", "only-web-01", "only-web-02"}, doc.Components.Schemas["Script"].Enum); d != "" {
		t.Errorf("Script enum (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"hello", "only-web-01"}, doc.Live.Agents["web-01"]); d != "" {
		t.Errorf("x-dispatcher-live (-want +got):\n%s", d)
	}
	// The static document: version stamped, no enums.
	r = c.do("GET", "/openapi.json", nil)
	if !strings.Contains(string(r.body), `"version": "`+cmdutil.Build().Version+`"`) || strings.Contains(string(r.body), "@VERSION@") {
		t.Errorf("static document not stamped: %.300s", r.body)
	}
}

func TestLiveVersion(t *testing.T) {
	at := time.Unix(1767225600, 0)
	for in, want := range map[string]string{"v1.4.2": "1.4.2+1767225600", "1.4.2-3-gabcdef-dirty": "1.4.2+1767225600", "dev": "0.0.0+1767225600", "3f2a9c1": "0.0.0+1767225600"} {
		if got := liveVersion(in, at); got != want {
			t.Errorf("liveVersion(%q) = %q, want %q", in, got, want)
		}
	}
}
