// Benchmarks of an event line through a logger made by New, as a role
// logs a run: logging.Event with ACTION first and nine fields (strings
// that need quoting, ints, a duration, a bool) on a named logger with a
// With field, in the kv format and in JSON for comparison, written to
// io.Discard; and the same event below the logger's level, which must
// cost next to nothing. Each benchmark checks one line first.
//
//	go test -run '^$' -bench . ./roles/internal/logging/
package logging_test

import (
	"bytes"
	"encoding/json"
	"io"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
)

// runFields are the fields of the agent's run event.
func runFields() []zap.Field {
	return []zap.Field{
		zap.String("script", "deploy"),
		zap.String("peer", "192.0.2.10"),
		zap.String("username", "ci bot"),
		zap.Strings("args", []string{"--env", "prod", "release 2024.06.1"}),
		zap.Int("exit", 1),
		zap.String("signal", ""),
		zap.Int64("duration_ms", 1234),
		zap.Duration("took", 1234567*time.Microsecond),
		zap.Bool("truncated", false),
		zap.String("error", `exit status 1: "deploy" failed`),
	}
}

// benchLogger returns a logger made by New in format, writing to w at
// level lvl, named and with a request id as the agent's are.
func benchLogger(b *testing.B, format string, w io.Writer, lvl zapcore.Level) *zap.Logger {
	b.Helper()
	l, closeLog, err := logging.New(logging.Options{Output: logging.OutputStderr, Format: format, Stderr: w, Level: lvl})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		if err := closeLog(); err != nil {
			b.Errorf("close log: %v", err)
		}
	})
	return l.Named("agent").With(zap.String("reqid", "3f2a9c1e-7b4d-4e5f-9a8b-0c1d2e3f4a5b"))
}

// checkKV fails b unless line is the run event in kv form.
func checkKV(b *testing.B, line string) {
	b.Helper()
	if !strings.HasPrefix(line, "ACTION=run ") || strings.Count(line, "\n") != 1 || !strings.HasSuffix(line, "\n") {
		b.Fatalf("not one kv line starting with ACTION=run: %q", line)
	}
	for _, want := range []string{
		" LEVEL=info", " LOGGER=agent", " REQID=3f2a9c1e-7b4d-4e5f-9a8b-0c1d2e3f4a5b", " SCRIPT=deploy",
		` USERNAME="ci bot"`, " EXIT=1", " DURATION_MS=1234", " TOOK=1.234567s", " TRUNCATED=false",
		` ERROR="exit status 1: \"deploy\" failed"`, " TS=",
	} {
		if !strings.Contains(line, want) {
			b.Fatalf("kv line lacks %q: %q", want, line)
		}
	}
}

// checkJSON fails b unless line is the run event in JSON.
func checkJSON(b *testing.B, line string) {
	b.Helper()
	var got map[string]any
	if err := json.Unmarshal([]byte(line), &got); err != nil || strings.Count(line, "\n") != 1 {
		b.Fatalf("not one json line: %v: %q", err, line)
	}
	for k, want := range map[string]any{
		"action": "run", "level": "info", "logger": "agent", "reqid": "3f2a9c1e-7b4d-4e5f-9a8b-0c1d2e3f4a5b",
		"username": "ci bot", "exit": 1.0, "took": "1.234567s", "error": `exit status 1: "deploy" failed`,
	} {
		if got[k] != want {
			b.Fatalf("json %s = %v, want %v: %q", k, got[k], want, line)
		}
	}
}

// BenchmarkEvent logs the run event through New's logger to io.Discard.
func BenchmarkEvent(b *testing.B) {
	for _, c := range []struct {
		format string
		check  func(*testing.B, string)
	}{
		{logging.FormatKV, checkKV},
		{logging.FormatJSON, checkJSON},
	} {
		b.Run(c.format, func(b *testing.B) {
			var buf bytes.Buffer
			logging.Event(benchLogger(b, c.format, &buf, zapcore.InfoLevel), logging.ActionRun, runFields()...)
			c.check(b, buf.String())

			l := benchLogger(b, c.format, io.Discard, zapcore.InfoLevel)
			fields := runFields()
			b.ReportAllocs()
			for b.Loop() {
				logging.Event(l, logging.ActionRun, fields...)
			}
		})
	}
}

// BenchmarkEventFiltered is the run event on a logger at warn level: it
// is dropped before any encoding.
func BenchmarkEventFiltered(b *testing.B) {
	var buf bytes.Buffer
	l := benchLogger(b, logging.FormatKV, &buf, zapcore.WarnLevel)
	logging.Event(l, logging.ActionRun, runFields()...)
	if buf.Len() != 0 {
		b.Fatalf("info event logged at warn level: %q", buf.String())
	}
	fields := runFields()
	b.ReportAllocs()
	for b.Loop() {
		logging.Event(l, logging.ActionRun, fields...)
	}
	if buf.Len() != 0 {
		b.Fatalf("info event logged at warn level: %q", buf.String())
	}
}
