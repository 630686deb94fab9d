package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/dispatcher-dev/dispatcher/bench/fleetsim"
)

// apiRound is one timed round of concurrent requests.
type apiRound struct {
	requests int
	elapsed  time.Duration
	p50, p99 time.Duration
}

func (r apiRound) rps() float64 { return float64(r.requests) / r.elapsed.Seconds() }

type apiResult struct {
	clients     int
	run, health []apiRound
	ramRun      []apiRound // POST /run with state_dir on tmpfs; nil when there is none
	profile     string
	profiledFor string
}

// benchAPI measures the API process of the real binary in front of one
// agent process: POST /run noop and GET /health, o.apiClients clients at
// once, each round o.apiDuration long (health rounds a fifth of it). Every
// answer must be a 200 and every run ok. The API stores every run twice
// (running, then done), each an atomic write with fsync, so POST /run is
// measured a second time with state_dir on tmpfs (/dev/shm) when there is
// one: the API's own cost, without the disk.
func benchAPI(ctx context.Context, o options, dir string) (*apiResult, error) {
	res, err := benchAPIOn(ctx, o, filepath.Join(dir, "disk"), "")
	if err != nil {
		return nil, err
	}
	if fi, err := os.Stat("/dev/shm"); err != nil || !fi.IsDir() {
		return res, nil
	}
	state, err := os.MkdirTemp("/dev/shm", "fleetbench-state-")
	if err != nil {
		return res, nil // no tmpfs to use: the row is left out
	}
	defer os.RemoveAll(state)
	ram, err := benchAPIOn(ctx, options{bin: o.bin, reps: o.reps, apiClients: o.apiClients, apiDuration: o.apiDuration},
		filepath.Join(dir, "tmpfs"), state)
	if err != nil {
		return nil, fmt.Errorf("state_dir on tmpfs: %w", err)
	}
	res.ramRun = ram.run
	return res, nil
}

// benchAPIOn is one API measurement with the given state_dir ("" = on
// disk in dir).
func benchAPIOn(ctx context.Context, o options, dir, stateDir string) (*apiResult, error) {
	apiPort, err := freePort()
	if err != nil {
		return nil, err
	}
	s, err := newSingle(ctx, dir, "api-agent", fleetsim.Options{StateDir: stateDir,
		Dispatcher: fmt.Sprintf("api_port = %d\napi_bind = \"127.0.0.1\"\napi_auth_default = \"allow\"\n", apiPort)})
	if err != nil {
		return nil, err
	}
	defer s.fleet.Close()
	f, a := s.fleet, s.agent
	ag, err := s.start(o.bin, nil)
	if err != nil {
		return nil, err
	}
	defer ag.stop()
	apiAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(apiPort))
	start := func(bin string, env []string) (*proc, error) {
		return startProc(bin, filepath.Join(dir, "api.log"), apiAddr, env, "api", "--config", f.DispatcherConf)
	}
	api, err := start(o.bin, nil)
	if err != nil {
		return nil, err
	}
	defer func() { api.stop() }()

	base := "http://" + apiAddr
	runReq := func(client int) (string, string, []byte) {
		body := fmt.Sprintf(`{"hosts":[%q],"script":"%s-%d"}`, a.Host, fleetsim.ScriptNoop, client%fleetsim.NoopScripts+1)
		return http.MethodPost, base + "/run", []byte(body)
	}
	healthReq := func(int) (string, string, []byte) { return http.MethodGet, base + "/health", nil }
	runOK := []byte(`"ok":true`)

	res := &apiResult{clients: o.apiClients}
	logf("api (state_dir %s): warming up, then %d rounds of %s with %d clients", f.StateDir, o.reps, o.apiDuration, o.apiClients)
	if _, err := load(ctx, o.apiClients, time.Second, runReq, runOK); err != nil {
		return nil, err
	}
	for range o.reps {
		r, err := load(ctx, o.apiClients, o.apiDuration, runReq, runOK)
		if err != nil {
			return nil, fmt.Errorf("POST /run: %w", err)
		}
		res.run = append(res.run, r)
	}
	for range o.reps {
		if stateDir != "" {
			break // /health does not touch the state
		}
		r, err := load(ctx, o.apiClients, o.apiDuration/5, healthReq, nil)
		if err != nil {
			return nil, fmt.Errorf("GET /health: %w", err)
		}
		res.health = append(res.health, r)
	}
	if o.profBin != "" && res.missesRun() {
		api.stop()
		prof := filepath.Join(dir, "api.prof")
		if api, err = start(o.profBin, []string{"DISPATCHER_CPUPROFILE=" + prof}); err != nil {
			return nil, err
		}
		if _, err := load(ctx, o.apiClients, o.apiDuration, runReq, runOK); err != nil {
			return nil, err
		}
		api.stop()
		res.profile, res.profiledFor = pprofTop(o.profBin, prof), "the API process during one POST /run round"
	}
	return res, nil
}

// load sends requests from clients goroutines for d, each on its own
// kept-alive connection, and fails on the first answer that is not a 200
// (or, with want, does not contain it).
func load(ctx context.Context, clients int, d time.Duration, req func(client int) (method, url string, body []byte), want []byte) (apiRound, error) {
	tr := &http.Transport{MaxIdleConnsPerHost: clients, DisableCompression: true}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 30 * time.Second}
	var mu sync.Mutex
	var lat []time.Duration
	var firstErr error
	var wg sync.WaitGroup
	start := time.Now()
	deadline := start.Add(d)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			method, url, body := req(c)
			var mine []time.Duration
			var err error
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				if err = do(ctx, hc, method, url, body, want); err != nil {
					break
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	if firstErr == nil {
		firstErr = ctx.Err()
	}
	if firstErr != nil {
		return apiRound{}, firstErr
	}
	return apiRound{requests: len(lat), elapsed: elapsed, p50: percentile(lat, 50), p99: percentile(lat, 99)}, nil
}

func do(ctx context.Context, hc *http.Client, method, url string, body, want []byte) error {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	r, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	if body != nil {
		r.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(r)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || (want != nil && !bytes.Contains(b, want)) {
		return fmt.Errorf("%s %s: %s %s", method, url, resp.Status, bytes.TrimSpace(b))
	}
	return nil
}
