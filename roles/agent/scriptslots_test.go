package agent

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// gateWorld is an agent with a "gate" script that marks it has started,
// appends a line to a count file, and waits for a release file; "touch"
// runs as usual. Its logs are observed.
type gateWorld struct {
	*world
	logs    *observer.ObservedLogs
	c       *http.Client
	started string // created by each gate run when it starts
	count   string // one line per gate run started
	release string // gate runs finish once it exists
}

// newGateWorld starts the agent with agent.conf's max_concurrent = 2 and
// gate's own limit written as gateLimit ("" leaves the key out).
func newGateWorld(t *testing.T, gateLimit string) *gateWorld {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	w := setupWorld(t, zap.New(core))
	g := &gateWorld{world: w, logs: logs,
		started: filepath.Join(w.dir, "started"), count: filepath.Join(w.dir, "count"), release: filepath.Join(w.dir, "release")}
	conf := filepath.Join(w.dir, "agent.conf")
	data, err := os.ReadFile(conf)
	if err != nil {
		t.Fatal(err)
	}
	write(t, conf, string(data)+"max_concurrent = 2\n", 0o640)
	write(t, filepath.Join(w.dir, "bin", "gate"), fmt.Sprintf(`#!/bin/sh
echo run >> %[1]q
touch %[2]q
i=0
while [ ! -e %[3]q ] && [ $i -lt 200 ]; do sleep 0.05; i=$((i+1)); done
echo released
`, g.count, g.started, g.release), 0o755)
	g.setLimit(gateLimit)
	if err := w.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	w.start()
	g.c = w.client(w.ca.Dispatcher(t))
	g.c.Timeout = 30 * time.Second
	return g
}

// setLimit rewrites scripts.conf with gate's max_concurrent set to limit
// ("" = the key left out); the caller reloads.
func (g *gateWorld) setLimit(limit string) {
	bin := filepath.Join(g.dir, "bin")
	conf := fmt.Sprintf("touch = %q\n[gate]\npath = %q\n", filepath.Join(bin, "touch"), filepath.Join(bin, "gate"))
	if limit != "" {
		conf += "max_concurrent = " + limit + "\n"
	}
	g.allow(conf)
}

// run posts a run of script and decodes the answer.
func (g *gateWorld) run(script string) wire.RunResponse {
	g.t.Helper()
	resp, body, err := g.post(g.c, wire.PathRun, wire.RunRequest{Script: script, ReqID: "r-" + script, Args: []string{}})
	if err != nil {
		g.t.Fatal(err)
	}
	var r wire.RunResponse
	if err := json.Unmarshal(body, &r); err != nil || resp.StatusCode != http.StatusOK {
		g.t.Fatalf("run %s: %d %s %v", script, resp.StatusCode, body, err)
	}
	return r
}

// hold starts a gate run that waits for the release file, and returns the
// channel its answer arrives on once it has started.
func (g *gateWorld) hold() <-chan wire.RunResponse {
	g.t.Helper()
	done := make(chan wire.RunResponse, 1)
	go func() {
		// Not g.run: t.Fatal must not be called from this goroutine.
		var r wire.RunResponse
		_, body, err := g.post(g.c, wire.PathRun, wire.RunRequest{Script: "gate", ReqID: "held", Args: []string{}})
		if err == nil {
			err = json.Unmarshal(body, &r)
		}
		if err != nil {
			r = wire.RunResponse{Exit: -2, Error: err.Error()}
		}
		done <- r
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if _, err := os.Stat(g.started); err == nil {
			return done
		}
		select {
		case r := <-done:
			g.t.Fatalf("the held gate run ended before it started: %+v", r)
		default:
		}
		if time.Now().After(deadline) {
			g.t.Fatal("the held gate run did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// finish releases the held run and checks it succeeded. The release file
// stays: later gate runs finish at once.
func (g *gateWorld) finish(done <-chan wire.RunResponse) {
	g.t.Helper()
	write(g.t, g.release, "", 0o644)
	if r := <-done; r.Exit != 0 || r.Stdout != "released\n" {
		g.t.Errorf("held gate run: %+v, want exit 0 and released", r)
	}
}

// runs is how many gate runs have started.
func (g *gateWorld) runs() int {
	g.t.Helper()
	data, err := os.ReadFile(g.count)
	if err != nil {
		g.t.Fatal(err)
	}
	return strings.Count(string(data), "\n")
}

// With max_concurrent = 1 a second run of the script while one is in
// flight is refused at once; another script still runs (so the refusal gave
// its global slot back: agent.conf allows only 2), and once the first run
// ends the script runs again.
func TestScriptMaxConcurrent(t *testing.T) {
	g := newGateWorld(t, "1")
	done := g.hold()

	start := time.Now()
	r := g.run("gate")
	const want = "busy: script gate already has 1 run in progress (max_concurrent = 1 in scripts.conf); try again when it finishes"
	if r.Exit != -1 || r.Error != want || r.Script != "gate" || r.ReqID != "r-gate" {
		t.Errorf("second gate run: %+v, want exit -1 and error %q", r, want)
	}
	if !strings.HasPrefix(r.Error, "busy") {
		t.Errorf("refusal %q does not start with busy", r.Error)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("the refusal took %v: it waited instead of refusing at once", d)
	}
	if n := g.runs(); n != 1 {
		t.Errorf("gate started %d times while limited to 1", n)
	}
	for i := range 3 { // each after a refusal's global slot must be free again
		if r := g.run("gate"); r.Exit != -1 || !strings.HasPrefix(r.Error, "busy") {
			t.Errorf("gate run %d while held: %+v", i+3, r)
		}
		if r := g.run("touch"); r.Exit != 0 || r.Stdout != "touched\n" {
			t.Errorf("another script while gate is held: %+v, want it to run", r)
		}
	}

	var refusals []observer.LoggedEntry
	for _, e := range g.logs.FilterMessage(logging.ActionRun).All() {
		if e.Level == zapcore.WarnLevel {
			refusals = append(refusals, e)
		}
	}
	if len(refusals) != 4 {
		t.Fatalf("logged %d refused runs, want 4", len(refusals))
	}
	m := refusals[0].ContextMap()
	if m["error"] != want || m["reason"] != "script at its max_concurrent" || m["exit"] != int64(-1) || m["script"] != "gate" {
		t.Errorf("refusal logged as %v", m)
	}

	g.finish(done)
	if r := g.run("gate"); r.Exit != 0 || r.Stdout != "released\n" {
		t.Errorf("gate after the held run ended: %+v, want it to run", r)
	}
	if n := g.runs(); n != 2 {
		t.Errorf("gate started %d times, want 2", n)
	}
}

// A reload that sets a limit counts the runs already in flight; a reload
// that lifts it lets the next run in at once.
func TestScriptMaxConcurrentReload(t *testing.T) {
	g := newGateWorld(t, "")
	done := g.hold()

	g.setLimit("1")
	if err := g.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	if r := g.run("gate"); r.Exit != -1 || !strings.HasPrefix(r.Error, "busy: script gate already has 1 run in progress") {
		t.Errorf("gate after a reload set max_concurrent = 1 while one run was in flight: %+v, want busy", r)
	}

	g.setLimit("0")
	if err := g.srv.Reload(); err != nil {
		t.Fatal(err)
	}
	second := make(chan wire.RunResponse, 1)
	go func() {
		_, body, err := g.post(g.c, wire.PathRun, wire.RunRequest{Script: "gate", Args: []string{}})
		var r wire.RunResponse
		if err == nil {
			err = json.Unmarshal(body, &r)
		}
		if err != nil {
			r.Error = err.Error()
		}
		second <- r
	}()
	deadline := time.Now().Add(20 * time.Second)
	for g.runs() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("with max_concurrent = 0 the second gate run did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}
	g.finish(done)
	if r := <-second; r.Exit != 0 {
		t.Errorf("second gate run without a limit: %+v", r)
	}
}

func TestScriptSlots(t *testing.T) {
	var s scriptSlots
	take := func(name string, limit int, wantOK bool, wantN int) {
		t.Helper()
		if ok, n := s.acquire(name, limit); ok != wantOK || n != wantN {
			t.Errorf("acquire(%q, %d) = %v, %d; want %v, %d", name, limit, ok, n, wantOK, wantN)
		}
	}
	take("a", 2, true, 0)
	take("a", 2, true, 1)
	take("a", 2, false, 2)
	take("b", 1, true, 0) // counted per name
	take("a", 0, true, 2) // no limit of its own: counted all the same
	take("a", 3, false, 3)
	s.release("a")
	take("a", 3, true, 2)
	for range 3 {
		s.release("a")
	}
	s.release("b")
	if len(s.running) != 0 {
		t.Errorf("after every release: %v, want nothing in flight", s.running)
	}
	take("a", 1, true, 0)
}

func TestScriptBusy(t *testing.T) {
	for _, tc := range []struct {
		n, limit int
		want     string
	}{
		{1, 1, "busy: script deploy already has 1 run in progress (max_concurrent = 1 in scripts.conf); try again when it finishes"},
		{3, 3, "busy: script deploy already has 3 runs in progress (max_concurrent = 3 in scripts.conf); try again when one finishes"},
		{2, 1, "busy: script deploy already has 2 runs in progress (max_concurrent = 1 in scripts.conf); try again when one finishes"},
	} {
		if got := scriptBusy("deploy", tc.n, tc.limit); got != tc.want {
			t.Errorf("scriptBusy(deploy, %d, %d) = %q, want %q", tc.n, tc.limit, got, tc.want)
		}
	}
}
