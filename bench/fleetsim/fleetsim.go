package fleetsim

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dispatcher-dev/dispatcher/exec"
	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/agent"
)

// Options says what fleet to start.
type Options struct {
	N      int    // agents to start; 0 is allowed (Provision only)
	Dir    string // everything is written under it; it must exist
	Prefix string // host names are PREFIX-00001 …; default "sim"
	// AgentLog receives the agents' log lines (agent.conf says log =
	// "stderr"); nil discards them, after they are encoded as usual.
	AgentLog io.Writer
	// DispatcherLog is dispatcher.conf's log: "stderr", "syslog" or an
	// absolute path; "" = DIR/dispatcher.log.
	DispatcherLog string
	// Dispatcher holds extra dispatcher.conf lines (TOML), appended.
	Dispatcher string
	// StateDir is dispatcher.conf's state_dir; "" = DIR/state.
	StateDir string
	// Tags, when set, gives agent i (0-based, in the order of
	// Fleet.Hosts) the tags its agent.conf holds in [tags]: what it
	// publishes on GET /capabilities. They are not written into its
	// registry record: "dispatcher discover" brings them there, as it does
	// for a real fleet. nil or an empty map: no tags.
	Tags func(i int, host string) map[string]string
	// Scripts, when set, gives agent i allowlist entries of its own,
	// script name → absolute path. Such an agent gets its own
	// scripts.conf (in its Agent.Dir): the shared entries, where one of
	// the same name is replaced, and these. nil or an empty map: the
	// agent uses Fleet.Scripts.
	Scripts func(i int, host string) map[string]string
}

// Fleet is a running fleet.
type Fleet struct {
	Dir            string
	DispatcherConf string   // DIR/etc/dispatcher.conf
	Scripts        string   // DIR/scripts.conf, the allowlist every agent uses
	StateDir       string   // the dispatcher's state_dir: Options.StateDir or DIR/state
	Hosts          []string // the agents' names, in order

	ca     *pki.CA
	caPEM  []byte
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closes []func()
}

// Agent is one provisioned agent.
type Agent struct {
	Host   string
	Dir    string // agent.key, agent.crt, agent.conf
	Config string // DIR/agent.conf
	Addr   string // 127.0.0.1:PORT
}

// Scripts every agent allows.
const (
	ScriptNoop = "noop"
	ScriptEcho = "echo"
	// NoopScripts is how many more no-op scripts there are, noop-1 …
	// noop-NoopScripts, for concurrent runs on one agent.
	NoopScripts = 16
)

// Start writes the dispatcher's side and starts o.N agents. It returns
// once every agent listens. Close stops them.
func Start(ctx context.Context, o Options) (*Fleet, error) {
	if o.Prefix == "" {
		o.Prefix = "sim"
	}
	if o.AgentLog == nil {
		o.AgentLog = io.Discard
	}
	f, err := setup(o)
	if err != nil {
		return nil, err
	}
	ctx, f.cancel = context.WithCancel(ctx)
	f.Hosts = make([]string, o.N)
	for i := range f.Hosts {
		f.Hosts[i] = fmt.Sprintf("%s-%05d", o.Prefix, i+1)
	}
	var mu sync.Mutex
	var firstErr error
	jobs := make(chan int)
	var wg sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range jobs {
				closeLog, err := f.serveOne(ctx, i, o)
				mu.Lock()
				if err != nil && firstErr == nil {
					firstErr = err
				}
				if closeLog != nil {
					f.closes = append(f.closes, closeLog)
				}
				mu.Unlock()
			}
		}()
	}
	for i := range f.Hosts {
		jobs <- i
	}
	close(jobs)
	wg.Wait()
	if firstErr != nil {
		f.Close()
		return nil, firstErr
	}
	return f, nil
}

// setup makes the CA, the dispatcher certificate, dispatcher.conf and the
// shared allowlist.
func setup(o Options) (*Fleet, error) {
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return nil, err
	}
	f := &Fleet{Dir: dir, DispatcherConf: filepath.Join(dir, "etc", "dispatcher.conf"), Scripts: filepath.Join(dir, "scripts.conf"),
		StateDir: o.StateDir}
	if f.StateDir == "" {
		f.StateDir = filepath.Join(dir, "state")
	}
	for _, d := range []string{filepath.Join(dir, "etc"), filepath.Join(dir, "agents"), filepath.Join(f.StateDir, "agents")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
	}
	f.ca, err = pki.NewCA(pki.Options{}, "fleetsim CA")
	if err != nil {
		return nil, err
	}
	f.caPEM = pki.CertPEM(f.ca.Cert)
	caKey, err := pki.MarshalKeyPEM(f.ca.Key)
	if err != nil {
		return nil, err
	}
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		return nil, err
	}
	cert, err := f.ca.IssueDispatcher(pki.Options{}, key.Public(), 365, nil)
	if err != nil {
		return nil, err
	}
	keyPEM, err := pki.MarshalKeyPEM(key)
	if err != nil {
		return nil, err
	}
	logTo := o.DispatcherLog
	if logTo == "" {
		logTo = filepath.Join(dir, "dispatcher.log")
	}
	etc := filepath.Join(dir, "etc")
	// The agents' names do not resolve: resolve = "registry" dials their
	// registered addresses without a DNS query per host per call.
	conf := fmt.Sprintf("ca = %q\nca_key = %q\ncert = %q\nkey = %q\nstate_dir = %q\nlog = %q\nresolve = \"registry\"\n%s",
		filepath.Join(etc, "ca.crt"), filepath.Join(etc, "ca.key"), filepath.Join(etc, "dispatcher.crt"),
		filepath.Join(etc, "dispatcher.key"), f.StateDir, logTo, o.Dispatcher)
	scripts, err := allowlist(nil)
	if err != nil {
		return nil, err
	}
	for _, w := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{filepath.Join(etc, "ca.crt"), f.caPEM, 0o644},
		{filepath.Join(etc, "ca.key"), caKey, 0o600},
		{filepath.Join(etc, "dispatcher.crt"), pki.CertPEM(cert), 0o644},
		{filepath.Join(etc, "dispatcher.key"), keyPEM, 0o600},
		{f.DispatcherConf, []byte(conf), 0o644},
		{f.Scripts, scripts, 0o644},
	} {
		if err := os.WriteFile(w.name, w.data, w.mode); err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
	}
	return f, nil
}

// sharedScripts is the allowlist every agent has, in the order written.
func sharedScripts() [][2]string {
	s := [][2]string{{ScriptNoop, "/bin/true"}, {ScriptEcho, "/bin/echo"}}
	for i := 1; i <= NoopScripts; i++ {
		s = append(s, [2]string{fmt.Sprintf("%s-%d", ScriptNoop, i), "/bin/true"})
	}
	return s
}

// allowlist is the scripts.conf of the shared entries with extra's in
// place of those of the same name, then the other extra entries by name.
func allowlist(extra map[string]string) ([]byte, error) {
	var b strings.Builder
	shared := make(map[string]bool)
	for _, e := range sharedScripts() {
		shared[e[0]] = true
		if p, ok := extra[e[0]]; ok {
			e[1] = p
		}
		fmt.Fprintf(&b, "%s = %s\n", e[0], tomlString(e[1]))
	}
	for _, name := range slices.Sorted(maps.Keys(extra)) {
		switch p := extra[name]; {
		case !exec.ValidName(name):
			return nil, fmt.Errorf("script name %q: want 1-64 letters, digits, '_' or '-'", name)
		case !filepath.IsAbs(p):
			return nil, fmt.Errorf("script %s: path %q is not absolute", name, p)
		case !shared[name]:
			fmt.Fprintf(&b, "%s = %s\n", name, tomlString(p))
		}
	}
	return []byte(b.String()), nil
}

// tomlString quotes s as a TOML basic string.
func tomlString(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20, r == 0x7f:
			fmt.Fprintf(&b, `\u%04X`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// serveOne provisions agent i on a fresh 127.0.0.1 port and starts its
// server.
func (f *Fleet) serveOne(ctx context.Context, i int, o Options) (func(), error) {
	host := f.Hosts[i]
	var tags, extra map[string]string
	if o.Tags != nil {
		tags = o.Tags(i, host)
	}
	if o.Scripts != nil {
		extra = o.Scripts(i, host)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("fleet: listen for %s: %w (raise the open files limit, ulimit -n)", host, err)
	}
	a, err := f.provision(host, ln.Addr().(*net.TCPAddr).Port, tags)
	if err != nil {
		ln.Close()
		return nil, err
	}
	scripts := f.Scripts
	if len(extra) > 0 {
		data, err := allowlist(extra)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("fleet: agent %s: %w", host, err)
		}
		scripts = filepath.Join(a.Dir, "scripts.conf")
		if err := os.WriteFile(scripts, data, 0o644); err != nil {
			ln.Close()
			return nil, fmt.Errorf("fleet: %w", err)
		}
	}
	srv, closeLog, err := agent.Open(a.Config, scripts, o.AgentLog)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("fleet: agent %s: %w", host, err)
	}
	f.wg.Add(1)
	go func() {
		defer f.wg.Done()
		_ = srv.Serve(ctx, ln) // ends with ctx; an error here is a dead agent, which the runs report
	}()
	return closeLog, nil
}

// Provision writes what pairing would leave for host on the agent
// (a key, a certificate from the fleet's CA, an agent.conf serving on
// 127.0.0.1:port) and on the dispatcher (a registry record with that
// address and the key's fingerprint). It starts nothing: Start serves the
// fleet's agents in this process, and the benchmark runs one agent as a
// process of the real binary with Agent.Config.
func (f *Fleet) Provision(host string, port int) (Agent, error) {
	return f.provision(host, port, nil)
}

// provision is Provision with tags for agent.conf's [tags].
func (f *Fleet) provision(host string, port int, tags map[string]string) (Agent, error) {
	a := Agent{Host: host, Dir: filepath.Join(f.Dir, "agents", host), Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port))}
	a.Config = filepath.Join(a.Dir, "agent.conf")
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		return a, err
	}
	csrPEM, err := pki.CreateCSR(pki.Options{}, key, host)
	if err != nil {
		return a, err
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		return a, err
	}
	cert, err := f.ca.SignAgentCSR(pki.Options{}, csr, host, 365)
	if err != nil {
		return a, err
	}
	keyPEM, err := pki.MarshalKeyPEM(key)
	if err != nil {
		return a, err
	}
	fp, err := pki.Fingerprint(key.Public())
	if err != nil {
		return a, err
	}
	conf := fmt.Sprintf("hostname = %q\nbind = \"127.0.0.1\"\nport = %d\ncert = %q\nkey = %q\nca = %q\n"+
		"revoked_serials = %q\ndispatcher_serial_path = %q\nlog = \"stderr\"\n",
		host, port, filepath.Join(a.Dir, "agent.crt"), filepath.Join(a.Dir, "agent.key"), filepath.Join(f.Dir, "etc", "ca.crt"),
		filepath.Join(a.Dir, "revoked-serials"), filepath.Join(a.Dir, "dispatcher-serial"))
	if len(tags) > 0 { // a table ends the top-level keys: it comes last
		conf += "\n[tags]\n"
		for _, k := range slices.Sorted(maps.Keys(tags)) {
			conf += tomlString(k) + " = " + tomlString(tags[k]) + "\n"
		}
	}
	record, err := json.Marshal(map[string]any{
		"hostname": host, "ip": "127.0.0.1", "port": port,
		"paired": time.Now().UTC().Format(time.RFC3339), "expiry": pki.FormatOpenSSLTime(cert.NotAfter),
		"key_fingerprint": fp, "serial": pki.FormatSerial(cert.SerialNumber),
	})
	if err != nil {
		return a, err
	}
	if err := os.MkdirAll(a.Dir, 0o755); err != nil {
		return a, fmt.Errorf("fleet: %w", err)
	}
	for _, w := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{filepath.Join(a.Dir, "agent.key"), keyPEM, 0o600},
		{filepath.Join(a.Dir, "agent.crt"), pki.CertPEM(cert), 0o644},
		{a.Config, []byte(conf), 0o644},
		{filepath.Join(f.StateDir, "agents", host+".json"), record, 0o644},
	} {
		if err := os.WriteFile(w.name, w.data, w.mode); err != nil {
			return a, fmt.Errorf("fleet: %w", err)
		}
	}
	return a, nil
}

// Close stops every agent (they drain as on SIGTERM) and waits for them.
func (f *Fleet) Close() {
	if f.cancel != nil {
		f.cancel()
	}
	f.wg.Wait()
	for _, c := range f.closes {
		c()
	}
}
