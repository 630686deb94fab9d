package postgres

import (
	"net/url"
	"regexp"
	"strings"
	"testing"
)

// placeholder matches what redaction writes in place of a password.
var placeholder = regexp.MustCompile(`x{5,}`)

// FuzzRedactURL: whatever the password — in the user info or in a
// password parameter, escaped or not — the redacted form of the store URL
// and any error parseURL returns for it never contain it.
func FuzzRedactURL(f *testing.F) {
	f.Add("s3cret-pw", "dispatcher", "db.example.net:5432", "sslmode=require")
	f.Add("p@ss:w/rd?#&=", "u", "h1,h2:5433", "")
	f.Add("xxxxx-like", "", "[::1]:5432", "password=other&sslpassword=third")
	f.Add("pw", "user", "host", "pool_max_conns=zero")
	f.Fuzz(func(t *testing.T, pw, user, host, query string) {
		if len(pw) < 4 || strings.ContainsRune(pw, 0) {
			return // a short password may be any substring of the rest
		}
		tmpls := []string{
			"postgres://" + url.PathEscape(user) + ":" + url.PathEscape(pw) + "@" + host + "/db?" + query,
			"postgresql://" + host + "/db?password=" + url.QueryEscape(pw) + "&" + query,
		}
		// Written unescaped, as people do: no parser reads user info
		// past a '/' or an '@' in it, so those are not passwords.
		if !strings.ContainsAny(user+pw, "/@") {
			tmpls = append(tmpls, "postgres://"+user+":"+pw+"@"+host+"/db")
		}
		for _, tmpl := range tmpls {
			secrets := []string{pw, url.PathEscape(pw), url.QueryEscape(pw)}
			// A password that is also written elsewhere in the URL (as the
			// host, the user, a parameter) cannot be told apart there.
			rest := strings.ReplaceAll(strings.ReplaceAll(strings.ReplaceAll(tmpl, secrets[1], ""), secrets[2], ""), pw, "")
			if strings.Contains(rest, pw) || strings.Contains(user+host+query, pw) {
				continue
			}
			// The placeholder (five x's or more, once scrubbed again) is
			// not a leak of a password made of x's.
			red := redactURL(tmpl)
			bare := placeholder.ReplaceAllString(red, "\x00")
			for _, s := range secrets {
				if strings.Contains(bare, s) {
					t.Fatalf("redactURL(%q) = %q holds the password %q", tmpl, red, s)
				}
			}
			if _, err := parseURL(tmpl, nil); err != nil {
				for _, s := range secrets {
					if strings.Contains(placeholder.ReplaceAllString(err.Error(), "\x00"), s) {
						t.Fatalf("parseURL(%q): error %q holds the password %q", tmpl, err, s)
					}
				}
			}
		}
	})
}
