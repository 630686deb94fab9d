package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestScriptsTOML(t *testing.T) {
	log, logs := observed()
	path := write(t, "scripts.conf", `# allowlist
uptime = "/usr/bin/uptime"

deploy = { path = "/opt/scripts/deploy.sh", timeout = 120 }

[backup]
path = "/opt/scripts/backup.sh"
timeout = "2h"
user = "backup"
group = "disk"
colour = "red"

[backup.env]
TARGET = "s3://bucket"
LEVEL = "1"

["bad name"]
path = "/bin/true"

[relative]
path = "scripts/relative.sh"

[bad-env]
path = "/bin/env"
env = { "A=B" = "x" }

[once]
path = "/opt/scripts/once.sh"
max_concurrent = 1

[pair]
path = "/opt/scripts/pair.sh"
max_concurrent = 2

[negative]
path = "/opt/scripts/negative.sh"
max_concurrent = -1
`)
	got, warnings, err := LoadScripts(path, log)
	if err != nil {
		t.Fatal(err)
	}
	want := []Script{
		{Name: "backup", Path: "/opt/scripts/backup.sh", Timeout: 2 * time.Hour, User: "backup", Group: "disk",
			Env: map[string]string{"TARGET": "s3://bucket", "LEVEL": "1"}, Line: 6},
		{Name: "deploy", Path: "/opt/scripts/deploy.sh", Timeout: 2 * time.Minute, Line: 4},
		{Name: "once", Path: "/opt/scripts/once.sh", MaxConcurrent: 1, Line: 27},
		{Name: "pair", Path: "/opt/scripts/pair.sh", MaxConcurrent: 2, Line: 31},
		{Name: "uptime", Path: "/usr/bin/uptime", Line: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("scripts (-want +got):\n%s", diff)
	}
	wantWarnings := []Warning{
		{File: path, Line: 11, Key: "backup.colour", Reason: "unknown key"},
		{File: path, Line: 17, Key: "bad name", Reason: "script name must match ^[A-Za-z0-9_-]{1,64}$; entry skipped"},
		{File: path, Line: 20, Key: "relative", Reason: `path "scripts/relative.sh" is not absolute; entry skipped`},
		{File: path, Line: 23, Key: "bad-env", Reason: `env name "A=B" must be non-empty without '=' or NUL; entry skipped`},
		{File: path, Line: 35, Key: "negative", Reason: "max_concurrent must not be negative, got -1; entry skipped"},
	}
	if diff := cmp.Diff(wantWarnings, warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if n := logs.FilterMessage("config-warn").Len(); n != len(wantWarnings) {
		t.Errorf("logged %d warnings, want %d", n, len(wantWarnings))
	}
}

func TestScriptsLegacy(t *testing.T) {
	path := write(t, "scripts.conf", `# scripts.conf from the Perl dispatcher
uptime = /usr/bin/uptime
deploy = /opt/scripts/deploy.sh   # the deploy script

bad.name = /bin/true
relative = ./run.sh
uptime = /bin/other
`)
	got, warnings, err := LoadScripts(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Script{
		{Name: "deploy", Path: "/opt/scripts/deploy.sh", Line: 3},
		{Name: "uptime", Path: "/usr/bin/uptime", Line: 2},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("scripts (-want +got):\n%s", diff)
	}
	wantWarnings := []Warning{
		{File: path, Line: 2, Key: "uptime", Reason: legacyReason},
		{File: path, Line: 7, Key: "uptime", Reason: "duplicate entry (already defined on line 2); this one is skipped"},
		{File: path, Line: 5, Key: "bad.name", Reason: "script name must match ^[A-Za-z0-9_-]{1,64}$; entry skipped"},
		{File: path, Line: 6, Key: "relative", Reason: `path "./run.sh" is not absolute; entry skipped`},
	}
	if diff := cmp.Diff(wantWarnings, warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
}

func TestScriptsEmpty(t *testing.T) {
	got, warnings, err := LoadScripts(write(t, "scripts.conf", "# none yet\n"), nil)
	if err != nil || len(got) != 0 || len(warnings) != 0 {
		t.Errorf("LoadScripts(empty) = %v, %v, %v", got, warnings, err)
	}
}

func TestScriptsErrors(t *testing.T) {
	for _, tc := range []struct{ name, content, want string }{
		{"missing path", "[deploy]\nuser = \"x\"\n",
			`FILE:1: key "deploy": missing required key "path"`},
		{"wrong type", "deploy = 5\n",
			`FILE:1: key "deploy": must be a path string or a table with path, got integer 5`},
		{"timeout type", "[deploy]\npath = \"/x\"\ntimeout = true\n",
			`FILE:3: key "deploy.timeout": must be a number of seconds or a duration like "90s", got boolean true`},
		{"max_concurrent string", "[deploy]\npath = \"/x\"\nmax_concurrent = \"1\"\n",
			`FILE:3: key "deploy.max_concurrent": must be an integer, got string "1"`},
		{"max_concurrent float", "[deploy]\npath = \"/x\"\nmax_concurrent = 1.5\n",
			`FILE:3: key "deploy.max_concurrent": must be an integer, got float 1.5`},
		{"max_concurrent inline", "deploy = { path = \"/x\", max_concurrent = true }\n",
			`FILE:1: key "deploy.max_concurrent": must be an integer, got boolean true`},
		{"env value type", "[deploy]\npath = \"/x\"\n[deploy.env]\nA = 1\n",
			`FILE:4: key "deploy.env.A": must be a string, got integer 1`},
		{"toml syntax", "a = \"/x\"\nb = \"/y\n",
			`FILE:2: key "b": invalid TOML: strings cannot contain newlines`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, "scripts.conf", tc.content)
			_, _, err := LoadScripts(path, nil)
			if err == nil {
				t.Fatal("no error")
			}
			if want := replaceFile(tc.want, path); err.Error() != want {
				t.Errorf("error:\n got %s\nwant %s", err, want)
			}
		})
	}
	_, _, err := LoadScripts(filepath.Join(t.TempDir(), "scripts.conf"), nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: err = %v, want fs.ErrNotExist", err)
	}
}

func TestScriptValidate(t *testing.T) {
	for _, tc := range []struct {
		s    Script
		want string
	}{
		{Script{Name: "ok", Path: "/bin/true", Env: map[string]string{"A": "b"}}, ""},
		{Script{Name: "", Path: "/bin/true"}, `script name "" must match ^[A-Za-z0-9_-]{1,64}$`},
		{Script{Name: "x", Path: ""}, "path is empty"},
		{Script{Name: "x", Path: "/bin/\x00"}, `path "/bin/\x00" contains a NUL byte`},
		{Script{Name: "x", Path: "/bin/true", Env: map[string]string{"": "b"}}, `env name "" must be non-empty without '=' or NUL`},
		{Script{Name: "x", Path: "/bin/true", Env: map[string]string{"A": "b\x00"}}, `env "A": value contains a NUL byte`},
		{Script{Name: "x", Path: "/bin/true", Timeout: -time.Second}, "timeout must not be negative, got -1s"},
		{Script{Name: "x", Path: "/bin/true", MaxConcurrent: 1}, ""},
		{Script{Name: "x", Path: "/bin/true", MaxConcurrent: -1}, "max_concurrent must not be negative, got -1"},
	} {
		got := ""
		if err := tc.s.Validate(); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%+v: Validate() = %q, want %q", tc.s, got, tc.want)
		}
	}
}
