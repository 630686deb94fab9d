package config

import (
	"bytes"
	"testing"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
)

func TestParseDuration(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Duration
		err  string
	}{
		{"60", time.Minute, ""},
		{" 600 ", 10 * time.Minute, ""},
		{"0", 0, ""},
		{"-5", -5 * time.Second, ""},
		{"90s", 90 * time.Second, ""},
		{"24h", 24 * time.Hour, ""},
		{"1m30s", 90 * time.Second, ""},
		{"1.5h", 90 * time.Minute, ""},
		{"", 0, "empty duration"},
		{"5 minutes", 0, `not a number of seconds or a duration like "90s" or "24h": "5 minutes"`},
		{"99999999999999999999", 0, `duration "99999999999999999999" seconds is out of range`},
		{"9300000000", 0, `duration "9300000000" seconds is out of range`},
	} {
		got, err := ParseDuration(tc.in)
		if msg := errText(err); got != tc.want || msg != tc.err {
			t.Errorf("ParseDuration(%q) = %v, %q; want %v, %q", tc.in, got, msg, tc.want, tc.err)
		}
	}
}

func TestFormatDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0s", 24 * time.Hour: "24h", 10 * time.Minute: "10m", 90 * time.Second: "90s",
		1500 * time.Millisecond: "1500ms", 3 * time.Microsecond: "3us", 7: "7ns", -5 * time.Second: "-5s",
	} {
		if got := FormatDuration(d); got != want {
			t.Errorf("FormatDuration(%v) = %q, want %q", d, got, want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Size
		err  string
	}{
		{"16777216", 16 * MiB, ""},
		{"16M", 16 * MiB, ""},
		{"16MiB", 16 * MiB, ""},
		{"16 mib", 16 * MiB, ""},
		{"512K", 512 * KiB, ""},
		{"512kib", 512 * KiB, ""},
		{"2G", 2 * GiB, ""},
		{"2GiB", 2 * GiB, ""},
		{"0", 0, ""},
		{"", 0, `not a size like 16777216, "512K" or "16MiB": ""`},
		{"-1", 0, `not a size like 16777216, "512K" or "16MiB": "-1"`},
		{"1.5M", 0, `unknown size unit in "1.5M" (use K, KiB, M, MiB, G or GiB)`},
		{"16MB", 0, `unknown size unit in "16MB" (use K, KiB, M, MiB, G or GiB)`},
		{"9999999999G", 0, `size "9999999999G" is out of range`},
	} {
		got, err := ParseSize(tc.in)
		if msg := errText(err); got != tc.want || msg != tc.err {
			t.Errorf("ParseSize(%q) = %v, %q; want %v, %q", tc.in, got, msg, tc.want, tc.err)
		}
	}
	for s, want := range map[Size]string{0: "0", 1000: "1000", 1536: "1536", 16 * MiB: "16MiB", 3 * GiB: "3GiB"} {
		if got := s.String(); got != want {
			t.Errorf("Size(%d).String() = %q, want %q", int64(s), got, want)
		}
	}
}

func TestParseRateLimit(t *testing.T) {
	bad := func(s string) string {
		return `must be "limit/window/block" such as "10/60/300", got "` + s + `"`
	}
	for _, tc := range []struct {
		in   string
		want RateLimit
		err  string
	}{
		{"10/60/300", RateLimit{10, time.Minute, 5 * time.Minute}, ""},
		{" 3 / 600 / 3600 ", RateLimit{3, 10 * time.Minute, time.Hour}, ""},
		{"5/1m/2h", RateLimit{5, time.Minute, 2 * time.Hour}, ""},
		{"5/1/0", RateLimit{5, time.Second, 0}, ""},
		{"10/60", RateLimit{}, bad("10/60")},
		{"10/60/300/1", RateLimit{}, bad("10/60/300/1")},
		{"ten/60/300", RateLimit{}, bad("ten/60/300")},
		{"10/x/300", RateLimit{}, bad("10/x/300")},
		{"", RateLimit{}, bad("")},
		{"0/60/300", RateLimit{}, "limit must be at least 1, got 0"},
		{"1/0/300", RateLimit{}, "window must be positive, got 0s"},
		{"1/60/-1", RateLimit{}, "block must not be negative, got -1s"},
		{"99999999999999999999/1/1", RateLimit{}, `limit "99999999999999999999" is out of range`},
	} {
		got, err := ParseRateLimit(tc.in)
		if msg := errText(err); got != tc.want || msg != tc.err {
			t.Errorf("ParseRateLimit(%q) = %v, %q; want %v, %q", tc.in, got, msg, tc.want, tc.err)
		}
	}
	if got := (RateLimit{10, time.Minute, 1500 * time.Millisecond}).String(); got != "10/60/1500ms" {
		t.Errorf("String() = %q", got)
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestEncodeRoundTrip writes loaded structs back with the toml encoder and
// loads the result: the value types marshal to forms the loader reads.
func TestEncodeRoundTrip(t *testing.T) {
	var buf bytes.Buffer
	if err := toml.NewEncoder(&buf).Encode(dispatcherWant); err != nil {
		t.Fatal(err)
	}
	d, err := LoadDispatcher(write(t, "dispatcher.conf", buf.String()), nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if diff := cmp.Diff(dispatcherWant, d); diff != "" {
		t.Errorf("dispatcher round trip (-want +got):\n%s\n%s", diff, buf.String())
	}

	buf.Reset()
	if err := toml.NewEncoder(&buf).Encode(agentWant); err != nil {
		t.Fatal(err)
	}
	a, err := LoadAgent(write(t, "agent.conf", buf.String()), nil, nil)
	if err != nil {
		t.Fatalf("%v\n%s", err, buf.String())
	}
	if diff := cmp.Diff(agentWant, a); diff != "" {
		t.Errorf("agent round trip (-want +got):\n%s\n%s", diff, buf.String())
	}
}

// TestDecodeDirect fills the structs with toml.Decode alone, for callers
// that do: the value types accept the same forms.
func TestDecodeDirect(t *testing.T) {
	var c struct {
		T Duration  `toml:"t"`
		U Duration  `toml:"u"`
		S Size      `toml:"s"`
		Z Size      `toml:"z"`
		R RateLimit `toml:"r"`
	}
	_, err := toml.Decode("t = 60\nu = \"90s\"\ns = 1024\nz = \"16M\"\nr = \"3/600/3600\"\n", &c)
	if err != nil {
		t.Fatal(err)
	}
	want := []any{time.Minute, 90 * time.Second, Size(1024), 16 * MiB, RateLimit{3, 10 * time.Minute, time.Hour}}
	if diff := cmp.Diff(want, []any{c.T.Duration, c.U.Duration, c.S, c.Z, c.R}); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}
