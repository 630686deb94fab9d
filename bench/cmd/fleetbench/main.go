// Command fleetbench is the fleet benchmark behind "make bench": it starts
// simulated fleets (bench/fleetsim), drives them with the real binary —
// the dispatcher CLI, the API, an agent process — measures from the
// outside and writes bench/RESULTS.md. docs/BENCHMARKS.md explains each
// row and how to read it.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

type options struct {
	bin, profBin, out string
	sizes             []int
	reps              int
	latencyRuns       int
	leakRuns          int
	apiClients        int
	apiDuration       time.Duration
	pairing           int
	keep              bool
}

func main() {
	var o options
	var sizes string
	flag.StringVar(&o.bin, "bin", "./dispatcher", "the dispatcher binary to measure (make build)")
	flag.StringVar(&o.profBin, "profbin", "", "the same binary built with -tags benchprofile: rows that miss their target are run once more under it for a CPU profile")
	flag.StringVar(&o.out, "out", "bench/RESULTS.md", "where to write the results")
	flag.StringVar(&sizes, "sizes", "10,100,1000,10000", "fleet sizes for the ping and run fan-outs")
	flag.IntVar(&o.reps, "reps", 5, "measured repetitions of each fan-out and latency round (medians of these)")
	flag.IntVar(&o.latencyRuns, "latency-runs", 1000, "sequential runs per single-agent latency round")
	flag.IntVar(&o.leakRuns, "leak-runs", 10000, "runs between the agent's idle RSS and its RSS after")
	flag.IntVar(&o.apiClients, "api-clients", 16, "concurrent API clients")
	flag.DurationVar(&o.apiDuration, "api-duration", 10*time.Second, "length of each API round")
	flag.IntVar(&o.pairing, "pairing", 50, "agents to enrol for the pairing throughput")
	flag.BoolVar(&o.keep, "keep", false, "keep the scratch directory")
	serveN := flag.Int("serve-fleet", 0, "(internal) serve a fleet of this many agents in -dir until stdin closes")
	serveDir := flag.String("dir", "", "(internal) the fleet's directory for -serve-fleet")
	flag.Parse()
	if *serveN > 0 {
		if err := serveFleet(*serveN, *serveDir); err != nil {
			fatalf("%v", err)
		}
		return
	}
	for _, s := range strings.Split(sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 {
			fatalf("-sizes: %q is not a fleet size", s)
		}
		o.sizes = append(o.sizes, n)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, o); err != nil {
		fatalf("%v", err)
	}
}

func fatalf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "fleetbench: "+format+"\n", args...)
	os.Exit(1)
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
}

func run(ctx context.Context, o options) error {
	var err error
	if o.bin, err = filepath.Abs(o.bin); err != nil {
		return err
	}
	if o.profBin != "" {
		if o.profBin, err = filepath.Abs(o.profBin); err != nil {
			return err
		}
	}
	if err := raiseFileLimit(o.sizes); err != nil {
		return err
	}
	scratch, err := os.MkdirTemp("", "fleetbench-")
	if err != nil {
		return err
	}
	if o.keep {
		logf("scratch directory %s (kept)", scratch)
	} else {
		defer os.RemoveAll(scratch)
	}
	start := time.Now()
	r := &report{machine: describeMachine(o.bin)}

	for _, n := range o.sizes {
		rows, err := benchFanout(ctx, o, filepath.Join(scratch, fmt.Sprintf("fleet-%d", n)), n)
		if err != nil {
			return fmt.Errorf("fan-out to %d agents: %w", n, err)
		}
		r.fanout = append(r.fanout, rows...)
	}
	if r.agent, err = benchAgent(ctx, o, filepath.Join(scratch, "agent")); err != nil {
		return fmt.Errorf("single agent: %w", err)
	}
	if r.api, err = benchAPI(ctx, o, filepath.Join(scratch, "api")); err != nil {
		return fmt.Errorf("api: %w", err)
	}
	if o.pairing > 0 {
		logf("pairing: enrolling %d agents", o.pairing)
		dir := filepath.Join(scratch, "pairing")
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return err
		}
		p, err := benchPairing(ctx, o.bin, dir, o.pairing)
		if err != nil {
			return fmt.Errorf("pairing: %w", err)
		}
		r.pairing = &p
	}
	r.elapsed = time.Since(start)
	r.selfPeakKB = selfPeakKB()
	text := r.markdown(o)
	if err := os.WriteFile(o.out, []byte(text), 0o644); err != nil {
		return err
	}
	fmt.Print(text)
	logf("wrote %s in %s", o.out, r.elapsed.Round(time.Second))
	return nil
}

// selfPeakKB is this process's peak RSS (VmHWM), 0 if unknown.
func selfPeakKB() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return n
		}
	}
	return 0
}

// raiseFileLimit makes room for the largest fleet: every simulated agent
// holds a listener, and each connection the dispatcher keeps (up to
// parallel in flight and 1,024 idle) an accepted socket; the dispatcher
// holds a lock file per host and those connections in its own process.
// Children inherit the raised limit.
func raiseFileLimit(sizes []int) error {
	largest := 0
	for _, n := range sizes {
		largest = max(largest, n)
	}
	need := uint64(largest + 4096)
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	if lim.Cur >= need {
		return nil
	}
	lim.Cur = need
	lim.Max = max(lim.Max, need)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("a fleet of %d agents needs %d open files: %w (raise ulimit -n, or run as root)", largest, need, err)
	}
	return nil
}
