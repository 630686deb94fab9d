package exec

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"
)

// NamePattern is the rule every script name follows, as written in SPEC §2
// and in the messages that reject a name.
const NamePattern = `^[A-Za-z0-9_-]{1,64}$`

// MaxNameLen is the longest script name [ValidName] accepts.
const MaxNameLen = 64

// Entry is one allowlisted script.
type Entry struct {
	Name    string            // matches NamePattern
	Path    string            // absolute path, as configured; executed directly, never through a shell
	Timeout time.Duration     // the entry's own limit; 0 = none (the caller combines it with others)
	User    string            // run as this user (name or numeric id); "" = the agent's own
	Group   string            // run as this group (name or numeric id); "" = the user's primary group
	Env     map[string]string // extra environment, applied last

	// MaxConcurrent is how many runs of this entry may be in flight at
	// once; 0 = no limit of its own. The caller enforces it: the runner
	// does not count.
	MaxConcurrent int
}

// Executable reports whether the entry's file (symbolic links followed) is
// a regular file the agent could execute now. It is informational, for
// listings; [Runner.Run] is what decides.
func (e Entry) Executable() bool {
	fi, err := os.Stat(e.Path)
	if err != nil || !fi.Mode().IsRegular() {
		return false
	}
	const xOK = 1 // access(2) X_OK
	return syscall.Access(e.Path, xOK) == nil
}

// Warning says why [NewAllowlist] skipped an entry or ignored a script
// directory. Name is the entry's name as configured; it is empty for a
// warning about script_dirs.
type Warning struct {
	Name   string
	Reason string
}

// String renders the warning for a log line or a CLI message.
func (w Warning) String() string {
	if w.Name == "" {
		return w.Reason
	}
	return fmt.Sprintf("script %q: %s", w.Name, w.Reason)
}

// ValidName reports whether name is an acceptable script name:
// 1 to 64 characters, each an ASCII letter, digit, '_' or '-'. Such a name
// can never contain a path separator, a dot, white space or a shell
// metacharacter.
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		switch c := name[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// NotAllowedError is returned by [Allowlist.Lookup] for a name that is
// invalid or not listed. Its message is the one the agent sends to the
// peer, always "script not permitted", so that a caller cannot probe which
// names exist; Reason has the detail for the agent's own log.
type NotAllowedError struct {
	Name   string // the name as requested (it may be anything: quote it when logging)
	Reason string // "invalid name …" or "not in the allowlist"
}

// Error returns "script not permitted".
func (e *NotAllowedError) Error() string { return "script not permitted" }

// Allowlist is the set of scripts an agent may run, with the script
// directories they must stay inside. It is immutable once built and safe
// for concurrent use; a reload builds a new one.
type Allowlist struct {
	byName map[string]Entry
	sorted []Entry  // by name
	dirs   []string // as configured, cleaned; "" entries dropped
	real   []string // dirs after EvalSymlinks; those that failed are absent
	strict bool     // len(dirs) > 0: paths must be inside one of real
}

// NewAllowlist checks entries and returns the allowlist of those that pass,
// with one [Warning] per entry skipped. An entry is skipped when its name
// is not valid, when its path is not absolute, does not exist or is not a
// regular file (after following symbolic links), when its env cannot be
// carried by an environment (an empty name, '=' or NUL in a name, NUL in a
// value), when its timeout or MaxConcurrent is negative, or — if scriptDirs
// has any entry — when its path, with every symbolic link resolved, is not
// inside one of scriptDirs (resolved too). Of several entries with the same
// name, the first is the one considered; the later ones are skipped.
//
// scriptDirs are absolute directories; empty strings in it are ignored (so
// splitting an empty config value gives no restriction). A directory that
// is relative or cannot be resolved gets a warning with an empty Name and
// admits nothing, but still counts: as long as scriptDirs names any
// directory, no path outside the good ones is accepted.
func NewAllowlist(entries []Entry, scriptDirs []string) (*Allowlist, []Warning) {
	a := &Allowlist{byName: make(map[string]Entry, len(entries))}
	var warns []Warning
	for _, d := range scriptDirs {
		if d == "" {
			continue
		}
		a.dirs = append(a.dirs, filepath.Clean(d))
		r, err := resolveDir(d)
		if err != nil {
			warns = append(warns, Warning{Reason: fmt.Sprintf("script_dirs: %v; no script is accepted from it", err)})
			continue
		}
		a.real = append(a.real, r)
	}
	a.strict = len(a.dirs) > 0

	seen := make(map[string]bool, len(entries))
	for _, e := range entries {
		if !ValidName(e.Name) {
			warns = append(warns, Warning{Name: e.Name, Reason: "invalid name: must match " + NamePattern + "; entry skipped"})
			continue
		}
		if seen[e.Name] {
			warns = append(warns, Warning{Name: e.Name, Reason: "duplicate name; the first entry is kept"})
			continue
		}
		seen[e.Name] = true
		if err := a.check(e); err != nil {
			warns = append(warns, Warning{Name: e.Name, Reason: err.Error() + "; entry skipped"})
			continue
		}
		e.Env = maps.Clone(e.Env)
		a.byName[e.Name] = e
		a.sorted = append(a.sorted, e)
	}
	slices.SortFunc(a.sorted, func(x, y Entry) int { return strings.Compare(x.Name, y.Name) })
	return a, warns
}

// check is NewAllowlist's verdict on one entry with a valid, unique name.
func (a *Allowlist) check(e Entry) error {
	if err := checkAbs(e.Path); err != nil {
		return err
	}
	fi, err := os.Stat(e.Path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("file %q not found", e.Path)
	case err != nil:
		return fmt.Errorf("cannot stat %q: %v", e.Path, unwrapPathError(err))
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%q is not a regular file", e.Path)
	}
	if err := checkEnv(e.Env); err != nil {
		return err
	}
	if e.Timeout < 0 {
		return fmt.Errorf("timeout must not be negative, got %s", e.Timeout)
	}
	if e.MaxConcurrent < 0 {
		return fmt.Errorf("max_concurrent must not be negative, got %d", e.MaxConcurrent)
	}
	if a.strict {
		if _, err := resolveInside(e.Path, a.real); err != nil {
			return err
		}
	}
	return nil
}

// Lookup returns the entry called name, or a *[NotAllowedError] when name
// is not a valid script name or not listed. A nil Allowlist allows nothing.
func (a *Allowlist) Lookup(name string) (Entry, error) {
	if !ValidName(name) {
		return Entry{}, &NotAllowedError{Name: name, Reason: "invalid name: must match " + NamePattern}
	}
	if a == nil {
		return Entry{}, &NotAllowedError{Name: name, Reason: "not in the allowlist"}
	}
	e, ok := a.byName[name]
	if !ok {
		return Entry{}, &NotAllowedError{Name: name, Reason: "not in the allowlist"}
	}
	e.Env = maps.Clone(e.Env)
	return e, nil
}

// Entries returns a copy of the accepted entries, sorted by name.
func (a *Allowlist) Entries() []Entry {
	if a == nil {
		return nil
	}
	out := make([]Entry, len(a.sorted))
	for i, e := range a.sorted {
		e.Env = maps.Clone(e.Env)
		out[i] = e
	}
	return out
}

// ScriptDirs returns the configured script directories (cleaned, empty
// strings dropped), including any that could not be resolved at load, so
// that passing them to [Request].ScriptDirs keeps the exec-time check as
// strict as the load-time one.
func (a *Allowlist) ScriptDirs() []string {
	if a == nil {
		return nil
	}
	return slices.Clone(a.dirs)
}

// Len returns the number of accepted entries.
func (a *Allowlist) Len() int {
	if a == nil {
		return 0
	}
	return len(a.sorted)
}

// errOutside is the reason for a path outside script_dirs; its text is also
// the Error of a Result refused at exec time.
var errOutside = errors.New("script path outside script_dirs")

// CheckPath resolves every symbolic link in path and reports the resolved
// path if it lies inside one of scriptDirs (also resolved; relative and
// empty ones are ignored). It fails when path is not absolute or cannot be
// resolved, and with an error saying "script path outside script_dirs" when
// it resolves elsewhere. "Inside" compares whole path elements: /opt/s2/x is
// not inside /opt/s. With no usable directory nothing is inside.
func CheckPath(path string, scriptDirs []string) (string, error) {
	if err := checkAbs(path); err != nil {
		return "", err
	}
	var real []string
	for _, d := range scriptDirs {
		if r, err := resolveDir(d); err == nil {
			real = append(real, r)
		}
	}
	return resolveInside(path, real)
}

// resolveInside resolves path and checks it against already resolved dirs.
func resolveInside(path string, realDirs []string) (string, error) {
	r, err := filepath.EvalSymlinks(path)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %w", path, unwrapPathError(err))
	}
	for _, d := range realDirs {
		if within(d, r) {
			return r, nil
		}
	}
	if r != path {
		return "", fmt.Errorf("%w: %q resolves to %q", errOutside, path, r)
	}
	return "", fmt.Errorf("%w: %q", errOutside, path)
}

// resolveDir resolves an absolute script directory.
func resolveDir(d string) (string, error) {
	if !filepath.IsAbs(d) {
		return "", fmt.Errorf("%q is not an absolute path", d)
	}
	r, err := filepath.EvalSymlinks(d)
	if err != nil {
		return "", fmt.Errorf("resolve %q: %v", d, unwrapPathError(err))
	}
	fi, err := os.Stat(r)
	if err != nil {
		return "", fmt.Errorf("stat %q: %v", d, unwrapPathError(err))
	}
	if !fi.IsDir() {
		return "", fmt.Errorf("%q is not a directory", d)
	}
	return r, nil
}

// within reports whether p lies below the directory dir; both are clean
// absolute paths.
func within(dir, p string) bool {
	if dir == "/" {
		return p != "/" && strings.HasPrefix(p, "/")
	}
	return len(p) > len(dir)+1 && strings.HasPrefix(p, dir) && p[len(dir)] == filepath.Separator
}

func checkAbs(path string) error {
	switch {
	case path == "":
		return errors.New("path is empty")
	case strings.IndexByte(path, 0) >= 0:
		return fmt.Errorf("path %q contains a NUL byte", path)
	case !filepath.IsAbs(path):
		return fmt.Errorf("path %q is not absolute", path)
	}
	return nil
}

// checkEnv reports the first variable (in name order) that an environment
// cannot carry.
func checkEnv(env map[string]string) error {
	for _, k := range slices.Sorted(maps.Keys(env)) {
		if k == "" || strings.ContainsAny(k, "=\x00") {
			return fmt.Errorf("env name %q must be non-empty, without '=' or NUL", k)
		}
		if strings.IndexByte(env[k], 0) >= 0 {
			return fmt.Errorf("env %s: value contains a NUL byte", k)
		}
	}
	return nil
}

// unwrapPathError drops the *fs.PathError wrapping when the message already
// names the path.
func unwrapPathError(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
