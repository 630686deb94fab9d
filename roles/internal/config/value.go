package config

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"strconv"
	"strings"
	"time"
	"unicode"
)

// value is one raw value from a file: what toml.Decode produced (string,
// int64, float64, bool, time.Time, []any, []map[string]any, map[string]any),
// or a string from a legacy file. Legacy values carry no type, so the typing
// functions below read them from their text.
type value struct {
	raw    any
	legacy bool
}

// describe names the value for an error message.
func (v value) describe() string {
	switch r := v.raw.(type) {
	case string:
		if v.legacy {
			return quote(r)
		}
		return "string " + quote(r)
	case int64:
		return "integer " + strconv.FormatInt(r, 10)
	case float64:
		return "float " + strconv.FormatFloat(r, 'g', -1, 64)
	case bool:
		return "boolean " + strconv.FormatBool(r)
	case map[string]any:
		return "a table"
	case []any, []map[string]any:
		return "an array"
	case time.Time:
		return "a date-time"
	}
	return fmt.Sprintf("%T", v.raw)
}

func (v value) wrongType(want string) error {
	return fmt.Errorf("must be %s, got %s", want, v.describe())
}

func stringValue(v value) (string, error) {
	if s, ok := v.raw.(string); ok {
		return s, nil
	}
	return "", v.wrongType("a string")
}

func intValue(v value) (int, error) {
	var n int64
	switch r := v.raw.(type) {
	case int64:
		n = r
	case string:
		if !v.legacy || !isInteger(strings.TrimSpace(r)) {
			return 0, v.wrongType("an integer")
		}
		var err error
		if n, err = strconv.ParseInt(strings.TrimSpace(r), 10, 64); err != nil {
			return 0, fmt.Errorf("integer %s is out of range", quote(r))
		}
	default:
		return 0, v.wrongType("an integer")
	}
	if n > math.MaxInt || n < math.MinInt {
		return 0, fmt.Errorf("integer %d is out of range", n)
	}
	return int(n), nil
}

// boolValue accepts TOML booleans; legacy values may also be written
// true/false, yes/no, on/off or 1/0 (any case).
func boolValue(v value) (bool, error) {
	switch r := v.raw.(type) {
	case bool:
		return r, nil
	case string:
		if v.legacy {
			switch strings.ToLower(strings.TrimSpace(r)) {
			case "true", "yes", "on", "1":
				return true, nil
			case "false", "no", "off", "0":
				return false, nil
			}
		}
	}
	return false, v.wrongType("true or false")
}

func durationValue(v value) (time.Duration, error) {
	switch r := v.raw.(type) {
	case int64:
		if r > math.MaxInt64/int64(time.Second) || r < math.MinInt64/int64(time.Second) {
			return 0, fmt.Errorf("%d seconds is out of range", r)
		}
		return time.Duration(r) * time.Second, nil
	case string:
		d, err := ParseDuration(r)
		if err != nil {
			return 0, fmt.Errorf("must be a number of seconds or a duration like \"90s\", got %s", v.describe())
		}
		return d, nil
	}
	return 0, v.wrongType(`a number of seconds or a duration like "90s"`)
}

func sizeValue(v value) (Size, error) {
	switch r := v.raw.(type) {
	case int64:
		return Size(r), nil
	case string:
		return ParseSize(r)
	}
	return 0, v.wrongType(`a number of bytes or a size like "16MiB"`)
}

func rateLimitValue(v value) (RateLimit, error) {
	s, ok := v.raw.(string)
	if !ok {
		return RateLimit{}, v.wrongType(`a string "limit/window/block" such as "10/60/300"`)
	}
	return ParseRateLimit(s)
}

// listValue reads a list: a string split by split, or (TOML only) an array
// of strings, each also split when splitItems is set. Empty items are
// dropped.
func listValue(v value, split func(string) []string, splitItems bool) ([]string, error) {
	var items []string
	switch r := v.raw.(type) {
	case string:
		items = split(r)
	case []any:
		for _, it := range r {
			s, ok := it.(string)
			if !ok {
				return nil, v.wrongType("a string or an array of strings")
			}
			if splitItems {
				items = append(items, split(s)...)
			} else {
				items = append(items, s)
			}
		}
	default:
		return nil, v.wrongType("a string or an array of strings")
	}
	var out []string
	for _, s := range items {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out, nil
}

// splitAddrs splits an allowed_ips list on commas and white space.
func splitAddrs(s string) []string {
	return strings.FieldsFunc(s, func(r rune) bool { return r == ',' || unicode.IsSpace(r) })
}

// splitDirs splits a script_dirs list on colons.
func splitDirs(s string) []string { return strings.Split(s, ":") }

// dirsValue reads script_dirs and cleans each directory.
func dirsValue(v value) ([]string, error) {
	dirs, err := listValue(v, splitDirs, false)
	for i, d := range dirs {
		dirs[i] = filepath.Clean(d)
	}
	return dirs, err
}

// stringMapValue reads a table of strings; key is the table's own dotted
// name, used to name the entry in errors.
func stringMapValue(v value, key string) (map[string]string, error) {
	t, ok := v.raw.(map[string]any)
	if !ok {
		return nil, v.wrongType("a table of strings")
	}
	out := make(map[string]string, len(t))
	for _, k := range sortedKeys(t) {
		s, err := stringValue(value{raw: t[k], legacy: v.legacy})
		if err != nil {
			return nil, errorf(key+"."+k, "%s", err)
		}
		out[k] = s
	}
	return out, nil
}

// setter stores one typed value into a config struct.
type setter func(v value) error

func setString(p *string) setter {
	return func(v value) (err error) { *p, err = stringValue(v); return err }
}

func setInt(p *int) setter {
	return func(v value) (err error) { *p, err = intValue(v); return err }
}

func setBool(p *bool) setter {
	return func(v value) (err error) { *p, err = boolValue(v); return err }
}

func setDuration(p *Duration) setter {
	return func(v value) (err error) { p.Duration, err = durationValue(v); return err }
}

func setSize(p *Size) setter {
	return func(v value) (err error) { *p, err = sizeValue(v); return err }
}

func setRateLimit(p *RateLimit) setter {
	return func(v value) (err error) { *p, err = rateLimitValue(v); return err }
}

// apply types every top-level key of d through the setters, warning about
// unknown keys. Errors are located (file, line, key).
func (d *doc) apply(setters map[string]setter) error {
	for _, k := range d.order {
		set, ok := setters[k]
		if !ok {
			d.warn(d.line(k), k, "unknown key")
			continue
		}
		if err := set(value{raw: d.tree[k], legacy: d.legacy}); err != nil {
			var e *Error
			if !errors.As(err, &e) {
				e = &Error{Key: k, Msg: err.Error()}
			}
			return d.locate(e)
		}
	}
	return nil
}
