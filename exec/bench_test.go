// Benchmarks of the runner and of the checks before it, as the agent runs
// a script: Runner.Run of /bin/true, /bin/echo and /bin/cat (real child
// processes: pipes, process group, stdin context, output capture, wait
// and drain), with output copied or kept in chunks (Request.Chunked, what
// the agent uses) and streamed through OnOutput; Allowlist.Lookup and
// CheckArgs. Each benchmark checks its result once before it is timed.
//
//	go test -run '^$' -bench . ./exec/
package exec

import (
	"context"
	"errors"
	"os"
	osexec "os/exec"
	"strings"
	"testing"
)

// BenchmarkRunTrue measures a whole run of /bin/true through the Runner:
// pipes, process group, context on stdin, output readers, wait and drain.
// Compare with BenchmarkForkExecTrue for the Runner's own overhead.
func BenchmarkRunTrue(b *testing.B) {
	if _, err := os.Stat("/bin/true"); err != nil {
		b.Skip("no /bin/true")
	}
	r := &Runner{}
	req := Request{
		Entry: Entry{Name: "true", Path: "/bin/true"},
		Stdin: []byte(`{"script":"true","args":[],"reqid":"bench","peer_ip":"127.0.0.1","username":"b","token":"","timestamp":0}`),
		Env:   map[string]string{"DISPATCHER_REQID": "bench"},
	}
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := r.Run(ctx, req); res.Exit != 0 {
			b.Fatalf("Exit %d, Error %q", res.Exit, res.Error)
		}
	}
}

// BenchmarkForkExecTrue is the floor: plain os/exec of /bin/true.
func BenchmarkForkExecTrue(b *testing.B) {
	if _, err := os.Stat("/bin/true"); err != nil {
		b.Skip("no /bin/true")
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := osexec.Command("/bin/true").Run(); err != nil {
			b.Fatal(err)
		}
	}
}

// benchContext is the JSON context the agent writes on a script's stdin.
var benchContext = []byte(`{"script":"deploy","args":["--env","prod","release 2024.06.1"],"reqid":"3f2a9c1e-7b4d-4e5f-9a8b-0c1d2e3f4a5b","peer_ip":"192.0.2.10","username":"ci bot","token":"tok-0123456789abcdef","timestamp":"2024-06-07T16:28:00Z"}`)

// benchEnv is the environment the agent adds for every run.
var benchEnv = map[string]string{
	"DISPATCHER_REQID":    "3f2a9c1e-7b4d-4e5f-9a8b-0c1d2e3f4a5b",
	"DISPATCHER_SCRIPT":   "deploy",
	"DISPATCHER_USERNAME": "ci bot",
	"DISPATCHER_PEER_IP":  "192.0.2.10",
}

// benchLines is the argument /bin/echo prints: three lines (and echo's
// newline).
const benchLines = "deploying release 2024.06.1 to web-01\nrestarted 3 workers\nok"

// runOutput returns what res kept of stdout, chunked or not.
func runOutput(res *Result) []byte {
	if res.StdoutChunks != nil {
		return res.StdoutChunks.Bytes()
	}
	return res.Stdout
}

// BenchmarkRun measures Runner.Run as the agent calls it, for a script
// that prints nothing (/bin/true), a few lines (/bin/echo) and its stdin
// context back (/bin/cat); "copied" joins the output into Result.Stdout,
// "chunked" leaves it in chunks (Request.Chunked, released after each
// run), "streamed" adds an OnOutput callback as a streamed run does.
func BenchmarkRun(b *testing.B) {
	cases := []struct {
		name    string
		path    string
		args    []string
		stdin   []byte
		chunked bool
		stream  bool
		want    string
	}{
		{name: "true/no-stdin/copied", path: "/bin/true"},
		{name: "true/stdin/chunked", path: "/bin/true", stdin: benchContext, chunked: true},
		{name: "echo/stdin/copied", path: "/bin/echo", args: []string{benchLines}, stdin: benchContext, want: benchLines + "\n"},
		{name: "echo/stdin/chunked", path: "/bin/echo", args: []string{benchLines}, stdin: benchContext, chunked: true, want: benchLines + "\n"},
		{name: "echo/stdin/streamed", path: "/bin/echo", args: []string{benchLines}, stdin: benchContext, chunked: true, stream: true, want: benchLines + "\n"},
		{name: "cat/stdin/chunked", path: "/bin/cat", stdin: benchContext, chunked: true, want: string(benchContext)},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			if _, err := os.Stat(c.path); err != nil {
				b.Skipf("no %s", c.path)
			}
			r := &Runner{}
			var streamed int
			req := Request{
				Entry:   Entry{Name: "bench", Path: c.path},
				Args:    c.args,
				Stdin:   c.stdin,
				Env:     benchEnv,
				Chunked: c.chunked,
			}
			if c.stream {
				req.OnOutput = func(_ string, data []byte) { streamed += len(data) }
			}
			ctx := context.Background()

			res := r.Run(ctx, req)
			if res.Exit != 0 || res.Error != "" {
				b.Fatalf("exit %d, error %q", res.Exit, res.Error)
			}
			if got := string(runOutput(res)); got != c.want {
				b.Fatalf("stdout %q, want %q", got, c.want)
			}
			if c.stream && streamed != len(c.want) {
				b.Fatalf("onoutput got %d bytes, want %d", streamed, len(c.want))
			}
			if c.chunked != (res.StdoutChunks != nil) || c.chunked && res.Stdout != nil {
				b.Fatalf("chunked %v: stdout chunks %v, stdout %q", c.chunked, res.StdoutChunks, res.Stdout)
			}
			res.Release()

			b.ReportAllocs()
			for b.Loop() {
				res := r.Run(ctx, req)
				if res.Exit != 0 {
					b.Fatalf("exit %d, error %q", res.Exit, res.Error)
				}
				res.Release()
			}
		})
	}
}

// BenchmarkAllowlistLookup is the agent finding the requested script in
// an allowlist of 200 entries: a hit (its Env is copied) and a miss (a
// *NotAllowedError).
func BenchmarkAllowlistLookup(b *testing.B) {
	if _, err := os.Stat("/bin/true"); err != nil {
		b.Skip("no /bin/true")
	}
	var entries []Entry
	for i := range 200 {
		entries = append(entries, Entry{
			Name: "script-" + strings.Repeat("x", i%8) + string(rune('a'+i%26)) + string(rune('a'+i/26)),
			Path: "/bin/true",
			Env:  map[string]string{"APP_ENV": "prod", "APP_REGION": "eu-west-1"},
		})
	}
	entries = append(entries, Entry{Name: "deploy", Path: "/bin/true", Env: map[string]string{"APP_ENV": "prod", "APP_REGION": "eu-west-1"}})
	a, warns := NewAllowlist(entries, nil)
	if len(warns) != 0 || a.Len() != len(entries) {
		b.Fatalf("allowlist of %d entries, warnings %v", a.Len(), warns)
	}
	b.Run("hit", func(b *testing.B) {
		e, err := a.Lookup("deploy")
		if err != nil || e.Path != "/bin/true" || e.Env["APP_REGION"] != "eu-west-1" {
			b.Fatalf("lookup deploy: %+v, %v", e, err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Lookup("deploy"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		_, err := a.Lookup("rollback")
		var na *NotAllowedError
		if !errors.As(err, &na) || na.Reason != "not in the allowlist" {
			b.Fatalf("lookup rollback: %v, want a *NotAllowedError", err)
		}
		b.ReportAllocs()
		for b.Loop() {
			if _, err := a.Lookup("rollback"); err == nil {
				b.Fatal("rollback found")
			}
		}
	})
}

// BenchmarkCheckArgs is the argument check of every run (in the agent's
// handler and again in Run), for a typical short list and for 64
// arguments of 1 KiB.
func BenchmarkCheckArgs(b *testing.B) {
	long := make([]string, 64)
	for i := range long {
		long[i] = strings.Repeat("a b", 1024/3)
	}
	for _, c := range []struct {
		name string
		args []string
	}{
		{"short", []string{"--env", "prod", "release 2024.06.1"}},
		{"64x1KiB", long},
	} {
		b.Run(c.name, func(b *testing.B) {
			if err := CheckArgs(c.args); err != nil {
				b.Fatal(err)
			}
			bad := append(append([]string(nil), c.args...), "nul\x00")
			if err := CheckArgs(bad); err == nil {
				b.Fatal("an argument with a nul byte passed")
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := CheckArgs(c.args); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
