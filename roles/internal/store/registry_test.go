package store

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// perlRecord is shaped like a record the Perl dispatcher writes, with its
// serial-rotation fields and a field no version knows.
const perlRecord = `{"hostname":"web-01","ip":"10.0.0.5","paired":"2025-03-01T10:00:00Z",` +
	`"expiry":"Mar  1 10:00:00 2027 GMT","reqid":"a1b2c3d4",` +
	`"dispatcher_serial":"4f3e2d","serial_status":"pending","serial_broadcast":"2025-06-01T00:00:00Z",` +
	`"serial_confirmed":null,"future":{"nested":[1,2.50,"x"],"flag":true}}`

func TestAgentPerlRecordRoundTrip(t *testing.T) {
	f := NewFiles(t.TempDir())
	path := filepath.Join(f.Dir(), "agents", "web-01.json")
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(perlRecord), 0o640); err != nil {
		t.Fatal(err)
	}
	a, err := f.GetAgent("web-01")
	if err != nil {
		t.Fatal(err)
	}
	if a.IP != "10.0.0.5" || a.Expiry != "Mar  1 10:00:00 2027 GMT" || a.Port != 0 || a.KeyFingerprint != "" {
		t.Errorf("decoded %+v", a)
	}
	if got := a.ExtraString("serial_status"); got != "pending" {
		t.Errorf("ExtraString(serial_status) = %q, want pending", got)
	}

	// Rewrite with new fields set: every Perl field keeps its value.
	a.Port = 7443
	a.KeyFingerprint = "sha256:00"
	a.Tags = map[string]string{"role": "web"}
	a.LastContact = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := f.PutAgent(a); err != nil {
		t.Fatal(err)
	}
	assertMode(t, path, ModeRecord)
	assertMode(t, filepath.Dir(path), ModeDir)

	got := decodeGeneric(t, mustRead(t, path))
	want := decodeGeneric(t, []byte(perlRecord))
	want["port"] = float64(7443)
	want["key_fingerprint"] = "sha256:00"
	want["tags"] = map[string]any{"role": "web"}
	want["last_contact"] = "2026-01-02T03:04:05Z"
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("rewritten record (-want +got):\n%s", d)
	}
	// Extra values are kept as written, not re-encoded through float64.
	if !strings.Contains(string(mustRead(t, path)), "2.50") {
		t.Errorf("number 2.50 of an unknown field was re-encoded:\n%s", mustRead(t, path))
	}

	back, err := f.GetAgent("web-01")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(a, back); d != "" {
		t.Errorf("second read (-first +second):\n%s", d)
	}
}

func TestAgentPortAsString(t *testing.T) {
	var a Agent
	if err := json.Unmarshal([]byte(`{"hostname":"h","port":"7450"}`), &a); err != nil {
		t.Fatal(err)
	}
	if a.Port != 7450 {
		t.Errorf("port = %d, want 7450", a.Port)
	}
	for _, bad := range []string{`{"port":"x"}`, `{"port":70000}`, `{"tags":"x"}`, `{"last_contact":"yesterday"}`, `{"ip":5}`} {
		if err := json.Unmarshal([]byte(bad), &a); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func TestRegistryListAndErrors(t *testing.T) {
	f := NewFiles(t.TempDir())
	if l, err := f.ListAgents(); err != nil || len(l) != 0 {
		t.Fatalf("empty registry: %v, %v", l, err)
	}
	for _, h := range []string{"web-02", "db-01", "web-01"} {
		if err := f.PutAgent(Agent{Hostname: h, IP: "10.0.0.1", Port: 7443}); err != nil {
			t.Fatal(err)
		}
	}
	l, err := f.ListAgents()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, a := range l {
		names = append(names, a.Hostname)
	}
	if d := cmp.Diff([]string{"db-01", "web-01", "web-02"}, names); d != "" {
		t.Errorf("ListAgents order (-want +got):\n%s", d)
	}
	if _, err := f.GetAgent("web-09"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetAgent(web-09) = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"../etc/passwd", "a/b", "", ".hidden", "web-01.json/.."} {
		if _, err := f.GetAgent(bad); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("GetAgent(%q) = %v, want a host name error", bad, err)
		}
		if err := f.PutAgent(Agent{Hostname: bad}); err == nil {
			t.Errorf("PutAgent(%q) succeeded", bad)
		}
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(f.Dir()), "etc")); err == nil {
		t.Error("a path outside the state directory was created")
	}
}

func TestRuns(t *testing.T) {
	f := NewFiles(t.TempDir())
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	r := Run{
		ReqID: "0123456789abcdef", Script: "deploy", Args: []string{"a b", ""},
		Hosts: []string{"web-01", "web-02:7450"}, Username: "alice",
		Status: RunRunning, Started: start,
	}
	if err := f.SaveRun(r); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.Dir(), "runs", r.ReqID+".json")
	assertMode(t, path, ModeRecord)
	if strings.Contains(string(mustRead(t, path)), "finished") {
		t.Errorf("a running run has a finished time:\n%s", mustRead(t, path))
	}
	r.Status, r.Finished = RunDone, start.Add(2*time.Second)
	r.Results = []Result{
		{Host: "web-01", Exit: 0, Stdout: "ok\n", RTT: "12ms", ReqID: r.ReqID},
		{Host: "web-02:7450", Exit: -1, RTT: "3000ms", ReqID: r.ReqID, Error: "connect: connection refused"},
	}
	if err := f.SaveRun(r); err != nil {
		t.Fatal(err)
	}
	got, err := f.GetRun(r.ReqID)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(r, got); d != "" {
		t.Errorf("GetRun (-want +got):\n%s", d)
	}
	if got.OK() {
		t.Error("OK() with a failed host")
	}
	if _, err := f.GetRun("ffffffffffffffff"); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetRun(unknown) = %v, want ErrNotFound", err)
	}
	for _, bad := range []string{"../agents/web-01", "a/b", "..", "", "x.json", strings.Repeat("a", 65), "ünï"} {
		if _, err := f.GetRun(bad); err == nil || errors.Is(err, ErrNotFound) {
			t.Errorf("GetRun(%q) = %v, want a request id error", bad, err)
		}
		if err := f.SaveRun(Run{ReqID: bad}); err == nil {
			t.Errorf("SaveRun(%q) succeeded", bad)
		}
	}

	// Pruning goes by the time a record was last written.
	old := time.Now().Add(-48 * time.Hour)
	if err := os.Chtimes(path, old, old); err != nil {
		t.Fatal(err)
	}
	if err := f.SaveRun(Run{ReqID: "fresh", Status: RunRunning}); err != nil {
		t.Fatal(err)
	}
	n, err := f.PruneRuns(time.Now().Add(-24 * time.Hour))
	if err != nil || n != 1 {
		t.Fatalf("PruneRuns = %d, %v; want 1 removed", n, err)
	}
	if _, err := f.GetRun(r.ReqID); !errors.Is(err, ErrNotFound) {
		t.Errorf("pruned run still there: %v", err)
	}
	if _, err := f.GetRun("fresh"); err != nil {
		t.Errorf("fresh run pruned: %v", err)
	}
}

func TestRunOK(t *testing.T) {
	ok := Run{Status: RunDone, Hosts: []string{"a"}, Results: []Result{{Host: "a"}}}
	if !ok.OK() {
		t.Error("done run with exit 0: OK() false")
	}
	for name, r := range map[string]Run{
		"running": {Status: RunRunning, Hosts: []string{"a"}, Results: []Result{{Host: "a"}}},
		"missing": {Status: RunDone, Hosts: []string{"a", "b"}, Results: []Result{{Host: "a"}}},
		"failed":  {Status: RunDone, Hosts: []string{"a"}, Results: []Result{{Host: "a", Exit: 2}}},
	} {
		if r.OK() {
			t.Errorf("%s: OK() true", name)
		}
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func decodeGeneric(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%v\n%s", err, b)
	}
	return m
}

func assertMode(t *testing.T, path string, want os.FileMode) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != want {
		t.Errorf("%s: mode %04o, want %04o", path, got, want)
	}
}
