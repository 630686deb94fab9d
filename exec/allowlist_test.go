package exec

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestValidName(t *testing.T) {
	for name, want := range map[string]bool{
		"deploy":                true,
		"Deploy_web-01":         true,
		"a":                     true,
		"0":                     true,
		"-":                     true,
		strings.Repeat("a", 64): true,
		strings.Repeat("a", 65): false,
		"":                      false,
		"a/b":                   false,
		"/bin/sh":               false,
		"..":                    false,
		"a.sh":                  false,
		"a;b":                   false,
		"$x":                    false,
		"a b":                   false,
		"a\tb":                  false,
		"a\n":                   false,
		"a\x00":                 false,
		"`id`":                  false,
		"a|b":                   false,
		"ünïcode":               false,
		"a*":                    false,
		"\\":                    false,
	} {
		if got := ValidName(name); got != want {
			t.Errorf("ValidName(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestLookup(t *testing.T) {
	dir := t.TempDir()
	script := writeScript(t, dir, "deploy.sh", "exit 0")
	al, warns := NewAllowlist([]Entry{{Name: "deploy", Path: script, Timeout: time.Minute, Env: map[string]string{"A": "1"}}}, nil)
	if len(warns) != 0 {
		t.Fatalf("warnings: %v", warns)
	}

	e, err := al.Lookup("deploy")
	if err != nil {
		t.Fatalf("Lookup(deploy): %v", err)
	}
	want := Entry{Name: "deploy", Path: script, Timeout: time.Minute, Env: map[string]string{"A": "1"}}
	if diff := cmp.Diff(want, e); diff != "" {
		t.Errorf("Lookup(deploy) (-want +got):\n%s", diff)
	}
	// What callers get is theirs to change.
	e.Env["A"] = "changed"
	if e2, _ := al.Lookup("deploy"); e2.Env["A"] != "1" {
		t.Errorf("changing a looked-up entry changed the allowlist: Env %v", e2.Env)
	}

	for _, tc := range []struct {
		name, reason string
	}{
		{"a/b", "invalid name"},
		{"../deploy", "invalid name"},
		{"deploy.sh", "invalid name"},
		{".", "invalid name"},
		{"deploy;id", "invalid name"},
		{"$deploy", "invalid name"},
		{"deploy now", "invalid name"},
		{"", "invalid name"},
		{strings.Repeat("d", 65), "invalid name"},
		{"deploy\x00", "invalid name"},
		{"other", "not in the allowlist"},
		{"Deploy", "not in the allowlist"},
	} {
		_, err := al.Lookup(tc.name)
		var na *NotAllowedError
		if !errors.As(err, &na) {
			t.Errorf("Lookup(%q) = %v, want *NotAllowedError", tc.name, err)
			continue
		}
		if err.Error() != "script not permitted" {
			t.Errorf("Lookup(%q) message %q, want %q", tc.name, err.Error(), "script not permitted")
		}
		if na.Name != tc.name || !strings.HasPrefix(na.Reason, tc.reason) {
			t.Errorf("Lookup(%q): Name %q, Reason %q; want Reason starting %q", tc.name, na.Name, na.Reason, tc.reason)
		}
	}

	var nilList *Allowlist
	if _, err := nilList.Lookup("deploy"); err == nil {
		t.Error("a nil Allowlist allowed a script")
	}
	if nilList.Entries() != nil || nilList.ScriptDirs() != nil || nilList.Len() != 0 {
		t.Error("a nil Allowlist is not empty")
	}
}

// tree builds the layout the allowlist tests share.
//
//	root/scripts/ok.sh, b.sh, sub/nested.sh, adir/
//	root/scripts/link-in  -> ok.sh
//	root/scripts/link-out -> ../outside/x.sh
//	root/scripts2/evil.sh (a sibling whose name starts like scripts)
//	root/outside/x.sh
//	root/dirlink -> scripts
type tree struct{ root, scripts, ok, b, nested, adir, linkIn, linkOut, evil, outside, dirlink string }

func newTree(t *testing.T) tree {
	t.Helper()
	// Resolve the temporary directory itself, so that expectations hold
	// where /tmp is a link.
	root, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tr := tree{root: root, scripts: filepath.Join(root, "scripts")}
	tr.ok = writeScript(t, tr.scripts, "ok.sh", "exit 0")
	tr.b = writeScript(t, tr.scripts, "b.sh", "exit 0")
	tr.nested = writeScript(t, tr.scripts, "sub/nested.sh", "exit 0")
	tr.adir = filepath.Join(tr.scripts, "adir")
	tr.evil = writeScript(t, filepath.Join(root, "scripts2"), "evil.sh", "exit 0")
	tr.outside = writeScript(t, filepath.Join(root, "outside"), "x.sh", "exit 0")
	tr.linkIn = filepath.Join(tr.scripts, "link-in")
	tr.linkOut = filepath.Join(tr.scripts, "link-out")
	tr.dirlink = filepath.Join(root, "dirlink")
	for _, err := range []error{
		os.Mkdir(tr.adir, 0o755),
		os.Symlink("ok.sh", tr.linkIn),
		os.Symlink("../outside/x.sh", tr.linkOut),
		os.Symlink("scripts", tr.dirlink),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	return tr
}

func TestNewAllowlist(t *testing.T) {
	tr := newTree(t)
	entries := []Entry{
		{Name: "ok", Path: tr.ok},
		{Name: "b", Path: tr.b, User: "nobody", Env: map[string]string{"K": "v"}},
		{Name: "nested", Path: tr.nested},
		{Name: "link-in", Path: tr.linkIn},
		{Name: "via-dirlink", Path: filepath.Join(tr.dirlink, "ok.sh")},
		{Name: "relative", Path: "scripts/ok.sh"},
		{Name: "empty", Path: ""},
		{Name: "missing", Path: filepath.Join(tr.scripts, "missing.sh")},
		{Name: "adir", Path: tr.adir},
		{Name: "prefix", Path: tr.evil},
		{Name: "outside", Path: tr.outside},
		{Name: "link-out", Path: tr.linkOut},
		{Name: "dotdot", Path: tr.scripts + "/../outside/x.sh"},
		{Name: "bad.name", Path: tr.ok},
		{Name: "ok", Path: tr.b},
		{Name: "badenv", Path: tr.ok, Env: map[string]string{"A=B": "x"}},
		{Name: "nulenv", Path: tr.ok, Env: map[string]string{"A": "\x00"}},
		{Name: "negative", Path: tr.ok, Timeout: -time.Second},
		{Name: "once", Path: tr.ok, MaxConcurrent: 1},
		{Name: "minus", Path: tr.ok, MaxConcurrent: -1},
	}
	al, warns := NewAllowlist(entries, []string{tr.scripts + "/"})

	var names []string
	for _, e := range al.Entries() {
		names = append(names, e.Name)
	}
	wantNames := []string{"b", "link-in", "nested", "ok", "once", "via-dirlink"}
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("accepted entries, sorted (-want +got):\n%s", diff)
	}
	if al.Len() != len(wantNames) {
		t.Errorf("Len() = %d, want %d", al.Len(), len(wantNames))
	}
	if e, _ := al.Lookup("ok"); e.Path != tr.ok {
		t.Errorf("duplicate name: ok has path %q, want the first entry's %q", e.Path, tr.ok)
	}
	if e, _ := al.Lookup("b"); e.User != "nobody" || e.Env["K"] != "v" {
		t.Errorf("entry b lost fields: %+v", e)
	}
	if e, _ := al.Lookup("once"); e.MaxConcurrent != 1 {
		t.Errorf("entry once: MaxConcurrent %d, want 1", e.MaxConcurrent)
	}
	if diff := cmp.Diff([]string{tr.scripts}, al.ScriptDirs()); diff != "" {
		t.Errorf("ScriptDirs (-want +got):\n%s", diff)
	}

	wantWarn := map[string]string{
		"relative": `path "scripts/ok.sh" is not absolute; entry skipped`,
		"empty":    "path is empty; entry skipped",
		"missing":  `file "` + filepath.Join(tr.scripts, "missing.sh") + `" not found; entry skipped`,
		"adir":     `"` + tr.adir + `" is not a regular file; entry skipped`,
		"prefix":   `script path outside script_dirs: "` + tr.evil + `"; entry skipped`,
		"outside":  `script path outside script_dirs: "` + tr.outside + `"; entry skipped`,
		"link-out": `script path outside script_dirs: "` + tr.linkOut + `" resolves to "` + tr.outside + `"; entry skipped`,
		"dotdot":   `script path outside script_dirs: "` + tr.scripts + `/../outside/x.sh" resolves to "` + tr.outside + `"; entry skipped`,
		"bad.name": "invalid name: must match " + NamePattern + "; entry skipped",
		"ok":       "duplicate name; the first entry is kept",
		"badenv":   `env name "A=B" must be non-empty, without '=' or NUL; entry skipped`,
		"nulenv":   "env A: value contains a NUL byte; entry skipped",
		"negative": "timeout must not be negative, got -1s; entry skipped",
		"minus":    "max_concurrent must not be negative, got -1; entry skipped",
	}
	gotWarn := map[string]string{}
	for _, w := range warns {
		gotWarn[w.Name] = w.Reason
	}
	if diff := cmp.Diff(wantWarn, gotWarn); diff != "" {
		t.Errorf("warnings by name (-want +got):\n%s", diff)
	}
}

func TestNewAllowlistWithoutScriptDirs(t *testing.T) {
	tr := newTree(t)
	entries := []Entry{{Name: "outside", Path: tr.outside}, {Name: "link-out", Path: tr.linkOut}}
	for _, dirs := range [][]string{nil, {}, {""}} {
		al, warns := NewAllowlist(entries, dirs)
		if len(warns) != 0 || al.Len() != 2 {
			t.Errorf("script_dirs %q: %d entries, warnings %v; want 2 and none", dirs, al.Len(), warns)
		}
	}
}

func TestNewAllowlistBadScriptDirs(t *testing.T) {
	tr := newTree(t)
	missing := filepath.Join(tr.root, "missing")
	// Bad directories are reported and admit nothing, but still make the
	// list restrictive: no entry gets in.
	al, warns := NewAllowlist([]Entry{{Name: "ok", Path: tr.ok}}, []string{"relative/dir", missing, tr.ok})
	want := []Warning{
		{Reason: `script_dirs: "relative/dir" is not an absolute path; no script is accepted from it`},
		{Reason: `script_dirs: resolve "` + missing + `": no such file or directory; no script is accepted from it`},
		{Reason: `script_dirs: "` + tr.ok + `" is not a directory; no script is accepted from it`},
		{Name: "ok", Reason: `script path outside script_dirs: "` + tr.ok + `"; entry skipped`},
	}
	if diff := cmp.Diff(want, warns); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if al.Len() != 0 {
		t.Errorf("%d entries accepted, want 0", al.Len())
	}
	if diff := cmp.Diff([]string{"relative/dir", missing, tr.ok}, al.ScriptDirs()); diff != "" {
		t.Errorf("ScriptDirs (-want +got):\n%s", diff)
	}

	// A good directory beside a bad one still works, and a directory given
	// through a link is resolved.
	al, _ = NewAllowlist([]Entry{{Name: "ok", Path: tr.ok}}, []string{missing, tr.dirlink})
	if al.Len() != 1 {
		t.Errorf("with script_dirs %q and %q: %d entries, want 1", missing, tr.dirlink, al.Len())
	}
}

func TestWarningString(t *testing.T) {
	if got, want := (Warning{Name: "x", Reason: "why"}).String(), `script "x": why`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if got, want := (Warning{Reason: "script_dirs: why"}).String(), "script_dirs: why"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}

func TestWithin(t *testing.T) {
	for _, tc := range []struct {
		dir, path string
		want      bool
	}{
		{"/opt/scripts", "/opt/scripts/a.sh", true},
		{"/opt/scripts", "/opt/scripts/sub/a.sh", true},
		{"/opt/scripts", "/opt/scripts2/a.sh", false},
		{"/opt/scripts", "/opt/scripts", false},
		{"/opt/scripts", "/opt/script", false},
		{"/opt/scripts", "/opt/a.sh", false},
		{"/", "/a.sh", true},
		{"/", "/", false},
	} {
		if got := within(tc.dir, tc.path); got != tc.want {
			t.Errorf("within(%q, %q) = %v, want %v", tc.dir, tc.path, got, tc.want)
		}
	}
}

func TestCheckPath(t *testing.T) {
	tr := newTree(t)
	for _, tc := range []struct {
		path    string
		dirs    []string
		want    string
		wantErr string
	}{
		{path: tr.ok, dirs: []string{tr.scripts}, want: tr.ok},
		{path: tr.linkIn, dirs: []string{tr.scripts}, want: tr.ok},
		{path: tr.ok, dirs: []string{tr.dirlink}, want: tr.ok},
		{path: tr.ok, dirs: []string{"", "relative", tr.scripts}, want: tr.ok},
		{path: tr.linkOut, dirs: []string{tr.scripts}, wantErr: "script path outside script_dirs"},
		{path: tr.evil, dirs: []string{tr.scripts}, wantErr: "script path outside script_dirs"},
		{path: tr.ok, dirs: nil, wantErr: "script path outside script_dirs"},
		{path: "ok.sh", dirs: []string{tr.scripts}, wantErr: `path "ok.sh" is not absolute`},
		{path: filepath.Join(tr.scripts, "none"), dirs: []string{tr.scripts}, wantErr: "no such file or directory"},
	} {
		got, err := CheckPath(tc.path, tc.dirs)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("CheckPath(%q, %q) = %q, %v; want error containing %q", tc.path, tc.dirs, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("CheckPath(%q, %q) = %q, %v; want %q", tc.path, tc.dirs, got, err, tc.want)
		}
	}
}

func TestEntryExecutable(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		path string
		want bool
	}{
		{writeScript(t, dir, "x.sh", "exit 0"), true},
		{writeFile(t, dir, "plain", "data", 0o644), false},
		{dir, false},
		{filepath.Join(dir, "missing"), false},
	} {
		if got := (Entry{Path: tc.path}).Executable(); got != tc.want {
			t.Errorf("Executable(%q) = %v, want %v", tc.path, got, tc.want)
		}
	}
}
