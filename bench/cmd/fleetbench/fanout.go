package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/dispatcher-dev/dispatcher/bench/fleetsim"
)

// sample is one measured invocation of the dispatcher CLI.
type sample struct {
	wall     time.Duration
	cpu      time.Duration // the dispatcher process, user + system
	rssKB    int64         // its peak RSS
	fleetCPU time.Duration // the simulated agents and their scripts meanwhile
}

// fanoutRow is ping or run noop to n agents, repeated.
type fanoutRow struct {
	op      string // "ping" or "run noop"
	n       int
	samples []sample
	profile string // top of the CPU profile, for a row that missed its target
}

// benchFanout starts a fleet of n agents and measures ping and run noop to
// all of them: one warm-up invocation each (it creates the lock and
// contact files a long-lived fleet already has), then o.reps measured ones.
func benchFanout(ctx context.Context, o options, dir string, n int) ([]fanoutRow, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	t0 := time.Now()
	f, err := startFleet(n, dir)
	if err != nil {
		return nil, err
	}
	defer f.stop()
	logf("fleet of %d agents up in %s", n, time.Since(t0).Round(time.Millisecond))
	ops := []struct {
		name string
		args []string
	}{
		{"ping", append([]string{"ping"}, f.Hosts...)},
		{"run noop", append(append([]string{"run"}, f.Hosts...), fleetsim.ScriptNoop)},
	}
	var rows []fanoutRow
	for _, op := range ops {
		row := fanoutRow{op: op.name, n: n}
		for i := 0; i <= o.reps; i++ {
			s, err := invoke(ctx, o.bin, f, op.args, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", op.name, err)
			}
			if i > 0 { // the first is the warm-up
				row.samples = append(row.samples, s)
			}
		}
		logf("%s to %d agents: median %s", op.name, n, median(row.samples, func(s sample) time.Duration { return s.wall }).Round(time.Millisecond))
		if o.profBin != "" && missesFanout(row) {
			prof := filepath.Join(dir, strings.ReplaceAll(op.name, " ", "-")+".prof")
			if _, err := invoke(ctx, o.profBin, f, op.args, []string{"DISPATCHER_CPUPROFILE=" + prof}); err != nil {
				return nil, fmt.Errorf("%s under the profiling build: %w", op.name, err)
			}
			row.profile = pprofTop(o.profBin, prof)
		}
		rows = append(rows, row)
	}
	return rows, nil
}

// invoke runs the dispatcher CLI with --json and checks that every host
// answered correctly: a ping "ok", a run exit 0.
func invoke(ctx context.Context, bin string, f *fleetProc, args, env []string) (sample, error) {
	full := append([]string{args[0], "--json", "--config", f.Conf}, args[1:]...)
	cmd := exec.CommandContext(ctx, bin, full...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	fleetBefore := f.cpu()
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return sample{}, fmt.Errorf("%v\n%s", err, lastLines(stderr.String()))
	}
	ru := cmd.ProcessState.SysUsage().(*syscall.Rusage)
	s := sample{wall: wall, cpu: tv(ru.Utime) + tv(ru.Stime), rssKB: ru.Maxrss}
	s.fleetCPU = f.cpu() - fleetBefore
	var report struct {
		OK      bool `json:"ok"`
		Results []struct {
			Host   string `json:"host"`
			Status string `json:"status"`
			Exit   int    `json:"exit"`
			Error  string `json:"error"`
		} `json:"results"`
	}
	if err := json.Unmarshal(stdout.Bytes(), &report); err != nil {
		return s, fmt.Errorf("reading its --json output: %w", err)
	}
	if len(report.Results) != len(f.Hosts) {
		return s, fmt.Errorf("%d results for %d hosts", len(report.Results), len(f.Hosts))
	}
	for i, r := range report.Results {
		bad := r.Host != f.Hosts[i] || r.Error != "" || (args[0] == "ping" && r.Status != "ok") || (args[0] == "run" && r.Exit != 0)
		if bad {
			return s, fmt.Errorf("host %d: %+v, want %s answering correctly", i, r, f.Hosts[i])
		}
	}
	if !report.OK {
		return s, fmt.Errorf("ok false although every host answered")
	}
	return s, nil
}

func tv(t syscall.Timeval) time.Duration {
	return time.Duration(t.Sec)*time.Second + time.Duration(t.Usec)*time.Microsecond
}

func lastLines(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > 20 {
		lines = lines[len(lines)-20:]
	}
	return strings.Join(lines, "\n")
}

// pprofTop is the top of a CPU profile as text, or why there is none.
func pprofTop(bin, prof string) string {
	out, err := exec.Command("go", "tool", "pprof", "-top", "-cum", "-nodecount=30", bin, prof).CombinedOutput()
	if err != nil {
		return fmt.Sprintf("(no profile: go tool pprof: %v)\n%s", err, out)
	}
	return string(out)
}
