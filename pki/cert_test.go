package pki_test

import (
	"crypto/x509"
	"net/url"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
)

func TestCertRole(t *testing.T) {
	u := func(ss ...string) []*url.URL {
		var out []*url.URL
		for _, s := range ss {
			p, err := url.Parse(s)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, p)
		}
		return out
	}
	tests := []struct {
		name string
		cert *x509.Certificate
		want pki.Role
	}{
		{"nil", nil, pki.RoleNone},
		{"no uris", &x509.Certificate{}, pki.RoleNone},
		{"other uris", &x509.Certificate{URIs: u("https://example.com/", "urn:example:agent")}, pki.RoleNone},
		{"agent", &x509.Certificate{URIs: u(pki.RoleAgentURI)}, pki.RoleAgent},
		{"dispatcher", &x509.Certificate{URIs: u("https://x/", pki.RoleDispatcherURI)}, pki.RoleDispatcher},
		{"upper case", &x509.Certificate{URIs: u("URN:DISPATCHER:AGENT")}, pki.RoleAgent},
		{"twice the same", &x509.Certificate{URIs: u(pki.RoleAgentURI, pki.RoleAgentURI)}, pki.RoleAgent},
		{"both", &x509.Certificate{URIs: u(pki.RoleAgentURI, pki.RoleDispatcherURI)}, pki.RoleInvalid},
		{"unknown role", &x509.Certificate{URIs: u("urn:dispatcher:admin")}, pki.RoleInvalid},
		{"role with suffix", &x509.Certificate{URIs: u("urn:dispatcher:agent:x")}, pki.RoleInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pki.CertRole(tt.cert); got != tt.want {
				t.Fatalf("CertRole = %v, want %v", got, tt.want)
			}
		})
	}
	var names []string
	for _, r := range []pki.Role{pki.RoleNone, pki.RoleAgent, pki.RoleDispatcher, pki.RoleInvalid, 9} {
		names = append(names, r.String())
	}
	if d := cmp.Diff([]string{"none", "agent", "dispatcher", "invalid", "Role(9)"}, names); d != "" {
		t.Fatalf("Role names (-want +got):\n%s", d)
	}
}

func TestParseCertsPEM(t *testing.T) {
	ca := mustCA(t)
	leaf, key := issueDispatcher(t, ca)
	keyPEM, _ := pki.MarshalKeyPEM(key)
	bundle := append(append(append([]byte("chain:\n"), pki.CertPEM(leaf)...), keyPEM...), pki.CertPEM(ca.Cert)...)

	certs, err := pki.ParseCertsPEM(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if len(certs) != 2 || !certs[0].Equal(leaf) || !certs[1].Equal(ca.Cert) {
		t.Fatalf("ParseCertsPEM returned %d certificates, want leaf and ca", len(certs))
	}
	first, err := pki.ParseCertPEM(append(append([]byte(nil), keyPEM...), bundle...))
	if err != nil || !first.Equal(leaf) {
		t.Fatalf("ParseCertPEM = %v, %v; want the leaf", first, err)
	}

	for _, tt := range []struct {
		name, in, want string
	}{
		{"empty", "", "no CERTIFICATE PEM block found"},
		{"only a key", string(keyPEM), "no CERTIFICATE PEM block found"},
		{"corrupt", string(pemBlock("CERTIFICATE", []byte{0x30, 0x00})), "parse certificate"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pki.ParseCertsPEM([]byte(tt.in))
			wantErrContains(t, err, tt.want)
			_, err = pki.ParseCertPEM([]byte(tt.in))
			wantErrContains(t, err, tt.want)
		})
	}
	_, err = pki.ParseCertsPEM(append(pki.CertPEM(leaf), pemBlock("CERTIFICATE", []byte{1})...))
	wantErrContains(t, err, "parse certificate 2")
}
