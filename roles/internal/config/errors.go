package config

import (
	"fmt"
	"strconv"
	"strings"

	"go.uber.org/zap"
)

// Error is a problem that stops a configuration file from loading: a syntax
// error, a value of the wrong type, a bad value or a missing required key.
//
// Loaders always set File, and Line and Key whenever the problem is tied to
// one line or key. Validate on a struct built in code sets only Key.
type Error struct {
	File string // path of the file; "" when the struct was not loaded from a file
	Line int    // 1-based line of the key; 0 when unknown (a default value)
	Key  string // dotted key, e.g. "api_port" or "tags.env"; "" when not tied to a key
	Msg  string // what is wrong, lowercase, no trailing period
}

// Error formats the problem as "FILE:LINE: key "KEY": MSG", leaving out the
// parts that are unknown.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		fmt.Fprintf(&b, "%s:%d: ", e.File, e.Line)
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Key != "" {
		fmt.Fprintf(&b, "key %q: ", e.Key)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Warning is a problem that does not stop a file from loading: an unknown
// key, the legacy key = value format, a skipped scripts.conf entry. Loaders
// log every warning and also return it.
type Warning struct {
	File   string
	Line   int // 0 when not tied to a line
	Key    string
	Reason string
}

// String formats the warning like an Error.
func (w Warning) String() string {
	return (&Error{File: w.File, Line: w.Line, Key: w.Key, Msg: w.Reason}).Error()
}

// errorf returns a problem with a key's value; the loader adds file and line.
func errorf(key, format string, args ...any) *Error {
	return &Error{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// logWarning writes one config-warn event line.
func logWarning(log *zap.Logger, w Warning) {
	log.Warn("config-warn",
		zap.String("file", w.File),
		zap.Int("line", w.Line),
		zap.String("key", w.Key),
		zap.String("reason", w.Reason))
}

// quote quotes s for an error message, shortening very long values.
func quote(s string) string {
	const max = 80
	if len(s) > max {
		return strconv.Quote(s[:max]) + "…"
	}
	return strconv.Quote(s)
}
