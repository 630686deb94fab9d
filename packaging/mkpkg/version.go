package main

import (
	"fmt"
	"regexp"
	"strings"
	"time"
)

// debVersion makes a Debian upstream version of a version string such as
// `git describe` prints: "v1.2.3-4-gabc-dirty" → "1.2.3+4.gabc.dirty". A
// version that does not start with a release number (a bare commit such
// as "42bf3ef", "dev") is prefixed "0~", which sorts before every release.
func debVersion(v string) (string, error) {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	if v == "" {
		return "", fmt.Errorf("empty version")
	}
	var b strings.Builder
	plus := false
	for _, r := range v {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '.', r == '~':
			b.WriteRune(r)
		case r == '+' || r == '-' || r == '_':
			// No hyphen: it would start a Debian revision.
			if !plus {
				b.WriteByte('+')
				plus = true
			} else {
				b.WriteByte('.')
			}
		default:
			return "", fmt.Errorf("version %q: character %q cannot be in a package version", v, r)
		}
	}
	s := b.String()
	if !debRelease.MatchString(s) {
		s = "0~" + s
	}
	return s, nil
}

// debRelease is a version that starts with a release number.
var debRelease = regexp.MustCompile(`^[0-9]+(?:\.[0-9]+)*[a-z]?(?:[+~.].*)?$`)

var (
	apkRelease  = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)*)([a-z]?)$`)
	apkDescribe = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)*)-([0-9]+)-g[0-9a-f]+(?:-dirty)?$`)
)

// apkVersion makes an Alpine version (without the -rN release) of a
// version string: "v1.2.3" → "1.2.3", "v1.2.3-4-gabc" → "1.2.3_p4" (4
// commits after 1.2.3), "1.2.3-dirty" → "1.2.3_p0"; anything else (a bare
// commit, "dev") → "0_gitYYYYMMDD" of the build date.
func apkVersion(v string, date time.Time) string {
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	if apkRelease.MatchString(v) {
		return v
	}
	if m := apkDescribe.FindStringSubmatch(v); m != nil {
		return m[1] + "_p" + m[2]
	}
	if base, ok := strings.CutSuffix(v, "-dirty"); ok && apkRelease.MatchString(base) {
		return base + "_p0"
	}
	return "0_git" + date.UTC().Format("20060102")
}

// debArch and apkArch map GOARCH to the packages' architecture names.
var (
	debArch = map[string]string{"amd64": "amd64", "arm64": "arm64", "386": "i386", "arm": "armhf", "riscv64": "riscv64", "ppc64le": "ppc64el", "s390x": "s390x"}
	apkArch = map[string]string{"amd64": "x86_64", "arm64": "aarch64", "386": "x86", "arm": "armv7", "riscv64": "riscv64", "ppc64le": "ppc64le", "s390x": "s390x"}
)
