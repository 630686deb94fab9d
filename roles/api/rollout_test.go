package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/hook"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// taggedFleet starts web-01 (env=prod role=web), web-02 (env=prod
// role=db) and web-03 (env=dev role=web).
func taggedFleet(t *testing.T) *fleet {
	f := newFleet(t)
	for name, tags := range map[string]map[string]string{
		"web-01": {"env": "prod", "role": "web"},
		"web-02": {"env": "prod", "role": "db"},
		"web-03": {"env": "dev", "role": "web"},
	} {
		f.agent(name)
		f.tag(name, tags)
	}
	return f
}

// storedRuns returns the reqids stored.
func storedRuns(t *testing.T, f *fleet) []string {
	t.Helper()
	entries, _ := os.ReadDir(filepath.Join(f.st.Dir(), "runs"))
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

// strs turns a JSON array of strings (decoded into []any) into []string.
func strs(v any) []string {
	out := []string{}
	for _, s := range v.([]any) {
		out = append(out, s.(string))
	}
	return out
}

func resultHosts(body map[string]any) []string {
	var out []string
	for _, r := range body["results"].([]any) {
		out = append(out, r.(map[string]any)["host"].(string))
	}
	return out
}

func TestSelectionDryRun(t *testing.T) {
	f := taggedFleet(t)
	_, ts := f.server(nil)
	c := newClient(t, ts.URL)
	for _, tc := range []struct {
		method, path string
		body         any
		want         []string
	}{
		{"POST", "/run", map[string]any{"tags": []string{"env=prod"}, "script": "hello"}, []string{"web-01", "web-02"}},
		{"POST", "/run", map[string]any{"tags": []string{"env=prod,dev", "role=web"}, "script": "hello"}, []string{"web-01", "web-03"}},
		{"POST", "/run", map[string]any{"tags": []string{"role"}, "not_tags": []string{"env=dev"}, "script": "hello"}, []string{"web-01", "web-02"}},
		{"POST", "/run", map[string]any{"all": true, "not_tags": []string{"role=db"}, "script": "hello"}, []string{"web-01", "web-03"}},
		{"POST", "/run", map[string]any{"hosts": []string{"web-03"}, "tags": []string{"env=prod"}, "script": "hello"}, []string{"web-03", "web-01", "web-02"}},
		{"POST", "/run", map[string]any{"hosts": []string{"web-02", "web-01"}, "script": "hello"}, []string{"web-02", "web-01"}},
		{"POST", "/ping", map[string]any{"tags": []string{"role=web"}}, []string{"web-01", "web-03"}},
		{"POST", "/ping", map[string]any{"all": true}, []string{"web-01", "web-02", "web-03"}},
		{"POST", "/discovery", map[string]any{"tags": []string{"env=dev"}}, []string{"web-03"}},
		{"POST", "/discovery", map[string]any{}, []string{"web-01", "web-02", "web-03"}},
		{"GET", "/discovery?dry_run=true&tag=env=prod&not_tag=role=db", nil, []string{"web-01"}},
		{"GET", "/discovery?dry_run=1&all=true&not_tag=env=prod", nil, []string{"web-03"}},
		{"GET", "/discovery?dry_run=true&host=web-02", nil, []string{"web-02"}},
	} {
		body := tc.body
		if m, ok := body.(map[string]any); ok {
			m["dry_run"] = true
		}
		r := c.do(tc.method, tc.path, body)
		if r.status != http.StatusOK {
			t.Errorf("%s %s %v: %d %s", tc.method, tc.path, tc.body, r.status, r.body)
			continue
		}
		got := r.json(t)
		if got["ok"] != true || got["dry_run"] != true {
			t.Errorf("%s %s %v: %s", tc.method, tc.path, tc.body, r.body)
		}
		if d := cmp.Diff(tc.want, strs(got["hosts"])); d != "" {
			t.Errorf("%s %s %v: hosts (-want +got):\n%s", tc.method, tc.path, tc.body, d)
		}
		if tc.path == "/run" && got["script"] != "hello" {
			t.Errorf("dry run of /run: script %v", got["script"])
		}
	}
	// Nothing was run, stored or asked.
	if ran := f.ran(); len(ran) != 0 {
		t.Errorf("a dry run reached the agents: %v", ran)
	}
	if runs := storedRuns(t, f); len(runs) != 0 {
		t.Errorf("a dry run was stored: %v", runs)
	}

	// The same selection for real runs exactly there.
	r := c.do("POST", "/run", map[string]any{"tags": []string{"env=prod"}, "script": "hello"})
	if r.status != http.StatusOK {
		t.Fatalf("run by tag: %d %s", r.status, r.body)
	}
	got := r.json(t)
	if d := cmp.Diff([]string{"web-01", "web-02"}, resultHosts(got)); d != "" || got["ok"] != true {
		t.Errorf("run by tag: %s", r.body)
	}
	if d := cmp.Diff([]string{"web-01:hello", "web-02:hello"}, slices.Sorted(slices.Values(f.ran()))); d != "" {
		t.Errorf("agents ran (-want +got):\n%s", d)
	}
	if _, ok := got["batches"]; ok {
		t.Errorf("a run without a rollout has batches: %s", r.body)
	}
}

// The auth hook sees the hosts selected, not the request's hosts.
func TestSelectionAuthorizedHosts(t *testing.T) {
	f := taggedFleet(t)
	dir := t.TempDir()
	_, ts := f.server(func(o *Options) { o.Hook = &hook.Runner{Path: writeHook(t, dir), Timeout: 5 * time.Second} })
	c := newClient(t, ts.URL)
	c.headers["Authorization"] = "Bearer good"
	r := c.do("POST", "/run", map[string]any{"tags": []string{"role=web"}, "script": "hello", "dry_run": true})
	if r.status != http.StatusOK {
		t.Fatalf("dry run: %d %s", r.status, r.body)
	}
	c.headers["Authorization"] = "Bearer nope"
	r = c.do("POST", "/ping", map[string]any{"all": true, "not_tags": []string{"env=dev"}, "dry_run": true})
	if r.status != http.StatusForbidden {
		t.Fatalf("refused dry run: %d %s", r.status, r.body)
	}
	reqs := hookRequests(t, dir)
	if len(reqs) != 2 {
		t.Fatalf("hook asked %d times: %+v", len(reqs), reqs)
	}
	if reqs[0].Action != "run" || reqs[0].Script != "hello" || !cmp.Equal(reqs[0].Hosts, []string{"web-01", "web-03"}) {
		t.Errorf("hook saw %+v", reqs[0])
	}
	if reqs[1].Action != "ping" || !cmp.Equal(reqs[1].Hosts, []string{"web-01", "web-02"}) {
		t.Errorf("hook saw %+v", reqs[1])
	}
}

func TestRolloutStopsAfterFailures(t *testing.T) {
	f := newFleet(t)
	f.dead("web-00")
	f.agent("web-01")
	f.agent("web-02")
	_, ts := f.server(nil)
	c := newClient(t, ts.URL)

	r := c.do("POST", "/run", map[string]any{"hosts": []string{"web-00", "web-01", "web-02"}, "script": "hello",
		"batch": 1, "max_failures": 0})
	if r.status != http.StatusOK {
		t.Fatalf("run: %d %s", r.status, r.body)
	}
	var report struct {
		OK      bool   `json:"ok"`
		ReqID   string `json:"reqid"`
		Results []struct {
			Host      string `json:"host"`
			Exit      int    `json:"exit"`
			Error     string `json:"error"`
			Attempted *bool  `json:"attempted"`
		} `json:"results"`
		Batches *store.Batches `json:"batches"`
	}
	if err := json.Unmarshal(r.body, &report); err != nil {
		t.Fatal(err)
	}
	if report.OK || len(report.Results) != 3 {
		t.Fatalf("report: %s", r.body)
	}
	if first := report.Results[0]; first.Exit == 0 || first.Attempted != nil {
		t.Errorf("web-00 should have failed, attempted: %s", r.body)
	}
	for _, res := range report.Results[1:] {
		if res.Attempted == nil || *res.Attempted || res.Exit != -1 || !strings.HasPrefix(res.Error, "not attempted: ") {
			t.Errorf("%s: want not attempted, got %+v", res.Host, res)
		}
	}
	if b := report.Batches; b == nil || b.Size != 1 || b.Count != 3 || b.Current != 1 || b.Failures != 1 ||
		b.MaxFailures == nil || *b.MaxFailures != 0 || !strings.Contains(b.Stopped, "max failures") {
		t.Errorf("batches: %+v", report.Batches)
	}
	if ran := f.ran(); len(ran) != 0 {
		t.Errorf("hosts of batches not started ran: %v", ran)
	}
	// /status serves the same progress.
	s := c.do("GET", "/status/"+report.ReqID, nil).json(t)
	b, _ := s["batches"].(map[string]any)
	if b == nil || b["current"] != float64(1) || b["count"] != float64(3) || b["stopped"] == nil {
		t.Errorf("status batches: %v", s["batches"])
	}

	// A ping rolls out the same way.
	r = c.do("POST", "/ping", map[string]any{"hosts": []string{"web-00", "web-01"}, "batch": "50%", "max_failures": 0})
	p := r.json(t)
	results := p["results"].([]any)
	if r.status != http.StatusOK || p["ok"] != false || len(results) != 2 || results[1].(map[string]any)["attempted"] != false {
		t.Errorf("ping: %d %s", r.status, r.body)
	}
	if pb, _ := p["batches"].(map[string]any); pb == nil || pb["size"] != float64(1) || pb["failures"] != float64(1) {
		t.Errorf("ping batches: %v", p["batches"])
	}
}

func TestRetryFailed(t *testing.T) {
	f := newFleet(t)
	for _, h := range []string{"web-01", "web-02", "web-03"} {
		f.agent(h)
	}
	f.setFailing("web-02", true)
	_, ts := f.server(nil)
	c := newClient(t, ts.URL)

	r := c.do("POST", "/run", map[string]any{"hosts": []string{"web-01", "web-02", "web-03"}, "script": "maybe", "args": []string{"x"}})
	first := r.json(t)
	if r.status != http.StatusOK || first["ok"] != false {
		t.Fatalf("first run: %d %s", r.status, r.body)
	}
	prev := first["reqid"].(string)

	// A dry run says what the retry would do.
	r = c.do("POST", "/run", map[string]any{"retry_failed": prev, "dry_run": true})
	dry := r.json(t)
	if r.status != http.StatusOK || dry["script"] != "maybe" || dry["retry_of"] != prev ||
		!cmp.Equal(strs(dry["hosts"]), []string{"web-02"}) || !cmp.Equal(strs(dry["args"]), []string{"x"}) {
		t.Errorf("dry retry: %d %s", r.status, r.body)
	}

	f.setFailing("web-02", false)
	before := len(f.ran())
	r = c.do("POST", "/run", map[string]any{"retry_failed": prev, "timeout": 30})
	retry := r.json(t)
	if r.status != http.StatusOK || retry["ok"] != true {
		t.Fatalf("retry: %d %s", r.status, r.body)
	}
	if d := cmp.Diff([]string{"web-02"}, resultHosts(retry)); d != "" {
		t.Errorf("retry hosts (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"web-02:maybe"}, f.ran()[before:]); d != "" {
		t.Errorf("retry ran (-want +got):\n%s", d)
	}
	stored, err := f.st.GetRun(retry["reqid"].(string))
	if err != nil {
		t.Fatal(err)
	}
	if stored.RetryOf != prev || stored.Script != "maybe" || !cmp.Equal(stored.Args, []string{"x"}) {
		t.Errorf("stored retry: %+v", stored)
	}
	if s := c.do("GET", "/status/"+stored.ReqID, nil).json(t); s["retry_of"] != prev {
		t.Errorf("status of the retry: %v", s)
	}

	// Nothing failed in the retry: nothing to retry.
	for _, tc := range []struct {
		body   map[string]any
		status int
		msg    string
	}{
		{map[string]any{"retry_failed": stored.ReqID}, 400, "no failed host"},
		{map[string]any{"retry_failed": "ffffffffffffffff"}, 404, "retry_failed: run ffffffffffffffff is not stored"},
		{map[string]any{"retry_failed": "../x"}, 400, "retry_failed"},
		{map[string]any{"retry_failed": prev, "hosts": []string{"web-01"}}, 400, "cannot be combined with hosts"},
		{map[string]any{"retry_failed": prev, "script": "hello", "tags": []string{"a=b"}}, 400, "cannot be combined with tags, script"},
		{map[string]any{"retry_failed": prev, "args": []string{}}, 400, "cannot be combined with args"},
	} {
		r := c.do("POST", "/run", tc.body)
		if r.status != tc.status || !strings.Contains(string(r.body), tc.msg) {
			t.Errorf("%v: %d %s; want %d and %q", tc.body, r.status, r.body, tc.status, tc.msg)
		}
	}
}

func TestRolloutBadRequests(t *testing.T) {
	f := taggedFleet(t)
	_, ts := f.server(nil)
	c := newClient(t, ts.URL)
	run := func(extra map[string]any) map[string]any {
		m := map[string]any{"hosts": []string{"web-01", "web-02"}, "script": "hello"}
		for k, v := range extra {
			m[k] = v
		}
		return m
	}
	for _, tc := range []struct {
		path string
		body any
		msg  string
	}{
		{"/run", run(map[string]any{"batch": "0"}), "batch 0: want at least 1"},
		{"/run", run(map[string]any{"batch": 0}), "batch 0: want at least 1"},
		{"/run", run(map[string]any{"batch": "0%"}), "batch 0%"},
		{"/run", run(map[string]any{"batch": "abc"}), `batch \"abc\": want a number of hosts`},
		{"/run", run(map[string]any{"batch": "101%"}), `batch \"101%\"`},
		{"/run", run(map[string]any{"batch": -1}), "batch -1"},
		{"/run", run(map[string]any{"batch": 1.5}), "batch 1.5"},
		{"/run", run(map[string]any{"batch": true}), "batch true"},
		{"/run", run(map[string]any{"batch": 1, "max_failures": "x"}), `max_failures \"x\"`},
		{"/run", run(map[string]any{"max_failures": 1}), "max_failures is checked between batches"},
		{"/run", run(map[string]any{"batch_wait": "5s"}), "batch_wait is the pause between batches"},
		{"/run", run(map[string]any{"batch": 1, "batch_wait": "soon"}), `batch_wait \"soon\"`},
		{"/run", run(map[string]any{"batch": 1, "batch_wait": -2}), "batch_wait -2"},
		{"/run", map[string]any{"not_tags": []string{"env=dev"}, "script": "hello"}, "not_tags only narrows all or tags"},
		{"/run", run(map[string]any{"not_tags": []string{"env=dev"}}), "not_tags only narrows all or tags"},
		{"/run", map[string]any{"tags": []string{"bad key"}, "script": "hello"}, `tags: \"bad key\": want key=value`},
		{"/run", map[string]any{"all": true, "not_tags": []string{"="}, "script": "hello"}, `not_tags: \"=\": want key=value`},
		{"/run", map[string]any{"tags": []string{"env=qa"}, "script": "hello"}, `tags [\"env=qa\"] selects none of the 3 registered agents`},
		{"/run", map[string]any{"all": true, "not_tags": []string{"env"}, "script": "hello"}, `all, not_tags [\"env\"] selects none`},
		{"/run", map[string]any{"tags": []string{"env=prod"}}, "no script given"},
		{"/ping", map[string]any{"hosts": []string{"web-01"}, "batch": "abc"}, `batch \"abc\"`},
		{"/ping", map[string]any{"hosts": []string{"web-01"}, "batch": "101%"}, `batch \"101%\"`},
		{"/ping", map[string]any{"hosts": []string{"web-01"}, "batch": 0}, "batch 0"},
		{"/ping", map[string]any{"not_tags": []string{"env=dev"}}, "not_tags only narrows"},
		{"/discovery", map[string]any{"not_tags": []string{"env=dev"}}, "not_tags only narrows"},
		{"/discovery", map[string]any{"batch": 1}, `unknown field \"batch\"`},
		{"/discovery?all=maybe", nil, `all \"maybe\": want true or false`},
		{"/discovery?not_tag=env=dev", nil, "not_tags only narrows"},
		{"/discovery?tag=no%20such", nil, `tags: \"no such\"`},
	} {
		method := "POST"
		if tc.body == nil {
			method = "GET"
		}
		r := c.do(method, tc.path, tc.body)
		if r.status != http.StatusBadRequest || !strings.Contains(string(r.body), tc.msg) {
			t.Errorf("%s %v: %d %s; want 400 and %q", tc.path, tc.body, r.status, r.body, tc.msg)
		}
	}
	if ran := f.ran(); len(ran) != 0 {
		t.Errorf("bad requests ran: %v", ran)
	}
	if runs := storedRuns(t, f); len(runs) != 0 {
		t.Errorf("bad requests stored runs: %v", runs)
	}
}

// kinds returns the kinds of events, with each batch event's number.
func kinds(evs []sseEvent) []string {
	var out []string
	for _, ev := range evs {
		k := ev.kind
		switch ev.kind {
		case "batch":
			var b struct {
				Batch    int      `json:"batch"`
				Batches  int      `json:"batches"`
				Hosts    []string `json:"hosts"`
				Failures int      `json:"failures"`
			}
			_ = json.Unmarshal([]byte(ev.data), &b)
			k = fmt.Sprintf("batch %d/%d %s failures %d", b.Batch, b.Batches, strings.Join(b.Hosts, ","), b.Failures)
		case "result", "output":
			var r struct {
				Host string `json:"host"`
			}
			_ = json.Unmarshal([]byte(ev.data), &r)
			k += " " + r.Host
		}
		out = append(out, k)
	}
	return out
}

func TestBatchEvents(t *testing.T) {
	f := newFleet(t)
	f.agent("web-01")
	f.agent("web-02")
	f.setFailing("web-01", true)
	srv, ts := f.server(nil)
	c := newClient(t, ts.URL)

	// Live: batch 2 starts once web-01 is done.
	r := c.do("POST", "/run", map[string]any{"hosts": []string{"web-01", "web-02"}, "script": "maybe", "batch": 1, "async": true})
	if r.status != http.StatusAccepted {
		t.Fatalf("async run: %d %s", r.status, r.body)
	}
	reqid := r.json(t)["reqid"].(string)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	live := kinds(collect(c.events(ctx, reqid)))
	want := []string{"batch 1/2 web-01 failures 0", "output web-01", "result web-01",
		"batch 2/2 web-02 failures 1", "output web-02", "result web-02", "done"}
	if d := cmp.Diff(want, live); d != "" {
		t.Errorf("live events (-want +got):\n%s", d)
	}
	waitFor(t, func() bool { return srv.tracker.InFlight() == 0 }, "the run to be over")
	// Replayed from the stored record: the same events.
	if d := cmp.Diff(want, kinds(collect(c.events(ctx, reqid)))); d != "" {
		t.Errorf("stored events (-want +got):\n%s", d)
	}

	// A run without a rollout has no batch event, live or stored.
	r = c.do("POST", "/run", map[string]any{"hosts": []string{"web-02"}, "script": "maybe", "async": true})
	reqid = r.json(t)["reqid"].(string)
	want = []string{"output web-02", "result web-02", "done"}
	if d := cmp.Diff(want, kinds(collect(c.events(ctx, reqid)))); d != "" {
		t.Errorf("events without a rollout (-want +got):\n%s", d)
	}
}

// A batched run of another process: batch events come from the record.
func TestBatchEventsOfAnotherProcess(t *testing.T) {
	f := newFleet(t)
	_, ts := f.server(nil)
	c := newClient(t, ts.URL)
	maxf := 0
	run := store.Run{ReqID: "00000000000000bb", Script: "deploy", Args: []string{}, Hosts: []string{"a", "b", "c"}, Username: "cli",
		Status: store.RunRunning, Started: time.Now().UTC(), Batches: &store.Batches{Size: 2, Count: 2, Current: 1, MaxFailures: &maxf},
		Results: []store.Result{{Host: "b", Exit: 2, RTT: "3ms", ReqID: "00000000000000bb"}}}
	if err := f.st.SaveRun(run); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var got []sseEvent
	for ev := range c.events(ctx, run.ReqID) {
		got = append(got, ev)
		if ev.kind == "result" && run.Status == store.RunRunning {
			// a succeeds, the rollout stops: c is not attempted.
			no := false
			run.Status, run.Finished = store.RunDone, time.Now().UTC()
			run.Batches.Failures, run.Batches.Stopped = 1, "the rollout stopped after batch 1 of 2"
			run.Results = []store.Result{{Host: "a", RTT: "1ms", ReqID: run.ReqID}, run.Results[0],
				{Host: "c", Exit: -1, RTT: "0ms", ReqID: run.ReqID, Error: "not attempted: the rollout stopped", Attempted: &no}}
			if err := f.st.SaveRun(run); err != nil {
				t.Fatal(err)
			}
		}
	}
	want := []string{"batch 1/2 a,b failures 0", "result b", "result a", "result c", "done"}
	if d := cmp.Diff(want, kinds(got)); d != "" {
		t.Errorf("events (-want +got):\n%s", d)
	}
}
