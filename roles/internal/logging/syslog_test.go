//go:build !windows && !plan9

package logging

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// listenSyslog starts a unixgram socket standing in for /dev/log and
// returns its path and a function reading the next message.
func listenSyslog(t *testing.T) (string, func() string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "log") // short: socket paths are limited to ~100 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	path := filepath.Join(dir, "log")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Skipf("no unixgram sockets here: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	read := func() string {
		t.Helper()
		buf := make([]byte, 64<<10)
		if err := conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		n, err := conn.Read(buf)
		if err != nil {
			t.Fatalf("read syslog message: %v", err)
		}
		return string(buf[:n])
	}
	return path, read
}

// splitSyslog checks the priority prefix and the tag[pid] and returns the
// message after them.
func splitSyslog(t *testing.T, pkt, wantPri, tag string) string {
	t.Helper()
	if !strings.HasPrefix(pkt, wantPri) {
		t.Errorf("priority: got %q, want prefix %q", pkt, wantPri)
	}
	marker := fmt.Sprintf(" %s[%d]: ", tag, os.Getpid())
	i := strings.Index(pkt, marker)
	if i < 0 {
		t.Fatalf("no %q in %q", marker, pkt)
	}
	return pkt[i+len(marker):]
}

func TestSyslog(t *testing.T) {
	path, read := listenSyslog(t)
	var stderr bytes.Buffer
	l := newLogger(t, Options{
		Output: OutputSyslog, Tag: "dispatcher-agent", Level: zapcore.DebugLevel, Stderr: &stderr,
		syslogNetwork: "unixgram", syslogAddr: path,
	})
	l = l.With(zap.String("reqid", "r1"))

	// Facility daemon is 3, so the priority is 3*8 + severity.
	tests := []struct {
		log  func()
		pri  string
		want string
	}{
		{func() { l.Debug("debug") }, "<31>", "ACTION=debug LEVEL=debug REQID=r1\n"},
		{func() { Event(l, ActionRun, zap.String("host", "a b")) }, "<30>", "ACTION=run HOST=\"a b\" LEVEL=info REQID=r1\n"},
		{func() { EventLevel(l, zapcore.WarnLevel, ActionRateBlock) }, "<28>", "ACTION=rate-block LEVEL=warn REQID=r1\n"},
		{func() { EventLevel(l, zapcore.ErrorLevel, ActionRenew) }, "<27>", "ACTION=renew LEVEL=error REQID=r1\n"},
		{func() { EventLevel(l, zapcore.DPanicLevel, ActionRun) }, "<26>", "ACTION=run LEVEL=dpanic REQID=r1\n"},
	}
	for _, tt := range tests {
		tt.log()
		msg := splitSyslog(t, read(), tt.pri, "dispatcher-agent")
		if diff := cmp.Diff(tt.want, msg); diff != "" {
			t.Errorf("message (-want +got):\n%s", diff)
		}
	}
	if stderr.Len() != 0 {
		t.Errorf("stderr written: %q", stderr.String())
	}
}

func TestSyslogJSONHasNoTS(t *testing.T) {
	path, read := listenSyslog(t)
	l := newLogger(t, Options{
		Output: OutputSyslog, Format: FormatJSON, Tag: "dispatcher-api",
		syslogNetwork: "unixgram", syslogAddr: path,
	})
	Event(l, ActionAPIRequest, zap.String("path", "/ping"))
	msg := splitSyslog(t, read(), "<30>", "dispatcher-api")
	var got map[string]any
	if err := json.Unmarshal([]byte(msg), &got); err != nil {
		t.Fatalf("%v: %q", err, msg)
	}
	want := map[string]any{"action": "api-request", "level": "info", "path": "/ping"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("json (-want +got):\n%s", diff)
	}
}

func TestDefaultOutputIsSyslogWhenDevLogExists(t *testing.T) {
	path, read := listenSyslog(t)
	l := newLogger(t, Options{Tag: "dispatcher-pairing", devLog: path, syslogNetwork: "unixgram", syslogAddr: path})
	Event(l, ActionPairApprove)
	msg := splitSyslog(t, read(), "<30>", "dispatcher-pairing")
	if diff := cmp.Diff("ACTION=pair-approve LEVEL=info\n", msg); diff != "" {
		t.Errorf("message (-want +got):\n%s", diff)
	}
}

func TestSyslogDefaultTag(t *testing.T) {
	path, read := listenSyslog(t)
	l := newLogger(t, Options{Output: OutputSyslog, syslogNetwork: "unixgram", syslogAddr: path})
	Event(l, ActionPing)
	splitSyslog(t, read(), "<30>", DefaultTag)
}

func TestSyslogFallback(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "no-syslog")
	var stderr bytes.Buffer
	// Level error: the fallback notice must appear anyway.
	l := newLogger(t, Options{
		Output: OutputSyslog, Tag: "dispatcher-agent", Level: zapcore.ErrorLevel, Stderr: &stderr,
		syslogNetwork: "unixgram", syslogAddr: missing,
	})
	Event(l, ActionRun)
	EventLevel(l, zapcore.ErrorLevel, ActionRenew)

	lines := strings.Split(strings.TrimSuffix(stripTS(t, stderr.String()), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("want 2 lines on stderr, got %q", stderr.String())
	}
	kv, err := parseKV(lines[0])
	if err != nil {
		t.Fatal(err)
	}
	want := [][2]string{
		{"ACTION", ActionLogFallback},
		{"ERROR", fmt.Sprintf("connect to syslog: dial unixgram %s: connect: no such file or directory", missing)},
		{"FROM", "syslog"},
		{"LEVEL", "warn"},
		{"TO", "stderr"},
	}
	if diff := cmp.Diff(want, kv); diff != "" {
		t.Errorf("fallback line (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff("ACTION=renew LEVEL=error", lines[1]); diff != "" {
		t.Errorf("second line (-want +got):\n%s", diff)
	}
}
