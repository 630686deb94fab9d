package main

import (
	"context"
	"crypto/x509"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/dispatcher-dev/dispatcher/bench/fleetsim"
	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// latencyRound is one round of sequential runs beside the floor.
type latencyRound struct {
	floorP50, floorP99 time.Duration // fork+exec of /bin/true by this process
	runP50, runP99     time.Duration // run noop on the agent, warm connection
}

type agentResult struct {
	rounds      []latencyRound
	idle        rss // after start, one ping and one run
	after       rss // after leakRuns more runs
	leakRuns    int
	profile     string
	profiledFor string
}

// benchAgent measures one agent process of the real binary: its idle RSS,
// its RSS after o.leakRuns runs, and the latency of run noop over one warm
// connection beside the bare fork+exec of /bin/true.
func benchAgent(ctx context.Context, o options, dir string) (*agentResult, error) {
	s, err := newSingle(ctx, dir, "bench-agent", fleetsim.Options{})
	if err != nil {
		return nil, err
	}
	defer s.fleet.Close()
	client, err := dispatcherClient(s.fleet)
	if err != nil {
		return nil, err
	}
	defer client.Close()
	target := wire.Target{Host: s.agent.Host, Addr: s.agent.Addr}
	start := s.start
	p, err := start(o.bin, nil)
	if err != nil {
		return nil, err
	}
	defer p.stop()

	res := &agentResult{leakRuns: o.leakRuns}
	// Idle means ready for work: a ping and a run have touched the code
	// paths (the binary's pages count in RSS once touched), so what grows
	// from here on is what the runs keep.
	if _, err := client.Ping(ctx, target, wire.PingRequest{ReqID: "bench-ping"}); err != nil {
		return nil, fmt.Errorf("ping: %w", err)
	}
	if err := runNoop(ctx, client, target, fleetsim.ScriptNoop); err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
		return nil, err
	}
	if res.idle, err = p.rss(); err != nil {
		return nil, err
	}
	logf("agent: idle RSS %d KiB; %d runs for the leak check", res.idle.total, o.leakRuns)
	if err := runMany(ctx, client, target, o.leakRuns, 4); err != nil {
		return nil, err
	}
	if err := sleepCtx(ctx, 500*time.Millisecond); err != nil {
		return nil, err
	}
	if res.after, err = p.rss(); err != nil {
		return nil, err
	}
	logf("agent: RSS %d KiB after %d runs; latency rounds", res.after.total, o.leakRuns)

	for range o.reps {
		r, err := latency(ctx, client, target, o.latencyRuns)
		if err != nil {
			return nil, err
		}
		res.rounds = append(res.rounds, r)
	}
	if o.profBin == "" || !res.missesLatency() && !res.missesGrowth() {
		return res, nil
	}
	// Once more under the profiling build: a CPU profile of a latency
	// round, or the live heap after the leak check's runs.
	p.stop()
	prof := filepath.Join(dir, "agent.prof")
	env, what := "DISPATCHER_CPUPROFILE=", "CPU of the agent process during one latency round"
	if !res.missesLatency() {
		env, what = "DISPATCHER_MEMPROFILE=", fmt.Sprintf("live heap of the agent process after %d runs, at exit", o.leakRuns)
	}
	pp, err := start(o.profBin, []string{env + prof})
	if err != nil {
		return nil, err
	}
	if res.missesLatency() {
		_, err = latency(ctx, client, target, o.latencyRuns)
	} else {
		err = runMany(ctx, client, target, o.leakRuns, 4)
	}
	pp.stop()
	if err != nil {
		return nil, err
	}
	res.profile, res.profiledFor = pprofTop(o.profBin, prof), what
	return res, nil
}

func (a *agentResult) missesGrowth() bool {
	return (a.after.total-a.idle.total)*kib > targetRSSGrowth
}

// single is the dispatcher's side of a fleet (fleetsim, no simulated
// agents) and one agent provisioned in it, run as a process of the real
// binary by start.
type single struct {
	fleet *fleetsim.Fleet
	agent fleetsim.Agent
	dir   string
}

// newSingle writes the fleet's files into dir and provisions host on a
// free port. The caller closes s.fleet.
func newSingle(ctx context.Context, dir, host string, fo fleetsim.Options) (*single, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	fo.Dir = dir
	f, err := fleetsim.Start(ctx, fo)
	if err != nil {
		return nil, err
	}
	port, err := freePort()
	if err == nil {
		var a fleetsim.Agent
		if a, err = f.Provision(host, port); err == nil {
			return &single{fleet: f, agent: a, dir: dir}, nil
		}
	}
	f.Close()
	return nil, err
}

// start runs the agent as "BIN agent serve" with env added, its output
// to DIR/agent.log, and returns once it listens.
func (s *single) start(bin string, env []string) (*proc, error) {
	return startProc(bin, filepath.Join(s.dir, "agent.log"), s.agent.Addr, env,
		"agent", "serve", "--config", s.agent.Config, "--allowlist", s.fleet.Scripts)
}

// dispatcherClient is the dispatcher's own client (one connection pool, as
// the CLI and the API use it) with the fleet's dispatcher certificate.
func dispatcherClient(f *fleetsim.Fleet) (*wire.Client, error) {
	etc := filepath.Join(f.Dir, "etc")
	cert, err := pki.LoadKeyPair(filepath.Join(etc, "dispatcher.crt"), filepath.Join(etc, "dispatcher.key"), pki.KeyModeOwner)
	if err != nil {
		return nil, err
	}
	caPEM, err := os.ReadFile(filepath.Join(etc, "ca.crt"))
	if err != nil {
		return nil, err
	}
	roots := x509.NewCertPool()
	if !roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("no certificate in %s", filepath.Join(etc, "ca.crt"))
	}
	return wire.NewClient(wire.ClientConfig{Cert: cert, Roots: roots}), nil
}

func runNoop(ctx context.Context, c *wire.Client, t wire.Target, script string) error {
	resp, err := c.Run(ctx, t, wire.RunRequest{Script: script, Args: []string{}, ReqID: "bench"}, nil)
	if err != nil {
		return err
	}
	if resp.Exit != 0 || resp.Error != "" {
		return fmt.Errorf("run %s: exit %d, error %q", script, resp.Exit, resp.Error)
	}
	return nil
}

// runMany runs noop n times on workers connections at once (scripts
// noop-1 …, so the host:script rule of the dispatcher would allow it).
func runMany(ctx context.Context, c *wire.Client, t wire.Target, n, workers int) error {
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			script := fleetsim.ScriptNoop + "-" + strconv.Itoa(w%fleetsim.NoopScripts+1)
			for i := w; i < n; i += workers {
				if err := runNoop(ctx, c, t, script); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// latency times n bare fork+execs of /bin/true, then n sequential runs of
// noop on the agent over the client's warm connection.
func latency(ctx context.Context, c *wire.Client, t wire.Target, n int) (latencyRound, error) {
	floor := make([]time.Duration, n)
	for i := range floor {
		start := time.Now()
		if err := exec.CommandContext(ctx, "/bin/true").Run(); err != nil {
			return latencyRound{}, fmt.Errorf("/bin/true: %w", err)
		}
		floor[i] = time.Since(start)
	}
	if err := runNoop(ctx, c, t, fleetsim.ScriptNoop); err != nil { // the connection is warm from here on
		return latencyRound{}, err
	}
	runs := make([]time.Duration, n)
	for i := range runs {
		start := time.Now()
		if err := runNoop(ctx, c, t, fleetsim.ScriptNoop); err != nil {
			return latencyRound{}, err
		}
		runs[i] = time.Since(start)
	}
	return latencyRound{floorP50: percentile(floor, 50), floorP99: percentile(floor, 99),
		runP50: percentile(runs, 50), runP99: percentile(runs, 99)}, nil
}
