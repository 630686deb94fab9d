package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestDispatcherDefaults(t *testing.T) {
	// The defaults of SPEC.md §2, written out rather than taken from
	// DefaultDispatcher, so that a wrong default fails here.
	want := &Dispatcher{
		Cert:            "/etc/dispatcher/dispatcher.crt",
		Key:             "/etc/dispatcher/dispatcher.key",
		CA:              "/etc/dispatcher/ca.crt",
		CAKey:           "/etc/dispatcher/ca.key",
		ReadTimeout:     Duration{60 * time.Second},
		ConnectTimeout:  Duration{10 * time.Second},
		APIPort:         7445,
		APIBind:         "127.0.0.1",
		APIAuthDefault:  "deny",
		APIMaxRequests:  1024,
		HookTimeout:     Duration{10 * time.Second},
		CertDays:        365,
		CertOverlapDays: 7,
		RenewInterval:   Duration{6 * time.Hour},
		StateDir:        "/var/lib/dispatcher",
		MaxHosts:        10000,
		Parallel:        256,
		Resolve:         "dns",
		RunRetention:    Duration{24 * time.Hour},
		PairingPort:     7444,
		PairingMaxQueue: 10,
		PairingTimeout:  Duration{600 * time.Second},
		LogFormat:       "kv",
	}
	if diff := cmp.Diff(want, DefaultDispatcher()); diff != "" {
		t.Errorf("DefaultDispatcher() mismatch (-want +got):\n%s", diff)
	}
	if err := DefaultDispatcher().Validate(); err != nil {
		t.Errorf("DefaultDispatcher().Validate() = %v", err)
	}
	for _, content := range []string{"", "\n# nothing but comments\n\n"} {
		got, err := LoadDispatcher(write(t, "dispatcher.conf", content), nil)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("empty file %q: mismatch (-want +got):\n%s", content, diff)
		}
	}
}

// dispatcherWorld is a dispatcher.conf that sets every key, in TOML and in
// the legacy form, and the struct both load to.
var (
	dispatcherTOML = `# every key
cert = "/srv/d/d.crt"
key = "/srv/d/d.key"
ca = "/srv/d/ca.crt"
ca_key = "/secret/ca.key"
read_timeout = 90
connect_timeout = "5s"
api_port = 8445
api_bind = "0.0.0.0"
api_cert = "/srv/d/api.crt"
api_key = "/srv/d/api.key"
api_auth_default = "allow"
api_trusted_proxies = ["10.0.0.0/8", "::1"]
api_max_requests = 50
auth_hook = "/srv/d/hook"
hook_timeout = "1m30s"
cert_days = 90
cert_overlap_days = 14
renew_interval = "1h"
state_dir = "/srv/state"
store = "postgres://dispatcher@db/dispatcher"
max_hosts = 20000
parallel = 64
run_retention = "48h"
resolve = "registry"
pairing_port = 8444
pairing_max_queue = 5
pairing_timeout = 300
log = "/var/log/dispatcher.log"
log_format = "json"
`
	dispatcherLegacy = `# dispatcher.conf from the Perl dispatcher
cert = /srv/d/d.crt
key = /srv/d/d.key   # the identity key
ca = /srv/d/ca.crt
ca_key = /secret/ca.key

timeout = 90
connect_timeout = 5s
api_port = 8445
api_bind = 0.0.0.0
api_cert = /srv/d/api.crt
api_key = /srv/d/api.key
api_auth_default = allow
api_trusted_proxies = 10.0.0.0/8, ::1
api_max_requests = 50
auth_hook = /srv/d/hook
hook_timeout = 1m30s
cert_days = 90
cert_overlap_days = 14
renew_interval = 1h
state_dir = /srv/state
store = postgres://dispatcher@db/dispatcher
max_hosts = 20000
parallel = 64
run_retention = 48h
resolve = registry
pairing_port = 8444
pairing_max_queue = 5
pairing_timeout = 300
log = /var/log/dispatcher.log
	log_format = json	# indented, tab before the comment
`
	dispatcherWant = &Dispatcher{
		Cert:              "/srv/d/d.crt",
		Key:               "/srv/d/d.key",
		CA:                "/srv/d/ca.crt",
		CAKey:             "/secret/ca.key",
		ReadTimeout:       Duration{90 * time.Second},
		ConnectTimeout:    Duration{5 * time.Second},
		APIPort:           8445,
		APIBind:           "0.0.0.0",
		APICert:           "/srv/d/api.crt",
		APIKey:            "/srv/d/api.key",
		APIAuthDefault:    "allow",
		APITrustedProxies: []string{"10.0.0.0/8", "::1"},
		APIMaxRequests:    50,
		AuthHook:          "/srv/d/hook",
		HookTimeout:       Duration{90 * time.Second},
		CertDays:          90,
		CertOverlapDays:   14,
		RenewInterval:     Duration{time.Hour},
		StateDir:          "/srv/state",
		Store:             "postgres://dispatcher@db/dispatcher",
		MaxHosts:          20000,
		Parallel:          64,
		RunRetention:      Duration{48 * time.Hour},
		Resolve:           "registry",
		PairingPort:       8444,
		PairingMaxQueue:   5,
		PairingTimeout:    Duration{300 * time.Second},
		Log:               "/var/log/dispatcher.log",
		LogFormat:         "json",
	}
)

func TestDispatcherEveryKey(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		warnings      func(file string) []Warning
	}{
		{"toml", dispatcherTOML, func(string) []Warning { return nil }},
		{"legacy", dispatcherLegacy, func(file string) []Warning {
			return []Warning{{File: file, Line: 2, Key: "cert", Reason: legacyReason}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := observed()
			path := write(t, "dispatcher.conf", tc.content)
			got, err := LoadDispatcher(path, log)
			if err != nil {
				t.Fatal(err)
			}
			want := *dispatcherWant
			want.Warnings = tc.warnings(path)
			if diff := cmp.Diff(&want, got); diff != "" {
				t.Errorf("mismatch (-want +got):\n%s", diff)
			}
			if n := logs.FilterMessage("config-warn").Len(); n != len(want.Warnings) {
				t.Errorf("logged %d config-warn lines, want %d", n, len(want.Warnings))
			}
		})
	}
}

func TestDispatcherCAKeyBesideCA(t *testing.T) {
	for _, tc := range []struct{ content, want string }{
		{`ca = "/srv/pki/ca.pem"`, "/srv/pki/ca.key"},
		{"ca = /srv/pki/ca.pem\nca_key = /vault/ca.key\n", "/vault/ca.key"},
		{`cert_days = 30`, "/etc/dispatcher/ca.key"},
	} {
		got, err := LoadDispatcher(write(t, "dispatcher.conf", tc.content), nil)
		if err != nil {
			t.Fatalf("%q: %v", tc.content, err)
		}
		if got.CAKey != tc.want {
			t.Errorf("%q: CAKey = %q, want %q", tc.content, got.CAKey, tc.want)
		}
	}
}

func TestDispatcherErrors(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"port range", "cert_days = 30\n\n# api\napi_port = 70000\n",
			`FILE:4: key "api_port": must be 1-65535, got 70000`},
		{"toml wrong type", "api_port = \"7445\"\n",
			`FILE:1: key "api_port": must be an integer, got string "7445"`},
		{"legacy wrong type", "api_bind = 0.0.0.0\nparallel = lots\n",
			`FILE:2: key "parallel": must be an integer, got "lots"`},
		{"float", "parallel = 1.5\n",
			`FILE:1: key "parallel": must be an integer, got float 1.5`},
		{"alias and key", "read_timeout = 30\nlog = \"stderr\"\ntimeout = 40\n",
			`FILE:3: key "timeout": is an alias of "read_timeout", which is also set (line 1); keep only one`},
		{"log format", "log_format = \"xml\"\n",
			`FILE:1: key "log_format": must be "kv" or "json", got "xml"`},
		{"log typo", "log = \"sylog\"\n",
			`FILE:1: key "log": must be "syslog", "stderr" or an absolute file path, got "sylog"`},
		{"relative log file", "log = \"logs/d.log\"\n",
			`FILE:1: key "log": must be "syslog", "stderr" or an absolute file path, got "logs/d.log"`},
		{"resolve", "resolve = \"hosts\"\n",
			`FILE:1: key "resolve": must be "dns" or "registry", got "hosts"`},
		{"auth default", "api_auth_default = \"maybe\"\n",
			`FILE:1: key "api_auth_default": must be "deny" or "allow", got "maybe"`},
		{"bad duration", "hook_timeout = \"soon\"\n",
			`FILE:1: key "hook_timeout": must be a number of seconds or a duration like "90s", got string "soon"`},
		{"duration type", "hook_timeout = true\n",
			`FILE:1: key "hook_timeout": must be a number of seconds or a duration like "90s", got boolean true`},
		{"negative duration", "connect_timeout = -5\n",
			`FILE:1: key "connect_timeout": must be positive, got -5s`},
		{"half api tls", "\napi_key = \"/k\"\n",
			`FILE:2: key "api_key": is set but api_cert is not; set both for HTTPS or neither for HTTP`},
		{"store not echoed", "store = \"mysql://u:secret@h/db\"\n",
			`FILE:1: key "store": must be empty (files in state_dir) or a postgres:// URL`},
		{"trusted proxies", "api_trusted_proxies = \"10.0.0.0/8, proxy.example\"\n",
			`FILE:1: key "api_trusted_proxies": must be IP addresses or CIDRs, got "proxy.example"`},
		{"max requests", "api_max_requests = 0\n",
			`FILE:1: key "api_max_requests": must be at least 1, got 0`},
		{"cert days", "cert_days = 0\n",
			`FILE:1: key "cert_days": must be 1-36500, got 0`},
		{"overlap days", "cert_overlap_days = -1\n",
			`FILE:1: key "cert_overlap_days": must be 0-3650, got -1`},
		{"renew interval", "renew_interval = \"-1h\"\n",
			`FILE:1: key "renew_interval": must not be negative (0 turns the sweep off), got -1h`},
		{"toml syntax", "cert = \"/a\"\nkey = /b\n",
			`FILE:2: key "key": invalid TOML: expected value but found '/' instead`},
		{"legacy syntax", "cert = /a\njust some words\n",
			`FILE:2: neither TOML nor the legacy key = value format: expected key = value, [section] or # comment, got "just some words"`},
		{"empty legacy int", "parallel =\ncert = /a\n",
			`FILE:1: key "parallel": must be an integer, got ""`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, "dispatcher.conf", tc.content)
			_, err := LoadDispatcher(path, nil)
			if err == nil {
				t.Fatal("no error")
			}
			want := replaceFile(tc.want, path)
			if err.Error() != want {
				t.Errorf("error:\n got %s\nwant %s", err, want)
			}
			var e *Error
			if !errors.As(err, &e) || e.File != path {
				t.Errorf("error %#v is not an *Error with the file", err)
			}
		})
	}
}

func replaceFile(s, path string) string {
	if len(s) >= 4 && s[:4] == "FILE" {
		return path + s[4:]
	}
	return s
}

func TestDispatcherUnknownKeys(t *testing.T) {
	log, logs := observed()
	path := write(t, "dispatcher.conf", "cert_days = 30\n\nfrobnicate = true\n[tags]\nenv = \"prod\"\n")
	got, err := LoadDispatcher(path, log)
	if err != nil {
		t.Fatal(err)
	}
	want := []Warning{
		{File: path, Line: 3, Key: "frobnicate", Reason: "unknown key"},
		{File: path, Line: 4, Key: "tags", Reason: "unknown key"},
	}
	if diff := cmp.Diff(want, got.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	entries := logs.FilterMessage("config-warn").AllUntimed()
	if len(entries) != 2 {
		t.Fatalf("logged %d entries, want 2", len(entries))
	}
	wantFields := map[string]any{"file": path, "line": int64(3), "key": "frobnicate", "reason": "unknown key"}
	if diff := cmp.Diff(wantFields, entries[0].ContextMap()); diff != "" {
		t.Errorf("logged fields (-want +got):\n%s", diff)
	}
}

func TestDispatcherMissingFile(t *testing.T) {
	_, err := LoadDispatcher(filepath.Join(t.TempDir(), "nope.conf"), nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	c := DefaultDispatcher()
	c.Parallel = 0
	err := c.Validate()
	if err == nil || err.Error() != `key "parallel": must be at least 1, got 0` {
		t.Errorf("Validate() = %v", err)
	}
}

func TestLogOutput(t *testing.T) {
	yes := func(string) bool { return true }
	no := func(string) bool { return false }
	for _, tc := range []struct {
		log    string
		exists func(string) bool
		want   string
	}{
		{"", yes, "syslog"},
		{"", no, "stderr"},
		{"stderr", yes, "stderr"},
		{"/var/log/x.log", yes, "/var/log/x.log"},
	} {
		if got := logOutput(tc.log, tc.exists); got != tc.want {
			t.Errorf("logOutput(%q) = %q, want %q", tc.log, got, tc.want)
		}
	}
	c := DefaultDispatcher()
	want := "stderr"
	if fileExists("/dev/log") {
		want = "syslog"
	}
	if got := c.LogOutput(); got != want {
		t.Errorf("LogOutput() = %q, want %q", got, want)
	}
}

// TestShippedExamples: the example configs in packaging/ load without
// errors or warnings, and their commented defaults are the real defaults.
func TestShippedExamples(t *testing.T) {
	dir := filepath.Join("..", "..", "..", "packaging", "examples")
	d, err := LoadDispatcher(filepath.Join(dir, "dispatcher.conf"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Warnings) != 0 {
		t.Errorf("dispatcher.conf warnings: %v", d.Warnings)
	}
	if diff := cmp.Diff(DefaultDispatcher(), d, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("the all-commented dispatcher.conf is not the defaults (-want +got):\n%s", diff)
	}
	a, err := LoadAgent(filepath.Join(dir, "agent.conf"), nil, func() (string, error) { return "web-01", nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(a.Warnings) != 0 {
		t.Errorf("agent.conf warnings: %v", a.Warnings)
	}
	scripts, warns, err := LoadScripts(filepath.Join(dir, "scripts.conf"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(warns) != 0 {
		t.Errorf("scripts.conf warnings: %v", warns)
	}
	want := []Script{
		{Name: "deploy", Path: "/opt/dispatcher/scripts/deploy", Timeout: 10 * time.Minute, User: "deploy", Group: "deploy", Env: map[string]string{"DEPLOY_ENV": "prod"},
			MaxConcurrent: 1},
		{Name: "uptime", Path: "/usr/bin/uptime"},
	}
	if diff := cmp.Diff(want, scripts, cmpopts.IgnoreFields(Script{}, "Line")); diff != "" {
		t.Errorf("scripts.conf (-want +got):\n%s", diff)
	}
}

// renew_interval = 0 turns the API's sweep off and cert_overlap_days = 0
// makes agents stale as soon as they miss the new serial: both are valid.
func TestDispatcherLifecycleZero(t *testing.T) {
	got, err := LoadDispatcher(write(t, "dispatcher.conf", "renew_interval = 0\ncert_overlap_days = 0\n"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.RenewInterval.Duration != 0 || got.CertOverlapDays != 0 {
		t.Errorf("renew_interval %v, cert_overlap_days %d; want 0 and 0", got.RenewInterval, got.CertOverlapDays)
	}
}
