package agent

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
)

func (w *world) args(cmd string, more ...string) []string {
	return append([]string{cmd, "--config", filepath.Join(w.dir, "agent.conf"), "--allowlist", filepath.Join(w.dir, "scripts.conf")}, more...)
}

// levels returns the level word of each self-check line.
func levels(t *testing.T, out string) []string {
	t.Helper()
	var got []string
	line := regexp.MustCompile(`^(OK|WARN|FAIL) {1,3}\S`)
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		m := line.FindStringSubmatch(l)
		if m == nil {
			t.Errorf("line %q is not LEVEL message", l)
			continue
		}
		got = append(got, m[1])
	}
	return got
}

func TestSelfCheckGood(t *testing.T) {
	w := newWorld(t)
	r := agentCmd(t, w.args("self-check")...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	for i, l := range levels(t, r.stdout) {
		if l != checkOK {
			t.Errorf("line %d is %s:\n%s", i+1, l, r.stdout)
		}
	}
	for _, want := range []string{
		"agent.conf " + filepath.Join(w.dir, "agent.conf") + ": hostname web-01, port 7443, 0 warning(s)",
		"scripts.conf " + filepath.Join(w.dir, "scripts.conf") + ": 1 script(s) loaded, 0 skipped",
		"script_dirs: " + filepath.Join(w.dir, "bin") + " exists",
		": agent certificate for web-01, signed by the ca, ",
		"key " + filepath.Join(w.dir, "agent.key") + " matches the certificate (mode 0640)",
		"revoked-serials " + filepath.Join(w.dir, "revoked-serials") + ": absent (nothing revoked)",
		"dispatcher-serial " + filepath.Join(w.dir, "dispatcher-serial") + ": absent",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("no %q in\n%s", want, r.stdout)
		}
	}
	// The alias.
	if r := agentCmd(t, w.args("ping-self")...); r.code != 0 {
		t.Errorf("ping-self: exit %d", r.code)
	}
}

func TestSelfCheckBroken(t *testing.T) {
	w := newWorld(t)
	if err := os.Remove(filepath.Join(w.dir, "ca.crt")); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(filepath.Join(w.dir, "agent.key"), 0o644); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(w.dir, "revoked-serials"), "01:02:03\nnot a serial\n", 0o644)
	conf := filepath.Join(w.dir, "agent.conf")
	data, _ := os.ReadFile(conf)
	fixed := strings.Replace(string(data), "script_dirs = \""+filepath.Join(w.dir, "bin")+"\"",
		"script_dirs = \""+filepath.Join(w.dir, "bin")+":"+filepath.Join(w.dir, "gone")+"\"\nsurprise = 1", 1)
	write(t, conf, fixed, 0o640)
	w.allow("touch = \"" + filepath.Join(w.dir, "bin", "touch") + "\"\nls = \"/bin/ls\"\n")

	r := agentCmd(t, w.args("self-check")...)
	if r.code != 1 || !strings.Contains(r.stderr, "checks failed") {
		t.Errorf("exit %d, want 1\n%s", r.code, r.stderr)
	}
	got := map[string]string{}
	for _, l := range strings.Split(strings.TrimSuffix(r.stdout, "\n"), "\n") {
		level, msg, _ := strings.Cut(l, " ")
		for _, key := range []string{"surprise", "\"ls\"", "gone", "ca:", "revoked-serials", "has mode 0644", "dispatcher-serial"} {
			if strings.Contains(msg, key) {
				got[key] = level
			}
		}
	}
	want := map[string]string{
		"surprise":          checkWarn, // unknown key in agent.conf
		"\"ls\"":            checkWarn, // skipped: outside script_dirs
		"gone":              checkFail, // script_dirs entry missing
		"ca:":               checkFail,
		"revoked-serials":   checkWarn, // a bad line
		"has mode 0644":     checkFail, // serve refuses such a key
		"dispatcher-serial": checkOK,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("levels (-want +got):\n%s\n%s", d, r.stdout)
	}

	// A config that does not load is one FAIL line.
	write(t, conf, "port = \"x\"\n", 0o640)
	r = agentCmd(t, w.args("self-check")...)
	if r.code != 1 || !strings.HasPrefix(r.stdout, "FAIL agent.conf: ") {
		t.Errorf("broken agent.conf: exit %d\n%s", r.code, r.stdout)
	}
}

func TestPairingStatusJSON(t *testing.T) {
	w := newWorld(t)
	r := agentCmd(t, w.args("pairing-status", "--json")...)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	var st pairingStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
		t.Fatal(err)
	}
	leaf := w.srv.snap.Load().cert.Leaf
	fp, _ := pki.Fingerprint(w.ca.Cert.PublicKey)
	want := pairingStatus{Paired: true, Hostname: "web-01", Cert: filepath.Join(w.dir, "agent.crt"),
		Expiry: pki.FormatOpenSSLTime(leaf.NotAfter), ExpiryISO: leaf.NotAfter.UTC().Format("2006-01-02T15:04:05Z"),
		Serial: pki.FormatSerial(leaf.SerialNumber), CAFingerprint: fp, CAName: "pkitest CA"}
	if d := cmp.Diff(want, st); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}

	// A certificate for another host name is not this agent's pairing.
	conf := filepath.Join(w.dir, "agent.conf")
	data, _ := os.ReadFile(conf)
	write(t, conf, strings.Replace(string(data), `hostname = "web-01"`, `hostname = "web-09"`, 1), 0o640)
	r = agentCmd(t, w.args("pairing-status")...)
	if r.code != 1 || !strings.Contains(r.stdout, "paired:   no (host name mismatch") {
		t.Errorf("other host: exit %d\n%s", r.code, r.stdout)
	}
}

func TestSelfPing(t *testing.T) {
	w := newWorld(t)
	r := agentCmd(t, w.args("self-ping", "--addr", w.addr)...)
	want := "PASS listener on " + w.addr + " is up and refuses agent certificates as clients ("
	if r.code != 0 || !strings.HasPrefix(r.stdout, want) {
		t.Errorf("exit %d, want 0 and %q\n%s%s", r.code, want, r.stdout, r.stderr)
	}

	// Nothing listening.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	free := ln.Addr().String()
	ln.Close()
	r = agentCmd(t, w.args("self-ping", "--addr", free)...)
	if r.code != 1 || r.stdout != "FAIL no agent listening on "+free+" (is dispatcher-agent serve running?)\n" {
		t.Errorf("nothing listening: exit %d\n%s", r.code, r.stdout)
	}

	// A listener with this agent's certificate that serves anyone.
	cert, err := tls.LoadX509KeyPair(filepath.Join(w.dir, "agent.crt"), filepath.Join(w.dir, "agent.key"))
	if err != nil {
		t.Fatal(err)
	}
	lax := httptest.NewUnstartedServer(http.HandlerFunc(func(rw http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(rw, `{"status":"ok"}`)
	}))
	lax.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: tls.RequireAnyClientCert}
	lax.Config.ErrorLog = log.New(io.Discard, "", 0)
	lax.StartTLS()
	defer lax.Close()
	addr := lax.Listener.Addr().String()
	r = agentCmd(t, w.args("self-ping", "--addr", addr)...)
	if r.code != 1 || !strings.HasPrefix(r.stdout, "FAIL identity not enforced") {
		t.Errorf("lax listener: exit %d\n%s", r.code, r.stdout)
	}
}

func TestSelfAddr(t *testing.T) {
	for bind, want := range map[string]string{
		"":          "127.0.0.1:7443",
		"0.0.0.0":   "127.0.0.1:7443",
		"::":        "[::1]:7443",
		"10.1.2.3":  "10.1.2.3:7443",
		"127.0.0.2": "127.0.0.2:7443",
	} {
		cfg := config.DefaultAgent()
		cfg.Bind = bind
		if got := selfAddr(cfg); got != want {
			t.Errorf("bind %q: %s, want %s", bind, got, want)
		}
	}
}

// Commands taking positional arguments get no implicit help subcommand:
// "help" is just an argument.
func TestNoHelpSubcommand(t *testing.T) {
	for _, c := range Commands() {
		if !c.HideHelpCommand {
			t.Errorf("%s: HideHelpCommand is false", c.Name)
		}
	}
	if r := agentCmd(t, "request-pairing", "help"); r.code != 2 || !strings.Contains(r.stderr, "takes no arguments") {
		t.Errorf("request-pairing help: exit %d\n%s", r.code, r.stderr)
	}
	if r := agentCmd(t, "self-ping", "--help"); r.code != 0 || !strings.Contains(r.stdout, "refuses") {
		t.Errorf("self-ping --help: exit %d\n%s", r.code, r.stdout)
	}
}
