package config

import (
	"errors"
	"io/fs"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestAgentDefaults(t *testing.T) {
	want := &Agent{
		Hostname:             "web-01",
		Port:                 7443,
		Cert:                 "/etc/dispatcher-agent/agent.crt",
		Key:                  "/etc/dispatcher-agent/agent.key",
		CA:                   "/etc/dispatcher-agent/ca.crt",
		RevokedSerials:       "/etc/dispatcher-agent/revoked-serials",
		DispatcherSerialPath: "/etc/dispatcher-agent/dispatcher-serial",
		HookTimeout:          Duration{10 * time.Second},
		PairingPort:          7444,
		RateLimitVolume:      RateLimit{Limit: 10, Window: 60 * time.Second, Block: 300 * time.Second},
		RateLimitProbe:       RateLimit{Limit: 3, Window: 600 * time.Second, Block: 3600 * time.Second},
		MaxConcurrent:        64,
		OutputLimit:          16777216,
		Tags:                 map[string]string{},
		LogFormat:            "kv",
	}
	got, err := LoadAgent(write(t, "agent.conf", ""), nil, fixedHost("web-01"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("empty file: mismatch (-want +got):\n%s", diff)
	}

	def := DefaultAgent()
	def.Hostname = "web-01"
	if diff := cmp.Diff(want, def); diff != "" {
		t.Errorf("DefaultAgent() mismatch (-want +got):\n%s", diff)
	}
}

var (
	agentTOML = `hostname = "web-01.example.org"
port = 8443
bind = "10.0.0.5"
cert = "/srv/a/agent.crt"
key = "/srv/a/agent.key"
ca = "/srv/a/ca.crt"
revoked_serials = "/srv/a/revoked"
dispatcher_serial_path = "/srv/a/serial"
script_dirs = "/opt/scripts:/usr/local/scripts/"
auth_hook = "/srv/a/hook"
hook_timeout = 20
pairing_port = 8444
allowed_ips = ["10.0.0.0/8", "192.168.1.7", "2001:db8::/32"]
rate_limit_volume = "20/30/600"
rate_limit_probe = "5/1m/2h"
rate_limit_disable = true
max_concurrent = 8
output_limit = "1MiB"
default_timeout = "5m"
log = "stderr"
log_format = "json"

[tags]
env = "prod"
role = "web"
`
	agentLegacy = `# agent.conf written by the Perl dispatcher
hostname = web-01.example.org
port = 8443
bind = 10.0.0.5
cert = /srv/a/agent.crt
key = /srv/a/agent.key
ca = /srv/a/ca.crt
revoked_serials = /srv/a/revoked
dispatcher_serial_path = /srv/a/serial
script_dirs = /opt/scripts:/usr/local/scripts/   # two dirs
auth_hook = /srv/a/hook
hook_timeout = 20
pairing_port = 8444
allowed_ips = 10.0.0.0/8, 192.168.1.7,2001:db8::/32
rate_limit_volume = 20/30/600
rate_limit_probe = 5/1m/2h
rate_limit_disable = yes
max_concurrent = 8
output_limit = 1M
default_timeout = 300
log = stderr
log_format = json

[tags]
# free-form
env = prod
role = web # trailing comment
`
	agentWant = &Agent{
		Hostname:             "web-01.example.org",
		Port:                 8443,
		Bind:                 "10.0.0.5",
		Cert:                 "/srv/a/agent.crt",
		Key:                  "/srv/a/agent.key",
		CA:                   "/srv/a/ca.crt",
		RevokedSerials:       "/srv/a/revoked",
		DispatcherSerialPath: "/srv/a/serial",
		ScriptDirs:           []string{"/opt/scripts", "/usr/local/scripts"},
		AuthHook:             "/srv/a/hook",
		HookTimeout:          Duration{20 * time.Second},
		PairingPort:          8444,
		AllowedIPs:           []string{"10.0.0.0/8", "192.168.1.7", "2001:db8::/32"},
		RateLimitVolume:      RateLimit{Limit: 20, Window: 30 * time.Second, Block: 600 * time.Second},
		RateLimitProbe:       RateLimit{Limit: 5, Window: time.Minute, Block: 2 * time.Hour},
		RateLimitDisable:     true,
		MaxConcurrent:        8,
		OutputLimit:          MiB,
		DefaultTimeout:       Duration{5 * time.Minute},
		Tags:                 map[string]string{"env": "prod", "role": "web"},
		Log:                  "stderr",
		LogFormat:            "json",
	}
)

func TestAgentEveryKey(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		warnings      func(file string) []Warning
	}{
		{"toml", agentTOML, func(string) []Warning { return nil }},
		{"legacy", agentLegacy, func(file string) []Warning {
			return []Warning{{File: file, Line: 2, Key: "hostname", Reason: legacyReason}}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			log, logs := observed()
			path := write(t, "agent.conf", tc.content)
			got, err := LoadAgent(path, log, func() (string, error) {
				t.Error("hostname func called although the file sets hostname")
				return "", nil
			})
			if err != nil {
				t.Fatal(err)
			}
			want := *agentWant
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

func TestAgentListForms(t *testing.T) {
	for _, tc := range []struct {
		content string
		ips     []string
		dirs    []string
	}{
		{`allowed_ips = "10.0.0.1,10.0.0.2"`, []string{"10.0.0.1", "10.0.0.2"}, nil},
		{`allowed_ips = ["10.0.0.1, ::1", "fe80::/10"]`, []string{"10.0.0.1", "::1", "fe80::/10"}, nil},
		{`allowed_ips = ""`, nil, nil},
		{`script_dirs = ["/a:b", "/c"]`, nil, []string{"/a:b", "/c"}},
		{`script_dirs = "/a::/b/../c:"`, nil, []string{"/a", "/c"}},
	} {
		got, err := LoadAgent(write(t, "agent.conf", tc.content), nil, fixedHost("h"))
		if err != nil {
			t.Fatalf("%s: %v", tc.content, err)
		}
		if diff := cmp.Diff(tc.ips, got.AllowedIPs); diff != "" {
			t.Errorf("%s: allowed_ips (-want +got):\n%s", tc.content, diff)
		}
		if diff := cmp.Diff(tc.dirs, got.ScriptDirs); diff != "" {
			t.Errorf("%s: script_dirs (-want +got):\n%s", tc.content, diff)
		}
	}
}

func TestAgentErrors(t *testing.T) {
	for _, tc := range []struct {
		name, content, want string
	}{
		{"legacy port", "hostname = web-01\nport = abc\n",
			`FILE:2: key "port": must be an integer, got "abc"`},
		{"port range", "port = 0\n",
			`FILE:1: key "port": must be 1-65535, got 0`},
		{"relative script dir", "script_dirs = \"/opt/scripts:scripts\"\n",
			`FILE:1: key "script_dirs": must be absolute directories, got "scripts"`},
		{"rate limit form", "\nrate_limit_volume = \"10/60\"\n",
			`FILE:2: key "rate_limit_volume": must be "limit/window/block" such as "10/60/300", got "10/60"`},
		{"rate limit value", "rate_limit_probe = \"0/60/300\"\n",
			`FILE:1: key "rate_limit_probe": limit must be at least 1, got 0`},
		{"rate limit type", "rate_limit_probe = 3\n",
			`FILE:1: key "rate_limit_probe": must be a string "limit/window/block" such as "10/60/300", got integer 3`},
		{"bool type", "rate_limit_disable = \"yes\"\n",
			`FILE:1: key "rate_limit_disable": must be true or false, got string "yes"`},
		{"legacy bool", "hostname = h\nrate_limit_disable = perhaps\n",
			`FILE:2: key "rate_limit_disable": must be true or false, got "perhaps"`},
		{"size unit", "output_limit = \"16MB\"\n",
			`FILE:1: key "output_limit": unknown size unit in "16MB" (use K, KiB, M, MiB, G or GiB)`},
		{"size zero", "output_limit = 0\n",
			`FILE:1: key "output_limit": must be at least 1 byte, got 0`},
		{"tag type", "[tags]\nenv = \"prod\"\nrack = 7\n",
			`FILE:3: key "tags.rack": must be a string, got integer 7`},
		{"tag name", "[tags]\n\"data center\" = \"x\"\n",
			`FILE:2: key "tags.data center": tag names are 1-64 letters, digits, '_', '.' or '-'`},
		{"tags not a table", "tags = \"env=prod\"\n",
			`FILE:1: key "tags": must be a table of strings, got string "env=prod"`},
		{"allowed_ips type", "allowed_ips = 10\n",
			`FILE:1: key "allowed_ips": must be a string or an array of strings, got integer 10`},
		{"hostname", "hostname = \"web_01.-bad\"\n",
			`FILE:1: key "hostname": must be a DNS name (labels of letters, digits, '-' and '_', at most 253 characters), got "web_01.-bad"`},
		{"bind", "bind = \"not an address\"\n",
			`FILE:1: key "bind": must be an IP address or a host name, got "not an address"`},
		{"negative default timeout", "default_timeout = \"-1s\"\n",
			`FILE:1: key "default_timeout": must not be negative (0 = no limit), got -1s`},
		{"log_format", "hostname = h\nlog_format = text\n",
			`FILE:2: key "log_format": must be "kv" or "json", got "text"`},
		{"legacy section clash", "tags = x\n[tags]\nenv = prod\n",
			`FILE:2: key "tags": section has the name of the key on line 1`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := write(t, "agent.conf", tc.content)
			_, err := LoadAgent(path, nil, fixedHost("web-01"))
			if err == nil {
				t.Fatal("no error")
			}
			if want := replaceFile(tc.want, path); err.Error() != want {
				t.Errorf("error:\n got %s\nwant %s", err, want)
			}
		})
	}
}

func TestAgentHostname(t *testing.T) {
	path := write(t, "agent.conf", "port = 7443\n")
	_, err := LoadAgent(path, nil, func() (string, error) { return "", errors.New("uname failed") })
	want := path + `: key "hostname": not set and the system host name is unknown (uname failed); set hostname`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
	_, err = LoadAgent(path, nil, fixedHost("bad host"))
	want = path + `: key "hostname": must be a DNS name (labels of letters, digits, '-' and '_', at most 253 characters), got "bad host"`
	if err == nil || err.Error() != want {
		t.Errorf("error:\n got %v\nwant %s", err, want)
	}
}

func TestAgentLegacyDuplicateAndUnknown(t *testing.T) {
	log, logs := observed()
	path := write(t, "agent.conf", "hostname = a\nport = 1\ncolour = blue\nport = 2\n[extra]\nx = y\n")
	got, err := LoadAgent(path, log, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := []Warning{
		{File: path, Line: 1, Key: "hostname", Reason: legacyReason},
		{File: path, Line: 4, Key: "port", Reason: "duplicate key (already set on line 2); this later value wins"},
		{File: path, Line: 3, Key: "colour", Reason: "unknown key"},
		{File: path, Line: 5, Key: "extra", Reason: "unknown key"},
	}
	if diff := cmp.Diff(want, got.Warnings); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if got.Port != 2 {
		t.Errorf("Port = %d, want the later value 2", got.Port)
	}
	if n := logs.FilterMessage("config-warn").FilterField(zapString("reason", legacyReason)).Len(); n != 1 {
		t.Errorf("logged %d legacy warnings, want exactly 1", n)
	}
}

func TestAgentMissingFile(t *testing.T) {
	_, err := LoadAgent(filepath.Join(t.TempDir(), "agent.conf"), nil, nil)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("err = %v, want fs.ErrNotExist", err)
	}
}
