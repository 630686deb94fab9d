package pki

import (
	"fmt"
	"strings"
	"time"
)

// openSSLLayout is the form openssl x509 -enddate prints, day padded with a
// space to width two: "Jun  7 16:28:00 2027 GMT".
const openSSLLayout = "Jan _2 15:04:05 2006 GMT"

// FormatOpenSSLTime writes t in UTC the way OpenSSL prints certificate times,
// e.g. "Jun  7 16:28:00 2027 GMT". It is the expiry form in /ping answers,
// which Perl dispatchers parse.
func FormatOpenSSLTime(t time.Time) string {
	return t.UTC().Format(openSSLLayout)
}

// ParseOpenSSLTime reads a time in the form FormatOpenSSLTime writes. The day
// may be padded with a space or not ("Jun 7 …"), and a leading "notAfter=" or
// "notBefore=" (as openssl x509 -enddate prints) is ignored. The result is in
// UTC.
func ParseOpenSSLTime(s string) (time.Time, error) {
	v := strings.TrimSpace(s)
	for _, p := range []string{"notAfter=", "notBefore="} {
		v = strings.TrimPrefix(v, p)
	}
	t, err := time.Parse(openSSLLayout, strings.TrimSpace(v))
	if err != nil {
		return time.Time{}, fmt.Errorf("time %q is not in the openssl form \"Jun  7 16:28:00 2027 GMT\"", s)
	}
	return t.UTC(), nil
}
