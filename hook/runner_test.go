package hook

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap/zapcore"
)

func TestCheckDecisions(t *testing.T) {
	t.Parallel()
	type setup func(t *testing.T, dir string) string // returns the hook path
	sh := func(body string) setup {
		return func(t *testing.T, dir string) string { return writeHook(t, dir, "hook", body) }
	}
	tests := []struct {
		name     string
		hook     setup
		timeout  time.Duration
		want     Decision
		hookExit int // the hook_exit log field; -1 = absent
		// after checks what the hook left behind (dir is its directory)
		after func(t *testing.T, dir string)
	}{
		{name: "exit 0", hook: sh("exit 0"), want: Decision{Outcome: Allow}, hookExit: 0},
		{name: "exit 1", hook: sh("exit 1"), want: Decision{Denied, "denied by auth hook"}, hookExit: 1},
		{name: "exit 2", hook: sh("exit 2"), want: Decision{BadCredentials, "bad credentials"}, hookExit: 2},
		{name: "exit 3", hook: sh("exit 3"), want: Decision{InsufficientPrivilege, "insufficient privilege"}, hookExit: 3},
		{name: "exit 4", hook: sh("exit 4"), want: Decision{Denied, "hook exited 4"}, hookExit: 4},
		{name: "exit 255", hook: sh("exit 255"), want: Decision{Denied, "hook exited 255"}, hookExit: 255},
		{
			name: "output with the token is discarded",
			hook: sh(`echo "$DISPATCHER_TOKEN"; echo "$DISPATCHER_TOKEN" >&2; head -c 2000000 /dev/zero; exit 1`),
			want: Decision{Denied, "denied by auth hook"}, hookExit: 1,
		},
		{
			name: "killed by a signal", hook: sh("kill -TERM $$; sleep 5"),
			want: Decision{Denied, "hook killed by SIGTERM"}, hookExit: -1,
		},
		{
			name: "killed by SIGKILL", hook: sh("kill -KILL $$"),
			want: Decision{Denied, "hook killed by SIGKILL"}, hookExit: -1,
		},
		{
			name: "timeout kills the hook and its child",
			hook: func(t *testing.T, dir string) string {
				return writeHook(t, dir, "hook", `echo $$ >"`+dir+`/hook.pid"
sleep 30 &
echo $! >"`+dir+`/child.pid"
trap '' TERM
wait
exit 0`)
			},
			timeout: 300 * time.Millisecond,
			want:    Decision{Denied, "hook timed out after 300ms"}, hookExit: -1,
			after: func(t *testing.T, dir string) {
				hook, child := readPid(t, dir+"/hook.pid"), readPid(t, dir+"/child.pid")
				waitGone(t, "the hook", hook)
				waitGone(t, "the hook's child", child)
			},
		},
		{
			name: "missing",
			hook: func(t *testing.T, dir string) string { return dir + "/no-such-hook" },
			want: Decision{Denied, "auth hook DIR/no-such-hook not found"}, hookExit: -1,
		},
		{
			name: "in a missing directory",
			hook: func(t *testing.T, dir string) string { return dir + "/nodir/hook" },
			want: Decision{Denied, "auth hook DIR/nodir/hook not found"}, hookExit: -1,
		},
		{
			name: "below a file",
			hook: func(t *testing.T, dir string) string { return writeHook(t, dir, "hook", "exit 0") + "/x" },
			want: Decision{Denied, "auth hook DIR/hook/x not found"}, hookExit: -1,
		},
		{
			name: "dangling symlink",
			hook: func(t *testing.T, dir string) string {
				if err := os.Symlink(dir+"/gone", dir+"/hook"); err != nil {
					t.Fatal(err)
				}
				return dir + "/hook"
			},
			want: Decision{Denied, "auth hook DIR/hook not found"}, hookExit: -1,
		},
		{
			name: "symlink to a hook",
			hook: func(t *testing.T, dir string) string {
				target := writeHook(t, dir, "real", "exit 3")
				if err := os.Symlink(target, dir+"/hook"); err != nil {
					t.Fatal(err)
				}
				return dir + "/hook"
			},
			want: Decision{InsufficientPrivilege, "insufficient privilege"}, hookExit: 3,
		},
		{
			name: "not executable",
			hook: func(t *testing.T, dir string) string {
				return writeFile(t, dir+"/hook", "#!/bin/sh\nexit 0\n", 0o644)
			},
			want: Decision{Denied, "auth hook DIR/hook is not executable"}, hookExit: -1,
		},
		{
			name: "directory",
			hook: func(t *testing.T, dir string) string {
				if err := os.Mkdir(dir+"/hook", 0o755); err != nil {
					t.Fatal(err)
				}
				return dir + "/hook"
			},
			want: Decision{Denied, "auth hook DIR/hook is not a regular file"}, hookExit: -1,
		},
		{
			name: "missing interpreter",
			hook: func(t *testing.T, dir string) string {
				return writeFile(t, dir+"/hook", "#!/no/such/shell\nexit 0\n", 0o755)
			},
			want:     Decision{Denied, "auth hook DIR/hook could not be started: no such file or directory (is its #! interpreter missing?)"},
			hookExit: -1,
		},
		{
			name: "not a program",
			hook: func(t *testing.T, dir string) string {
				return writeFile(t, dir+"/hook", "\x00\x01\x02 garbage\n", 0o755)
			},
			want: Decision{Denied, "auth hook DIR/hook could not be started: exec format error"}, hookExit: -1,
		},
		{
			name: "relative path",
			hook: func(t *testing.T, dir string) string { return "hooks/auth-hook" },
			want: Decision{Denied, `auth hook path "hooks/auth-hook" is not absolute`}, hookExit: -1,
		},
		{
			name: "empty path",
			hook: func(t *testing.T, dir string) string { return "" },
			want: Decision{Denied, "no auth hook configured"}, hookExit: -1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			killAtCleanup(t, dir+"/hook.pid") // hooks that write it leave a group behind on failure
			log, l := newLogs()
			r := &Runner{Path: tt.hook(t, dir), Timeout: tt.timeout, Log: log}
			if r.Timeout == 0 {
				r.Timeout = testTimeout
			}
			got := check(t, t.Context(), r, testContext())
			want := tt.want
			want.Reason = strings.ReplaceAll(want.Reason, "DIR", dir)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decision (-want +got):\n%s", diff)
			}
			if tt.after != nil {
				tt.after(t, dir)
			}
			assertNoToken(t, got, l)

			// One line per decision, with the fields of the contract.
			entries := l.observed.All()
			if len(entries) != 1 {
				t.Fatalf("logged %d lines, want 1:\n%s", len(entries), l.text())
			}
			e := entries[0]
			wantFields := map[string]any{
				"request": "run", "script": "deploy", "username": "alice",
				"source_ip": "127.0.0.1", "outcome": want.Outcome.String(),
			}
			wantLevel, wantMsg := zapcore.WarnLevel, "auth-deny"
			if want.Allowed() {
				wantLevel, wantMsg = zapcore.DebugLevel, "auth-allow"
			} else {
				wantFields["reason"] = want.Reason
			}
			if tt.hookExit >= 0 {
				wantFields["hook_exit"] = int64(tt.hookExit)
			}
			fields := e.ContextMap()
			if _, ok := fields["took"]; !ok {
				t.Error("no took field")
			}
			delete(fields, "took")
			if diff := cmp.Diff(wantFields, fields); diff != "" {
				t.Errorf("log fields (-want +got):\n%s", diff)
			}
			if e.Level != wantLevel || e.Message != wantMsg {
				t.Errorf("logged %s %q, want %s %q", e.Level, e.Message, wantLevel, wantMsg)
			}
		})
	}
}

func TestCheckNilRunner(t *testing.T) {
	t.Parallel()
	var r *Runner
	got := r.Check(t.Context(), testContext())
	if diff := cmp.Diff(Decision{Denied, "no auth hook configured"}, got); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

// TestCheckEnvironment checks that the hook gets exactly the DISPATCHER_*
// variables, PATH and LANG, and nothing of the test's own environment. It
// cannot be parallel: it sets a variable of its own.
func TestCheckEnvironment(t *testing.T) {
	t.Setenv("DISPATCHER_LEAK_CHECK", "leaked")
	t.Setenv("HOME", "/leaked/home")

	dir := t.TempDir()
	// /proc/$$/environ is exactly what the shell was started with, before it
	// adds variables of its own (PWD …); it is NUL-separated, so values with
	// newlines survive.
	hook := writeHook(t, dir, "hook", `cat /proc/$$/environ >"`+dir+`/environ"
env >"`+dir+`/env"
cat >"`+dir+`/stdin"
exit 0`)
	c := testContext()
	c.Args = []string{"two words", "line1\nline2\n", "", `quote" back\slash`, "<&>", "tab\there", "ünïcødé", "$(touch /tmp/x)", "a,b"}
	d := check(t, t.Context(), &Runner{Path: hook, Timeout: testTimeout}, c)
	if !d.Allowed() {
		t.Fatalf("hook denied: %v", d)
	}

	raw, err := os.ReadFile(dir + "/environ")
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for kv := range strings.SplitSeq(strings.TrimSuffix(string(raw), "\x00"), "\x00") {
		k, v, _ := strings.Cut(kv, "=")
		got[k] = v
	}
	stdin, err := os.ReadFile(dir + "/stdin")
	if err != nil {
		t.Fatal(err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(stdin, &fields); err != nil {
		t.Fatalf("stdin %q: %v", stdin, err)
	}
	want := map[string]string{
		"DISPATCHER_ACTION":    "run",
		"DISPATCHER_SCRIPT":    "deploy",
		"DISPATCHER_HOSTS":     "web-01,web-02:7443",
		"DISPATCHER_ARGS":      "two words line1\nline2\n  quote\" back\\slash <&> tab\there ünïcødé $(touch /tmp/x) a,b",
		"DISPATCHER_ARGS_JSON": `["two words","line1\nline2\n","","quote\" back\\slash","<&>","tab\there","ünïcødé","$(touch /tmp/x)","a,b"]`,
		"DISPATCHER_USERNAME":  "alice",
		"DISPATCHER_TOKEN":     testToken,
		"DISPATCHER_SOURCE_IP": "127.0.0.1",
		"DISPATCHER_TIMESTAMP": "2025-05-01T12:00:00.123456789Z",
		"LANG":                 "C.UTF-8",
		"PATH":                 "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("hook environment (-want +got):\n%s", diff)
	}
	// The array is the very bytes of the stdin field, and decodes to the
	// arguments as given.
	if got, want := got["DISPATCHER_ARGS_JSON"], string(fields["args"]); got != want {
		t.Errorf("DISPATCHER_ARGS_JSON %s differs from the stdin args %s", got, want)
	}
	var args []string
	if err := json.Unmarshal([]byte(got["DISPATCHER_ARGS_JSON"]), &args); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(c.Args, args); diff != "" {
		t.Errorf("DISPATCHER_ARGS_JSON decoded (-want +got):\n%s", diff)
	}
	if got, want := got["DISPATCHER_TIMESTAMP"], strings.Trim(string(fields["timestamp"]), `"`); got != want {
		t.Errorf("DISPATCHER_TIMESTAMP %s differs from the stdin timestamp %s", got, want)
	}

	// What `env` shows adds only what the shell sets itself.
	envOut, err := os.ReadFile(dir + "/env")
	if err != nil {
		t.Fatal(err)
	}
	for _, leak := range []string{"DISPATCHER_LEAK_CHECK", "leaked", "/leaked/home"} {
		if bytes.Contains(envOut, []byte(leak)) {
			t.Errorf("env output shows %q from the parent:\n%s", leak, envOut)
		}
	}
}

func TestCheckStdin(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		ctx     Context
		wantRaw []string // substrings of the raw stdin
		noRaw   []string // must not appear
		hosts   string   // DISPATCHER_HOSTS
	}{
		{
			name: "dispatcher side",
			ctx: func() Context {
				c := testContext()
				c.Args = []string{"spaced out", "multi\nline", "<&>"}
				return c
			}(),
			wantRaw: []string{`"hosts":["web-01","web-02:7443"]`, `"args":["spaced out","multi\nline","<&>"]`, `"timestamp":"2025-05-01T12:00:00.123456789Z"`},
			hosts:   "web-01,web-02:7443",
		},
		{
			name: "agent side: no hosts, no args",
			ctx: Context{
				Action: "run", Script: "uptime", Username: "bob", Token: testToken,
				SourceIP: "192.0.2.10", Timestamp: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC),
			},
			wantRaw: []string{`"args":[]`, `"timestamp":"2025-05-01T12:00:00Z"`},
			noRaw:   []string{`"hosts"`, "null"},
		},
		{
			name: "discovery, empty token",
			ctx: Context{
				Action: "discovery", SourceIP: "192.0.2.10",
				Timestamp: time.Date(2025, 5, 1, 12, 0, 0, 0, time.UTC),
			},
			wantRaw: []string{`"action":"discovery"`, `"token":""`, `"script":""`, `"args":[]`},
			noRaw:   []string{`"hosts"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			hook := writeHook(t, dir, "hook", `cat >"`+dir+`/stdin"
printf %s "$DISPATCHER_HOSTS" >"`+dir+`/hosts"
exit 0`)
			if d := check(t, t.Context(), &Runner{Path: hook, Timeout: testTimeout}, tt.ctx); !d.Allowed() {
				t.Fatalf("hook denied: %v", d)
			}
			raw, err := os.ReadFile(dir + "/stdin")
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.HasSuffix(raw, []byte("}\n")) || bytes.Count(raw, []byte("\n")) != 1 {
				t.Errorf("stdin is not one JSON object on one line: %q", raw)
			}
			for _, s := range tt.wantRaw {
				if !bytes.Contains(raw, []byte(s)) {
					t.Errorf("stdin %s lacks %s", raw, s)
				}
			}
			for _, s := range tt.noRaw {
				if bytes.Contains(raw, []byte(s)) {
					t.Errorf("stdin %s has %s", raw, s)
				}
			}
			var got Context
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&got); err != nil {
				t.Fatalf("decoding stdin %s: %v", raw, err)
			}
			want := tt.ctx
			if want.Args == nil {
				want.Args = []string{}
			}
			if diff := cmp.Diff(want, got); diff != "" { // times compare with Equal
				t.Errorf("stdin context (-want +got):\n%s", diff)
			}
			if got.Timestamp.Location() != time.UTC {
				t.Errorf("timestamp %v is not in UTC", got.Timestamp)
			}
			hosts, err := os.ReadFile(dir + "/hosts")
			if err != nil {
				t.Fatal(err)
			}
			if string(hosts) != tt.hosts {
				t.Errorf("DISPATCHER_HOSTS = %q, want %q", hosts, tt.hosts)
			}
		})
	}
}

func TestCheckZeroTimestampIsNow(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hook := writeHook(t, dir, "hook", `printf %s "$DISPATCHER_TIMESTAMP" >"`+dir+`/ts"; exit 0`)
	c := testContext()
	c.Timestamp = time.Time{}
	before := time.Now()
	if d := check(t, t.Context(), &Runner{Path: hook, Timeout: testTimeout}, c); !d.Allowed() {
		t.Fatalf("hook denied: %v", d)
	}
	b, err := os.ReadFile(dir + "/ts")
	if err != nil {
		t.Fatal(err)
	}
	ts, err := time.Parse(time.RFC3339Nano, string(b))
	if err != nil || !strings.HasSuffix(string(b), "Z") {
		t.Fatalf("DISPATCHER_TIMESTAMP %q: not RFC 3339 UTC (%v)", b, err)
	}
	if ts.Before(before.Add(-time.Second)) || ts.After(time.Now().Add(time.Second)) {
		t.Errorf("DISPATCHER_TIMESTAMP %v is not the time of the check (%v)", ts, before)
	}
}

// bigArgs returns n arguments of size bytes each.
func bigArgs(n, size int) []string {
	args := make([]string, n)
	for i := range args {
		args[i] = strings.Repeat(string(rune('a'+i%26)), size)
	}
	return args
}

func TestCheckLargeContext(t *testing.T) {
	t.Parallel()
	// About 120 KiB of arguments: more than a pipe holds (64 KiB), less
	// than the longest environment variable.
	fits := bigArgs(120, 1000)

	t.Run("hook exits without reading stdin", func(t *testing.T) {
		t.Parallel()
		hook := writeHook(t, t.TempDir(), "hook", "exit 3")
		c := testContext()
		c.Args = fits
		got := check(t, t.Context(), &Runner{Path: hook, Timeout: testTimeout}, c)
		if diff := cmp.Diff(Decision{InsufficientPrivilege, "insufficient privilege"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("hook leaves a child holding stdin", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		// A background job's stdin is /dev/null unless redirected from a
		// descriptor saved beforehand.
		hook := writeHook(t, dir, "hook", `echo $$ >"`+dir+`/hook.pid"
exec 3<&0
sleep 60 <&3 3<&- &
exit 0`)
		c := testContext()
		c.Args = fits
		killAtCleanup(t, dir+"/hook.pid") // the hook's group, the sleep included
		got := check(t, t.Context(), &Runner{Path: hook, Timeout: testTimeout}, c)
		if diff := cmp.Diff(Decision{Outcome: Allow}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	t.Run("hook reads it all", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		hook := writeHook(t, dir, "hook", `cat >"`+dir+`/stdin"; exit 0`)
		c := testContext()
		c.Args = fits
		if d := check(t, t.Context(), &Runner{Path: hook, Timeout: testTimeout}, c); !d.Allowed() {
			t.Fatalf("hook denied: %v", d)
		}
		var got Context
		raw, _ := os.ReadFile(dir + "/stdin")
		if err := json.Unmarshal(raw, &got); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got.Args, fits) {
			t.Error("arguments read from stdin differ from those sent")
		}
	})

	t.Run("hook never reads stdin and hangs", func(t *testing.T) {
		t.Parallel()
		hook := writeHook(t, t.TempDir(), "hook", "sleep 30")
		c := testContext()
		c.Args = fits
		got := check(t, t.Context(), &Runner{Path: hook, Timeout: 300 * time.Millisecond}, c)
		if diff := cmp.Diff(Decision{Denied, "hook timed out after 300ms"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
	})

	// 1 MiB of arguments cannot be carried by one environment variable:
	// denied at once, without starting the hook.
	tooLarge := []struct {
		name   string
		modify func(c *Context)
		want   string
	}{
		{
			name:   "1 MiB of arguments",
			modify: func(c *Context) { c.Args = bigArgs(1024, 1024) },
			want:   "arguments too large for the auth hook: DISPATCHER_ARGS_JSON would be 1051670 bytes, the limit for one environment variable is 131071",
		},
		{
			name:   "one argument just too large",
			modify: func(c *Context) { c.Args = []string{strings.Repeat("x", MaxEnvEntry-len("DISPATCHER_ARGS_JSON=")-3)} },
			want:   "arguments too large for the auth hook: DISPATCHER_ARGS_JSON would be 131072 bytes, the limit for one environment variable is 131071",
		},
		{
			name:   "10000 hosts",
			modify: func(c *Context) { c.Hosts = bigArgs(10000, 20) },
			want:   "host list too large for the auth hook: DISPATCHER_HOSTS would be 210016 bytes, the limit for one environment variable is 131071",
		},
		{
			name:   "huge token",
			modify: func(c *Context) { c.Token = strings.Repeat(testToken, 10000) },
			want:   "token too large for the auth hook: DISPATCHER_TOKEN would be 290017 bytes, the limit for one environment variable is 131071",
		},
	}
	for _, tt := range tooLarge {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			hook := writeHook(t, dir, "hook", `touch "`+dir+`/ran"; exit 0`)
			c := testContext()
			tt.modify(&c)
			log, l := newLogs()
			got := check(t, t.Context(), &Runner{Path: hook, Timeout: testTimeout, Log: log}, c)
			if diff := cmp.Diff(Decision{Denied, tt.want}, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if _, err := os.Stat(dir + "/ran"); err == nil {
				t.Error("the hook ran")
			}
			assertNoToken(t, got, l)
		})
	}

	t.Run("just fits", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		hook := writeHook(t, dir, "hook", `cat >"`+dir+`/stdin"; exit 0`)
		c := testContext()
		c.Args = []string{strings.Repeat("x", MaxEnvEntry-len("DISPATCHER_ARGS_JSON=")-4)}
		if d := check(t, t.Context(), &Runner{Path: hook, Timeout: testTimeout}, c); !d.Allowed() {
			t.Fatalf("hook denied: %v", d)
		}
	})
}

func TestCheckNUL(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		modify func(c *Context)
		want   string
	}{
		{"argument", func(c *Context) { c.Args = []string{"ok", "a\x00b"} }, "argument 2 contains a NUL byte, which the auth hook's environment cannot carry"},
		{"host", func(c *Context) { c.Hosts = []string{"a\x00"} }, "host 1 contains a NUL byte, which the auth hook's environment cannot carry"},
		{"token", func(c *Context) { c.Token = testToken + "\x00" + testToken }, "the token contains a NUL byte, which the auth hook's environment cannot carry"},
		{"username", func(c *Context) { c.Username = "\x00" }, "the username contains a NUL byte, which the auth hook's environment cannot carry"},
		{"script", func(c *Context) { c.Script = "\x00" }, "the script name contains a NUL byte, which the auth hook's environment cannot carry"},
		{"action", func(c *Context) { c.Action = "\x00" }, "the action contains a NUL byte, which the auth hook's environment cannot carry"},
		{"source ip", func(c *Context) { c.SourceIP = "\x00" }, "the source IP contains a NUL byte, which the auth hook's environment cannot carry"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			hook := writeHook(t, dir, "hook", `touch "`+dir+`/ran"; exit 0`)
			c := testContext()
			tt.modify(&c)
			log, l := newLogs()
			got := check(t, t.Context(), &Runner{Path: hook, Timeout: testTimeout, Log: log}, c)
			if diff := cmp.Diff(Decision{Denied, tt.want}, got); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
			if _, err := os.Stat(dir + "/ran"); err == nil {
				t.Error("the hook ran")
			}
			assertNoToken(t, got, l)
		})
	}
}

func TestCheckCancelled(t *testing.T) {
	t.Parallel()
	t.Run("before", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		hook := writeHook(t, dir, "hook", `touch "`+dir+`/ran"; exit 0`)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		log, l := newLogs()
		got := check(t, ctx, &Runner{Path: hook, Timeout: testTimeout, Log: log}, testContext())
		if diff := cmp.Diff(Decision{Denied, "cancelled"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		if _, err := os.Stat(dir + "/ran"); err == nil {
			t.Error("the hook ran")
		}
		assertNoToken(t, got, l)
	})
	t.Run("while running", func(t *testing.T) {
		t.Parallel()
		dir := t.TempDir()
		hook := writeHook(t, dir, "hook", `echo $$ >"`+dir+`/hook.pid"
sleep 30 &
echo $! >"`+dir+`/child.pid"
wait`)
		killAtCleanup(t, dir+"/hook.pid")
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		go func() { // cancel once the hook has started its child
			for ctx.Err() == nil {
				if b, err := os.ReadFile(dir + "/child.pid"); err == nil && bytes.HasSuffix(b, []byte("\n")) {
					cancel()
					return
				}
				time.Sleep(5 * time.Millisecond)
			}
		}()
		log, l := newLogs()
		got := check(t, ctx, &Runner{Path: hook, Timeout: testTimeout, Log: log}, testContext())
		if diff := cmp.Diff(Decision{Denied, "cancelled"}, got); diff != "" {
			t.Errorf("(-want +got):\n%s", diff)
		}
		hookPid, child := readPid(t, dir+"/hook.pid"), readPid(t, dir+"/child.pid")
		waitGone(t, "the hook", hookPid)
		waitGone(t, "the hook's child", child)
		assertNoToken(t, got, l)
	})
}

// TestCheckConcurrent runs one Runner from many goroutines (go test -race).
func TestCheckConcurrent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	hook := writeHook(t, dir, "hook", `case $DISPATCHER_USERNAME in alice) exit 0 ;; *) exit 3 ;; esac`)
	log, l := newLogs()
	r := &Runner{Path: hook, Timeout: testTimeout, Log: log}
	results := make(chan error, 16)
	for i := range 16 {
		go func() {
			c := testContext()
			want := Decision{Outcome: Allow}
			if i%2 == 1 {
				c.Username = "mallory"
				want = Decision{InsufficientPrivilege, "insufficient privilege"}
			}
			if got := r.Check(t.Context(), c); got != want {
				results <- &mismatch{got, want}
				return
			}
			results <- nil
		}()
	}
	for range 16 {
		if err := <-results; err != nil {
			t.Error(err)
		}
	}
	if strings.Contains(l.text(), testToken) {
		t.Error("log contains the token")
	}
}

type mismatch struct{ got, want Decision }

func (m *mismatch) Error() string { return "got " + m.got.Error() + ", want " + m.want.Error() }

// TestDefaultTimeout checks that a zero or negative Timeout stands for
// DefaultTimeout rather than "no time at all".
func TestDefaultTimeout(t *testing.T) {
	t.Parallel()
	if DefaultTimeout != 10*time.Second {
		t.Errorf("DefaultTimeout = %v, want 10s (hook_timeout's default)", DefaultTimeout)
	}
	hook := writeHook(t, t.TempDir(), "hook", "exit 0")
	for _, timeout := range []time.Duration{0, -time.Second} {
		if d := check(t, t.Context(), &Runner{Path: hook, Timeout: timeout}, testContext()); !d.Allowed() {
			t.Errorf("Timeout %v: %v", timeout, d)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		300 * time.Millisecond:  "300ms",
		10 * time.Second:        "10s",
		1500 * time.Millisecond: "1.5s",
		time.Minute:             "1m",
		90 * time.Second:        "1m30s",
		time.Hour:               "1h",
		90 * time.Minute:        "1h30m",
		time.Hour + time.Second: "1h0m1s",
	} {
		if got := formatDuration(d); got != want {
			t.Errorf("formatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
