package fleetsim_test

import (
	"context"
	"encoding/json"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/bench/fleetsim"
)

// TestFleetSmoke is the small version of the fleet benchmark that runs with
// the tests: 50 simulated agents, driven by the real binary, every host
// answers correctly. It asserts correctness only; make bench measures.
func TestFleetSmoke(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	f, err := fleetsim.Start(context.Background(), fleetsim.Options{N: 50, Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	type result struct {
		Host   string `json:"host"`
		Status string `json:"status"`
		Exit   int    `json:"exit"`
		Stdout string `json:"stdout"`
		Error  string `json:"error"`
	}
	type report struct {
		OK      bool     `json:"ok"`
		Results []result `json:"results"`
	}
	dispatcher := func(args ...string) report {
		t.Helper()
		// Options first: everything after "--" goes to the script.
		cmd := exec.Command(bin, append([]string{args[0], "--json", "--config", f.DispatcherConf}, args[1:]...)...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dispatcher %v: %v\n%s\nstderr:\n%s", args[0], err, out, stderr.String())
		}
		var r report
		if err := json.Unmarshal(out, &r); err != nil {
			t.Fatalf("dispatcher %v: %v\n%s", args[0], err, out)
		}
		return r
	}
	want := func(r result) report {
		w := report{OK: true}
		for _, h := range f.Hosts {
			r.Host = h
			w.Results = append(w.Results, r)
		}
		return w
	}

	got := dispatcher(append([]string{"ping"}, f.Hosts...)...)
	if d := cmp.Diff(want(result{Status: "ok"}), got); d != "" {
		t.Errorf("ping (-want +got):\n%s", d)
	}
	got = dispatcher(append(append([]string{"run"}, f.Hosts...), fleetsim.ScriptEcho, "--", "a b", "c")...)
	if d := cmp.Diff(want(result{Stdout: "a b c\n"}), got); d != "" {
		t.Errorf("run echo (-want +got):\n%s", d)
	}
	got = dispatcher(append(append([]string{"run"}, f.Hosts...), fleetsim.ScriptNoop+"-16")...)
	if d := cmp.Diff(want(result{}), got); d != "" {
		t.Errorf("run noop-16 (-want +got):\n%s", d)
	}
}
