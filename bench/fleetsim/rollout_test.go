package fleetsim_test

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/bench/fleetsim"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// The rollout fleet: 20 agents node-00001 … node-00020. Host n (from 1)
// has role=web for n ≤ 12 and role=db after, env=prod when n is odd and
// env=stage when even, and dc=fra for n ≤ 5 only. Its deploy script is
// /bin/true, except on failingHost hosts, where it is a shell script that
// exits 1 (as /bin/false does) until the marker file exists.
const rolloutHosts = 20

var failingHost = map[int]bool{7: true, 8: true}

func rolloutTags(n int) map[string]string {
	tags := map[string]string{"role": "db", "env": "stage"}
	if n <= 12 {
		tags["role"] = "web"
	}
	if n%2 == 1 {
		tags["env"] = "prod"
	}
	if n <= 5 {
		tags["dc"] = "fra"
	}
	return tags
}

func nodeName(n int) string { return fmt.Sprintf("node-%05d", n) }

// nodes names hosts ns in the order given.
func nodes(ns ...int) []string {
	out := make([]string, len(ns))
	for i, n := range ns {
		out[i] = nodeName(n)
	}
	return out
}

// span is lo, lo+1, … hi.
func span(lo, hi int) []int {
	var out []int
	for n := lo; n <= hi; n++ {
		out = append(out, n)
	}
	return out
}

// cliRun is one run of the real binary.
type cliRun struct {
	stdout, stderr string
	exit           int
}

// rolloutCLI drives the real binary against the fleet.
type rolloutCLI struct {
	bin  string
	conf string
}

// run runs "dispatcher CMD --config CONF ARGS…".
func (d rolloutCLI) run(t *testing.T, args ...string) cliRun {
	t.Helper()
	cmd := exec.Command(d.bin, append([]string{args[0], "--config", d.conf}, args[1:]...)...)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("dispatcher %s: %v", strings.Join(args, " "), err)
	}
	return cliRun{stdout: stdout.String(), stderr: stderr.String(), exit: cmd.ProcessState.ExitCode()}
}

// json runs the command, checks its exit code and decodes its stdout
// into v.
func (d rolloutCLI) json(t *testing.T, v any, wantExit int, args ...string) cliRun {
	t.Helper()
	r := d.run(t, args...)
	if r.exit != wantExit {
		t.Fatalf("dispatcher %s: exit %d, want %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.exit, wantExit, r.stdout, r.stderr)
	}
	if err := json.Unmarshal([]byte(r.stdout), v); err != nil {
		t.Fatalf("dispatcher %s: %v\nstdout:\n%s", strings.Join(args, " "), err, r.stdout)
	}
	return r
}

// runResult is what the rollout tests read of one host's result.
type runResult struct {
	Host      string `json:"host"`
	Exit      int    `json:"exit"`
	Error     string `json:"error"`
	Attempted *bool  `json:"attempted"`
}

type batches struct {
	Size        int    `json:"size"`
	Count       int    `json:"count"`
	Current     int    `json:"current"`
	Failures    int    `json:"failures"`
	MaxFailures *int   `json:"max_failures"`
	FailFast    bool   `json:"fail_fast"`
	Stopped     string `json:"stopped"`
}

type runReport struct {
	OK      bool        `json:"ok"`
	ReqID   string      `json:"reqid"`
	Results []runResult `json:"results"`
	Batches *batches    `json:"batches"`
}

// outcome is a result as the rollout contract speaks of it.
type outcome struct {
	Host      string
	Attempted bool
	Exit      int
	Error     string // "not attempted: …" when it starts so, whatever the reason
}

func outcomes(rs []runResult) []outcome {
	out := make([]outcome, len(rs))
	for i, r := range rs {
		o := outcome{Host: r.Host, Attempted: r.Attempted == nil || *r.Attempted, Exit: r.Exit, Error: r.Error}
		if why, ok := strings.CutPrefix(r.Error, "not attempted: "); ok && why != "" {
			o.Error = "not attempted: …"
		}
		out[i] = o
	}
	return out
}

// ran is a host that ran the script; skipped one the rollout did not start.
func ran(n, exit int) outcome { return outcome{Host: nodeName(n), Attempted: true, Exit: exit} }
func skipped(n int) outcome {
	return outcome{Host: nodeName(n), Exit: -1, Error: "not attempted: …"}
}

// deployExit is what deploy exits with on host n while it fails.
func deployExit(n int) int {
	if failingHost[n] {
		return 1
	}
	return 0
}

// stoppedSet turns a non-empty Stopped into a placeholder, for comparing
// the rest of the progress whole.
func stoppedSet(b *batches) *batches {
	if b == nil {
		return nil
	}
	c := *b
	if c.Stopped != "" {
		c.Stopped = "(set)"
	}
	return &c
}

func intPtr(n int) *int { return &n }

// selectorCase is one selection of the golden test; named hosts may come
// anywhere among the options, as on a real command line.
type selectorCase struct {
	args  []string
	hosts []int // nil: an error, exit 2
}

// selectorCases are worked out by hand from rolloutTags, not from the
// dispatcher's answers.
var selectorCases = []selectorCase{
	{[]string{"--all"}, span(1, 20)},
	{[]string{"--tag", "role=web"}, span(1, 12)},
	{[]string{"--tag", "role=db", "--tag", "env=prod"}, []int{13, 15, 17, 19}},
	{[]string{"--tag", "env=prod,stage", "--tag", "role=db"}, span(13, 20)},
	{[]string{"--tag", "role=web", "--not-tag", "env=stage"}, []int{1, 3, 5, 7, 9, 11}},
	{[]string{"--all", "--not-tag", "role=web"}, span(13, 20)},
	{[]string{"--all", "--not-tag", "role=web", "--not-tag", "env=prod"}, []int{14, 16, 18, 20}},
	{[]string{"--tag", "dc"}, span(1, 5)},
	{[]string{"--tag", "dc", "--not-tag", "env=prod"}, []int{2, 4}},
	{[]string{"--all", "--not-tag", "dc"}, span(6, 20)},
	{[]string{"node-00020", "--tag", "role=web", "--tag", "env=stage"}, []int{20, 2, 4, 6, 8, 10, 12}},
	{[]string{"node-00002", "--tag", "role=web"}, []int{2, 1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}},
	{[]string{"node-00013", "node-00003", "--tag", "dc=fra", "--not-tag", "env=stage"}, []int{13, 3, 1, 5}},
	{[]string{"--tag", "role=web,db", "--not-tag", "env=prod,stage"}, nil},
	{[]string{"--tag", "role=web", "--tag", "role=db"}, nil},
	{[]string{"--tag", "role=Web"}, nil},
	{[]string{"node-00001", "--tag", "dc=ams"}, nil},
	{[]string{"--not-tag", "env=prod"}, nil},
	{[]string{"--tag", "bad key=x"}, nil},
}

// shellWord quotes s for the golden file's command lines.
func shellWord(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789=,._/-") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// lines splits output into its lines; none for "".
func lines(s string) []string {
	if s == "" {
		return []string{}
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// TestRollout drives the real binary through the targeting and rollout
// options against 20 tagged agents: tags reach the registry by discover,
// selectors pick exactly the hosts of the tag table (golden), batches stop
// at max-failures and fail-fast, and retry-failed runs exactly the failed
// hosts.
func TestRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	marker := filepath.Join(dir, "deploy-fixed")
	failing := filepath.Join(dir, "deploy-failing")
	script := fmt.Sprintf("#!/bin/sh\n# fails (exit 1) until %s exists\ntest -e %s\n", shellWord(marker), shellWord(marker))
	if err := os.WriteFile(failing, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := fleetsim.Start(context.Background(), fleetsim.Options{N: rolloutHosts, Dir: dir, Prefix: "node",
		Tags: func(i int, _ string) map[string]string { return rolloutTags(i + 1) },
		Scripts: func(i int, _ string) map[string]string {
			if failingHost[i+1] {
				return map[string]string{"deploy": failing}
			}
			return map[string]string{"deploy": "/bin/true"}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if d := cmp.Diff(nodes(span(1, 20)...), f.Hosts); d != "" {
		t.Fatalf("fleet hosts (-want +got):\n%s", d)
	}
	cli := rolloutCLI{bin: bin, conf: f.DispatcherConf}

	type agentJSON struct {
		Hostname string            `json:"hostname"`
		Tags     map[string]string `json:"tags"`
	}
	listTags := func(t *testing.T, args ...string) map[string]map[string]string {
		t.Helper()
		var agents []agentJSON
		r := cli.run(t, append([]string{"list-agents", "--json"}, args...)...)
		if r.exit != 0 {
			t.Fatalf("list-agents %v: exit %d\n%s%s", args, r.exit, r.stdout, r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), &agents); err != nil {
			t.Fatalf("list-agents %v: %v\n%s", args, err, r.stdout)
		}
		out := make(map[string]map[string]string, len(agents))
		for _, a := range agents {
			out[a.Hostname] = a.Tags
		}
		return out
	}

	t.Run("before discover", func(t *testing.T) {
		want := make(map[string]map[string]string)
		for _, h := range f.Hosts {
			want[h] = map[string]string{}
		}
		if d := cmp.Diff(want, listTags(t)); d != "" {
			t.Errorf("list-agents --json before discover: tags (-want +got):\n%s", d)
		}
		r := cli.run(t, "run", "--all", "--dry-run", "deploy")
		if d := cmp.Diff(cliRun{stdout: strings.Join(f.Hosts, "\n") + "\n",
			stderr: "20 hosts selected (--dry-run: nothing was contacted)\n"}, r, cmp.AllowUnexported(cliRun{})); d != "" {
			t.Errorf("run --all --dry-run deploy before discover (-want +got):\n%s", d)
		}
		r = cli.run(t, "run", "--tag", "role=web", "--dry-run", "deploy")
		if r.exit != 2 || r.stdout != "" || !strings.Contains(r.stderr, "dispatcher discover") {
			t.Errorf("run --tag role=web --dry-run deploy before discover: exit %d, stdout %q, stderr %q; want exit 2, no output, "+
				"a message that says to run dispatcher discover", r.exit, r.stdout, r.stderr)
		}
	})

	t.Run("discover", func(t *testing.T) {
		var report struct {
			OK      bool `json:"ok"`
			Results []struct {
				Host   string            `json:"host"`
				Status string            `json:"status"`
				Tags   map[string]string `json:"tags"`
			} `json:"results"`
		}
		r := cli.run(t, "discover", "--all", "--json")
		if r.exit != 0 {
			t.Fatalf("discover --all --json: exit %d\n%s%s", r.exit, r.stdout, r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), &report); err != nil {
			t.Fatalf("discover --all --json: %v\n%s", err, r.stdout)
		}
		published := make(map[string]map[string]string)
		for _, res := range report.Results {
			if res.Status != "ok" {
				t.Errorf("discover %s: status %q", res.Host, res.Status)
			}
			published[res.Host] = res.Tags
		}
		want := make(map[string]map[string]string)
		for n := 1; n <= rolloutHosts; n++ {
			want[nodeName(n)] = rolloutTags(n)
		}
		if d := cmp.Diff(want, published); d != "" || !report.OK {
			t.Errorf("discover --all --json: ok %v, tags published (-want +got):\n%s", report.OK, d)
		}
		if d := cmp.Diff(want, listTags(t)); d != "" {
			t.Errorf("list-agents --json after discover: tags (-want +got):\n%s", d)
		}
	})

	t.Run("select", func(t *testing.T) {
		var golden strings.Builder
		for _, c := range selectorCases {
			args := append(append([]string{"run", "--dry-run"}, c.args...), "deploy")
			quoted := make([]string, len(args))
			for i, a := range args {
				quoted[i] = shellWord(a)
			}
			words := strings.Join(quoted, " ")
			r := cli.run(t, args...)
			fmt.Fprintf(&golden, "$ dispatcher %s\n%s", words, r.stdout)
			for _, l := range lines(strings.ReplaceAll(r.stderr, dir, "$DIR")) {
				fmt.Fprintf(&golden, "stderr: %s\n", l)
			}
			fmt.Fprintf(&golden, "exit %d\n\n", r.exit)

			// The golden file is reviewed by hand; this holds every case
			// to the table above as well.
			if c.hosts == nil {
				if r.exit != 2 || r.stdout != "" || !strings.HasPrefix(r.stderr, "dispatcher: ") {
					t.Errorf("%s: exit %d, stdout %q, stderr %q; want exit 2 and a message on stderr only", words, r.exit, r.stdout, r.stderr)
				}
			} else if d := cmp.Diff(nodes(c.hosts...), lines(r.stdout)); d != "" || r.exit != 0 {
				t.Errorf("%s: exit %d, hosts (-want +got):\n%s", words, r.exit, d)
			}

			// --json: the same hosts, or the same error as JSON.
			var got map[string]any
			jr := cli.json(t, &got, r.exit, append([]string{args[0], "--json"}, args[1:]...)...)
			want := map[string]any{"ok": true, "dry_run": true, "hosts": toAny(lines(r.stdout)), "script": "deploy"}
			if c.hosts == nil {
				want = map[string]any{"ok": false, "error": strings.TrimSuffix(strings.TrimPrefix(r.stderr, "dispatcher: "), "\n")}
				if jr.stderr != "" {
					t.Errorf("%s --json: stderr %q, want none", words, jr.stderr)
				}
			}
			if d := cmp.Diff(want, got); d != "" {
				t.Errorf("%s --json (-want +got):\n%s", words, d)
			}
		}
		path := filepath.Join("testdata", "select.golden")
		if *update {
			if err := os.WriteFile(path, []byte(golden.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%v (go test -run TestRollout -update writes it)", err)
		}
		if d := cmp.Diff(string(want), golden.String()); d != "" {
			t.Errorf("%s (-want +got):\n%s", path, d)
		}
	})

	t.Run("select agrees", func(t *testing.T) {
		// list-agents filters as run selects.
		wantWeb := nodes(1, 3, 5, 7, 9, 11)
		got := listTags(t, "--tag", "role=web", "--not-tag", "env=stage")
		if d := cmp.Diff(wantWeb, slices.Sorted(maps.Keys(got))); d != "" {
			t.Errorf("list-agents --tag role=web --not-tag env=stage --json: hosts (-want +got):\n%s", d)
		}
		r := cli.run(t, "run", "--tag", "role=web", "--not-tag", "env=stage", "--dry-run", "deploy")
		if d := cmp.Diff(wantWeb, lines(r.stdout)); d != "" {
			t.Errorf("run --tag role=web --not-tag env=stage --dry-run: hosts (-want +got):\n%s", d)
		}
		// ping and discover select as run does, named host first.
		sel := []string{"node-00020", "--tag", "role=web", "--tag", "env=stage", "--dry-run"}
		want := cliRun{stdout: strings.Join(nodes(20, 2, 4, 6, 8, 10, 12), "\n") + "\n",
			stderr: "7 hosts selected (--dry-run: nothing was contacted)\n"}
		for _, args := range [][]string{
			append(append([]string{"run"}, sel...), "deploy"),
			append([]string{"ping"}, sel...),
			append([]string{"discover"}, sel...),
		} {
			if d := cmp.Diff(want, cli.run(t, args...), cmp.AllowUnexported(cliRun{})); d != "" {
				t.Errorf("dispatcher %s (-want +got):\n%s", strings.Join(args, " "), d)
			}
		}
		// A batched dry run shows the batches.
		var dry map[string]any
		cli.json(t, &dry, 0, "ping", "--tag", "dc", "--batch", "2", "--dry-run", "--json")
		wantDry := map[string]any{"ok": true, "dry_run": true, "hosts": toAny(nodes(1, 2, 3, 4, 5)),
			"batches": []any{toAny(nodes(1, 2)), toAny(nodes(3, 4)), toAny(nodes(5))}}
		if d := cmp.Diff(wantDry, dry); d != "" {
			t.Errorf("ping --tag dc --batch 2 --dry-run --json (-want +got):\n%s", d)
		}
	})

	var rolloutID string
	t.Run("max failures", func(t *testing.T) {
		var report runReport
		cli.json(t, &report, 1, "run", "--all", "--batch", "5", "--max-failures", "1", "--json", "deploy")
		var want []outcome
		for n := 1; n <= 10; n++ {
			want = append(want, ran(n, deployExit(n)))
		}
		for n := 11; n <= 20; n++ {
			want = append(want, skipped(n))
		}
		if d := cmp.Diff(want, outcomes(report.Results)); d != "" {
			t.Errorf("run --all --batch 5 --max-failures 1 --json: results (-want +got):\n%s", d)
		}
		wantB := &batches{Size: 5, Count: 4, Current: 2, Failures: 2, MaxFailures: intPtr(1), Stopped: "(set)"}
		if d := cmp.Diff(wantB, stoppedSet(report.Batches)); d != "" || report.OK || report.ReqID == "" {
			t.Errorf("run --all --batch 5 --max-failures 1 --json: ok %v, reqid %q, batches (-want +got):\n%s", report.OK, report.ReqID, d)
		}
		rolloutID = report.ReqID
		t.Logf("stopped: %s", report.Batches.Stopped)

		// Exactly max failures is not more: every batch runs.
		var all runReport
		cli.json(t, &all, 1, "run", "--all", "--batch", "5", "--max-failures", "2", "--json", "deploy")
		want = want[:10]
		for n := 11; n <= 20; n++ {
			want = append(want, ran(n, 0))
		}
		if d := cmp.Diff(want, outcomes(all.Results)); d != "" {
			t.Errorf("run --all --batch 5 --max-failures 2 --json: results (-want +got):\n%s", d)
		}
		wantB = &batches{Size: 5, Count: 4, Current: 4, Failures: 2, MaxFailures: intPtr(2)}
		if d := cmp.Diff(wantB, all.Batches); d != "" || all.OK {
			t.Errorf("run --all --batch 5 --max-failures 2 --json: ok %v, batches (-want +got):\n%s", all.OK, d)
		}

		// The same rollout as a human sees it.
		r := cli.run(t, "run", "--all", "--batch", "5", "--max-failures", "1", "deploy")
		var headers []string
		rtt := regexp.MustCompile(`(exit:-?\d+)  [^\]]+\]$`)
		blocks := strings.Split(r.stdout, "==> ")
		for _, b := range blocks[1:] {
			head, rest, _ := strings.Cut(b, "\n")
			headers = append(headers, rtt.ReplaceAllString("==> "+head, "$1  RTT]"))
			if strings.Contains(head, "[SKIP") && !strings.HasPrefix(rest, "ERROR: not attempted: ") {
				t.Errorf("run --all --batch 5 --max-failures 1: block %q does not say why the host was not attempted", "==> "+b)
			}
		}
		var wantHeaders []string
		for n := 1; n <= 20; n++ {
			switch {
			case n > 10:
				wantHeaders = append(wantHeaders, fmt.Sprintf("==> %s  [SKIP  not attempted]", nodeName(n)))
			case failingHost[n]:
				wantHeaders = append(wantHeaders, fmt.Sprintf("==> %s  [FAIL  exit:1  RTT]", nodeName(n)))
			default:
				wantHeaders = append(wantHeaders, fmt.Sprintf("==> %s  [OK  exit:0  RTT]", nodeName(n)))
			}
		}
		if d := cmp.Diff(wantHeaders, headers); d != "" || r.exit != 1 || blocks[0] != "" {
			t.Errorf("run --all --batch 5 --max-failures 1: exit %d (want 1), blocks (-want +got):\n%s\nstdout:\n%s", r.exit, d, r.stdout)
		}
		if !strings.Contains(r.stderr, "stopped early: ") {
			t.Errorf("run --all --batch 5 --max-failures 1: stderr does not say the rollout stopped early:\n%s", r.stderr)
		}
	})

	t.Run("fail fast", func(t *testing.T) {
		var report runReport
		cli.json(t, &report, 1, "run", "--all", "--batch", "20%", "--fail-fast", "--json", "deploy")
		got := outcomes(report.Results)
		if len(got) != rolloutHosts {
			t.Fatalf("run --all --batch 20%% --fail-fast --json: %d results, want %d\n%+v", len(got), rolloutHosts, got)
		}
		// Batch 2 (hosts 5-8) starts its hosts in parallel: 5 and 6 may or
		// may not have started when 7 or 8 failed, and one of 7 and 8 may
		// have been stopped by the other's failure.
		want := slices.Clone(got)
		for n := 1; n <= 20; n++ {
			switch {
			case n <= 4:
				want[n-1] = ran(n, 0)
			case n <= 6 && got[n-1].Attempted:
				want[n-1] = ran(n, 0)
			case n <= 6:
				want[n-1] = skipped(n)
			case n <= 8 && got[n-1].Attempted:
				want[n-1] = ran(n, 1)
			case n <= 8:
				want[n-1] = skipped(n)
			default:
				want[n-1] = skipped(n)
			}
		}
		if d := cmp.Diff(want, got); d != "" {
			t.Errorf("run --all --batch 20%% --fail-fast --json: results (-want +got):\n%s", d)
		}
		failed := 0
		for _, o := range got[6:8] {
			if o.Attempted {
				failed++
			}
		}
		if failed == 0 {
			t.Errorf("run --all --batch 20%% --fail-fast --json: neither node-00007 nor node-00008 ran: %+v", got[6:8])
		}
		wantB := &batches{Size: 4, Count: 5, Current: 2, Failures: failed, FailFast: true, Stopped: "(set)"}
		t.Logf("fail-fast: %+v; stopped: %s", got[4:8], report.Batches.Stopped)
		if d := cmp.Diff(wantB, stoppedSet(report.Batches)); d != "" || report.OK {
			t.Errorf("run --all --batch 20%% --fail-fast --json: ok %v, batches (-want +got):\n%s", report.OK, d)
		}
	})

	t.Run("ping batches", func(t *testing.T) {
		var report struct {
			OK      bool `json:"ok"`
			Results []struct {
				Host      string `json:"host"`
				Status    string `json:"status"`
				Attempted *bool  `json:"attempted"`
			} `json:"results"`
			Batches *batches `json:"batches"`
		}
		r := cli.run(t, "ping", "--all", "--batch", "10", "--json")
		if err := json.Unmarshal([]byte(r.stdout), &report); err != nil || r.exit != 0 {
			t.Fatalf("ping --all --batch 10 --json: exit %d, %v\n%s%s", r.exit, err, r.stdout, r.stderr)
		}
		var hosts, wantHosts []string
		for i, res := range report.Results {
			hosts = append(hosts, fmt.Sprintf("%s %s attempted=%v", res.Host, res.Status, res.Attempted == nil || *res.Attempted))
			wantHosts = append(wantHosts, fmt.Sprintf("%s ok attempted=true", nodeName(i+1)))
		}
		if len(wantHosts) != rolloutHosts {
			t.Errorf("ping --all --batch 10 --json: %d results, want %d", len(wantHosts), rolloutHosts)
		}
		if d := cmp.Diff(wantHosts, hosts); d != "" {
			t.Errorf("ping --all --batch 10 --json: results (-want +got):\n%s", d)
		}
		if d := cmp.Diff(&batches{Size: 10, Count: 2, Current: 2}, report.Batches); d != "" || !report.OK {
			t.Errorf("ping --all --batch 10 --json: ok %v, batches (-want +got):\n%s", report.OK, d)
		}
	})

	t.Run("retry failed", func(t *testing.T) {
		if rolloutID == "" {
			t.Skip("the max failures rollout left no request id")
		}
		var dry map[string]any
		cli.json(t, &dry, 0, "run", "--retry-failed", rolloutID, "--dry-run", "--json")
		wantDry := map[string]any{"ok": true, "dry_run": true, "hosts": toAny(nodes(7, 8)), "script": "deploy", "retry_of": rolloutID}
		if d := cmp.Diff(wantDry, dry); d != "" {
			t.Errorf("run --retry-failed %s --dry-run --json (-want +got):\n%s", rolloutID, d)
		}
		r := cli.run(t, "run", "--retry-failed", rolloutID, "--dry-run")
		if d := cmp.Diff(cliRun{stdout: "node-00007\nnode-00008\n", stderr: "2 hosts selected (--dry-run: nothing was contacted)\n"},
			r, cmp.AllowUnexported(cliRun{})); d != "" {
			t.Errorf("run --retry-failed %s --dry-run (-want +got):\n%s", rolloutID, d)
		}

		// They still fail.
		var retry runReport
		cli.json(t, &retry, 1, "run", "--retry-failed", rolloutID, "--json")
		if d := cmp.Diff([]outcome{ran(7, 1), ran(8, 1)}, outcomes(retry.Results)); d != "" || retry.OK || retry.Batches != nil {
			t.Errorf("run --retry-failed %s --json: ok %v, batches %+v, results (-want +got):\n%s", rolloutID, retry.OK, retry.Batches, d)
		}
		var status struct {
			OK      bool        `json:"ok"`
			Script  string      `json:"script"`
			Hosts   []string    `json:"hosts"`
			Status  string      `json:"status"`
			Results []runResult `json:"results"`
			RetryOf string      `json:"retry_of"`
		}
		r = cli.run(t, "status", retry.ReqID, "--json")
		if err := json.Unmarshal([]byte(r.stdout), &status); err != nil || r.exit != 1 {
			t.Fatalf("status %s --json: exit %d (want 1), %v\n%s%s", retry.ReqID, r.exit, err, r.stdout, r.stderr)
		}
		if status.RetryOf != rolloutID || status.Script != "deploy" || status.Status != "done" || status.OK {
			t.Errorf("status %s --json: retry_of %q (want %q), script %q, status %q, ok %v", retry.ReqID, status.RetryOf, rolloutID,
				status.Script, status.Status, status.OK)
		}
		if d := cmp.Diff(nodes(7, 8), status.Hosts); d != "" {
			t.Errorf("status %s --json: hosts (-want +got):\n%s", retry.ReqID, d)
		}

		// Fixed: the retry of the retry succeeds, on the same two hosts.
		if err := os.WriteFile(marker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		defer os.Remove(marker)
		var fixed runReport
		cli.json(t, &fixed, 0, "run", "--retry-failed", retry.ReqID, "--json")
		if d := cmp.Diff([]outcome{ran(7, 0), ran(8, 0)}, outcomes(fixed.Results)); d != "" || !fixed.OK {
			t.Errorf("run --retry-failed %s --json once fixed: ok %v, results (-want +got):\n%s", retry.ReqID, fixed.OK, d)
		}
	})
}

func toAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}
