package main

import (
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Targets of issue 10 on a 2-core machine, loopback. Sizes are in the
// targets' megabytes (10^6 bytes); tables show MiB beside them.
const (
	targetPing1000    = time.Second
	targetRun1000     = 2 * time.Second
	targetRSS10000    = 300_000_000 // dispatcher peak RSS at 10,000 agents
	targetLatencySlop = 500 * time.Microsecond
	targetAPIRuns     = 1000.0     // POST /run per second
	targetIdleRSS     = 15_000_000 // idle agent
	targetRSSGrowth   = 5_000_000  // agent, after leakRuns runs
	targetBinary      = 25_000_000

	mb     = 1_000_000.0
	mib    = 1024 * 1024.0
	kib    = int64(1024) // rusage and /proc count in KiB
	dashes = "–"
)

type machine struct {
	cpus                 int
	model, kernel, goVer string
	commit, date, binary string
	binarySize           int64
}

func describeMachine(bin string) machine {
	m := machine{cpus: runtime.NumCPU(), goVer: runtime.Version(), date: time.Now().UTC().Format("2006-01-02 15:04 UTC"), binary: bin}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.model = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.kernel = strings.TrimSpace(string(b))
	}
	m.commit = "unknown"
	if out, err := exec.Command("git", "rev-parse", "--short=12", "HEAD").Output(); err == nil {
		m.commit = strings.TrimSpace(string(out))
		if err := exec.Command("git", "diff", "--quiet", "HEAD").Run(); err != nil {
			m.commit += " (with uncommitted changes)"
		}
	}
	if fi, err := os.Stat(bin); err == nil {
		m.binarySize = fi.Size()
	}
	return m
}

type report struct {
	machine machine
	fanout  []fanoutRow
	agent   *agentResult
	api     *apiResult
	pairing *pairingResult
	elapsed time.Duration

	selfPeakKB int64 // this process's peak RSS: a floor under a child's rusage peak
}

func wallOf(s sample) time.Duration      { return s.wall }
func cpuOfSample(s sample) time.Duration { return s.cpu }
func rssOf(s sample) int64               { return s.rssKB }
func fleetOf(s sample) time.Duration     { return s.fleetCPU }

// missesFanout says whether a fan-out row misses a target.
func missesFanout(r fanoutRow) bool {
	wall, rss := median(r.samples, wallOf), median(r.samples, rssOf)*kib
	switch {
	case r.n == 1000 && r.op == "ping":
		return wall > targetPing1000
	case r.n == 1000 && r.op == "run noop":
		return wall > targetRun1000
	case r.n == 10000:
		return rss > targetRSS10000
	}
	return false
}

func (a *agentResult) p50s() (run, floor time.Duration) {
	return median(a.rounds, func(r latencyRound) time.Duration { return r.runP50 }),
		median(a.rounds, func(r latencyRound) time.Duration { return r.floorP50 })
}

func (a *agentResult) missesLatency() bool {
	run, floor := a.p50s()
	return run > 2*floor+targetLatencySlop
}

func (a *apiResult) runRPS() float64 { return median(a.run, apiRound.rps) }
func (a *apiResult) missesRun() bool { return a.runRPS() < targetAPIRuns }

func status(missed bool, by string) string {
	if !missed {
		return "met"
	}
	return "**missed** by " + by
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2f s", d.Seconds()) }
func ms(d time.Duration) string   { return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond)) }
func size(b int64) string         { return fmt.Sprintf("%.1f MB (%.1f MiB)", float64(b)/mb, float64(b)/mib) }

func (r *report) markdown(o options) string {
	var b strings.Builder
	m := r.machine
	p := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	p("# Fleet benchmark results\n\n")
	p("Written by `make bench` (bench/cmd/fleetbench; docs/BENCHMARKS.md explains every row). ")
	p("Do not edit: run `make bench` again.\n\n")
	p("| | |\n|---|---|\n")
	p("| date | %s |\n| commit | %s |\n| machine | %d CPUs (`nproc`), %s, Linux %s |\n| Go | %s |\n| run time | %s |\n",
		m.date, m.commit, m.cpus, m.model, m.kernel, m.goVer, r.elapsed.Round(time.Second))
	p("| repetitions | %d measured per row after one warm-up; medians, min%smax |\n\n", o.reps, dashes)

	p("## Targets\n\n| target | measured | status |\n|---|---|---|\n")
	for _, row := range r.fanout {
		wall, rss := median(row.samples, wallOf), median(row.samples, rssOf)*kib
		switch {
		case row.n == 1000 && row.op == "ping":
			p("| ping 1,000 agents ≤ %s wall | %s | %s |\n", secs(targetPing1000), secs(wall), status(wall > targetPing1000, secs(wall-targetPing1000)))
		case row.n == 1000 && row.op == "run noop":
			p("| run noop on 1,000 agents ≤ %s wall | %s | %s |\n", secs(targetRun1000), secs(wall), status(wall > targetRun1000, secs(wall-targetRun1000)))
		case row.n == 10000:
			p("| %s 10,000 agents: dispatcher peak RSS ≤ 300 MB | %s | %s |\n", row.op, size(rss), status(rss > targetRSS10000, size(rss-targetRSS10000)))
		}
	}
	if a := r.agent; a != nil {
		run, floor := a.p50s()
		limit := 2*floor + targetLatencySlop
		p("| single-agent run noop p50 ≤ 2 × fork+exec p50 + 0.5 ms (= %s here) | %s | %s |\n", ms(limit), ms(run), status(run > limit, ms(run-limit)))
		p("| idle agent RSS ≤ 15 MB | %s | %s |\n", size(a.idle.total*kib), status(a.idle.total*kib > targetIdleRSS, size(a.idle.total*kib-targetIdleRSS)))
		growth := (a.after.total - a.idle.total) * kib
		p("| agent RSS growth after %d runs ≤ 5 MB | %s | %s |\n", a.leakRuns, size(growth), status(a.missesGrowth(), size(growth-targetRSSGrowth)))
	}
	if a := r.api; a != nil {
		rps, ram := a.runRPS(), ""
		if a.ramRun != nil {
			ram = fmt.Sprintf(" (%.0f/s with state_dir on tmpfs)", median(a.ramRun, apiRound.rps))
		}
		p("| API ≥ 1,000 POST /run noop per second against one agent | %.0f/s%s | %s |\n", rps, ram,
			status(rps < targetAPIRuns, fmt.Sprintf("%.0f/s (%.0f%%)", targetAPIRuns-rps, 100*(targetAPIRuns-rps)/targetAPIRuns)))
	}
	p("| static binary ≤ 25 MB | %s | %s |\n\n", size(m.binarySize), status(m.binarySize > targetBinary, size(m.binarySize-targetBinary)))
	if a := r.api; a != nil && a.missesRun() && a.ramRun != nil && median(a.ramRun, apiRound.rps) >= targetAPIRuns {
		p("Why the API misses: with `state_dir` on tmpfs the same API does %.0f runs/s, so the difference is the disk. ", median(a.ramRun, apiRound.rps))
		p("Every run the API serves is stored twice, as running and then as done, each an atomic write (a new temporary file, fsync, ")
		p("rename, fsync of the directory): %.0f of them a second here, with each run's lock file, log lines and the agent's ", 2*a.runRPS())
		p("fork+exec on the same two cores. The profile at the end shows the time in the kernel under `pki.WriteFileAtomic`.\n\n")
	}

	p("## Fan-out: the dispatcher CLI against a simulated fleet\n\n")
	p("`dispatcher ping|run HOST… [noop] --json`, default `parallel` (256); the fleet is N real agent servers in one process on 127.0.0.1, ")
	p("sharing the machine with the dispatcher. Dispatcher CPU and peak RSS are the process's own (rusage; the peak cannot read below ")
	p("the %.0f MiB the benchmark process that starts it held at the fork). Agents' CPU is the fleet process's and its scripts', ", float64(r.selfPeakKB*kib)/mib)
	p("during the same invocation.\n\n")
	p("| operation | agents | wall | dispatcher CPU | dispatcher peak RSS | agents' CPU |\n|---|---:|---|---|---|---|\n")
	for _, row := range r.fanout {
		wlo, whi := spread(row.samples, wallOf)
		clo, chi := spread(row.samples, cpuOfSample)
		rlo, rhi := spread(row.samples, rssOf)
		flo, fhi := spread(row.samples, fleetOf)
		p("| %s | %d | %s (%s%s%s) | %s (%s%s%s) | %.0f MiB (%.0f%s%.0f) | %s (%s%s%s) |\n", row.op, row.n,
			secs(median(row.samples, wallOf)), secs(wlo), dashes, secs(whi),
			secs(median(row.samples, cpuOfSample)), secs(clo), dashes, secs(chi),
			float64(median(row.samples, rssOf)*kib)/mib, float64(rlo*kib)/mib, dashes, float64(rhi*kib)/mib,
			secs(median(row.samples, fleetOf)), secs(flo), dashes, secs(fhi))
	}
	p("\n")

	if a := r.agent; a != nil {
		run, floor := a.p50s()
		p("## Single agent\n\n")
		p("An agent process of the real binary (`dispatcher agent serve`). Latency: %d sequential `run noop` over one warm connection ", o.latencyRuns)
		p("with the dispatcher's client (wire.Client), beside %d bare fork+exec of /bin/true by the benchmark process in the same round.\n\n", o.latencyRuns)
		p("| | p50 | p99 |\n|---|---|---|\n")
		lat := func(name string, f50, f99 func(latencyRound) time.Duration) {
			lo50, hi50 := spread(a.rounds, f50)
			lo99, hi99 := spread(a.rounds, f99)
			p("| %s | %s (%s%s%s) | %s (%s%s%s) |\n", name, ms(median(a.rounds, f50)), ms(lo50), dashes, ms(hi50), ms(median(a.rounds, f99)), ms(lo99), dashes, ms(hi99))
		}
		lat("run noop on the agent", func(r latencyRound) time.Duration { return r.runP50 }, func(r latencyRound) time.Duration { return r.runP99 })
		lat("fork+exec /bin/true (floor)", func(r latencyRound) time.Duration { return r.floorP50 }, func(r latencyRound) time.Duration { return r.floorP99 })
		p("| ratio run / floor | %.2f× | |\n\n", float64(run)/float64(floor))
		p("| agent memory | RSS | anonymous (heap, stacks) | file (the binary's touched pages) |\n|---|---|---|---|\n")
		p("| idle (started, one ping, one run) | %s | %s | %s |\n", size(a.idle.total*kib), size(a.idle.anon*kib), size(a.idle.file*kib))
		p("| after %d more runs (4 at a time) | %s | %s | %s |\n\n", a.leakRuns, size(a.after.total*kib), size(a.after.anon*kib), size(a.after.file*kib))
	}
	if a := r.api; a != nil {
		p("## API\n\n")
		p("The API process of the real binary (`dispatcher api`, plain HTTP on 127.0.0.1, `api_auth_default = \"allow\"`, no hook) in front of ")
		p("one agent process. %d clients, each on its own kept-alive connection and with its own script name (noop-1 … noop-%d: runs of one ", a.clients, min(a.clients, 16))
		p("host:script are serialised by the lock by design); each round %s for /run. Every answer must be a 200 and every run ok; ", o.apiDuration)
		p("every run is stored as the API always does: twice (running, then done), each an atomic write with fsync. ")
		p("The tmpfs row is the same with state_dir on /dev/shm: the API's own cost, without the disk.\n\n")
		p("| endpoint | requests/s | p50 | p99 |\n|---|---|---|---|\n")
		row := func(name string, rounds []apiRound) {
			lo, hi := spread(rounds, apiRound.rps)
			p("| %s | %.0f/s (%.0f/s%s%.0f/s) | %s | %s |\n", name, median(rounds, apiRound.rps), lo, dashes, hi,
				ms(median(rounds, func(r apiRound) time.Duration { return r.p50 })), ms(median(rounds, func(r apiRound) time.Duration { return r.p99 })))
		}
		row("POST /run noop", a.run)
		if a.ramRun != nil {
			row("POST /run noop, state_dir on tmpfs", a.ramRun)
		}
		row("GET /health", a.health)
		p("\n")
	}
	if pr := r.pairing; pr != nil {
		p("## Pairing\n\n")
		p("%d agents enrolled through the real exchange (`dispatcher agent request-pairing --background`, at most 8 pending), ", pr.Agents)
		p("approved by a script loop of `dispatcher list-requests --json` and `dispatcher approve`.\n\n")
		p("| agents | time | enrolled per minute |\n|---|---|---|\n| %d | %s | %.0f |\n\n", pr.Agents, secs(pr.Elapsed), pr.PerMinute)
	}
	p("## Binary\n\n| | |\n|---|---|\n| size of `%s` (static, -trimpath -s -w) | %s |\n\n", "dispatcher", size(m.binarySize))

	var profiles []string
	for _, row := range r.fanout {
		if row.profile != "" {
			profiles = append(profiles, fmt.Sprintf("### %s to %d agents (the dispatcher process)\n\n```\n%s```\n", row.op, row.n, row.profile))
		}
	}
	if r.agent != nil && r.agent.profile != "" {
		profiles = append(profiles, fmt.Sprintf("### Single agent (%s)\n\n```\n%s```\n", r.agent.profiledFor, r.agent.profile))
	}
	if r.api != nil && r.api.profile != "" {
		profiles = append(profiles, fmt.Sprintf("### API (%s)\n\n```\n%s```\n", r.api.profiledFor, r.api.profile))
	}
	if len(profiles) > 0 {
		p("## Profiles of the rows that miss\n\n%s", strings.Join(profiles, "\n"))
	} else if o.profBin == "" {
		p("No profiles: run with -profbin (make bench does) to profile rows that miss.\n")
	}
	return b.String()
}
