package control

import (
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
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// fleet is a set of small real agents: TLS servers with agent certificates
// from one CA that require the dispatcher's client certificate and answer
// /ping, /run and /capabilities as an agent does. They are not mocks of the
// wire client: the engine talks to them with the real client over real TLS.
type fleet struct {
	t     *testing.T
	ca    *pkitest.CA
	st    *store.Files
	log   bytes.Buffer
	logMu sync.Mutex

	// barrier, when set, makes every /run wait until that many have
	// arrived: only a concurrent fan-out gets past it.
	barrier *barrier
	runs    atomic.Int64 // /run requests received, all agents
	active  atomic.Int64
	peak    atomic.Int64
	hold    chan struct{} // when not nil, /run waits for it to close
}

func newFleet(t *testing.T) *fleet {
	return &fleet{t: t, ca: pkitest.NewCA(t), st: store.NewFiles(t.TempDir())}
}

// agent starts an agent whose certificate is for certName and registers it
// as name (at 127.0.0.1 and its port). It returns the port.
func (f *fleet) agent(name, certName string) int {
	f.t.Helper()
	cert := f.ca.Agent(f.t, certName)
	srv := httptest.NewUnstartedServer(f.handler(name))
	srv.TLS = &tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientAuth:   tls.RequireAndVerifyClientCert,
		ClientCAs:    f.ca.Pool(),
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	f.t.Cleanup(srv.Close)
	port := srv.Listener.Addr().(*net.TCPAddr).Port
	fp, err := pki.Fingerprint(cert.Leaf.PublicKey)
	if err != nil {
		f.t.Fatal(err)
	}
	f.register(store.Agent{Hostname: name, IP: "127.0.0.1", Port: port, KeyFingerprint: fp})
	return port
}

func (f *fleet) register(a store.Agent) {
	f.t.Helper()
	if err := f.st.PutAgent(a); err != nil {
		f.t.Fatal(err)
	}
}

// deadPort returns a port on 127.0.0.1 where nothing listens.
func deadPort(t *testing.T) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	return port
}

func (f *fleet) handler(name string) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /ping", func(w http.ResponseWriter, r *http.Request) {
		var req wire.PingRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			wire.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		wire.WriteJSON(w, http.StatusOK, wire.PingResponse{Status: "ok", Host: name, Version: "test-1.0",
			Expiry: "Jun  7 16:28:00 2027 GMT", ReqID: req.ReqID})
	})
	mux.HandleFunc("GET /capabilities", func(w http.ResponseWriter, r *http.Request) {
		wire.WriteJSON(w, http.StatusOK, wire.CapabilitiesResponse{Status: "ok", Host: name, Version: "test-1.0",
			Tags:    map[string]string{"name": name},
			Scripts: []wire.ScriptInfo{{Name: "hello", Path: "/bin/hello", Executable: true}}})
	})
	mux.HandleFunc("POST /run", func(w http.ResponseWriter, r *http.Request) {
		var req wire.RunRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			wire.WriteError(w, http.StatusBadRequest, err.Error())
			return
		}
		f.runs.Add(1)
		n := f.active.Add(1)
		defer f.active.Add(-1)
		for p := f.peak.Load(); n > p && !f.peak.CompareAndSwap(p, n); p = f.peak.Load() {
		}
		resp := wire.RunResponse{Script: req.Script, ReqID: req.ReqID}
		if f.barrier != nil && !f.barrier.wait(5*time.Second) {
			resp.Exit, resp.Error = -1, "barrier: the other runs never arrived (fan-out not concurrent)"
			wire.WriteJSON(w, http.StatusOK, resp)
			return
		}
		if f.hold != nil {
			<-f.hold
		}
		switch req.Script {
		case "hello":
			resp.SetOutput([]byte("hello from "+name+"\n"), []byte("warn "+name+"\n"))
		case "args":
			resp.SetOutput([]byte(fmt.Sprintf("%q %s %s %d\n", req.Args, req.Username, req.Token, req.Timeout)), nil)
		case "fail":
			resp.Exit = 3
		default:
			resp.Exit, resp.Error = -1, wire.ErrScriptNotPermitted
		}
		if wire.WantsStream(r) {
			sw := wire.NewStreamWriter(w)
			stdout, stderr := resp.Output()
			for _, line := range bytes.SplitAfter(stdout, []byte("\n")) {
				if len(line) > 0 {
					_ = sw.Event(wire.NewStreamEvent("stdout", line))
				}
			}
			if len(stderr) > 0 {
				_ = sw.Event(wire.NewStreamEvent("stderr", stderr))
			}
			_ = sw.Final(resp)
			return
		}
		wire.WriteJSON(w, http.StatusOK, resp)
	})
	return mux
}

// barrier lets n callers through once all n have arrived.
type barrier struct {
	mu      sync.Mutex
	n       int
	arrived int
	all     chan struct{}
}

func newBarrier(n int) *barrier { return &barrier{n: n, all: make(chan struct{})} }

func (b *barrier) wait(max time.Duration) bool {
	b.mu.Lock()
	b.arrived++
	if b.arrived == b.n {
		close(b.all)
	}
	b.mu.Unlock()
	select {
	case <-b.all:
		return true
	case <-time.After(max):
		return false
	}
}

// engine returns an Engine of the fleet. Agent names never resolve: they
// are dialled at their registered addresses.
func (f *fleet) engine(mod func(*Options)) *Engine {
	f.t.Helper()
	log, closeLog, err := logging.New(logging.Options{Output: "stderr", Stderr: &lockedWriter{mu: &f.logMu, w: &f.log}})
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(func() { _ = closeLog() })
	o := Options{
		Identity:       Identity{Cert: f.ca.Dispatcher(f.t), Roots: f.ca.Pool()},
		ConnectTimeout: 2 * time.Second,
		ReadTimeout:    10 * time.Second,
		Registry:       f.st, Runs: f.st, Locks: f.st,
		Resolve: func(context.Context, string) error { return errors.New("does not resolve") },
		Log:     log,
	}
	if mod != nil {
		mod(&o)
	}
	e, err := New(o)
	if err != nil {
		f.t.Fatal(err)
	}
	f.t.Cleanup(e.Close)
	return e
}

func (f *fleet) logs() string {
	f.logMu.Lock()
	defer f.logMu.Unlock()
	return f.log.String()
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

func hostsOf(results []store.Result) []string {
	var hs []string
	for _, r := range results {
		hs = append(hs, r.Host)
	}
	return hs
}

func TestRunFanOut(t *testing.T) {
	f := newFleet(t)
	for _, h := range []string{"web-01", "web-02", "web-03"} {
		f.agent(h, h)
	}
	dead := deadPort(t)
	f.register(store.Agent{Hostname: "web-04", IP: "127.0.0.1", Port: dead})
	// The three live agents answer only once all three requests are in:
	// a sequential fan-out would fail here.
	f.barrier = newBarrier(3)
	e := f.engine(nil)

	var completion []int
	hosts := []string{"web-03", "web-04", "web-01", "web-02"}
	start := time.Now()
	report, err := e.Run(context.Background(), RunRequest{Hosts: hosts, Script: "hello", Username: "alice", Token: "s3cret-token",
		OnResult: func(i int, r store.Result) { completion = append(completion, i) }})
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(hosts, hostsOf(report.Results)); d != "" {
		t.Errorf("results not in the order given (-want +got):\n%s", d)
	}
	if report.OK {
		t.Error("report OK with an unreachable host")
	}
	for _, i := range []int{0, 2, 3} {
		r := report.Results[i]
		want := "hello from " + r.Host + "\n"
		if r.Exit != 0 || r.Stdout != want || r.Stderr != "warn "+r.Host+"\n" || r.Error != "" || r.ReqID != report.ReqID {
			t.Errorf("%s: %+v", r.Host, r)
		}
		if !strings.HasSuffix(r.RTT, "ms") {
			t.Errorf("%s: rtt %q", r.Host, r.RTT)
		}
	}
	bad := report.Results[1]
	if bad.Exit != -1 || !strings.Contains(bad.Error, "refused") || !strings.Contains(bad.Error, strconv.Itoa(dead)) {
		t.Errorf("unreachable host: exit %d, error %q; want -1 and connection refused", bad.Exit, bad.Error)
	}
	// The refused host fails at once, long before the others answer: it
	// completes first, within the connect timeout.
	if len(completion) != 4 || completion[0] != 1 {
		t.Errorf("completion order %v, want the unreachable host (1) first", completion)
	}
	if time.Since(start) > 10*time.Second {
		t.Errorf("run took %v", time.Since(start))
	}

	// Stored, done, with the results and without the token.
	run, err := f.st.GetRun(report.ReqID)
	if err != nil {
		t.Fatal(err)
	}
	if run.Status != store.RunDone || run.Username != "alice" || len(run.Results) != 4 || run.Results[2].Stdout != "hello from web-01\n" {
		t.Errorf("stored run: %+v", run)
	}
	if b, _ := json.Marshal(run); bytes.Contains(b, []byte("s3cret-token")) {
		t.Error("the token was stored")
	}
	// Logged per host, never the token.
	logs := f.logs()
	for _, want := range []string{"ACTION=dispatch", "HOST=web-01", "ACTION=run EXIT=0", "ACTION=run ERROR=", "REQID=" + report.ReqID} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q:\n%s", want, logs)
		}
	}
	if strings.Contains(logs, "s3cret-token") {
		t.Errorf("the token was logged:\n%s", logs)
	}
	// Registered agents that answered have a last contact now.
	a, err := f.st.GetAgent("web-01")
	if err != nil || time.Since(a.LastContact) > time.Minute {
		t.Errorf("web-01 last contact %v, %v", a.LastContact, err)
	}
	if a, _ := f.st.GetAgent("web-04"); !a.LastContact.IsZero() {
		t.Error("unreachable web-04 got a last contact")
	}
	// The locks are released.
	if locks, err := f.st.ListLocks(); err != nil || len(locks) != 0 {
		t.Errorf("locks after the run: %v, %v", locks, err)
	}
}

func TestRunParallelBound(t *testing.T) {
	f := newFleet(t)
	var hosts []string
	for i := range 6 {
		h := fmt.Sprintf("web-%02d", i)
		f.agent(h, h)
		hosts = append(hosts, h)
	}
	// With room for two at a time, two runs meet at the barrier: more
	// would be a bound not kept, fewer a fan-out that is not concurrent.
	f.barrier = newBarrier(2)
	e := f.engine(func(o *Options) { o.Parallel = 64 })
	report, err := e.Run(context.Background(), RunRequest{Hosts: hosts[:2], Script: "hello", Parallel: 2})
	if err != nil || !report.OK {
		t.Fatalf("%v %+v", err, report)
	}
	f.barrier, f.peak = nil, atomic.Int64{}
	report, err = e.Run(context.Background(), RunRequest{Hosts: hosts, Script: "hello", Parallel: 2})
	if err != nil || !report.OK {
		t.Fatalf("%v %+v", err, report)
	}
	if p := f.peak.Load(); p > 2 {
		t.Errorf("%d runs in flight at once with --parallel 2", p)
	}
}

func TestRunArgumentsAndStream(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01", "web-01")
	e := f.engine(nil)
	args := []string{"a b", `"q"`, "$(touch x)", ";", "", "../x", "line\nbreak"}
	var mu sync.Mutex
	var chunks []string
	report, err := e.Run(context.Background(), RunRequest{Hosts: []string{"web-01"}, Script: "args", Args: args,
		Username: "alice", Token: "tok", Timeout: 1500 * time.Millisecond,
		OnOutput: func(i int, host string, ev wire.StreamEvent) {
			mu.Lock()
			defer mu.Unlock()
			chunks = append(chunks, fmt.Sprintf("%d %s %s %s", i, host, ev.Stream, ev.Bytes()))
		}})
	if err != nil {
		t.Fatal(err)
	}
	want := fmt.Sprintf("%q alice tok 2\n", args) // 1.5s is sent as 2 whole seconds
	if got := report.Results[0].Stdout; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if d := cmp.Diff([]string{"0 web-01 stdout " + want}, chunks); d != "" {
		t.Errorf("streamed chunks (-want +got):\n%s", d)
	}
}

func TestRunScriptNotPermitted(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01", "web-01")
	f.agent("web-02", "web-02")
	e := f.engine(nil)
	// A name no agent can allow is refused here, for every host, without
	// contacting any; a valid name the agent does not list is refused there.
	for _, script := range []string{"../bin/hello", "hello;id", "a b", ".hidden", "nope"} {
		report, err := e.Run(context.Background(), RunRequest{Hosts: []string{"web-01", "web-02"}, Script: script})
		if err != nil {
			t.Fatalf("%s: %v", script, err)
		}
		if report.OK {
			t.Errorf("%s: report OK", script)
		}
		for _, r := range report.Results {
			if r.Exit != -1 || r.Error != ScriptNotPermitted {
				t.Errorf("%s on %s: exit %d error %q", script, r.Host, r.Exit, r.Error)
			}
		}
		if _, err := f.st.GetRun(report.ReqID); err != nil {
			t.Errorf("%s: refused run not stored: %v", script, err)
		}
	}
	if n := f.runs.Load(); n != 2 {
		t.Errorf("agents got %d run requests, want 2 (only for the valid name)", n)
	}
}

func TestRunLockConflict(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01", "web-01")
	f.agent("web-02", "web-02")
	f.agent("web-03", "web-03")
	e := f.engine(nil)

	// A first run holds web-02:hello while its agent is busy.
	f.hold = make(chan struct{})
	first := make(chan error, 1)
	started := make(chan string, 1)
	go func() {
		_, err := e.Run(context.Background(), RunRequest{Hosts: []string{"web-02"}, Script: "hello",
			OnStart: func(reqid string) { started <- reqid }})
		first <- err
	}()
	<-started
	for deadline := time.Now().Add(5 * time.Second); f.runs.Load() == 0 && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}

	_, err := e.Run(context.Background(), RunRequest{Hosts: []string{"web-01", "web-02", "web-03"}, Script: "hello"})
	var lc *store.LockConflictError
	if !errors.As(err, &lc) {
		t.Fatalf("second run: %v, want a lock conflict", err)
	}
	if d := cmp.Diff([]string{"web-02:hello"}, lc.Pairs()); d != "" {
		t.Errorf("conflicts (-want +got):\n%s", d)
	}
	if n := f.runs.Load(); n != 1 {
		t.Errorf("%d run requests reached agents, want only the first run's", n)
	}
	if !strings.Contains(f.logs(), "ACTION=lock-conflict") {
		t.Errorf("no lock-conflict event:\n%s", f.logs())
	}
	// Other hosts, or another script on the same host, are not blocked.
	close(f.hold)
	if err := <-first; err != nil {
		t.Fatalf("first run: %v", err)
	}
	report, err := e.Run(context.Background(), RunRequest{Hosts: []string{"web-01", "web-03"}, Script: "hello"})
	if err != nil || !report.OK {
		t.Errorf("other hosts: %v %+v", err, report)
	}
	report, err = e.Run(context.Background(), RunRequest{Hosts: []string{"web-02"}, Script: "fail"})
	if err != nil || report.Results[0].Exit != 3 {
		t.Errorf("other script on web-02: %v %+v", err, report)
	}
}

func TestRunIdentity(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01", "web-01")
	// An agent with a valid certificate for another name, dialled as web-02.
	f.agent("web-02", "web-99")
	// An agent whose key is not the one pinned in the registry.
	port := f.agent("web-03", "web-03")
	other, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fp, _ := pki.Fingerprint(other.Public())
	f.register(store.Agent{Hostname: "web-03", IP: "127.0.0.1", Port: port, KeyFingerprint: fp})
	// An agent certificate from another CA.
	foreign := newFleet(t)
	fport := foreign.agent("web-04", "web-04")
	f.register(store.Agent{Hostname: "web-04", IP: "127.0.0.1", Port: fport})
	// Not pinned at all (registered without a key): the other checks suffice.
	port5 := f.agent("web-05", "web-05")
	f.register(store.Agent{Hostname: "web-05", IP: "127.0.0.1", Port: port5})

	e := f.engine(nil)
	report, err := e.Run(context.Background(), RunRequest{Hosts: []string{"web-01", "web-02", "web-03", "web-04", "web-05"}, Script: "hello", Token: "tok"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"web-01": "",
		"web-02": "host name mismatch",
		"web-03": "does not match the key pinned for web-03",
		"web-04": "not signed by the dispatcher ca",
		"web-05": "",
	}
	for _, r := range report.Results {
		w := want[r.Host]
		switch {
		case w == "" && (r.Exit != 0 || r.Error != ""):
			t.Errorf("%s: exit %d error %q, want success", r.Host, r.Exit, r.Error)
		case w != "" && (r.Exit != -1 || !strings.Contains(r.Error, w)):
			t.Errorf("%s: exit %d error %q, want -1 and %q", r.Host, r.Exit, r.Error, w)
		}
	}
	for _, want := range []string{"ACTION=serial-reject CHECK=host-mismatch HOST=web-02", "ACTION=serial-reject CHECK=key-mismatch HOST=web-03",
		"ACTION=serial-reject CHECK=untrusted HOST=web-04"} {
		if !strings.Contains(f.logs(), want) {
			t.Errorf("logs lack %q:\n%s", want, f.logs())
		}
	}
	if n := f.runs.Load() + foreign.runs.Load(); n != 2 {
		t.Errorf("%d run requests (with the token) reached agents, want 2: none to agents that failed the checks", n)
	}
}

func TestTargets(t *testing.T) {
	f := newFleet(t)
	f.register(store.Agent{Hostname: "reg", IP: "10.1.2.3", Port: 7450})
	f.register(store.Agent{Hostname: "noport", IP: "10.1.2.4"})
	f.register(store.Agent{Hostname: "noip"})
	resolves := map[string]bool{"dns": true, "reg-dns": true}
	f.register(store.Agent{Hostname: "reg-dns", IP: "10.1.2.5", Port: 7451})
	e := f.engine(func(o *Options) {
		o.Resolve = func(_ context.Context, name string) error {
			if resolves[name] {
				return nil
			}
			return errors.New("no such host")
		}
	})
	for _, c := range []struct {
		arg      string
		flagPort int
		want     string
	}{
		{"reg", 0, "10.1.2.3:7450"},
		{"reg", 7000, "10.1.2.3:7000"},
		{"reg:7001", 7000, "10.1.2.3:7001"},
		{"noport", 0, "10.1.2.4:7443"},
		{"dns", 0, "dns:7443"},
		{"dns:9", 5, "dns:9"},
		{"reg-dns", 0, "reg-dns:7451"},
		{"noip", 0, "error"},
		{"unknown", 0, "error"},
	} {
		tg, err := ParseTarget(c.arg)
		if err != nil {
			t.Fatal(err)
		}
		p, err := e.plan(context.Background(), tg, c.flagPort)
		got := p.target.Addr
		if err != nil {
			got = "error"
			if !strings.Contains(err.Error(), "cannot resolve") {
				t.Errorf("%s: %v", c.arg, err)
			}
		} else if p.target.Host != tg.Name {
			t.Errorf("%s: identity %q", c.arg, p.target.Host)
		}
		if got != c.want {
			t.Errorf("%s (--port %d): dial %s, want %s", c.arg, c.flagPort, got, c.want)
		}
	}
	for _, bad := range []string{"", "a b", "-x", "../etc", "h:0", "h:70000", "h:x", "h:"} {
		if _, err := ParseTarget(bad); err == nil {
			t.Errorf("ParseTarget(%q) accepted", bad)
		}
	}
	for _, hosts := range [][]string{nil, {"a", "b", "A:7443"}, {"a", "-x"}} {
		if _, err := e.Run(context.Background(), RunRequest{Hosts: hosts, Script: "hello"}); err == nil {
			t.Errorf("Run(%q) accepted", hosts)
		}
	}
	e2 := f.engine(func(o *Options) { o.MaxHosts = 2 })
	if _, err := e2.Run(context.Background(), RunRequest{Hosts: []string{"a", "b", "c"}, Script: "hello"}); err == nil || !strings.Contains(err.Error(), "max_hosts") {
		t.Errorf("3 hosts with max_hosts 2: %v", err)
	}
}

func TestAuthorizeBeforeAnything(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01", "web-01")
	var asked []AuthRequest
	e := f.engine(func(o *Options) {
		o.Authorize = func(_ context.Context, a AuthRequest) error {
			asked = append(asked, a)
			return errors.New("denied")
		}
	})
	if _, err := e.Run(context.Background(), RunRequest{Hosts: []string{"web-01"}, Script: "hello", Args: []string{"x"}, Username: "u", Token: "t"}); err == nil || err.Error() != "denied" {
		t.Errorf("Run: %v", err)
	}
	if _, err := e.Ping(context.Background(), PingRequest{Hosts: []string{"web-01"}}); err == nil {
		t.Error("Ping allowed")
	}
	want := []AuthRequest{
		{Action: "run", Script: "hello", Hosts: []string{"web-01"}, Args: []string{"x"}, Username: "u", Token: "t"},
		{Action: "ping", Hosts: []string{"web-01"}},
	}
	if d := cmp.Diff(want, asked); d != "" {
		t.Errorf("asked (-want +got):\n%s", d)
	}
	if n := f.runs.Load(); n != 0 {
		t.Errorf("%d runs reached the agent", n)
	}
	if names, _ := f.st.AgentNames(); len(names) != 1 {
		t.Errorf("registry changed: %v", names)
	}
	if locks, _ := f.st.ListLocks(); len(locks) != 0 {
		t.Errorf("locks left: %v", locks)
	}
}

func TestPingAndDiscover(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01", "web-01")
	f.agent("web-02", "web-02")
	f.register(store.Agent{Hostname: "web-03", IP: "127.0.0.1", Port: deadPort(t)})
	e := f.engine(nil)

	report, err := e.Ping(context.Background(), PingRequest{Hosts: []string{"web-02", "web-03", "web-01"}})
	if err != nil {
		t.Fatal(err)
	}
	if report.OK {
		t.Error("ping OK with a dead host")
	}
	var got []string
	for _, r := range report.Results {
		got = append(got, fmt.Sprintf("%s %s %s %s %t", r.Host, r.Status, r.Version, r.Expiry, r.Error != ""))
		if !strings.HasSuffix(r.RTT, "ms") {
			t.Errorf("%s: rtt %q", r.Host, r.RTT)
		}
	}
	want := []string{
		"web-02 ok test-1.0 Jun  7 16:28:00 2027 GMT false",
		"web-03 error   true",
		"web-01 ok test-1.0 Jun  7 16:28:00 2027 GMT false",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ping (-want +got):\n%s", d)
	}
	if !strings.Contains(f.logs(), "ACTION=ping") {
		t.Error("no ping event logged")
	}

	// Discovery without hosts asks every registered agent, by name.
	d, err := e.Discover(context.Background(), DiscoverRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if hs := []string{d.Results[0].Host, d.Results[1].Host, d.Results[2].Host}; !cmp.Equal(hs, []string{"web-01", "web-02", "web-03"}) {
		t.Errorf("discover hosts %v", hs)
	}
	r := d.Results[0]
	if r.Status != "ok" || r.Tags["name"] != "web-01" || len(r.Scripts) != 1 || r.Scripts[0].Name != "hello" {
		t.Errorf("discover web-01: %+v", r)
	}
	if d.OK || d.Results[2].Status != "error" || d.Results[2].Scripts == nil || d.Results[2].Tags == nil {
		t.Errorf("discover web-03: %+v", d.Results[2])
	}
}

func TestStatusAndNewReqID(t *testing.T) {
	st := store.NewFiles(t.TempDir())
	if _, err := Status(st, "../x", nil); err == nil || errors.Is(err, store.ErrNotFound) {
		t.Errorf("Status(../x) = %v", err)
	}
	if _, err := Status(st, NewReqID(), nil); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Status(unknown) = %v", err)
	}
	seen := map[string]bool{}
	for range 100 {
		id := NewReqID()
		if len(id) != 16 || store.ValidReqID(id) != nil || seen[id] {
			t.Fatalf("NewReqID() = %q", id)
		}
		seen[id] = true
	}
}

func TestLoadIdentity(t *testing.T) {
	dir := t.TempDir()
	ca := pkitest.NewCA(t)
	ca.WriteFiles(t, dir)
	certPEM, keyPEM := pkitest.PEM(t, ca.Dispatcher(t))
	write := func(name string, b []byte) string {
		p := dir + "/" + name
		if err := pki.WriteFileAtomic(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cert, key := write("d.crt", certPEM), write("d.key", keyPEM)
	id, err := LoadIdentity(cert, key, dir+"/ca.crt")
	if err != nil {
		t.Fatal(err)
	}
	if id.Cert.Leaf == nil || len(id.Cert.Certificate) != 1 {
		t.Errorf("identity %+v", id.Cert)
	}
	var missing *MissingIdentityError
	if _, err := LoadIdentity(dir+"/none.crt", key, dir+"/ca.crt"); !errors.As(err, &missing) || missing.Path != dir+"/none.crt" {
		t.Errorf("missing cert: %v", err)
	}
	_, otherKey := pkitest.PEM(t, ca.Dispatcher(t))
	if _, err := LoadIdentity(cert, write("o.key", otherKey), dir+"/ca.crt"); !errors.As(err, &missing) {
		t.Errorf("key of another certificate: %v", err)
	}
}

func TestDiscoverRefreshesTags(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01", "web-01")
	f.register(store.Agent{Hostname: "web-03", IP: "127.0.0.1", Port: deadPort(t), Tags: map[string]string{"old": "x"}})
	e := f.engine(nil)
	if _, err := e.Discover(context.Background(), DiscoverRequest{}); err != nil {
		t.Fatal(err)
	}
	a, err := f.st.GetAgent("web-01")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]string{"name": "web-01"}, a.Tags); d != "" {
		t.Errorf("web-01's tags after discovery (-want +got):\n%s", d)
	}
	if a, _ := f.st.GetAgent("web-03"); !cmp.Equal(a.Tags, map[string]string{"old": "x"}) {
		t.Errorf("an unreachable agent's tags changed: %v", a.Tags)
	}
	if n := strings.Count(f.logs(), "ACTION=tags-update"); n != 1 {
		t.Errorf("%d tags-update events, want 1:\n%s", n, f.logs())
	}
	// Unchanged tags are not written again.
	if _, err := e.Discover(context.Background(), DiscoverRequest{Hosts: []string{"web-01"}}); err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(f.logs(), "ACTION=tags-update"); n != 1 {
		t.Errorf("%d tags-update events after a second discovery, want 1", n)
	}
}

func TestRunRollout(t *testing.T) {
	f := newFleet(t)
	for _, h := range []string{"a-1", "a-2", "a-3"} {
		f.agent(h, h)
	}
	e := f.engine(nil)
	one, zero := Amount{N: 1}, Amount{}
	var batches []BatchEvent
	report, err := e.Run(context.Background(), RunRequest{Hosts: []string{"a-1", "a-2", "a-3"}, Script: "fail",
		Rollout: Rollout{Batch: &one, MaxFailures: &zero}, OnBatch: func(b BatchEvent) { batches = append(batches, b) }})
	if err != nil {
		t.Fatal(err)
	}
	if report.OK || f.runs.Load() != 1 {
		t.Errorf("ok %v, %d runs reached agents, want 1", report.OK, f.runs.Load())
	}
	stop := "the rollout stopped after batch 1 of 3: 1 host failed, more than max failures 0"
	no := false
	want := []store.Result{{Host: "a-1", Exit: 3}, {Host: "a-2", Exit: -1, Error: notAttempted(stop), Attempted: &no},
		{Host: "a-3", Exit: -1, Error: notAttempted(stop), Attempted: &no}}
	if d := cmp.Diff(want, report.Results, cmpopts.IgnoreFields(store.Result{}, "RTT", "ReqID")); d != "" {
		t.Errorf("results (-want +got):\n%s", d)
	}
	wantBatches := &store.Batches{Size: 1, Count: 3, Current: 1, Failures: 1, MaxFailures: new(int), Stopped: stop}
	if d := cmp.Diff(wantBatches, report.Batches); d != "" {
		t.Errorf("batches (-want +got):\n%s", d)
	}
	if len(batches) != 1 || batches[0].Batch != 1 || !cmp.Equal(batches[0].Hosts, []string{"a-1"}) {
		t.Errorf("batch events %+v", batches)
	}
	stored, err := f.st.GetRun(report.ReqID)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(report.Batches, stored.Batches); d != "" || len(stored.Results) != 3 || stored.Results[2].WasAttempted() {
		t.Errorf("stored %+v (-report +stored):\n%s", stored, d)
	}

	// A retry of it runs the one failed host, and says what it retries.
	_, hosts, err := e.RetryFailed(report.ReqID)
	if err != nil || !cmp.Equal(hosts, []string{"a-1"}) {
		t.Fatalf("RetryFailed = %v, %v", hosts, err)
	}
	retry, err := e.Run(context.Background(), RunRequest{Hosts: hosts, Script: "hello", RetryOf: report.ReqID})
	if err != nil || !retry.OK {
		t.Fatalf("retry: %+v, %v", retry, err)
	}
	if stored, _ := f.st.GetRun(retry.ReqID); stored.RetryOf != report.ReqID || stored.Batches != nil {
		t.Errorf("stored retry: retry_of %q, batches %+v", stored.RetryOf, stored.Batches)
	}
}
