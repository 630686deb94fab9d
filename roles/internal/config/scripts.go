package config

import (
	"errors"
	"fmt"
	"maps"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"
)

// Script is one scripts.conf entry: the allowlist of the agent.
type Script struct {
	Name          string            // matches ^[A-Za-z0-9_-]{1,64}$
	Path          string            // absolute, as written (existence and script_dirs are checked by exec)
	Timeout       time.Duration     // 0 = the agent's default_timeout
	User          string            // run as this user; "" = the agent's own
	Group         string            // run as this group; "" = the user's
	Env           map[string]string // extra environment; nil when none
	MaxConcurrent int               // runs of this script at once on the agent; 0 = only the agent's max_concurrent
	Line          int               // line of the entry in scripts.conf
}

var scriptName = regexp.MustCompile(`^[A-Za-z0-9_-]{1,64}$`)

// Validate reports why an entry cannot be used: a bad name, a path that is
// not absolute, an env name or value that the environment cannot carry, or
// a negative timeout or max_concurrent.
func (s Script) Validate() error {
	if !scriptName.MatchString(s.Name) {
		return fmt.Errorf("script name %s must match ^[A-Za-z0-9_-]{1,64}$", quote(s.Name))
	}
	if s.Path == "" {
		return errors.New("path is empty")
	}
	if !filepath.IsAbs(s.Path) {
		return fmt.Errorf("path %s is not absolute", quote(s.Path))
	}
	if strings.IndexByte(s.Path, 0) >= 0 {
		return fmt.Errorf("path %s contains a NUL byte", quote(s.Path))
	}
	for _, k := range slices.Sorted(maps.Keys(s.Env)) {
		if v := s.Env[k]; k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("env name %s must be non-empty without '=' or NUL", quote(k))
		} else if strings.IndexByte(v, 0) >= 0 {
			return fmt.Errorf("env %s: value contains a NUL byte", quote(k))
		}
	}
	if s.Timeout < 0 {
		return fmt.Errorf("timeout must not be negative, got %s", FormatDuration(s.Timeout))
	}
	if s.MaxConcurrent < 0 {
		return fmt.Errorf("max_concurrent must not be negative, got %d", s.MaxConcurrent)
	}
	return nil
}

// LoadScripts reads scripts.conf (TOML or legacy name = /abs/path lines)
// and returns its entries sorted by name, with the warnings it logged.
//
// An entry whose name, path or env is unacceptable, whose timeout or
// max_concurrent is negative, or that repeats a name, is skipped with a
// warning naming file, line and key; the rest still load. A syntax error, a
// value of the wrong type (say timeout = true or max_concurrent = "1") or a
// table without path is an *Error, and nothing loads. A file that cannot be
// read is returned as the *fs.PathError.
func LoadScripts(path string, log *zap.Logger) ([]Script, []Warning, error) {
	d, err := readDoc(path, log, firstWins)
	if err != nil {
		return nil, nil, err
	}
	return d.scripts()
}

func (d *doc) scripts() ([]Script, []Warning, error) {
	out := []Script{}
	for _, name := range d.order {
		line := d.line(name)
		if !scriptName.MatchString(name) {
			d.warn(line, name, "script name must match ^[A-Za-z0-9_-]{1,64}$; entry skipped")
			continue
		}
		s, err := d.script(name, value{raw: d.tree[name], legacy: d.legacy})
		if err != nil {
			return nil, d.warnings, d.locate(err)
		}
		s.Line = line
		if err := s.Validate(); err != nil {
			d.warn(line, name, err.Error()+"; entry skipped")
			continue
		}
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, d.warnings, nil
}

// script types one entry: a path string or a table.
func (d *doc) script(name string, v value) (Script, error) {
	s := Script{Name: name}
	if p, ok := v.raw.(string); ok {
		s.Path = p
		return s, nil
	}
	t, ok := v.raw.(map[string]any)
	if !ok {
		return s, errorf(name, "must be a path string or a table with path, got %s", v.describe())
	}
	if _, ok := t["path"]; !ok {
		return s, errorf(name, `missing required key "path"`)
	}
	for _, k := range sortedKeys(t) {
		key := name + "." + k
		fv := value{raw: t[k], legacy: v.legacy}
		var err error
		switch k {
		case "path":
			s.Path, err = stringValue(fv)
		case "timeout":
			s.Timeout, err = durationValue(fv)
		case "user":
			s.User, err = stringValue(fv)
		case "group":
			s.Group, err = stringValue(fv)
		case "max_concurrent":
			s.MaxConcurrent, err = intValue(fv)
		case "env":
			if s.Env, err = stringMapValue(fv, key); len(s.Env) == 0 {
				s.Env = nil
			}
		default:
			d.warn(d.line(key), key, "unknown key")
		}
		if err != nil {
			if e := (*Error)(nil); errors.As(err, &e) {
				return s, e
			}
			return s, errorf(key, "%s", err)
		}
	}
	return s, nil
}
