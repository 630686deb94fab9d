package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// pairingResult is the pairing throughput row of bench/RESULTS.md.
type pairingResult struct {
	Agents    int           // agents enrolled
	Elapsed   time.Duration // from the first request to the last agent.crt installed
	PerMinute float64       // Agents / Elapsed in minutes
}

// How the pairing benchmark paces itself.
const (
	// pairingWorkers is how many agents are in flight at once: under the
	// default pairing_max_queue (10), so no request is refused as "queue
	// full" while the approver catches up.
	pairingWorkers = 8
	// pairingPoll is how often a worker looks for its agent.crt and the
	// approver looks for new requests when it found none.
	pairingPoll = 5 * time.Millisecond
	// pairingAgentCap bounds one agent's enrolment (request and wait).
	pairingAgentCap = 2 * time.Minute
	// pairingWaitSeconds is request-pairing's --timeout: the background
	// waiter gives up with the cap rather than after its default 30 s.
	pairingWaitSeconds = "120"
	// pairingStopWait is how long pairing-mode and the background waiters
	// get to end after SIGTERM before they are killed.
	pairingStopWait = 5 * time.Second
)

// benchPairing enrols n agents through the real pairing exchange, approved
// by a script loop (list-requests + approve), and measures how many are
// enrolled per minute. bin is the path of the dispatcher binary; dir is an
// empty scratch directory it may fill.
func benchPairing(ctx context.Context, bin, dir string, n int) (res pairingResult, err error) {
	if n < 1 {
		return res, fmt.Errorf("pairing benchmark: need at least one agent, got %d", n)
	}
	if dir, err = filepath.Abs(dir); err != nil {
		return res, fmt.Errorf("pairing benchmark: %w", err)
	}
	conf := filepath.Join(dir, "dispatcher.conf")
	if err := pairWriteConf(conf, dir); err != nil {
		return res, err
	}
	if _, err := pairRun(ctx, bin, "setup-ca", "--config", conf); err != nil {
		return res, err
	}
	if _, err := pairRun(ctx, bin, "setup-dispatcher", "--yes", "--config", conf); err != nil {
		return res, err
	}
	port, err := freePort()
	if err != nil {
		return res, err
	}
	// On loopback only: the port was found free there, and nothing else
	// needs to reach this scratch CA.
	pm, err := startProc(bin, filepath.Join(dir, "pairing-mode.out"), net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), nil,
		"pairing-mode", "--config", conf, "--port", strconv.Itoa(port), "--bind", "127.0.0.1")
	if err != nil {
		return res, err
	}
	defer pm.stop()

	agents := make([]*pairAgent, n)
	want := make(map[string]bool, n)
	for i := range agents {
		a, err := newPairAgent(dir, i+1)
		if err != nil {
			return res, err
		}
		agents[i], want[a.host] = a, true
	}
	// Whatever happens, leave no background waiter behind (on success
	// they have ended or are about to).
	defer func() { err = errors.Join(err, pairStopWaiters(agents)) }()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		mu       sync.Mutex
		firstErr error
		last     time.Time
	)
	fail := func(err error) {
		mu.Lock()
		defer mu.Unlock()
		if firstErr == nil {
			firstErr = err
			cancel()
		}
	}

	approverCtx, stopApprover := context.WithCancel(ctx)
	approverDone := make(chan struct{})
	go func() {
		defer close(approverDone)
		if err := pairApproveLoop(approverCtx, bin, conf, want); err != nil {
			fail(err)
		}
	}()

	jobs := make(chan *pairAgent)
	var wg sync.WaitGroup
	start := time.Now()
	for range min(pairingWorkers, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for a := range jobs {
				seen, err := a.enrol(ctx, bin, port)
				if err != nil {
					fail(err)
					continue // the context is cancelled: no more jobs come
				}
				mu.Lock()
				if seen.After(last) {
					last = seen
				}
				mu.Unlock()
			}
		}()
	}
feed:
	for _, a := range agents {
		select {
		case jobs <- a:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	stopApprover()
	<-approverDone
	if firstErr != nil {
		return res, firstErr
	}
	if err := ctx.Err(); err != nil {
		return res, fmt.Errorf("pairing benchmark: %w", err)
	}

	res.Agents, res.Elapsed = n, last.Sub(start)
	res.PerMinute = float64(n) / res.Elapsed.Minutes()
	if err := pairCheckRegistered(ctx, bin, conf, want); err != nil {
		return res, err
	}
	return res, nil
}

// pairWriteConf writes a dispatcher.conf whose CA, certificate, state
// and log all live under dir. pairing_max_queue stays at its default (10).
func pairWriteConf(path, dir string) error {
	conf := fmt.Sprintf("ca = %q\ncert = %q\nkey = %q\nstate_dir = %q\nlog = %q\n",
		filepath.Join(dir, "pki", "ca.crt"), filepath.Join(dir, "pki", "dispatcher.crt"),
		filepath.Join(dir, "pki", "dispatcher.key"), filepath.Join(dir, "state"), filepath.Join(dir, "dispatcher.log"))
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return fmt.Errorf("write dispatcher.conf: %w", err)
	}
	return nil
}

// pairRun runs bin with args and returns its stdout; a failure's error
// names the command and carries its stderr (or its stdout when stderr is
// empty: with --json the error is printed there).
func pairRun(ctx context.Context, bin string, args ...string) ([]byte, error) {
	out, _, err := pairRunStderr(ctx, bin, args...)
	return out, err
}

// pairRunStderr is pairRun that also returns stderr.
func pairRunStderr(ctx context.Context, bin string, args ...string) (stdout, stderr []byte, err error) {
	var outBuf, errBuf bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &outBuf, &errBuf
	if err := cmd.Run(); err != nil {
		detail := strings.TrimSpace(errBuf.String())
		if detail == "" {
			detail = strings.TrimSpace(outBuf.String())
		}
		return outBuf.Bytes(), errBuf.Bytes(), fmt.Errorf("%s %s: %w: %s", filepath.Base(bin), strings.Join(args, " "), err, detail)
	}
	return outBuf.Bytes(), errBuf.Bytes(), nil
}

// pairAgent is one agent to enrol: a directory with its agent.conf, where
// request-pairing writes its key and its waiter the certificate.
type pairAgent struct {
	host string
	dir  string
	conf string // DIR/agent.conf
	crt  string // DIR/agent.crt, written last on approval
	// state is DIR/pairing.json: it exists from the request until the
	// background waiter concludes (stored, denied, timed out, cancelled).
	state string
	pid   int // the background waiter, as request-pairing printed it; 0 = not known
}

// newPairAgent writes the agent.conf of agent i (host pair-0000i) under
// dir, as testdata/script/pair.txtar's agent.conf.in.
func newPairAgent(dir string, i int) (*pairAgent, error) {
	host := fmt.Sprintf("pair-%05d", i)
	a := &pairAgent{host: host, dir: filepath.Join(dir, "agents", host)}
	a.conf = filepath.Join(a.dir, "agent.conf")
	a.crt = filepath.Join(a.dir, "agent.crt")
	a.state = filepath.Join(a.dir, "pairing.json")
	// The agent is never served: its port only goes into the registry.
	conf := fmt.Sprintf("rate_limit_disable = true\nhostname = %q\nbind = \"127.0.0.1\"\nport = %d\ncert = %q\nkey = %q\nca = %q\nlog = \"stderr\"\n",
		host, 7443, a.crt, filepath.Join(a.dir, "agent.key"), filepath.Join(a.dir, "ca.crt"))
	if err := os.MkdirAll(a.dir, 0o755); err != nil {
		return nil, fmt.Errorf("agent %s: %w", host, err)
	}
	if err := os.WriteFile(a.conf, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("agent %s: write agent.conf: %w", host, err)
	}
	return a, nil
}

// pairWaiterPID finds the pid in request-pairing --background's "Waiting in
// the background (pid N)" line on stderr.
var pairWaiterPID = regexp.MustCompile(`\(pid ([0-9]+)\)`)

// enrol runs request-pairing --background for a and waits until the
// background waiter has installed agent.crt. It returns when it saw it.
func (a *pairAgent) enrol(ctx context.Context, bin string, port int) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, pairingAgentCap)
	defer cancel()
	out, errOut, err := pairRunStderr(ctx, bin, "agent", "request-pairing", "--dispatcher", "127.0.0.1", "--port", strconv.Itoa(port),
		"--background", "--timeout", pairingWaitSeconds, "--config", a.conf)
	if m := pairWaiterPID.FindSubmatch(errOut); m != nil {
		a.pid, _ = strconv.Atoi(string(m[1]))
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("agent %s: %w", a.host, err)
	}
	reqid := strings.TrimSpace(string(out))
	t := time.NewTicker(pairingPoll)
	defer t.Stop()
	for {
		if pairExists(a.crt) {
			return time.Now(), nil
		}
		// The waiter writes agent.crt before it removes pairing.json: no
		// pairing.json and still no agent.crt means it gave up.
		if !pairExists(a.state) && !pairExists(a.crt) {
			return time.Time{}, fmt.Errorf("agent %s: pairing request %s ended without a certificate: %s",
				a.host, reqid, logTail(filepath.Join(a.dir, "pairing.log")))
		}
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("agent %s: no agent.crt for pairing request %s: %w", a.host, reqid, context.Cause(ctx))
		case <-t.C:
		}
	}
}

func pairExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// pairPendingRequest is what the approver reads of one request in
// dispatcher list-requests --json.
type pairPendingRequest struct {
	ReqID    string `json:"reqid"`
	Hostname string `json:"hostname"`
}

// pairApproveLoop approves, by list-requests --json and approve, every pending
// request for a host name in want, once each, until ctx ends. It returns
// nil when ctx ends and the first failure otherwise.
func pairApproveLoop(ctx context.Context, bin, conf string, want map[string]bool) error {
	approved := map[string]bool{}
	for {
		out, err := pairRun(ctx, bin, "list-requests", "--json", "--config", conf)
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			return fmt.Errorf("approver: %w", err)
		}
		var list struct {
			OK       bool                 `json:"ok"`
			Requests []pairPendingRequest `json:"requests"`
		}
		if err := json.Unmarshal(out, &list); err != nil {
			return fmt.Errorf("approver: list-requests --json: %w: %s", err, out)
		}
		if !list.OK {
			return fmt.Errorf("approver: list-requests --json: not ok: %s", out)
		}
		did := 0
		for _, r := range list.Requests {
			if approved[r.ReqID] || !want[r.Hostname] {
				continue
			}
			if _, err := pairRun(ctx, bin, "approve", r.ReqID, "--config", conf); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("approver: %w", err)
			}
			approved[r.ReqID] = true
			did++
		}
		if did > 0 {
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(pairingPoll):
		}
	}
}

// pairCheckRegistered makes sure list-agents --json lists every host in want.
func pairCheckRegistered(ctx context.Context, bin, conf string, want map[string]bool) error {
	out, err := pairRun(ctx, bin, "list-agents", "--json", "--config", conf)
	if err != nil {
		return err
	}
	var agents []struct {
		Hostname string `json:"hostname"`
	}
	if err := json.Unmarshal(out, &agents); err != nil {
		return fmt.Errorf("list-agents --json: %w: %s", err, out)
	}
	listed := make(map[string]bool, len(agents))
	for _, a := range agents {
		listed[a.Hostname] = true
	}
	var missing []string
	for h := range want {
		if !listed[h] {
			missing = append(missing, h)
		}
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		return fmt.Errorf("list-agents lists %d of %d enrolled agents; missing %d, e.g. %s", len(want)-len(missing), len(want),
			len(missing), missing[0])
	}
	return nil
}

// pairStopWaiters makes sure no background waiter ("request-pairing
// --resume DIR/pairing.json", in a session of its own) outlives the
// benchmark. A waiter whose agent.crt is not there gets SIGTERM: it
// abandons its request, removes its pending files and exits. The others
// stored their certificate and are finishing. Any waiter still running
// pairingStopWait later is killed, and named in the error.
func pairStopWaiters(agents []*pairAgent) error {
	var errs []error
	running := pairWaiters(agents)
	for _, a := range agents {
		if pids := running[a.host]; len(pids) > 0 && !pairExists(a.crt) {
			errs = append(errs, pairSignal(a, pids, syscall.SIGTERM))
		}
	}
	deadline := time.Now().Add(pairingStopWait)
	for len(running) > 0 && time.Now().Before(deadline) {
		time.Sleep(pairingPoll)
		running = pairWaiters(agents)
	}
	for _, a := range agents {
		if pids := running[a.host]; len(pids) > 0 {
			errs = append(errs, pairSignal(a, pids, syscall.SIGKILL),
				fmt.Errorf("agent %s: its background pairing process %v did not end within %v; killed", a.host, pids, pairingStopWait))
		}
	}
	return errors.Join(errs...)
}

// pairWaiters returns the background waiters still running, by host name.
// Where there is a /proc, they are the processes whose command line
// resumes the agent's pairing.json (a waiter killed before it could clean
// up leaves its pairing.json, but no process). Elsewhere it is the pid
// request-pairing printed, while pairing.json is there and the pid exists.
func pairWaiters(agents []*pairAgent) map[string][]int {
	byState, ok := pairResumers()
	out := map[string][]int{}
	for _, a := range agents {
		switch {
		case ok && len(byState[a.state]) > 0:
			out[a.host] = byState[a.state]
		case !ok && a.pid > 0 && pairExists(a.state):
			if p, err := os.FindProcess(a.pid); err == nil {
				if p.Signal(syscall.Signal(0)) == nil {
					out[a.host] = []int{a.pid}
				}
				_ = p.Release()
			}
		}
	}
	return out
}

// pairSignal sends sig to the background waiters pids of a. Where there is
// a /proc, a pid is signalled only if, once held, its command line still
// resumes a's pairing.json: never a process that reused the pid.
func pairSignal(a *pairAgent, pids []int, sig syscall.Signal) error {
	_, procOK := pairResumers()
	var errs []error
	for _, pid := range pids {
		p, err := os.FindProcess(pid) // a pidfd where the kernel has them: the pid cannot be reused under us
		if err != nil {
			continue
		}
		if !procOK || pairResumed(pid) == a.state {
			err = p.Signal(sig)
			if err != nil && !errors.Is(err, os.ErrProcessDone) && !errors.Is(err, syscall.ESRCH) {
				errs = append(errs, fmt.Errorf("agent %s: signal its background pairing process %d: %w", a.host, pid, err))
			}
		}
		_ = p.Release()
	}
	return errors.Join(errs...)
}

// pairResumers maps each state file a running "request-pairing --resume
// STATE" names to its pids, from /proc; ok is false where there is no
// /proc.
func pairResumers() (byState map[string][]int, ok bool) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, false
	}
	byState = map[string][]int{}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if st := pairResumed(pid); st != "" {
			byState[st] = append(byState[st], pid)
		}
	}
	return byState, true
}

// pairResumed returns the STATE of process pid's command line when it is
// "... --resume STATE ...", else "" (also when pid is gone, a zombie, or
// not ours to read).
func pairResumed(pid int) string {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
	if err != nil {
		return ""
	}
	args := strings.Split(string(b), "\x00")
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--resume" {
			return args[i+1]
		}
	}
	return ""
}
