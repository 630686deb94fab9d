package config

import (
	"errors"
	"net/netip"
	"path/filepath"
	"strconv"
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

// FuzzScripts loads arbitrary scripts.conf contents. A refusal is an
// *Error naming the file; what loads is sorted, without duplicates, and
// every entry passes Validate. Nothing is dropped silently: every entry of
// the file either loads or has a warning naming it, and every warning
// names the file.
func FuzzScripts(f *testing.F) {
	for _, s := range []string{
		"uptime = \"/usr/bin/uptime\"\n",
		"[deploy]\npath = \"/opt/d.sh\"\ntimeout = 60\nuser = \"u\"\n[deploy.env]\nA = \"1\"\n",
		"a = /bin/a\nb = rel\na = /bin/b\n",
		"x = { path = \"/x\", env = { \"=\" = \"\" } }\n",
		"[bad name]\npath = /x\n",
		"[gate]\npath = \"/opt/gate\"\nmax_concurrent = 1\n[b]\npath = \"/b\"\nmax_concurrent = -3\n",
		"g = { path = \"/g\", max_concurrent = 2 }\nh = { path = \"/h\", max_concurrent = \"2\" }\n",
		"[big]\npath = \"/x\"\nmax_concurrent = 9223372036854775807\n",
		"",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const path = "/fuzz/scripts.conf"
		d, err := parseDoc(path, data, nil, firstWins)
		var scripts []Script
		var warnings []Warning
		if err == nil {
			scripts, warnings, err = d.scripts()
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.File != path || e.Msg == "" {
				t.Fatalf("refusal %v (%T), want an *Error naming the file", err, err)
			}
			return
		}
		loaded := map[string]bool{}
		for i, s := range scripts {
			if !scriptName.MatchString(s.Name) || !filepath.IsAbs(s.Path) || s.MaxConcurrent < 0 {
				t.Fatalf("bad entry accepted: %+v", s)
			}
			if err := s.Validate(); err != nil {
				t.Fatalf("entry %+v fails Validate: %v", s, err)
			}
			if loaded[s.Name] {
				t.Fatalf("duplicate name %q", s.Name)
			}
			loaded[s.Name] = true
			if i > 0 && scripts[i-1].Name >= s.Name {
				t.Fatalf("not sorted: %q before %q", scripts[i-1].Name, s.Name)
			}
		}
		warned := map[string]bool{}
		for _, w := range warnings {
			if w.File != path || w.Reason == "" {
				t.Fatalf("warning %+v does not name the file or a reason", w)
			}
			warned[w.Key] = true
		}
		for _, name := range d.order {
			if !loaded[name] && !warned[name] {
				t.Fatalf("entry %q neither loaded nor warned about", name)
			}
		}
	})
}

// FuzzConfig loads arbitrary agent.conf and dispatcher.conf contents: no
// panic, whatever loads is valid, every error is an *Error naming the file,
// and every warning names the file.
func FuzzConfig(f *testing.F) {
	for _, s := range []string{agentTOML, agentLegacy, dispatcherTOML, dispatcherLegacy, "", "port = 70000\n", "[tags]\n"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		const path = "/fuzz/x.conf"
		refused := func(err error) {
			var e *Error
			if !errors.As(err, &e) || e.File != path || e.Msg == "" || !strings.HasPrefix(err.Error(), path) {
				t.Fatalf("refusal %v (%T), want an *Error naming the file", err, err)
			}
		}
		warned := func(d *doc) {
			for _, w := range d.warnings {
				if w.File != path || w.Reason == "" {
					t.Fatalf("warning %+v does not name the file or a reason", w)
				}
			}
		}
		d, err := parseDoc(path, data, nil, lastWins)
		if err != nil {
			refused(err)
			return
		}
		if a, err := d.agent(fixedHost("fuzz")); err == nil {
			if err := a.Validate(); err != nil {
				t.Fatalf("loaded agent config fails Validate: %v", err)
			}
		} else {
			refused(err)
		}
		warned(d)
		d, err = parseDoc(path, data, nil, lastWins)
		if err != nil {
			t.Fatalf("parsed once, then: %v", err)
		}
		if c, err := d.dispatcher(); err == nil {
			if err := c.Validate(); err != nil {
				t.Fatalf("loaded dispatcher config fails Validate: %v", err)
			}
			for _, s := range c.APITrustedProxies {
				if _, err := ParseAddrOrPrefix(s); err != nil {
					t.Fatalf("loaded api_trusted_proxies entry %q does not parse: %v", s, err)
				}
			}
		} else {
			refused(err)
		}
		warned(d)
	})
}

// FuzzAddrOrPrefix reads an api_trusted_proxies list as the dispatcher
// does (split on commas and white space, then ParseAddrOrPrefix). What is
// accepted is a valid, masked prefix without a zone that reads back from
// its own text, and matches the addresses it names as the API sees them:
// IPv4-mapped IPv6 peers are compared as IPv4 (roles/api unmaps them), so a
// prefix must contain its own first address unmapped. An address and the
// same address with its full prefix length mean the same.
func FuzzAddrOrPrefix(f *testing.F) {
	for _, s := range [][2]string{
		{"10.0.0.0/8, 192.168.1.7 2001:db8::/32", "10.1.2.3"},
		{"::1,127.0.0.1", "::ffff:127.0.0.1"},
		{"::ffff:10.0.0.0/104", "10.0.0.1"},
		{"fe80::1%eth0", "fe80::1"},
		{"1.2.3.4/33 ::/0 0.0.0.0/0", "8.8.8.8"},
		{"10.1.2.3/8", "10.200.0.1"},
	} {
		f.Add(s[0], s[1])
	}
	f.Fuzz(func(t *testing.T, list, addr string) {
		for _, s := range splitAddrs(list) {
			p, err := ParseAddrOrPrefix(s)
			if err != nil {
				if err.Error() == "" {
					t.Fatalf("%q: refusal without a message", s)
				}
				continue
			}
			if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" {
				t.Fatalf("ParseAddrOrPrefix(%q) = %v: not a valid masked prefix", s, p)
			}
			if back, err := ParseAddrOrPrefix(p.String()); err != nil || back != p {
				t.Fatalf("ParseAddrOrPrefix(%q) = %v, which reads back as %v, %v", s, p, back, err)
			}
			if !p.Contains(p.Addr().Unmap()) {
				t.Fatalf("ParseAddrOrPrefix(%q) = %v, which no unmapped peer address can match", s, p)
			}
			if !strings.Contains(s, "/") {
				a := netip.MustParseAddr(s)
				whole, err := ParseAddrOrPrefix(a.WithZone("").String() + "/" + strconv.Itoa(a.BitLen()))
				if err != nil || whole != p {
					t.Fatalf("ParseAddrOrPrefix(%q) = %v, but with /%d: %v, %v", s, p, a.BitLen(), whole, err)
				}
			}
			if a, err := netip.ParseAddr(addr); err == nil {
				p.Contains(a.Unmap())
			}
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
