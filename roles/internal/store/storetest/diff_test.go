package storetest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

func TestDiffEqual(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	now := time.Now()
	for _, tc := range []struct {
		name      string
		want, got any
	}{
		{"nil", nil, nil},
		{"a zone", at, at.In(time.FixedZone("UTC+2", 2*60*60))},
		{"a monotonic reading", now, now.Round(0)},
		{"nil and empty slice", []string(nil), []string{}},
		{"nil and empty map", store.Agent{Hostname: "h"}, store.Agent{Hostname: "h", Tags: map[string]string{}, Extra: map[string]json.RawMessage{}}},
		{"JSON key order and white space",
			store.Agent{Extra: map[string]json.RawMessage{"x": json.RawMessage(`{"b":[1, 2.50],"a":"<"}`)}},
			store.Agent{Extra: map[string]json.RawMessage{"x": json.RawMessage("{\n  \"a\": \"\\u003c\",\n  \"b\": [1,2.50]\n}")}}},
		{"through a pointer", &store.Run{Started: at}, &store.Run{Started: at.Local(), Args: []string{}}},
	} {
		if d := diff(tc.want, tc.got); d != "" {
			t.Errorf("%s: diff\n%s", tc.name, d)
		}
	}
}

func TestDiffDiffers(t *testing.T) {
	at := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name      string
		want, got any
		diff      string
	}{
		{"a field", store.LockKey{Host: "h", Script: "a"}, store.LockKey{Host: "h", Script: "b"},
			"  store.LockKey{\n  \tHost: \"h\",\n- \tScript: \"a\",\n+ \tScript: \"b\",\n  }\n"},
		{"an instant", at, at.Add(time.Nanosecond),
			"- 2026-05-01T12:00:00Z\n+ 2026-05-01T12:00:00.000000001Z\n"},
		{"the spelling of a number", json.RawMessage(`2.50`), json.RawMessage(`2.5`),
			"- json:2.50\n+ json:2.5\n"},
		{"nil and a value", nil, []string{"a"},
			"- nil\n+ [\n+ \t\"a\",\n+ ]\n"},
		{"an element", []string{"a", "b", "c"}, []string{"a", "c"},
			"  [\n  \t\"a\",\n- \t\"b\",\n  \t\"c\",\n  ]\n"},
	} {
		if d := cmp.Diff(tc.diff, diff(tc.want, tc.got)); d != "" {
			t.Errorf("%s: diff output (-want +got):\n%s", tc.name, d)
		}
	}
}
