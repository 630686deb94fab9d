package api

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/roles/internal/httplimit"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// serve runs srv.Serve on a fresh listener until the returned stop is
// called; stop returns Serve's error.
func serve(t *testing.T, srv *Server) (base string, stop func() error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ctx, ln) }()
	scheme := "http"
	if srv.o.TLS != nil {
		scheme = "https"
	}
	var once bool
	var serveErr error
	stop = func() error {
		if !once {
			once = true
			cancel()
			serveErr = <-errc
		}
		return serveErr
	}
	t.Cleanup(func() { _ = stop() })
	return scheme + "://" + ln.Addr().String(), stop
}

func TestDrainLetsRunsFinish(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01")
	srv := f.newServer(nil)
	base, stop := serve(t, srv)
	c := newClient(t, base)
	r := c.do("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hold", "async": true})
	if r.status != http.StatusAccepted {
		t.Fatalf("async run: %d %s", r.status, r.body)
	}
	reqid := r.json(t)["reqid"].(string)
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// No new connections once the drain began.
	waitFor(t, func() bool {
		conn, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), time.Second)
		if err == nil {
			conn.Close()
		}
		return err != nil
	}, "the listener to close")
	select {
	case err := <-stopped:
		t.Fatalf("Serve returned (%v) with a run in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	close(f.release)
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	run, err := f.st.GetRun(reqid)
	if err != nil || run.Status != store.RunDone || !run.OK() {
		t.Errorf("drained run: %+v, %v", run, err)
	}
	logs := f.logs()
	if !strings.Contains(logs, "ACTION=start") || !regexp.MustCompile(`ACTION=stop .*RUNS_CANCELLED=0`).MatchString(logs) {
		t.Errorf("start and stop not logged:\n%s", logs)
	}
}

func TestDrainCancelsAfterGrace(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01")
	f.agent("web-02")
	srv := f.newServer(func(o *Options) { o.DrainTimeout = 200 * time.Millisecond })
	base, stop := serve(t, srv)
	c := newClient(t, base)
	// A sync run and an async one, both past the grace period.
	r := c.do("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hold", "async": true})
	asyncID := r.json(t)["reqid"].(string)
	sync := make(chan *response, 1)
	go func() {
		r, err := c.try("POST", "/run", map[string]any{"hosts": []string{"web-02"}, "script": "hold"})
		if err != nil {
			t.Error(err)
			r = &response{}
		}
		sync <- r
	}()
	waitFor(t, func() bool { return f.holding.Load() == 2 }, "both runs to reach their agents")
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("shutdown took %v", took)
	}
	sr := <-sync
	if sr.status != http.StatusOK || !strings.Contains(string(sr.body), `"error":"cancelled"`) {
		t.Errorf("sync run cut by the drain: %d %s", sr.status, sr.body)
	}
	run, err := f.st.GetRun(asyncID)
	if err != nil || run.Status != store.RunCancelled {
		t.Errorf("async run after the drain: %+v, %v", run, err)
	}
	if f.gone.Load() != 2 {
		t.Errorf("agents saw %d runs cancelled, want 2", f.gone.Load())
	}
	if !strings.Contains(f.logs(), "RUNS_CANCELLED=2") {
		t.Errorf("stop line:\n%s", f.logs())
	}
}

func TestHTTPS(t *testing.T) {
	f := newFleet(t)
	cert := f.ca.Dispatcher(t)
	srv := f.newServer(func(o *Options) {
		o.TLS = &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}
	})
	base, _ := serve(t, srv)
	if !strings.HasPrefix(base, "https://") {
		t.Fatal(base)
	}
	c := newClient(t, base)
	c.http.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: f.ca.Pool()}}
	if r := c.do("GET", "/health", nil); r.status != 200 {
		t.Errorf("health over https: %d", r.status)
	}
	// Plain HTTP to the HTTPS port gets nothing useful.
	resp, err := http.Get(strings.Replace(base, "https://", "http://", 1) + "/health")
	if err == nil {
		resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Error("plain http answered 200 on the https port")
		}
	}
}

func TestPurge(t *testing.T) {
	f := newFleet(t)
	old := store.Run{ReqID: "00000000000000a1", Status: store.RunDone, Hosts: []string{"x"}}
	if err := f.st.SaveRun(old); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.st.Dir(), "runs", old.ReqID+".json")
	long := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(path, long, long); err != nil {
		t.Fatal(err)
	}
	fresh := store.Run{ReqID: "00000000000000a2", Status: store.RunDone, Hosts: []string{"x"}}
	if err := f.st.SaveRun(fresh); err != nil {
		t.Fatal(err)
	}
	srv := f.newServer(func(o *Options) { o.RunRetention = time.Hour })
	_, stop := serve(t, srv)
	waitFor(t, func() bool {
		_, err := os.Stat(path)
		return os.IsNotExist(err)
	}, "the old run to be purged")
	_ = stop()
	if _, err := f.st.GetRun(fresh.ReqID); err != nil {
		t.Errorf("fresh run purged: %v", err)
	}
}

var sampleLine = regexp.MustCompile(`^([a-z_]+)(\{.*\})? (-?[0-9.e+]+|\+Inf|NaN)$`)

func TestMetrics(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01")
	f.dead("web-02")
	_, ts := f.server(nil)
	c := newClient(t, ts.URL)
	c.do("POST", "/run", map[string]any{"hosts": []string{"web-01"}, "script": "hello"})
	c.do("POST", "/run", map[string]any{"hosts": []string{"web-01", "web-02"}, "script": "hello"})
	c.do("POST", "/ping", map[string]any{"hosts": []string{"web-01"}})
	c.do("GET", "/status/ffffffffffffffff", nil)
	r := c.do("GET", "/metrics", nil)
	if r.status != 200 || r.header.Get("Content-Type") != "text/plain; version=0.0.4; charset=utf-8" {
		t.Fatalf("metrics: %d %q", r.status, r.header.Get("Content-Type"))
	}
	text := string(r.body)
	types := map[string]string{}
	samples := map[string]string{}
	for _, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		switch {
		case strings.HasPrefix(line, "# HELP "):
		case strings.HasPrefix(line, "# TYPE "):
			parts := strings.Fields(line)
			if _, dup := types[parts[2]]; dup {
				t.Errorf("family %s declared twice", parts[2])
			}
			types[parts[2]] = parts[3]
		default:
			m := sampleLine.FindStringSubmatch(line)
			if m == nil {
				t.Errorf("not a sample line: %q", line)
				continue
			}
			samples[m[1]+m[2]] = m[3]
		}
	}
	for k, want := range map[string]string{
		`dispatcher_api_requests_total{code="200",route="POST /run"}`:           "2",
		`dispatcher_api_requests_total{code="404",route="GET /status/{reqid}"}`: "1",
		`dispatcher_api_runs_total{result="ok"}`:                                "1",
		`dispatcher_api_runs_total{result="failed"}`:                            "1",
		`dispatcher_api_auth_decisions_total{by="default",outcome="allow"}`:     "5",
		`dispatcher_api_fanout_duration_seconds_count{op="run"}`:                "2",
		`dispatcher_api_fanout_duration_seconds_bucket{le="+Inf",op="run"}`:     "2",
		`dispatcher_api_fanout_duration_seconds_count{op="ping"}`:               "1",
		`dispatcher_agents_registered`:                                          "2",
		`dispatcher_api_runs_in_flight`:                                         "0",
	} {
		if got := samples[k]; got != want {
			t.Errorf("%s = %q, want %q", k, got, want)
		}
	}
	if types["dispatcher_api_fanout_duration_seconds"] != "histogram" || types["dispatcher_api_requests_total"] != "counter" {
		t.Errorf("types: %v", types)
	}
	// Last contact of the agent reached, cert expiry of the one with a
	// recorded expiry.
	a, _ := f.st.GetAgent("web-01")
	if got := samples[`dispatcher_agent_last_contact_timestamp_seconds{host="web-01"}`]; got == "" || got != formatFloat(float64(a.LastContact.Unix())) {
		t.Errorf("last contact of web-01: %q (registry %v)", got, a.LastContact)
	}
	if _, ok := samples[`dispatcher_agent_last_contact_timestamp_seconds{host="web-02"}`]; ok {
		t.Error("web-02 was never reached but has a last contact")
	}
	if got := samples[`dispatcher_agent_cert_expiry_timestamp_seconds{host="web-01"}`]; got == "" {
		t.Errorf("no cert expiry for web-01:\n%s", text)
	}
	// Buckets are cumulative.
	var prev float64 = -1
	for _, b := range fanoutBuckets {
		var v float64
		_ = json.Unmarshal([]byte(samples[`dispatcher_api_fanout_duration_seconds_bucket{le="`+formatFloat(b)+`",op="run"}`]), &v)
		if v < prev {
			t.Errorf("bucket le=%v: %v after %v", b, v, prev)
		}
		prev = v
	}
}

func TestExpositionEscapes(t *testing.T) {
	m := newMetrics()
	m.request("a\"b\\c\nd", 200)
	var buf strings.Builder
	if err := m.write(&buf, gauges{}, func() ([]store.Agent, error) { return nil, nil }, time.Now()); err != nil {
		t.Fatal(err)
	}
	if want := `dispatcher_api_requests_total{code="200",route="a\"b\\c\nd"} 1`; !strings.Contains(buf.String(), want) {
		t.Errorf("escaped label not found:\n%s", buf.String())
	}
	for v, want := range map[float64]string{1: "1", 0.25: "0.25", 1767225600: "1767225600", 1e20: "1e+20"} {
		if got := formatFloat(v); got != want {
			t.Errorf("formatFloat(%v) = %q, want %q", v, got, want)
		}
	}
}

// The document and the server agree: every route is documented and every
// documented operation is served; every schema compiles.
func TestOpenAPIMatchesRoutes(t *testing.T) {
	f := newFleet(t)
	srv := f.newServer(nil)
	sp := loadSpec(t)
	var documented, served []string
	for path, item := range dig(sp.doc, "paths") {
		for method := range item.(map[string]any) {
			documented = append(documented, strings.ToUpper(method)+" "+path)
		}
	}
	for _, rt := range srv.routeList() {
		served = append(served, rt.method+" "+rt.path)
	}
	sort.Strings(documented)
	sort.Strings(served)
	if d := cmp.Diff(served, documented); d != "" {
		t.Errorf("routes (-served +documented):\n%s", d)
	}
	for name := range dig(sp.doc, "components", "schemas") {
		sp.schema(t, "/components/schemas/"+name)
	}
	if sp.doc["openapi"] != "3.1.0" {
		t.Errorf("openapi %v", sp.doc["openapi"])
	}
}

func TestCleanPath(t *testing.T) {
	for p, want := range map[string]bool{
		"/": true, "/run": true, "/status/abc": true, "/runs/abc/events": true, "/x/": true,
		"/status/../etc/passwd": false, "/status/./x": false, "//run": false, "/a//b": false, "/..": false, "": false,
	} {
		if got := httplimit.CleanPath(p); got != want {
			t.Errorf("CleanPath(%q) = %v, want %v", p, got, want)
		}
	}
}
