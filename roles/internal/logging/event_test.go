package logging

import (
	"bytes"
	"regexp"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

func TestEventNilLogger(t *testing.T) {
	Event(nil, ActionRun, zap.String("host", "a"))
	EventLevel(nil, zapcore.ErrorLevel, ActionRun)
}

func TestEvent(t *testing.T) {
	var buf bytes.Buffer
	l := kvLogger(&buf, EncoderConfig{})
	Event(l, ActionPairRequest, zap.String("hostname", "web-01"), zap.String("reqid", "abc"))
	EventLevel(l, zapcore.WarnLevel, ActionAuthDeny, zap.String("user", "bob"))
	want := "ACTION=pair-request HOSTNAME=web-01 LEVEL=info REQID=abc\n" +
		"ACTION=auth-deny LEVEL=warn USER=bob\n"
	if diff := cmp.Diff(want, buf.String()); diff != "" {
		t.Errorf("lines (-want +got):\n%s", diff)
	}
}

func TestActions(t *testing.T) {
	spec := []string{
		"run", "ping", "dispatch", "pair-request", "pair-approve", "pair-deny", "pair-reject",
		"renew", "renew-complete", "unpair", "revoke", "auth-deny", "lock-conflict",
		"serial-reject", "ip-block", "rate-block", "config-warn", "reload", "api-request",
	}
	actions := Actions()
	for _, a := range spec {
		if !slices.Contains(actions, a) {
			t.Errorf("SPEC §10 action %q missing", a)
		}
	}
	name := regexp.MustCompile(`^[a-z]+(-[a-z]+)*$`)
	seen := map[string]bool{}
	for _, a := range actions {
		if seen[a] {
			t.Errorf("action %q listed twice", a)
		}
		seen[a] = true
		if !name.MatchString(a) || !plain(a) {
			t.Errorf("action %q is not lowercase words joined by '-'", a)
		}
	}
}
