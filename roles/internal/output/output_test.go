package output

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// golden compares got with testdata/NAME.golden (rewritten with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got):\n%s", path, d)
	}
}

// results is a run on four hosts: a success, a script failure with
// stderr and no final newline, an unreachable host, and a truncated,
// signalled script whose output is not UTF-8.
func results() []store.Result {
	binary := []byte("caf\xe9 \x00bytes\n")
	return []store.Result{
		{Host: "web-01", Exit: 0, Stdout: "deployed v2\nall good\n", RTT: "12ms", ReqID: "0123456789abcdef"},
		{Host: "web-02:7450", Exit: 2, Stdout: "partial", Stderr: "disk full\nrolling back\n", RTT: "40ms", ReqID: "0123456789abcdef"},
		{Host: "web-03", Exit: -1, RTT: "3001ms", ReqID: "0123456789abcdef", Error: "connect timeout after 3s"},
		{Host: "db-01", Exit: 126, Stdout: string([]rune(string(binary))), StdoutB64: base64.StdEncoding.EncodeToString(binary),
			RTT: "5000ms", ReqID: "0123456789abcdef", Truncated: true, Signal: "SIGKILL"},
	}
}

func TestRunHumanGolden(t *testing.T) {
	var b bytes.Buffer
	for _, r := range results() {
		if err := WriteRunResult(&b, r); err != nil {
			t.Fatal(err)
		}
	}
	golden(t, "run", b.Bytes())
	// Exact bytes of stdout, not the replacement characters of the text.
	if !bytes.Contains(b.Bytes(), []byte("caf\xe9 \x00bytes\n")) {
		t.Error("stdout with invalid UTF-8 not written byte for byte")
	}
}

func TestRunJSONGolden(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, control.RunReport{OK: false, ReqID: "0123456789abcdef", Results: results()}); err != nil {
		t.Fatal(err)
	}
	golden(t, "run.json", b.Bytes())
	// The SPEC §6 shape: ok, reqid, results with host, exit, stdout,
	// stderr, rtt, reqid and error only when there is one.
	var v struct {
		OK      *bool            `json:"ok"`
		ReqID   string           `json:"reqid"`
		Results []map[string]any `json:"results"`
	}
	if err := json.Unmarshal(b.Bytes(), &v); err != nil {
		t.Fatal(err)
	}
	if v.OK == nil || *v.OK || v.ReqID != "0123456789abcdef" || len(v.Results) != 4 {
		t.Fatalf("top level: %+v", v)
	}
	for _, r := range v.Results {
		for _, k := range []string{"host", "exit", "stdout", "stderr", "rtt", "reqid"} {
			if _, ok := r[k]; !ok {
				t.Errorf("%v lacks %q", r["host"], k)
			}
		}
		if _, ok := r["error"]; ok != (r["host"] == "web-03") {
			t.Errorf("%v: error field present = %t", r["host"], ok)
		}
	}
}

func TestPingGolden(t *testing.T) {
	ping := []control.PingResult{
		{Host: "web-01", Status: "ok", RTT: "3ms", Expiry: "Jun  7 16:28:00 2027 GMT", Version: "0.1.0"},
		{Host: "web-02.example.com:7450", Status: "ok", RTT: "12ms", Expiry: "Jan 15 09:00:00 2027 GMT", Version: "0.5.3",
			Serial: "0b0670", ExpiresInDays: intp(12), ExpiryWarning: true},
		{Host: "web-03", Status: "error", RTT: "10001ms", Error: "connect timeout after 10s"},
		{Host: "web-04", Status: "ok", RTT: "5ms", Expiry: "Jan  2 09:00:00 2026 GMT", Version: "0.1.0",
			Serial: "1f2e3d", ExpiresInDays: intp(1), Renewed: &control.RenewedCert{Serial: "4c5d6e", Expiry: "Jan  1 09:00:00 2027 GMT"}},
	}
	var b bytes.Buffer
	if err := WritePingTable(&b, ping); err != nil {
		t.Fatal(err)
	}
	golden(t, "ping", b.Bytes())

	b.Reset()
	if err := WriteJSON(&b, control.PingReport{OK: false, Results: ping}); err != nil {
		t.Fatal(err)
	}
	golden(t, "ping.json", b.Bytes())
}

func intp(n int) *int { return &n }

func TestDiscoverGolden(t *testing.T) {
	disc := []control.DiscoverResult{
		{Host: "web-01", Status: "ok", RTT: "4ms", Version: "0.1.0", Tags: map[string]string{"role": "web", "env": "prod"},
			Scripts: []wire.ScriptInfo{{Name: "deploy", Path: "/opt/s/deploy", Executable: true}, {Name: "broken", Path: "/opt/s/broken"}}},
		{Host: "web-02", Status: "error", RTT: "1ms", Tags: map[string]string{}, Scripts: []wire.ScriptInfo{},
			Error: "agent identity check failed: host name mismatch: certificate is for \"web-99\", dialled \"web-02\""},
	}
	var b bytes.Buffer
	if err := WriteDiscoverTable(&b, disc); err != nil {
		t.Fatal(err)
	}
	golden(t, "discover", b.Bytes())
	b.Reset()
	if err := WriteJSON(&b, control.DiscoverReport{OK: false, Results: disc}); err != nil {
		t.Fatal(err)
	}
	golden(t, "discover.json", b.Bytes())
}

func TestStatusAndLocksGolden(t *testing.T) {
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	run := store.Run{ReqID: "0123456789abcdef", Script: "deploy", Args: []string{"v2", "a b"}, Hosts: []string{"web-01", "web-03"},
		Username: "alice", Status: store.RunDone, Started: start, Finished: start.Add(3 * time.Second),
		Results: []store.Result{results()[0], results()[2]}}
	var b bytes.Buffer
	if err := WriteRunStatus(&b, run); err != nil {
		t.Fatal(err)
	}
	b.WriteString("--- json\n")
	if err := WriteJSON(&b, StatusJSON{OK: run.OK(), Run: run}); err != nil {
		t.Fatal(err)
	}
	golden(t, "status", b.Bytes())

	locks := []store.LockInfo{
		{LockKey: store.LockKey{Host: "web-01", Script: "deploy"}, LockHolder: store.LockHolder{PID: 4242, ReqID: "0123456789abcdef", User: "alice", Started: start}},
		{LockKey: store.LockKey{Host: "web-02", Script: "restart"}}, // held by a Perl dispatcher
	}
	b.Reset()
	if err := WriteLocksTable(&b, locks); err != nil {
		t.Fatal(err)
	}
	b.WriteString("--- json\n")
	if err := WriteJSON(&b, NewLocksJSON(locks)); err != nil {
		t.Fatal(err)
	}
	golden(t, "locks", b.Bytes())
}

func TestTable(t *testing.T) {
	tb := NewTable("HOST", "NOTE", "X")
	tb.Row("añb", "line\nbreak\ttab")
	tb.Row("h", "", "1", "dropped")
	var b bytes.Buffer
	if err := tb.Write(&b); err != nil {
		t.Fatal(err)
	}
	want := "HOST  NOTE            X\n" +
		"----  --------------  -\n" +
		"añb   line break tab\n" +
		"h                     1\n"
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("table (-want +got):\n%s", d)
	}
}

func TestStreamer(t *testing.T) {
	var b bytes.Buffer
	s := NewStreamer(&b)
	s.Write("web-01", "stdout", []byte("one\ntw"))
	s.Write("web-02", "stderr", []byte("oops\n"))
	s.Write("web-01", "stdout", []byte("o\nthree"))
	s.Write("web-01", "stderr", []byte("half"))
	s.Flush("web-01")
	s.Flush("web-02")
	want := "web-01: one\n" +
		"web-02 [stderr]: oops\n" +
		"web-01: two\n" +
		"web-01: three\n" +
		"web-01 [stderr]: half\n"
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("stream (-want +got):\n%s", d)
	}

	// Concurrent hosts never mix within a line.
	b.Reset()
	var wg sync.WaitGroup
	for _, h := range []string{"a", "b", "c", "d"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 200 {
				s.Write(h, "stdout", []byte("xxxxxxxx"))
				s.Write(h, "stdout", []byte("yyyy\n"))
			}
		}()
	}
	wg.Wait()
	for _, line := range strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n") {
		if _, rest, _ := strings.Cut(line, ": "); rest != "xxxxxxxxyyyy" {
			t.Fatalf("mixed line %q", line)
		}
	}

	// A line longer than the limit comes out in pieces, not all in memory.
	b.Reset()
	s.Write("big", "stdout", bytes.Repeat([]byte("z"), maxPartial+10))
	s.Flush("big")
	if got := strings.Count(b.String(), "big: "); got != 2 {
		t.Errorf("long line in %d pieces, want 2", got)
	}
}

func TestProgress(t *testing.T) {
	if p := NewProgress(&bytes.Buffer{}, 10, false); p != nil {
		t.Error("progress when disabled")
	}
	if p := NewProgress(&bytes.Buffer{}, 1, true); p != nil {
		t.Error("progress for one host")
	}
	var nilP *Progress // a nil Progress is usable and silent
	nilP.Start()
	nilP.Add(true)
	ran := false
	nilP.Above(func() { ran = true })
	nilP.Stop()
	if !ran {
		t.Error("nil Progress did not run Above's function")
	}

	var b bytes.Buffer
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := NewProgress(&b, 3, true)
	p.now = func() time.Time { return now }
	p.start = now // no Start: no redraws from a ticker in this test
	p.Add(false)  // before the delay: nothing shown
	if b.Len() != 0 {
		t.Errorf("drawn before the delay: %q", b.String())
	}
	now = now.Add(time.Second)
	p.Add(true)
	p.Above(func() { b.WriteString("==> block\n") })
	p.Stop()
	line := "done 1  failed 1  pending 1  (3 hosts, 1s)"
	blank := strings.Repeat(" ", len(line))
	want := "\r" + line + "\r" + blank + "\r" + "==> block\n" + "\r" + line + "\r" + blank + "\r"
	if d := cmp.Diff(want, b.String()); d != "" {
		t.Errorf("progress output (-want +got):\n%s", d)
	}
}

func TestIsTerminal(t *testing.T) {
	if IsTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is a terminal")
	}
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if IsTerminal(f) {
		t.Error("a file is a terminal")
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	defer w.Close()
	if IsTerminal(w) {
		t.Error("a pipe is a terminal")
	}
}
