package pki_test

import (
	"bytes"
	"encoding/hex"
	"strings"
	"testing"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// FuzzParseCertsPEM reads arbitrary bytes as the agent reads the cert and
// ca of a renew-complete body. A refusal is an error with a message and no
// certificates, and then ParseCertPEM finds nothing either or the first
// certificate is fine and a later one is not. What is accepted encodes back
// (CertPEM) to text that reads as the same certificates, and ParseCertPEM
// returns the first of them.
func FuzzParseCertsPEM(f *testing.F) {
	ca := mustCA(f)
	caPEM := pki.CertPEM(ca.Cert)
	f.Add(caPEM)
	f.Add(append(append([]byte("subject=CN=test CA\n"), caPEM...), caPEM...))
	f.Add(append(pemBlock("EC PRIVATE KEY", []byte{1}), caPEM...))
	f.Add(pemBlock("CERTIFICATE", ca.Cert.Raw[:len(ca.Cert.Raw)-1]))
	f.Add([]byte("-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		certs, err := pki.ParseCertsPEM(data)
		first, ferr := pki.ParseCertPEM(data)
		if err != nil {
			if certs != nil {
				t.Fatal("certificates returned with an error")
			}
			if err.Error() == "" {
				t.Fatal("refusal without a message")
			}
			if ferr == nil && !strings.HasPrefix(err.Error(), "parse certificate ") {
				t.Fatalf("ParseCertPEM found a certificate, but ParseCertsPEM says %v", err)
			}
			return
		}
		if len(certs) == 0 {
			t.Fatal("no certificates and no error")
		}
		if ferr != nil || !bytes.Equal(first.Raw, certs[0].Raw) {
			t.Fatalf("ParseCertPEM does not return the first certificate: %v", ferr)
		}
		var again []byte
		for _, c := range certs {
			again = append(again, pki.CertPEM(c)...)
			if fp := pki.CertFingerprint(c); len(fp) != len("sha256:")+64 {
				t.Fatalf("fingerprint %q", fp)
			}
			_ = pki.CertRole(c).String()
		}
		back, err := pki.ParseCertsPEM(again)
		if err != nil || len(back) != len(certs) {
			t.Fatalf("accepted certificates, encoded again, read back as %d, %v", len(back), err)
		}
		for i := range back {
			if !bytes.Equal(back[i].Raw, certs[i].Raw) {
				t.Fatalf("certificate %d changed in a round trip", i+1)
			}
		}
	})
}

// FuzzParseFingerprint: what ParseFingerprint accepts is in the form
// Fingerprint writes ("sha256:" and 64 lowercase hex digits), and parsing
// that again changes nothing. A refusal is an error with a message.
func FuzzParseFingerprint(f *testing.F) {
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		f.Fatal(err)
	}
	fp, err := pki.Fingerprint(key.Public())
	if err != nil {
		f.Fatal(err)
	}
	h := strings.TrimPrefix(fp, "sha256:")
	var colons []string
	for i := 0; i < len(h); i += 2 {
		colons = append(colons, strings.ToUpper(h[i:i+2]))
	}
	for _, s := range []string{fp, "SHA256:" + strings.Join(colons, ":"), " " + fp + "\n", h, fp[:len(fp)-2], fp + "00", "sha256:", "sha256:zz", "sha1:" + h} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := pki.ParseFingerprint(s)
		if err != nil {
			if got != "" || err.Error() == "" {
				t.Fatalf("refusal %q, %v", got, err)
			}
			return
		}
		digits, ok := strings.CutPrefix(got, "sha256:")
		if b, derr := hex.DecodeString(digits); !ok || derr != nil || len(b) != 32 || digits != strings.ToLower(digits) {
			t.Fatalf("ParseFingerprint(%q) = %q, not in the form Fingerprint writes", s, got)
		}
		if again, err := pki.ParseFingerprint(got); err != nil || again != got {
			t.Fatalf("ParseFingerprint(%q) = %q, %v; want it unchanged", got, again, err)
		}
	})
}

// FuzzValidHostname checks ValidHostname against the rule written out
// again: labels of 1 to 63 ASCII letters, digits and '-', not starting or
// ending with '-', at most 253 bytes in all, no trailing dot. Such a name
// is also a safe file name (agents/HOST.json).
func FuzzValidHostname(f *testing.F) {
	for _, s := range []string{"web-01", "web-01.example.com", "1.2.3.4", "", ".", "..", "a..b", "web-01.", "-a", "a-",
		"a/b", "a_b", "bücher", strings.Repeat("a", 63), strings.Repeat("a", 64), strings.Repeat("a.", 126) + "a", "xn--bcher-kva"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		err := pki.ValidHostname(s)
		want := len(s) >= 1 && len(s) <= 253
		for _, label := range strings.Split(s, ".") {
			if len(label) < 1 || len(label) > 63 || label[0] == '-' || label[len(label)-1] == '-' ||
				strings.Trim(label, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-") != "" {
				want = false
			}
		}
		if (err == nil) != want {
			t.Fatalf("ValidHostname(%q) = %v, the rule says valid = %v", s, err, want)
		}
		if err != nil && err.Error() == "" {
			t.Fatal("refusal without a message")
		}
		if err == nil && (strings.ContainsAny(s, "/\\\x00") || s == "." || s == "..") {
			t.Fatalf("accepted %q, which is not a safe file name", s)
		}
	})
}
