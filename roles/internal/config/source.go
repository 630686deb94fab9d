package config

import (
	"errors"
	"fmt"
	"os"
	"sort"
	"strings"

	"github.com/BurntSushi/toml"
	"go.uber.org/zap"
)

// legacyReason is the one warning a legacy file gets.
const legacyReason = "legacy key = value format; quote string values to make it TOML"

// doc is a parsed config file, TOML or legacy, before typing: the same tree
// toml.Decode produces into a map (legacy values are all strings), the
// top-level keys in file order, and the line of every key.
type doc struct {
	file     string
	legacy   bool
	tree     map[string]any
	order    []string
	lines    map[string]int
	log      *zap.Logger
	warnings []Warning
}

// dupPolicy says what a repeated key in a legacy file means.
type dupPolicy int

const (
	lastWins  dupPolicy = iota // config files: a later line overrides, as in the Perl original
	firstWins                  // scripts.conf: the second entry is skipped
)

// readDoc reads and parses a file. A missing file is returned as is, so
// errors.Is(err, fs.ErrNotExist) holds.
func readDoc(path string, log *zap.Logger, dups dupPolicy) (*doc, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parseDoc(path, data, log, dups)
}

// parseDoc applies the detection rule: TOML first; if that fails and no
// value looks like TOML, the legacy format.
func parseDoc(file string, data []byte, log *zap.Logger, dups dupPolicy) (*doc, error) {
	if log == nil {
		log = zap.NewNop()
	}
	d := &doc{file: file, log: log, lines: map[string]int{}}
	tree := map[string]any{}
	md, err := toml.Decode(string(data), &tree)
	if err == nil {
		d.tree = tree
		seen := map[string]bool{}
		for _, k := range md.Keys() {
			if len(k) == 1 && !seen[k[0]] {
				seen[k[0]] = true
				d.order = append(d.order, k[0])
			}
		}
		d.lines = keyLines(string(data))
		return d, nil
	}
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		return nil, &Error{File: file, Msg: err.Error()}
	}
	if looksLikeTOML(data) {
		return nil, &Error{File: file, Line: pe.Position.Line, Key: tomlErrorKey(pe, data), Msg: "invalid TOML: " + pe.Message}
	}
	entries, err := parseLegacy(data)
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.File = file
			e.Msg = "neither TOML nor the legacy key = value format: " + e.Msg
		}
		return nil, err
	}
	d.legacy = true
	key := ""
	for _, e := range entries {
		if e.Line == pe.Position.Line {
			key = joinKey(e.Section, e.Key)
		}
	}
	d.warn(pe.Position.Line, key, legacyReason)
	if err := d.legacyTree(entries, dups); err != nil {
		return nil, err
	}
	return d, nil
}

// tomlErrorKey names the key of a TOML syntax error: the parser's last key,
// or a bare key at the start of the failing line.
func tomlErrorKey(pe toml.ParseError, data []byte) string {
	if pe.LastKey != "" {
		return pe.LastKey
	}
	lines := strings.Split(string(data), "\n")
	if pe.Position.Line < 1 || pe.Position.Line > len(lines) {
		return ""
	}
	k, _, ok := strings.Cut(lines[pe.Position.Line-1], "=")
	if k = strings.TrimSpace(k); ok && validLegacyName(k) {
		return k
	}
	return ""
}

func joinKey(section, key string) string {
	switch {
	case section == "":
		return key
	case key == "":
		return section
	}
	return section + "." + key
}

// legacyTree builds the tree of a legacy file: top-level keys map to
// strings, sections to tables of strings.
func (d *doc) legacyTree(entries []legacyEntry, dups dupPolicy) error {
	d.tree = map[string]any{}
	put := func(m map[string]any, full, k string, v any, line int) {
		if _, ok := m[k]; ok {
			if dups == firstWins {
				d.warn(line, full, fmt.Sprintf("duplicate entry (already defined on line %d); this one is skipped", d.lines[full]))
				return
			}
			d.warn(line, full, fmt.Sprintf("duplicate key (already set on line %d); this later value wins", d.lines[full]))
		}
		m[k] = v
		d.lines[full] = line
	}
	for _, e := range entries {
		top := e.Key
		if e.Section != "" {
			top = e.Section
		}
		existing, exists := d.tree[top]
		sec, isSec := existing.(map[string]any)
		if e.Section == "" {
			if isSec {
				return &Error{File: d.file, Line: e.Line, Key: top, Msg: fmt.Sprintf("key has the name of the section on line %d", d.lines[top])}
			}
			if !exists {
				d.order = append(d.order, top)
			}
			put(d.tree, top, e.Key, e.Value, e.Line)
			continue
		}
		if exists && !isSec {
			return &Error{File: d.file, Line: e.Line, Key: top, Msg: fmt.Sprintf("section has the name of the key on line %d", d.lines[top])}
		}
		if !exists {
			sec = map[string]any{}
			d.tree[top] = sec
			d.lines[top] = e.Line
			d.order = append(d.order, top)
		}
		if e.Key != "" {
			put(sec, joinKey(e.Section, e.Key), e.Key, e.Value, e.Line)
		}
	}
	return nil
}

// warn records and logs a warning.
func (d *doc) warn(line int, key, reason string) {
	w := Warning{File: d.file, Line: line, Key: key, Reason: reason}
	d.warnings = append(d.warnings, w)
	logWarning(d.log, w)
}

// line returns the line of a dotted key, or of its nearest enclosing key
// that has one, or 0.
func (d *doc) line(key string) int {
	for {
		if n, ok := d.lines[key]; ok {
			return n
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			return 0
		}
		key = key[:i]
	}
}

// locate fills in the file and line of an error about a key.
func (d *doc) locate(err error) error {
	var e *Error
	if !errors.As(err, &e) {
		return &Error{File: d.file, Msg: err.Error()}
	}
	if e.File == "" {
		e.File = d.file
	}
	if e.Line == 0 && e.Key != "" {
		e.Line = d.line(e.Key)
	}
	return e
}

// sortedKeys returns the keys of a table in order.
func sortedKeys(m map[string]any) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
