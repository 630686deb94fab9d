package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Log output defaults.
const (
	LogSyslog = "syslog"
	LogStderr = "stderr"
	devLog    = "/dev/log"
)

// logOutput resolves an empty log setting: syslog when the syslog socket
// exists, else stderr.
func logOutput(log string, exists func(string) bool) string {
	switch {
	case log != "":
		return log
	case exists(devLog):
		return LogSyslog
	}
	return LogStderr
}

func fileExists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

func checkLog(log, format string) error {
	if log != "" && log != LogSyslog && log != LogStderr && !filepath.IsAbs(log) {
		return errorf("log", `must be "syslog", "stderr" or an absolute file path, got %s`, quote(log))
	}
	if format != "kv" && format != "json" {
		return errorf("log_format", `must be "kv" or "json", got %s`, quote(format))
	}
	return nil
}

func checkPort(key string, port int) error {
	if port < 1 || port > 65535 {
		return errorf(key, "must be 1-65535, got %d", port)
	}
	return nil
}

func checkPositive(key string, d Duration) error {
	if d.Duration <= 0 {
		return errorf(key, "must be positive, got %s", FormatDuration(d.Duration))
	}
	return nil
}

func checkMin(key string, n, min int) error {
	if n < min {
		return errorf(key, "must be at least %d, got %d", min, n)
	}
	return nil
}

func checkSet(key, s string) error {
	if s == "" {
		return errorf(key, "must not be empty")
	}
	return nil
}

// checkBind accepts an empty address (all addresses), an IP address or a
// host name.
func checkBind(key, s string) error {
	if s == "" || validHostname(s) {
		return nil
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return nil
	}
	return errorf(key, "must be an IP address or a host name, got %s", quote(s))
}

// validHostname reports whether s is a DNS name: dot-separated labels of
// 1-63 letters, digits, '-' or '_' that do not start or end with '-', at
// most 253 characters in all.
func validHostname(s string) bool {
	if s == "" || len(s) > 253 {
		return false
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' {
			return false
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// printable reports whether s is valid UTF-8 without control characters.
func printable(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return false
		}
	}
	return true
}

func seconds(n int) Duration { return Duration{time.Duration(n) * time.Second} }

// aliasConflict reports a file that sets both a key and its alias.
func (d *doc) aliasConflict(alias, key string) error {
	if _, ok := d.tree[alias]; !ok {
		return nil
	}
	if _, ok := d.tree[key]; !ok {
		return nil
	}
	return d.locate(errorf(alias, "is an alias of %q, which is also set (line %d); keep only one", key, d.line(key)))
}
