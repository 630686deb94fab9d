package demo

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Agents is how many agents the demo pairs.
const Agents = 3

// Options configure a demo run.
type Options struct {
	Exe  string    // the dispatcher binary to run (os.Executable())
	Dir  string    // where to build the world; "" = a new temporary directory
	Keep bool      // leave the directory (and print its path) instead of removing it
	Out  io.Writer // the tour
}

// world is the state of one demo.
type world struct {
	o      Options
	dir    string
	conf   string
	procs  []*exec.Cmd
	logs   []*bytes.Buffer
	stdout io.Writer
}

// Run builds the world, runs the tour and tears everything down.
func Run(ctx context.Context, o Options) (err error) {
	w := &world{o: o, stdout: o.Out}
	w.dir = o.Dir
	if w.dir == "" {
		if w.dir, err = os.MkdirTemp("", "dispatcher-demo-"); err != nil {
			return fmt.Errorf("create demo directory: %w", err)
		}
	}
	defer func() {
		w.stopAll()
		if o.Keep {
			fmt.Fprintf(w.stdout, "\nThe demo world is kept in %s\n", w.dir)
			return
		}
		_ = os.RemoveAll(w.dir)
	}()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	return w.tour(ctx)
}

func (w *world) say(format string, args ...any) {
	fmt.Fprintf(w.stdout, "\n== "+format+"\n", args...)
}

func (w *world) path(parts ...string) string {
	return filepath.Join(append([]string{w.dir}, parts...)...)
}

func (w *world) tour(ctx context.Context) error {
	w.say("A throw-away world in %s", w.dir)
	pairPort, err := freePort()
	if err != nil {
		return err
	}
	w.conf = w.path("dispatcher", "dispatcher.conf")
	if err := writeFile(w.conf, fmt.Sprintf(dispatcherConf, w.path("dispatcher"), w.path("state"), pairPort), 0o640); err != nil {
		return err
	}

	w.say("1. The private CA and the dispatcher's identity")
	if _, err := w.cmd(ctx, "setup-ca", "--config", w.conf); err != nil {
		return err
	}
	if _, err := w.cmd(ctx, "setup-dispatcher", "--yes", "--dns-name", "localhost", "--config", w.conf); err != nil {
		return err
	}

	w.say("2. The pairing listener on 127.0.0.1:%d", pairPort)
	if err := w.start(ctx, "pairing-mode", "--config", w.conf); err != nil {
		return err
	}
	if err := waitPort(ctx, fmt.Sprintf("127.0.0.1:%d", pairPort)); err != nil {
		return fmt.Errorf("the pairing listener did not start: %w\n%s", err, w.logs[len(w.logs)-1])
	}

	hosts := make([]string, Agents)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("demo-%d", i+1)
		if err := w.pairAgent(ctx, hosts[i], pairPort); err != nil {
			return err
		}
	}

	w.say("4. The agents serve the dispatcher over mutual TLS")
	for _, h := range hosts {
		if err := w.start(ctx, "agent", "serve", "--config", w.path(h, "agent.conf"), "--allowlist", w.path(h, "scripts.conf")); err != nil {
			return err
		}
		port, _ := os.ReadFile(w.path(h, "port"))
		if err := waitPort(ctx, "127.0.0.1:"+string(port)); err != nil {
			return fmt.Errorf("agent %s did not start: %w\n%s", h, err, w.logs[len(w.logs)-1])
		}
	}

	w.say("5. Run a script on all three, with arguments (no shell on either side)")
	args := append(append([]string{"run"}, hosts...), "hello", "--config", w.conf, "--", "hello world", "$(not a command)")
	if _, err := w.cmd(ctx, args...); err != nil {
		return err
	}
	w.say("6. Ping them")
	if _, err := w.cmd(ctx, append(append([]string{"ping"}, hosts...), "--config", w.conf)...); err != nil {
		return err
	}
	w.say("7. Discover what they offer")
	if _, err := w.cmd(ctx, append(append([]string{"discover"}, hosts...), "--config", w.conf)...); err != nil {
		return err
	}
	w.say("Done: a CA, a dispatcher, %d paired agents, a run, a ping and a discovery.", Agents)
	return nil
}

// pairAgent writes an agent's config and pairs it: the agent asks in the
// background, the demo compares its code with the dispatcher's queue and
// approves by request id, as an orchestrator would.
func (w *world) pairAgent(ctx context.Context, host string, pairPort int) error {
	port, err := freePort()
	if err != nil {
		return err
	}
	dir := w.path(host)
	script := filepath.Join(dir, "scripts", "hello")
	if err := writeFile(script, helloScript, 0o755); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "agent.conf"), fmt.Sprintf(agentConf, host, port, dir, host), 0o640); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "scripts.conf"), fmt.Sprintf("[hello]\npath = %q\nenv = { AGENT = %q }\n", script, host), 0o644); err != nil {
		return err
	}
	if err := writeFile(filepath.Join(dir, "port"), strconv.Itoa(port), 0o644); err != nil {
		return err
	}

	w.say("3. Pair %s", host)
	out, stderr, err := w.run(ctx, "agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", strconv.Itoa(pairPort),
		"--background", "--timeout", "60", "--config", filepath.Join(dir, "agent.conf"))
	if err != nil {
		return err
	}
	reqid := strings.TrimSpace(out)
	agentCode := codeIn(stderr)
	queued, err := w.queuedCode(ctx, reqid)
	if err != nil {
		return err
	}
	fmt.Fprintf(w.stdout, "   agent shows code %s, dispatcher shows %s for request %s\n", agentCode, queued, reqid)
	if agentCode == "" || agentCode != queued {
		return fmt.Errorf("pairing codes differ for %s (agent %q, dispatcher %q): not approving", host, agentCode, queued)
	}
	if _, err := w.cmd(ctx, "approve", reqid, "--config", w.conf); err != nil {
		return err
	}
	// The agent's background process stores the certificate.
	deadline := time.Now().Add(30 * time.Second)
	for {
		c := exec.CommandContext(ctx, w.o.Exe, "agent", "pairing-status", "--config", filepath.Join(dir, "agent.conf"))
		if c.Run() == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not store its certificate within 30s", host)
		}
		time.Sleep(100 * time.Millisecond)
	}
	_, err = w.cmd(ctx, "agent", "pairing-status", "--config", filepath.Join(dir, "agent.conf"))
	return err
}

var codePattern = regexp.MustCompile(`(?i)code:?\s*([0-9]{6})`)

func codeIn(s string) string {
	if m := codePattern.FindStringSubmatch(s); m != nil {
		return m[1]
	}
	return ""
}

// queuedCode finds the code the dispatcher shows for reqid.
func (w *world) queuedCode(ctx context.Context, reqid string) (string, error) {
	out, _, err := w.run(ctx, "list-requests", "--json", "--config", w.conf)
	if err != nil {
		return "", err
	}
	var doc any
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return "", fmt.Errorf("list-requests --json: %w", err)
	}
	if code := findCode(doc, reqid); code != "" {
		return code, nil
	}
	return "", fmt.Errorf("request %s is not in the dispatcher's queue", reqid)
}

// findCode looks through list-requests' JSON for the request's code.
func findCode(v any, reqid string) string {
	switch t := v.(type) {
	case map[string]any:
		if t["reqid"] == reqid {
			if c, ok := t["code"].(string); ok {
				return c
			}
		}
		for _, x := range t {
			if c := findCode(x, reqid); c != "" {
				return c
			}
		}
	case []any:
		for _, x := range t {
			if c := findCode(x, reqid); c != "" {
				return c
			}
		}
	}
	return ""
}

// cmd prints the command line, runs it and shows its output.
func (w *world) cmd(ctx context.Context, args ...string) (string, error) {
	out, stderr, err := w.run(ctx, args...)
	fmt.Fprint(w.stdout, indent(out))
	if err != nil {
		fmt.Fprint(w.stdout, indent(stderr))
	}
	return out, err
}

// run runs the binary quietly and returns its output.
func (w *world) run(ctx context.Context, args ...string) (string, string, error) {
	fmt.Fprintf(w.stdout, "$ %s\n", display(args))
	c := exec.CommandContext(ctx, w.o.Exe, args...)
	var out, errb bytes.Buffer
	c.Stdout, c.Stderr = &out, &errb
	if err := c.Run(); err != nil {
		return out.String(), errb.String(), fmt.Errorf("%s: %w\n%s", display(args), err, errb.String())
	}
	return out.String(), errb.String(), nil
}

// start runs a long-lived process (listener, agent) until the demo ends.
func (w *world) start(ctx context.Context, args ...string) error {
	fmt.Fprintf(w.stdout, "$ %s &\n", display(args))
	c := exec.Command(w.o.Exe, args...)
	var logb bytes.Buffer
	c.Stdout, c.Stderr = &logb, &logb
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := c.Start(); err != nil {
		return fmt.Errorf("start %s: %w", display(args), err)
	}
	w.procs = append(w.procs, c)
	w.logs = append(w.logs, &logb)
	return nil
}

// stopAll stops every long-lived process: SIGTERM, then SIGKILL.
func (w *world) stopAll() {
	for _, c := range w.procs {
		_ = c.Process.Signal(syscall.SIGTERM)
	}
	for _, c := range w.procs {
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			_ = syscall.Kill(-c.Process.Pid, syscall.SIGKILL)
			<-done
		}
	}
}

func display(args []string) string {
	parts := []string{"dispatcher"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " $\"'`;|&()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func indent(s string) string {
	if s == "" {
		return ""
	}
	var b strings.Builder
	sc := bufio.NewScanner(strings.NewReader(s))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		b.WriteString("   " + sc.Text() + "\n")
	}
	return b.String()
}

func writeFile(path, data string, mode os.FileMode) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		return err
	}
	return os.Chmod(path, mode)
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

func waitPort(ctx context.Context, addr string) error {
	deadline := time.Now().Add(20 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			return errors.Join(err, ctx.Err())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

const dispatcherConf = `# demo dispatcher.conf
ca = "%[1]s/ca.crt"
cert = "%[1]s/dispatcher.crt"
key = "%[1]s/dispatcher.key"
state_dir = %[2]q
pairing_port = %[3]d
log = "stderr"
`

const agentConf = `# demo agent.conf
hostname = %[1]q
bind = "127.0.0.1"
port = %[2]d
cert = "%[3]s/agent.crt"
key = "%[3]s/agent.key"
ca = "%[3]s/ca.crt"
revoked_serials = "%[3]s/revoked-serials"
dispatcher_serial_path = "%[3]s/dispatcher-serial"
script_dirs = "%[3]s/scripts"
log = "stderr"
[tags]
role = "demo"
name = %[4]q
`

const helloScript = `#!/bin/sh
# The demo's script: prints where it runs and what it was given.
echo "hello from $AGENT, run by ${DISPATCHER_USERNAME:-someone}"
i=0
for a in "$@"; do i=$((i+1)); echo "  arg $i: $a"; done
`
