package agent

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// world is one real agent on loopback and what a test needs to talk to it.
type world struct {
	t      *testing.T
	dir    string
	ca     *pkitest.CA
	srv    *Server
	addr   string
	marker string // created by the "touch" script
}

func write(t *testing.T, path, data string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
}

func newWorld(t *testing.T) *world {
	t.Helper()
	return newWorldLog(t, zap.NewNop())
}

// newWorldLog is newWorld with the agent logging to log.
func newWorldLog(t *testing.T, log *zap.Logger) *world {
	t.Helper()
	w := setupWorld(t, log)
	w.start()
	return w
}

// setupWorld is newWorldLog without serving: a test may adjust the server
// (its clock, agent.conf) before calling start. The rate limits are off
// (these tests make many connections); guard_test.go turns them on.
func setupWorld(t *testing.T, log *zap.Logger) *world {
	t.Helper()
	w := &world{t: t, dir: t.TempDir(), ca: pkitest.NewCA(t)}
	w.marker = filepath.Join(w.dir, "MARKER")
	certPEM, keyPEM := pkitest.PEM(t, w.ca.Agent(t, "web-01"))
	write(t, filepath.Join(w.dir, "agent.crt"), string(certPEM), 0o644)
	write(t, filepath.Join(w.dir, "agent.key"), string(keyPEM), 0o640)
	write(t, filepath.Join(w.dir, "ca.crt"), string(w.ca.CertPEM()), 0o644)
	bin := filepath.Join(w.dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(bin, "touch"), "#!/bin/sh\ntouch "+w.marker+"\necho touched\n", 0o755)
	write(t, filepath.Join(bin, "hello"), "#!/bin/sh\necho hello\n", 0o755)
	write(t, filepath.Join(w.dir, "agent.conf"), fmt.Sprintf(`hostname = "web-01"
cert = %[1]q
key = %[2]q
ca = %[3]q
revoked_serials = %[4]q
dispatcher_serial_path = %[5]q
script_dirs = %[6]q
log = "stderr"
rate_limit_disable = true
`, filepath.Join(w.dir, "agent.crt"), filepath.Join(w.dir, "agent.key"), filepath.Join(w.dir, "ca.crt"),
		filepath.Join(w.dir, "revoked-serials"), filepath.Join(w.dir, "dispatcher-serial"), bin), 0o640)
	w.allow(`touch = "` + filepath.Join(bin, "touch") + `"` + "\n")

	srv, err := newServer(paths{config: filepath.Join(w.dir, "agent.conf"), allowlist: filepath.Join(w.dir, "scripts.conf"),
		configSet: true, allowlistSet: true}, log)
	if err != nil {
		t.Fatal(err)
	}
	w.srv = srv
	return w
}

// start serves on a loopback port.
func (w *world) start() {
	t := w.t
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	w.addr = ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("serve: %v", err)
		}
	})
}

func (w *world) allow(scripts string) {
	write(w.t, filepath.Join(w.dir, "scripts.conf"), scripts, 0o644)
}

// client talks to the agent with the given client certificate.
func (w *world) client(cert tls.Certificate) *http.Client {
	return &http.Client{
		Timeout: 10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{
			Certificates: []tls.Certificate{cert},
			RootCAs:      w.ca.Pool(),
			ServerName:   "web-01",
		}},
	}
}

func (w *world) post(c *http.Client, path string, body any) (*http.Response, []byte, error) {
	b, _ := json.Marshal(body)
	resp, err := c.Post("https://"+w.addr+path, "application/json", bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	return resp, data, err
}

func TestPingAndRun(t *testing.T) {
	w := newWorld(t)
	c := w.client(w.ca.Dispatcher(t))
	resp, body, err := w.post(c, wire.PathPing, wire.PingRequest{ReqID: "r1"})
	if err != nil {
		t.Fatal(err)
	}
	var pong wire.PingResponse
	if err := json.Unmarshal(body, &pong); err != nil || resp.StatusCode != 200 {
		t.Fatalf("ping: %d %s %v", resp.StatusCode, body, err)
	}
	if pong.Status != "ok" || pong.Host != "web-01" || pong.ReqID != "r1" {
		t.Errorf("ping answer %+v", pong)
	}
	if _, err := pki.ParseOpenSSLTime(pong.Expiry); err != nil {
		t.Errorf("expiry %q is not OpenSSL text: %v", pong.Expiry, err)
	}

	_, body, err = w.post(c, wire.PathRun, wire.RunRequest{Script: "touch", ReqID: "r2", Args: []string{}})
	if err != nil {
		t.Fatal(err)
	}
	var run wire.RunResponse
	if err := json.Unmarshal(body, &run); err != nil {
		t.Fatal(err)
	}
	if run.Exit != 0 || run.Stdout != "touched\n" || run.ReqID != "r2" {
		t.Errorf("run answer %+v", run)
	}
	if _, err := os.Stat(w.marker); err != nil {
		t.Errorf("script did not run: %v", err)
	}
}

// Identities that must be refused in the handshake, before any handler.
func TestIdentityRefusedBeforeHandler(t *testing.T) {
	w := newWorld(t)
	other := pkitest.NewCA(t)
	revoked := w.ca.Dispatcher(t)
	write(t, filepath.Join(w.dir, "revoked-serials"), "# stolen laptop\n"+pki.FormatSerial(revoked.Leaf.SerialNumber)+"\n", 0o644)
	if err := w.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	for name, cert := range map[string]tls.Certificate{
		"dispatcher cert from another CA": other.Dispatcher(t),
		"agent cert used as a client":     w.ca.Agent(t, "web-02"),
		"revoked dispatcher cert":         revoked,
	} {
		t.Run(name, func(t *testing.T) {
			resp, body, err := w.post(w.client(cert), wire.PathRun, wire.RunRequest{Script: "touch", ReqID: "x"})
			if err == nil {
				t.Fatalf("accepted: %d %s", resp.StatusCode, body)
			}
			if _, err := os.Stat(w.marker); err == nil {
				t.Fatal("the script ran")
			}
		})
	}
	// No client certificate at all.
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: w.ca.Pool(), ServerName: "web-01"}}}
	if _, _, err := w.post(c, wire.PathPing, wire.PingRequest{}); err == nil {
		t.Error("a client without a certificate was served")
	}
}

// A Perl dispatcher's certificate has no role: only the serial pin admits it.
func TestLegacyDispatcherSerialPin(t *testing.T) {
	w := newWorld(t)
	legacy := w.ca.Legacy(t, "dispatcher")
	c := w.client(legacy)
	resp, body, err := w.post(c, wire.PathPing, wire.PingRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), `"serial mismatch"`) {
		t.Errorf("unpinned legacy cert: %d %s, want 403 serial mismatch", resp.StatusCode, body)
	}
	write(t, filepath.Join(w.dir, "dispatcher-serial"), pki.FormatSerial(legacy.Leaf.SerialNumber)+"\n", 0o644)
	if err := w.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	resp, body, err = w.post(w.client(legacy), wire.PathPing, wire.PingRequest{})
	if err != nil || resp.StatusCode != 200 {
		t.Errorf("pinned legacy cert: %v %v %s, want 200", err, resp, body)
	}
	other := w.ca.Legacy(t, "dispatcher")
	resp, _, err = w.post(w.client(other), wire.PathRun, wire.RunRequest{Script: "touch"})
	if err != nil || resp.StatusCode != http.StatusForbidden {
		t.Errorf("legacy cert with another serial: %v %v, want 403", err, resp)
	}
	if _, err := os.Stat(w.marker); err == nil {
		t.Error("the script ran for a mismatched serial")
	}
}

func TestRunRefusals(t *testing.T) {
	w := newWorld(t)
	c := w.client(w.ca.Dispatcher(t))
	for _, name := range []string{"nope", "../bin/touch", "touch;id", "", "touch/x"} {
		_, body, err := w.post(c, wire.PathRun, wire.RunRequest{Script: name})
		if err != nil {
			t.Fatal(err)
		}
		var run wire.RunResponse
		if err := json.Unmarshal(body, &run); err != nil {
			t.Fatal(err)
		}
		if run.Exit != -1 || run.Error != wire.ErrScriptNotPermitted {
			t.Errorf("script %q: %+v, want exit -1 %q", name, run, wire.ErrScriptNotPermitted)
		}
	}
	resp, _, err := w.post(c, wire.PathRun, wire.RunRequest{Script: "touch", Args: []string{"a\x00b"}})
	if err != nil || resp.StatusCode != http.StatusBadRequest {
		t.Errorf("NUL in an argument: %v %v, want 400", err, resp)
	}
	if _, err := os.Stat(w.marker); err == nil {
		t.Error("a refused request ran the script")
	}

	big := strings.Repeat("x", wire.MaxBodySize+1)
	resp, _, err = w.post(c, wire.PathRun, map[string]string{"script": big})
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("2 MiB body: %v %v, want 413", err, resp)
	}

	req, _ := http.NewRequest("POST", "https://"+w.addr+wire.PathPing, strings.NewReader("{}"))
	for i := range wire.MaxHeaderLines + 1 {
		req.Header.Set(fmt.Sprintf("X-Extra-%d", i), "1")
	}
	if resp, err := c.Do(req); err != nil || resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("33 header lines: %v %v, want 431", err, resp)
	}

	if resp, err := c.Get("https://" + w.addr + "/nope"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown path: %v %v, want 404", err, resp)
	}
}

func TestReloadSwapsAllowlist(t *testing.T) {
	w := newWorld(t)
	c := w.client(w.ca.Dispatcher(t))
	run := func(script string) wire.RunResponse {
		_, body, err := w.post(c, wire.PathRun, wire.RunRequest{Script: script})
		if err != nil {
			t.Fatal(err)
		}
		var r wire.RunResponse
		if err := json.Unmarshal(body, &r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	if r := run("hello"); r.Exit != -1 {
		t.Fatalf("hello before reload: %+v", r)
	}
	w.allow(`hello = "` + filepath.Join(w.dir, "bin", "hello") + `"` + "\n")
	if err := w.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := run("hello"); r.Exit != 0 || r.Stdout != "hello\n" {
		t.Errorf("hello after reload: %+v", r)
	}
	if r := run("touch"); r.Exit != -1 || r.Error != wire.ErrScriptNotPermitted {
		t.Errorf("removed script after reload: %+v", r)
	}

	// A broken config keeps the old snapshot.
	write(t, filepath.Join(w.dir, "agent.conf"), "port = \"not a number\"\n", 0o640)
	if err := w.srv.Reload(); err == nil {
		t.Fatal("reload of a broken agent.conf succeeded")
	}
	if r := run("hello"); r.Exit != 0 {
		t.Errorf("after a failed reload: %+v", r)
	}
}

func TestEffectiveTimeout(t *testing.T) {
	for _, c := range []struct {
		req        int
		entry, def time.Duration
		want       time.Duration
	}{
		{0, 0, 0, 0},
		{5, 0, 0, 5 * time.Second},
		{0, 0, time.Minute, time.Minute},
		{0, 10 * time.Second, time.Minute, 10 * time.Second},
		{30, 10 * time.Second, 0, 10 * time.Second},
		{3, 10 * time.Second, 0, 3 * time.Second},
		{120, 0, time.Minute, time.Minute},
	} {
		if got := effectiveTimeout(c.req, c.entry, c.def); got != c.want {
			t.Errorf("effectiveTimeout(%d, %v, %v) = %v, want %v", c.req, c.entry, c.def, got, c.want)
		}
	}
}
