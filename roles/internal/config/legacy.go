package config

import (
	"bytes"
	"fmt"
	"strings"
)

// legacyEntry is one meaningful line of a legacy key = value file: a
// "[section]" header (Key empty) or a key = value pair.
type legacyEntry struct {
	Line    int
	Section string // the section the pair belongs to, or the header's name; "" at top level
	Key     string // "" for a section header
	Value   string
}

// validLegacyName reports whether s can be a key or section name in the
// legacy format: one or more of A-Z a-z 0-9 _ . -
func validLegacyName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// stripComment removes a trailing comment: a '#' that follows a space or tab.
func stripComment(line string) string {
	for i := 1; i < len(line); i++ {
		if line[i] == '#' && (line[i-1] == ' ' || line[i-1] == '\t') {
			return line[:i]
		}
	}
	return line
}

// parseLegacy reads the key = value format of the Perl dispatcher. Values are
// unquoted and run to the end of the line or to a trailing comment; both
// sides are trimmed. It returns *Error (without File) for a line that is
// neither blank, a comment, a section header nor a key = value pair.
func parseLegacy(data []byte) ([]legacyEntry, error) {
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	var out []legacyEntry
	section := ""
	for n, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSuffix(raw, "\r")
		t := strings.TrimSpace(line)
		if t == "" || t[0] == '#' {
			continue
		}
		if t = strings.TrimSpace(stripComment(line)); t == "" {
			continue
		}
		if t[0] == '[' {
			name := ""
			if strings.HasSuffix(t, "]") {
				name = strings.TrimSpace(t[1 : len(t)-1])
			}
			if !validLegacyName(name) {
				return nil, &Error{Line: n + 1, Msg: fmt.Sprintf("bad section header %s: want [name] with letters, digits, '_', '.' or '-'", quote(t))}
			}
			section = name
			out = append(out, legacyEntry{Line: n + 1, Section: name})
			continue
		}
		k, v, ok := strings.Cut(t, "=")
		k = strings.TrimSpace(k)
		if !ok {
			return nil, &Error{Line: n + 1, Msg: fmt.Sprintf("expected key = value, [section] or # comment, got %s", quote(t))}
		}
		if !validLegacyName(k) {
			return nil, &Error{Line: n + 1, Msg: fmt.Sprintf("bad key %s: keys are letters, digits, '_', '.' or '-'", quote(k))}
		}
		out = append(out, legacyEntry{Line: n + 1, Section: section, Key: k, Value: strings.TrimSpace(v)})
	}
	return out, nil
}

// formatLegacy writes entries back in the legacy format; parseLegacy reads
// the result back to the same sections, keys and values.
func formatLegacy(entries []legacyEntry) []byte {
	var b bytes.Buffer
	for _, e := range entries {
		switch {
		case e.Key == "":
			fmt.Fprintf(&b, "[%s]\n", e.Section)
		case strings.HasPrefix(e.Value, "#"):
			// "key = #x" would read as a comment; without the space it does not.
			fmt.Fprintf(&b, "%s =%s\n", e.Key, e.Value)
		default:
			fmt.Fprintf(&b, "%s = %s\n", e.Key, e.Value)
		}
	}
	return b.Bytes()
}

// looksLikeTOML reports whether a file that failed to parse as TOML was
// meant to be TOML: some value starts with a quote, '[' or '{', or some line
// is an array-table header or the continuation of a multi-line value. A plain
// "[name]" section header on its own line does not count.
func looksLikeTOML(data []byte) bool {
	for _, raw := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(stripComment(strings.TrimSpace(raw)))
		if t == "" || t[0] == '#' {
			continue
		}
		if strings.HasPrefix(t, "[[") || strings.ContainsRune(`"'{]}`, rune(t[0])) {
			return true
		}
		if t[0] == '[' {
			continue // "[section]"
		}
		_, v, ok := strings.Cut(t, "=")
		v = strings.TrimSpace(v)
		if ok && v != "" && strings.ContainsRune(`"'[{`, rune(v[0])) {
			return true
		}
	}
	return false
}
