package config

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
)

// Duration is a time.Duration read from a config file. A value is either an
// integer number of seconds (read_timeout = 60, or the string "60") or a Go
// duration string ("90s", "1m30s", "24h").
type Duration struct {
	time.Duration
}

// ParseDuration parses the string form of a Duration: an optionally signed
// integer number of seconds, or anything time.ParseDuration accepts.
func ParseDuration(s string) (time.Duration, error) {
	t := strings.TrimSpace(s)
	if t == "" {
		return 0, errors.New("empty duration")
	}
	if isInteger(t) {
		n, err := strconv.ParseInt(t, 10, 64)
		if err != nil || n > math.MaxInt64/int64(time.Second) || n < math.MinInt64/int64(time.Second) {
			return 0, fmt.Errorf("duration %s seconds is out of range", quote(t))
		}
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(t)
	if err != nil {
		return 0, fmt.Errorf("not a number of seconds or a duration like \"90s\" or \"24h\": %s", quote(s))
	}
	return d, nil
}

// isInteger reports whether s is an optionally negative run of ASCII digits.
func isInteger(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// FormatDuration writes d in the largest unit that represents it exactly
// ("24h", "10m", "90s", "1500ms"); ParseDuration reads the result back.
func FormatDuration(d time.Duration) string {
	if d == 0 {
		return "0s"
	}
	for _, u := range []struct {
		d    time.Duration
		name string
	}{
		{time.Hour, "h"}, {time.Minute, "m"}, {time.Second, "s"},
		{time.Millisecond, "ms"}, {time.Microsecond, "us"},
	} {
		if d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(d), 10) + "ns"
}

// MarshalText writes the duration as FormatDuration does.
func (d Duration) MarshalText() ([]byte, error) {
	return []byte(FormatDuration(d.Duration)), nil
}

// UnmarshalText reads the string form (see ParseDuration).
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := ParseDuration(string(b))
	if err != nil {
		return err
	}
	d.Duration = v
	return nil
}

// UnmarshalTOML accepts an integer number of seconds or a string, so that
// the struct can also be filled by toml.Decode directly.
func (d *Duration) UnmarshalTOML(v any) error {
	v2, err := durationValue(value{raw: v})
	if err != nil {
		return err
	}
	d.Duration = v2
	return nil
}

// Size is a byte count read from a config file: an integer number of bytes,
// or a string with an optional binary suffix K, KiB, M, MiB, G or GiB
// (case-insensitive; K and KiB both mean 1024).
type Size int64

// Size units.
const (
	KiB Size = 1 << 10
	MiB Size = 1 << 20
	GiB Size = 1 << 30
)

var sizeSuffixes = map[string]Size{
	"": 1, "k": KiB, "kib": KiB, "m": MiB, "mib": MiB, "g": GiB, "gib": GiB,
}

// ParseSize parses the string form of a Size ("16777216", "16M", "16 MiB").
func ParseSize(s string) (Size, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && t[i] >= '0' && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("not a size like 16777216, \"512K\" or \"16MiB\": %s", quote(s))
	}
	mult, ok := sizeSuffixes[strings.ToLower(strings.TrimSpace(t[i:]))]
	if !ok {
		return 0, fmt.Errorf("unknown size unit in %s (use K, KiB, M, MiB, G or GiB)", quote(s))
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil || n > math.MaxInt64/int64(mult) {
		return 0, fmt.Errorf("size %s is out of range", quote(s))
	}
	return Size(n) * mult, nil
}

// String writes the size in the largest binary unit that represents it
// exactly ("16MiB", "1000"); ParseSize reads the result back.
func (s Size) String() string {
	for _, u := range []struct {
		n    Size
		name string
	}{{GiB, "GiB"}, {MiB, "MiB"}, {KiB, "KiB"}} {
		if s != 0 && s%u.n == 0 {
			return strconv.FormatInt(int64(s/u.n), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(s), 10)
}

// MarshalText writes the size as String does.
func (s Size) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads the string form (see ParseSize).
func (s *Size) UnmarshalText(b []byte) error {
	v, err := ParseSize(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// UnmarshalTOML accepts an integer number of bytes or a string.
func (s *Size) UnmarshalTOML(v any) error {
	v2, err := sizeValue(value{raw: v})
	if err != nil {
		return err
	}
	*s = v2
	return nil
}

// RateLimit is a limit/window/block triple: more than Limit connection
// attempts (or failures, for the probe limit) from one address within Window
// block that address for Block. Its string form is "limit/window/block" with
// window and block in seconds ("10/60/300") or as Go durations ("10/1m/5m").
type RateLimit struct {
	Limit  int
	Window time.Duration
	Block  time.Duration
}

// ParseRateLimit parses "limit/window/block".
func ParseRateLimit(s string) (RateLimit, error) {
	bad := fmt.Errorf("must be \"limit/window/block\" such as \"10/60/300\", got %s", quote(s))
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return RateLimit{}, bad
	}
	lim := strings.TrimSpace(parts[0])
	if !isInteger(lim) {
		return RateLimit{}, bad
	}
	n, err := strconv.Atoi(lim)
	if err != nil {
		return RateLimit{}, fmt.Errorf("limit %s is out of range", quote(lim))
	}
	w, err := ParseDuration(parts[1])
	if err != nil {
		return RateLimit{}, bad
	}
	b, err := ParseDuration(parts[2])
	if err != nil {
		return RateLimit{}, bad
	}
	r := RateLimit{Limit: n, Window: w, Block: b}
	if err := r.check(); err != nil {
		return RateLimit{}, err
	}
	return r, nil
}

// check enforces the ranges: Limit ≥ 1, Window > 0, Block ≥ 0.
func (r RateLimit) check() error {
	switch {
	case r.Limit < 1:
		return fmt.Errorf("limit must be at least 1, got %d", r.Limit)
	case r.Window <= 0:
		return fmt.Errorf("window must be positive, got %s", FormatDuration(r.Window))
	case r.Block < 0:
		return fmt.Errorf("block must not be negative, got %s", FormatDuration(r.Block))
	}
	return nil
}

// String writes "limit/window/block", in seconds when both durations are
// whole seconds; ParseRateLimit reads the result back.
func (r RateLimit) String() string {
	part := func(d time.Duration) string {
		if d%time.Second == 0 {
			return strconv.FormatInt(int64(d/time.Second), 10)
		}
		return FormatDuration(d)
	}
	return fmt.Sprintf("%d/%s/%s", r.Limit, part(r.Window), part(r.Block))
}

// MarshalText writes the string form.
func (r RateLimit) MarshalText() ([]byte, error) { return []byte(r.String()), nil }

// UnmarshalText reads the string form.
func (r *RateLimit) UnmarshalText(b []byte) error {
	v, err := ParseRateLimit(string(b))
	if err != nil {
		return err
	}
	*r = v
	return nil
}
