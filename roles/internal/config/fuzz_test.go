package config

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func FuzzLegacy(f *testing.F) {
	for _, s := range []string{
		agentLegacy, dispatcherLegacy, "a = b\n", "k =#v\n", "[s]\nk = v # c\n",
		"a = 1\r\nb=2", "x = y = z\n", "#only\n\n", "[ tags ]\n", "k = \xff\xfe\n", "k = a\u00a0#b\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := parseLegacy(data)
		if err != nil {
			return
		}
		for _, e := range entries {
			if e.Key != "" && !validLegacyName(e.Key) || e.Section != "" && !validLegacyName(e.Section) {
				t.Fatalf("accepted bad name in %+v", e)
			}
			if strings.ContainsAny(e.Value, "\n") || e.Value != strings.TrimSpace(e.Value) {
				t.Fatalf("value %q not trimmed to one line", e.Value)
			}
		}
		out := formatLegacy(entries)
		again, err := parseLegacy(out)
		if err != nil {
			t.Fatalf("re-serialised file does not parse: %v\n%s", err, out)
		}
		if diff := cmp.Diff(entries, again, ignoreLine); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s\n%s", diff, out)
		}
	})
}

func FuzzScripts(f *testing.F) {
	for _, s := range []string{
		"uptime = \"/usr/bin/uptime\"\n",
		"[deploy]\npath = \"/opt/d.sh\"\ntimeout = 60\nuser = \"u\"\n[deploy.env]\nA = \"1\"\n",
		"a = /bin/a\nb = rel\na = /bin/b\n",
		"x = { path = \"/x\", env = { \"=\" = \"\" } }\n",
		"[bad name]\npath = /x\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "scripts.conf")
		writeBytes(t, path, data)
		scripts, _, err := LoadScripts(path, nil)
		if err != nil {
			return
		}
		seen := map[string]bool{}
		for i, s := range scripts {
			if !scriptName.MatchString(s.Name) || !filepath.IsAbs(s.Path) {
				t.Fatalf("bad entry accepted: %+v", s)
			}
			if err := s.Validate(); err != nil {
				t.Fatalf("entry %+v fails Validate: %v", s, err)
			}
			if seen[s.Name] {
				t.Fatalf("duplicate name %q", s.Name)
			}
			seen[s.Name] = true
			if i > 0 && scripts[i-1].Name >= s.Name {
				t.Fatalf("not sorted: %q before %q", scripts[i-1].Name, s.Name)
			}
		}
	})
}

// FuzzConfig loads arbitrary agent.conf and dispatcher.conf contents: no
// panic, and whatever loads is valid and every error names the file.
func FuzzConfig(f *testing.F) {
	for _, s := range []string{agentTOML, agentLegacy, dispatcherTOML, dispatcherLegacy, "", "port = 70000\n", "[tags]\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const path = "/fuzz/x.conf"
		var a *Agent
		d, err := parseDoc(path, data, nil, lastWins)
		if err == nil {
			a, err = d.agent(fixedHost("fuzz"))
		}
		if err == nil {
			if err := a.Validate(); err != nil {
				t.Fatalf("loaded agent config fails Validate: %v", err)
			}
		} else if !strings.HasPrefix(err.Error(), path) {
			t.Fatalf("error does not name the file: %v", err)
		}
		var c *Dispatcher
		d, err = parseDoc(path, data, nil, lastWins)
		if err == nil {
			c, err = d.dispatcher()
		}
		if err == nil {
			if err := c.Validate(); err != nil {
				t.Fatalf("loaded dispatcher config fails Validate: %v", err)
			}
		} else if !strings.HasPrefix(err.Error(), path) {
			t.Fatalf("error does not name the file: %v", err)
		}
	})
}

func FuzzRateLimit(f *testing.F) {
	for _, s := range []string{"10/60/300", "3/600/3600", "5/1m/2h", "1/1.5s/0", "0/1/1", "a/b/c", "//", "1/-1/1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRateLimit(s)
		if err != nil {
			return
		}
		if err := r.check(); err != nil {
			t.Fatalf("ParseRateLimit(%q) accepted %+v: %v", s, r, err)
		}
		again, err := ParseRateLimit(r.String())
		if err != nil || again != r {
			t.Fatalf("ParseRateLimit(%q) = %+v; String %q reparses to %+v, %v", s, r, r.String(), again, err)
		}
	})
}

func FuzzSize(f *testing.F) {
	for _, s := range []string{"16777216", "16M", "16 MiB", "1k", "3GiB", "0", "-1", "1.5M", "9223372036854775807"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseSize(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("ParseSize(%q) = %d, negative", s, n)
		}
		again, err := ParseSize(n.String())
		if err != nil || again != n {
			t.Fatalf("ParseSize(%q) = %d; String %q reparses to %d, %v", s, n, n.String(), again, err)
		}
	})
}

func FuzzDuration(f *testing.F) {
	for _, s := range []string{"60", "90s", "24h", "1m30s", "-5", "1.5h", "0", "9223372036854775807ns", "-9223372036854775808ns", "1us"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		again, err := ParseDuration(FormatDuration(d))
		if err != nil || again != d {
			t.Fatalf("ParseDuration(%q) = %d; %q reparses to %d, %v", s, d, FormatDuration(d), again, err)
		}
	})
}
