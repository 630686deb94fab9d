package pki_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"net"
	"net/url"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestNewCA(t *testing.T) {
	ca, err := pki.NewCA(fixedClock(t0), "Dispatcher CA")
	if err != nil {
		t.Fatal(err)
	}
	c := ca.Cert
	type props struct {
		CN                          string
		IsCA, BCValid, MaxPathZero  bool
		MaxPathLen                  int
		KeyUsage                    x509.KeyUsage
		NotBefore, NotAfter         time.Time
		SKILen                      int
		SerialBitsMin, SerialBitsOK bool
		SelfSigned                  bool
	}
	got := props{
		CN: c.Subject.CommonName, IsCA: c.IsCA, BCValid: c.BasicConstraintsValid,
		MaxPathZero: c.MaxPathLenZero, MaxPathLen: c.MaxPathLen, KeyUsage: c.KeyUsage,
		NotBefore: c.NotBefore, NotAfter: c.NotAfter, SKILen: len(c.SubjectKeyId),
		SerialBitsMin: c.SerialNumber.BitLen() > 64, SerialBitsOK: c.SerialNumber.BitLen() <= 128,
		SelfSigned: c.CheckSignatureFrom(c) == nil,
	}
	want := props{
		CN: "Dispatcher CA", IsCA: true, BCValid: true, MaxPathZero: true, MaxPathLen: 0,
		KeyUsage:  x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		NotBefore: t0.Add(-5 * time.Minute), NotAfter: t0.AddDate(10, 0, 0), SKILen: 20,
		SerialBitsMin: true, SerialBitsOK: true, SelfSigned: true,
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Fatalf("CA certificate (-want +got):\n%s", d)
	}
	if _, ok := ca.Key.(*ecdsa.PrivateKey); !ok {
		t.Fatalf("CA key is %T, want ECDSA", ca.Key)
	}
	if _, err := pki.NewCA(pki.Options{}, ""); err == nil {
		t.Fatal("NewCA accepted an empty name")
	}
}

func TestLoadCA(t *testing.T) {
	ca := mustCA(t)
	other := mustCA(t)
	keyPEM, _ := pki.MarshalKeyPEM(ca.Key)
	otherKeyPEM, _ := pki.MarshalKeyPEM(other.Key)
	leafCert, leafKey := issueDispatcher(t, ca)
	leafKeyPEM, _ := pki.MarshalKeyPEM(leafKey)

	// A version 3 CA made by openssl's default configuration: basic
	// constraints CA:TRUE and nothing about key usage, RSA.
	rsaV3 := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "perl v3"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(5, 0, 0),
		BasicConstraintsValid: true, IsCA: true,
	}
	rsaV3DER, err := x509.CreateCertificate(rand.Reader, rsaV3, rsaV3, rsaKey().Public(), rsaKey())
	if err != nil {
		t.Fatal(err)
	}
	rsaPKCS1 := pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey()))
	// A version 3 certificate without basic constraints may not sign.
	noBC := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "no bc"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().AddDate(5, 0, 0),
	}
	noBCDER, err := x509.CreateCertificate(rand.Reader, noBC, noBC, rsaKey().Public(), rsaKey())
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name          string
		cert, key     []byte
		want          string
		wantIssueWork bool
	}{
		{"ecdsa", pki.CertPEM(ca.Cert), keyPEM, "", true},
		{"rsa v1 without extensions", v1RSACA(t, rsaKey(), time.Now()), rsaPKCS1, "", true},
		{"rsa v3 openssl default", pemBlock("CERTIFICATE", rsaV3DER), rsaPKCS1, "", true},
		{"key of another ca", pki.CertPEM(ca.Cert), otherKeyPEM, "does not belong to the ca certificate", false},
		{"leaf certificate", pki.CertPEM(leafCert), leafKeyPEM, "is not a ca", false},
		{"v3 without basic constraints", pemBlock("CERTIFICATE", noBCDER), rsaPKCS1, "is not a ca", false},
		{"no certificate", nil, keyPEM, "load ca certificate", false},
		{"no key", pki.CertPEM(ca.Cert), nil, "load ca key", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			loaded, err := pki.LoadCA(tt.cert, tt.key)
			wantErrContains(t, err, tt.want)
			if err != nil {
				return
			}
			// The loaded CA signs an agent certificate that verifies.
			key, csr := newCSR(t, "web-01.example")
			cert, err := loaded.SignAgentCSR(pki.Options{}, csr, "web-01.example", 30)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(loaded.Cert)
			if err := pki.VerifyAgent([]*x509.Certificate{cert}, roots, "web-01.example", key.Public(), time.Time{}); err != nil {
				t.Fatalf("certificate from the loaded ca does not verify: %v", err)
			}
		})
	}
}

func issueDispatcher(t testing.TB, ca *pki.CA) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := ca.IssueDispatcher(pki.Options{}, k.Public(), 30, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c, k.(*ecdsa.PrivateKey)
}

func newCSR(t testing.TB, host string) (*ecdsa.PrivateKey, *x509.CertificateRequest) {
	t.Helper()
	k, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := pki.CreateCSR(pki.Options{}, k, host)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(p)
	if err != nil {
		t.Fatal(err)
	}
	return k.(*ecdsa.PrivateKey), csr
}

// leafShape is what a test checks of an issued leaf certificate.
type leafShape struct {
	CN         string
	DNSNames   []string
	IPs        []string
	URIs       []string
	Emails     []string
	IsCA       bool
	BCValid    bool
	KeyUsage   x509.KeyUsage
	EKU        []x509.ExtKeyUsage
	UnknownEKU []string
	Extensions []string
	NotBefore  time.Time
	NotAfter   time.Time
}

func shape(c *x509.Certificate) leafShape {
	s := leafShape{
		CN: c.Subject.CommonName, DNSNames: c.DNSNames, IsCA: c.IsCA, BCValid: c.BasicConstraintsValid,
		KeyUsage: c.KeyUsage, EKU: c.ExtKeyUsage, NotBefore: c.NotBefore, NotAfter: c.NotAfter,
		Emails: c.EmailAddresses,
	}
	for _, ip := range c.IPAddresses {
		s.IPs = append(s.IPs, ip.String())
	}
	for _, u := range c.URIs {
		s.URIs = append(s.URIs, u.String())
	}
	for _, o := range c.UnknownExtKeyUsage {
		s.UnknownEKU = append(s.UnknownEKU, o.String())
	}
	for _, e := range c.Extensions {
		s.Extensions = append(s.Extensions, e.Id.String())
	}
	sort.Strings(s.Extensions)
	return s
}

const (
	oidKeyUsage         = "2.5.29.15"
	oidSAN              = "2.5.29.17"
	oidBasicConstraints = "2.5.29.19"
	oidAKI              = "2.5.29.35"
	oidEKU              = "2.5.29.37"
)

func TestSignAgentCSRIgnoresEverythingButTheKey(t *testing.T) {
	ca := mustCA(t)
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	bc, _ := asn1.Marshal(struct {
		IsCA       bool
		MaxPathLen int
	}{true, 5})
	eku, _ := asn1.Marshal([]asn1.ObjectIdentifier{
		{1, 3, 6, 1, 5, 5, 7, 3, 1}, // serverAuth
		{1, 3, 6, 1, 5, 5, 7, 3, 2}, // clientAuth
		{1, 3, 6, 1, 5, 5, 7, 3, 3}, // codeSigning
	})
	ku, _ := asn1.Marshal(asn1.BitString{Bytes: []byte{0x06}, BitLength: 7}) // keyCertSign, cRLSign
	evil, _ := url.Parse(pki.RoleDispatcherURI)
	web, _ := url.Parse("https://evil.example/")
	tmpl := &x509.CertificateRequest{
		Subject:        pkix.Name{CommonName: "evil.example", Organization: []string{"Evil"}},
		DNSNames:       []string{"web-01", "evil.example", "*.example"},
		IPAddresses:    []net.IP{net.ParseIP("10.0.0.1")},
		URIs:           []*url.URL{evil, web},
		EmailAddresses: []string{"root@evil.example"},
		ExtraExtensions: []pkix.Extension{
			{Id: asn1.ObjectIdentifier{2, 5, 29, 19}, Critical: true, Value: bc},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 37}, Value: eku},
			{Id: asn1.ObjectIdentifier{2, 5, 29, 15}, Critical: true, Value: ku},
			{Id: asn1.ObjectIdentifier{1, 3, 6, 1, 4, 1, 99999, 1}, Value: []byte{0x05, 0x00}},
		},
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := pki.ParseCSR(pemBlock("CERTIFICATE REQUEST", der))
	if err != nil {
		t.Fatal(err)
	}
	// Make sure the request really asks for all of it.
	var asked []string
	for _, e := range csr.Extensions {
		asked = append(asked, e.Id.String())
	}
	for _, oid := range []string{oidBasicConstraints, oidEKU, oidKeyUsage, "1.3.6.1.4.1.99999.1", oidSAN} {
		if !strings.Contains(strings.Join(asked, " "), oid) {
			t.Fatalf("test request lacks extension %s (has %v)", oid, asked)
		}
	}

	cert, err := ca.SignAgentCSR(fixedClock(t0), csr, "web-01", 90)
	if err != nil {
		t.Fatal(err)
	}
	want := leafShape{
		CN:         "web-01",
		DNSNames:   []string{"web-01"},
		URIs:       []string{pki.RoleAgentURI},
		BCValid:    true,
		KeyUsage:   x509.KeyUsageDigitalSignature,
		EKU:        []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		Extensions: []string{oidKeyUsage, oidSAN, oidBasicConstraints, oidAKI, oidEKU},
		NotBefore:  t0.Add(-5 * time.Minute),
		NotAfter:   t0.Add(90 * 24 * time.Hour),
	}
	sort.Strings(want.Extensions)
	if d := cmp.Diff(want, shape(cert)); d != "" {
		t.Fatalf("issued certificate (-want +got):\n%s", d)
	}
	if !pki.PublicKeysEqual(cert.PublicKey, key.Public()) {
		t.Fatal("issued certificate has another public key")
	}
	if len(cert.Subject.Organization) != 0 {
		t.Fatalf("subject organization copied from the request: %v", cert.Subject.Organization)
	}
	if !bytes.Equal(cert.AuthorityKeyId, ca.Cert.SubjectKeyId) {
		t.Fatal("authority key id is not the ca's subject key id")
	}
	if got := pki.CertRole(cert); got != pki.RoleAgent {
		t.Fatalf("CertRole = %v, want agent", got)
	}
}

func TestSignAgentCSRRefuses(t *testing.T) {
	ca := mustCA(t)
	_, good := newCSR(t, "web-01")
	badSig := *good
	badSig.Signature = append([]byte(nil), good.Signature...)
	badSig.Signature[len(badSig.Signature)-1] ^= 0xff

	tests := []struct {
		name string
		csr  *x509.CertificateRequest
		host string
		days int
		want string
	}{
		{"bad signature", &badSig, "web-01", 30, "signature is invalid"},
		{"bad hostname", good, "web_01", 30, `contains '_'`},
		{"trailing dot", good, "web-01.", 30, "ends with a dot"},
		{"zero days", good, "web-01", 0, "out of range"},
		{"nil csr", nil, "web-01", 30, "no certificate request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := ca.SignAgentCSR(pki.Options{}, tt.csr, tt.host, tt.days)
			if c != nil {
				t.Error("certificate returned with an error")
			}
			wantErrContains(t, err, tt.want)
		})
	}

	expired := fixedClock(ca.Cert.NotAfter.Add(time.Hour))
	_, err := ca.SignAgentCSR(expired, good, "web-01", 30)
	wantErrContains(t, err, "the ca certificate expired on")
}

func TestIssueDispatcher(t *testing.T) {
	ca := mustCA(t)
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cert, err := ca.IssueDispatcher(fixedClock(t0), key.Public(), 365, []string{"dispatcher.example", "localhost", "127.0.0.1", "::1"})
	if err != nil {
		t.Fatal(err)
	}
	want := leafShape{
		CN:         "dispatcher",
		DNSNames:   []string{"dispatcher.example", "localhost"},
		IPs:        []string{"127.0.0.1", "::1"},
		URIs:       []string{pki.RoleDispatcherURI},
		BCValid:    true,
		KeyUsage:   x509.KeyUsageDigitalSignature,
		EKU:        []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		Extensions: []string{oidKeyUsage, oidSAN, oidBasicConstraints, oidAKI, oidEKU},
		NotBefore:  t0.Add(-5 * time.Minute),
		NotAfter:   t0.Add(365 * 24 * time.Hour),
	}
	sort.Strings(want.Extensions)
	if d := cmp.Diff(want, shape(cert)); d != "" {
		t.Fatalf("dispatcher certificate (-want +got):\n%s", d)
	}
	if got := pki.CertRole(cert); got != pki.RoleDispatcher {
		t.Fatalf("CertRole = %v, want dispatcher", got)
	}

	// An RSA key also gets keyEncipherment (TLS 1.2 RSA key exchange).
	rsaCert, err := ca.IssueDispatcher(pki.Options{}, rsaKey().Public(), 30, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment; rsaCert.KeyUsage != want {
		t.Fatalf("rsa KeyUsage = %v, want %v", rsaCert.KeyUsage, want)
	}

	for _, tt := range []struct {
		name  string
		names []string
		pub   any
		want  string
	}{
		{"bad dns name", []string{"bad name"}, key.Public(), `contains ' '`},
		{"no key", nil, nil, "no public key"},
		{"unsupported key", nil, struct{}{}, "unsupported key type"},
		{"small rsa key", nil, &rsa.PublicKey{N: new(big.Int).SetBit(big.NewInt(1), 1023, 1), E: 65537}, "rsa key is 1024 bits; at least 2048"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ca.IssueDispatcher(pki.Options{}, tt.pub, 30, tt.names)
			wantErrContains(t, err, tt.want)
		})
	}
}

func TestNewSerial(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		n, err := pki.NewSerial(nil)
		if err != nil {
			t.Fatal(err)
		}
		if n.Sign() <= 0 || n.BitLen() > 128 {
			t.Fatalf("serial %x out of range", n)
		}
		if seen[n.String()] {
			t.Fatalf("serial %x repeated", n)
		}
		seen[n.String()] = true
	}
	// Zeros first, then a usable value: zero is skipped.
	r := bytes.NewReader(append(make([]byte, 16), bytes.Repeat([]byte{0xab}, 16)...))
	n, err := pki.NewSerial(r)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := pki.FormatSerial(n), strings.Repeat("ab", 16); got != want {
		t.Fatalf("NewSerial = %s, want %s", got, want)
	}
	if _, err := pki.NewSerial(bytes.NewReader(make([]byte, 1024))); err == nil {
		t.Fatal("NewSerial accepted an all-zero source")
	}
	if _, err := pki.NewSerial(bytes.NewReader([]byte{1, 2})); err == nil {
		t.Fatal("NewSerial accepted a short read")
	}
}
