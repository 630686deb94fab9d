package logging

import (
	"bytes"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

var tsRE = regexp.MustCompile(` TS=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z`)

// stripTS removes the TS pair from every kv line, after checking each line
// has exactly one.
func stripTS(t *testing.T, out string) string {
	t.Helper()
	for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if n := len(tsRE.FindAllString(line, -1)); n != 1 {
			t.Errorf("line has %d TS pairs: %q", n, line)
		}
	}
	return tsRE.ReplaceAllString(out, "")
}

func newLogger(t *testing.T, o Options) *zap.Logger {
	t.Helper()
	l, closeLog, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := closeLog(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return l
}

func TestNewStderr(t *testing.T) {
	var buf bytes.Buffer
	l := newLogger(t, Options{Output: OutputStderr, Stderr: &buf})
	l = l.Named("agent")
	Event(l, ActionStart, zap.String("addr", ":7443"))
	l.Debug("hidden")
	EventLevel(l, zapcore.WarnLevel, ActionIPBlock, zap.String("ip", "192.0.2.1"))
	want := "ACTION=start ADDR=:7443 LEVEL=info LOGGER=agent\n" +
		"ACTION=ip-block IP=192.0.2.1 LEVEL=warn LOGGER=agent\n"
	if diff := cmp.Diff(want, stripTS(t, buf.String())); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
}

func TestNewLevel(t *testing.T) {
	var buf bytes.Buffer
	l := newLogger(t, Options{Output: OutputStderr, Stderr: &buf, Level: zapcore.WarnLevel})
	Event(l, ActionRun)
	EventLevel(l, zapcore.ErrorLevel, ActionRenew, zap.Error(errors.New("csr key mismatch")))
	want := "ACTION=renew ERROR=\"csr key mismatch\" LEVEL=error\n"
	if diff := cmp.Diff(want, stripTS(t, buf.String())); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}

	buf.Reset()
	l = newLogger(t, Options{Output: OutputStderr, Stderr: &buf, Level: zapcore.DebugLevel})
	l.Debug("debug-line")
	if !strings.HasPrefix(buf.String(), "ACTION=debug-line LEVEL=debug") {
		t.Errorf("debug line missing: %q", buf.String())
	}
}

func TestNewJSON(t *testing.T) {
	var buf bytes.Buffer
	l := newLogger(t, Options{Output: OutputStderr, Format: FormatJSON, Stderr: &buf})
	before := time.Now().Add(-time.Second)
	Event(l.Named("api").With(zap.String("reqid", "r1")), ActionAPIRequest,
		zap.String("path", "/run"), zap.Int("status", 200), zap.Duration("took", 3*time.Millisecond),
		zap.String("token", secret))
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("want 1 line, got %q", buf.String())
	}
	var got map[string]any
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatalf("%v: %s", err, lines[0])
	}
	ts, err := time.Parse(TimeLayout, got["ts"].(string))
	if err != nil || ts.Before(before) || ts.After(time.Now().Add(time.Second)) || !strings.HasSuffix(got["ts"].(string), "Z") {
		t.Errorf("ts %v: %v", got["ts"], err)
	}
	delete(got, "ts")
	want := map[string]any{
		"action": "api-request", "level": "info", "logger": "api",
		"reqid": "r1", "path": "/run", "status": 200.0, "took": "3ms", "token": Redacted,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("json (-want +got):\n%s", diff)
	}
}

func TestNewFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dispatcher.log")
	for i, action := range []string{ActionStart, ActionStop} {
		l, closeLog, err := New(Options{Output: path})
		if err != nil {
			t.Fatal(err)
		}
		Event(l, action, zap.Int("n", i))
		if err := closeLog(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if err := closeLog(); err != nil {
			t.Fatalf("second close: %v", err)
		}
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o640 {
		t.Errorf("mode %v, want 0640", got)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := "ACTION=start LEVEL=info N=0\nACTION=stop LEVEL=info N=1\n"
	if diff := cmp.Diff(want, stripTS(t, string(data))); diff != "" {
		t.Errorf("file (-want +got):\n%s", diff)
	}
}

func TestNewFileKeepsExistingMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.log")
	if err := os.WriteFile(path, []byte("old\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	l := newLogger(t, Options{Output: path})
	Event(l, ActionRun)
	_ = l.Sync()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if got := fi.Mode().Perm(); got != 0o600 {
		t.Errorf("mode %v, want 0600 kept", got)
	}
	data, _ := os.ReadFile(path)
	if !strings.HasPrefix(string(data), "old\nACTION=run ") {
		t.Errorf("not appended: %q", data)
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name     string
		opts     Options
		wantErr  string
		notExist bool
	}{
		{name: "bad format", opts: Options{Output: OutputStderr, Format: "xml"}, wantErr: `log format "xml": want "kv" or "json"`},
		{name: "relative path", opts: Options{Output: "logs/x.log"}, wantErr: `log output "logs/x.log": want "syslog", "stderr" or an absolute file path`},
		{name: "missing dir", opts: Options{Output: filepath.Join(dir, "no", "x.log")}, wantErr: "open log file: ", notExist: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, closeLog, err := New(tt.opts)
			if err == nil {
				t.Fatal("no error")
			}
			if l != nil || closeLog != nil {
				t.Error("logger or close returned with an error")
			}
			if !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Errorf("error %q, want prefix %q", err, tt.wantErr)
			}
			if tt.notExist && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("error %v does not wrap fs.ErrNotExist", err)
			}
		})
	}
}

func TestNewDefaultOutputWithoutDevLog(t *testing.T) {
	var buf bytes.Buffer
	l := newLogger(t, Options{Stderr: &buf, devLog: filepath.Join(t.TempDir(), "no-dev-log")})
	Event(l, ActionRun)
	if diff := cmp.Diff("ACTION=run LEVEL=info\n", stripTS(t, buf.String())); diff != "" {
		t.Errorf("stderr (-want +got):\n%s", diff)
	}
}

func TestCallerAndStack(t *testing.T) {
	var buf bytes.Buffer
	l := newLogger(t, Options{Output: OutputStderr, Stderr: &buf, Caller: true, Stack: true})
	Event(l, ActionRun)
	EventLevel(l, zapcore.ErrorLevel, ActionRenew)
	l.Info("direct")
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("want 3 lines, got %q", buf.String())
	}
	for i, line := range lines {
		kv, err := parseKV(line)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]string{}
		for _, p := range kv {
			m[p[0]] = p[1]
		}
		if !strings.HasPrefix(m["CALLER"], "logging/logging_test.go:") {
			t.Errorf("line %d: CALLER=%q, want this test file", i, m["CALLER"])
		}
		if _, ok := m["STACK"]; ok != (i == 1) {
			t.Errorf("line %d: STACK present %v, want only on the error line", i, ok)
		}
	}
}
