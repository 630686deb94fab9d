package pki

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/url"
	"time"
)

const (
	// caYears is the lifetime of a CA made by NewCA.
	caYears = 10
	// backdate is how far NotBefore is set in the past, so that a peer
	// whose clock is a little behind accepts a certificate at once.
	backdate = 5 * time.Minute
	// maxDays bounds the validity asked of the issuing methods.
	maxDays = 100 * 366
)

var (
	agentRoleURL      = mustURL(RoleAgentURI)
	dispatcherRoleURL = mustURL(RoleDispatcherURI)
)

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// CA is a certificate authority: its certificate and the matching private
// key. Its methods issue the two kinds of leaf certificate the dispatcher
// uses; they never copy anything but a public key from a request.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
}

// NewCA makes a self-signed ECDSA P-256 CA valid for ten years, with a
// 128-bit random serial, path length 0 (it signs leaves only) and key usage
// certSign and cRLSign.
func NewCA(o Options, commonName string) (*CA, error) {
	if commonName == "" {
		return nil, errors.New("new ca: empty common name")
	}
	key, err := GenerateKey(o)
	if err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}
	serial, err := NewSerial(o.rand())
	if err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}
	ski, err := subjectKeyID(key.Public())
	if err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}
	now := o.now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: commonName},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.AddDate(caYears, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		SubjectKeyId:          ski,
	}
	der, err := x509.CreateCertificate(o.rand(), tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("new ca: %w", err)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// subjectKeyID is the key identifier of RFC 7093 section 2 method 1: the
// leftmost 160 bits of the SHA-256 of the subjectPublicKey bit string.
func subjectKeyID(pub crypto.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, err
	}
	var spki struct {
		Algorithm pkix.AlgorithmIdentifier
		PublicKey asn1.BitString
	}
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, err
	}
	sum := sha256.Sum256(spki.PublicKey.Bytes)
	return sum[:20], nil
}

// LoadCA reads a CA from PEM. The key must belong to the certificate and the
// certificate must be allowed to sign: a version 3 certificate needs basic
// constraints with CA:TRUE, and key usage, when present, must include
// certSign. A version 1 certificate without extensions (what openssl req
// -x509 makes without a config file, as some Perl dispatcher set-ups did) is
// accepted. RSA and ECDSA CAs are both loaded and used as they are.
func LoadCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("load ca certificate: %w", err)
	}
	key, err := ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("load ca key: %w", err)
	}
	if !PublicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, errors.New("load ca: the ca key does not belong to the ca certificate; check the ca and ca_key paths")
	}
	if cert.Version >= 3 && !(cert.BasicConstraintsValid && cert.IsCA) {
		return nil, fmt.Errorf("load ca: certificate %q is not a ca (no basic constraints CA:TRUE)", cert.Subject.CommonName)
	}
	if cert.KeyUsage != 0 && cert.KeyUsage&x509.KeyUsageCertSign == 0 {
		return nil, fmt.Errorf("load ca: certificate %q may not sign certificates (key usage lacks certSign)", cert.Subject.CommonName)
	}
	return &CA{Cert: cert, Key: key}, nil
}

// IssueDispatcher issues the dispatcher's own certificate for pub: common
// name "dispatcher", extended key usage clientAuth (to drive agents) and
// serverAuth (for the pairing listener and the API), the dispatcher role URI
// SAN, and dnsNames as DNS SANs (an entry that is an IP address becomes an IP
// SAN instead). It is valid from five minutes ago for days days.
func (ca *CA) IssueDispatcher(o Options, pub crypto.PublicKey, days int, dnsNames []string) (*x509.Certificate, error) {
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: "dispatcher"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth},
		URIs:        []*url.URL{dispatcherRoleURL},
	}
	for _, n := range dnsNames {
		if ip := net.ParseIP(n); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
			continue
		}
		if err := ValidHostname(n); err != nil {
			return nil, fmt.Errorf("issue dispatcher certificate: %w", err)
		}
		tmpl.DNSNames = append(tmpl.DNSNames, n)
	}
	c, err := ca.issue(o, tmpl, pub, days)
	if err != nil {
		return nil, fmt.Errorf("issue dispatcher certificate: %w", err)
	}
	return c, nil
}

// SignAgentCSR issues an agent certificate for hostname. The only thing taken
// from csr is its public key, after its signature is checked: whatever else
// it asks for (CA:TRUE, other names, other key usages, other extensions) is
// ignored. The certificate has common name and exactly one DNS SAN equal to
// hostname, the agent role URI SAN, extended key usage serverAuth only, and
// basic constraints CA:FALSE. It is valid from five minutes ago for days days.
func (ca *CA) SignAgentCSR(o Options, csr *x509.CertificateRequest, hostname string, days int) (*x509.Certificate, error) {
	if csr == nil {
		return nil, errors.New("sign csr: no certificate request")
	}
	if err := ValidHostname(hostname); err != nil {
		return nil, fmt.Errorf("sign csr: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("sign csr for %q: certificate request signature is invalid: %w", hostname, err)
	}
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hostname},
		DNSNames:    []string{hostname},
		URIs:        []*url.URL{agentRoleURL},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	c, err := ca.issue(o, tmpl, csr.PublicKey, days)
	if err != nil {
		return nil, fmt.Errorf("sign csr for %q: %w", hostname, err)
	}
	return c, nil
}

// issue completes tmpl with what every leaf shares and signs it.
func (ca *CA) issue(o Options, tmpl *x509.Certificate, pub crypto.PublicKey, days int) (*x509.Certificate, error) {
	if ca == nil || ca.Cert == nil || ca.Key == nil {
		return nil, errors.New("no ca loaded")
	}
	if days < 1 || days > maxDays {
		return nil, fmt.Errorf("validity of %d days is out of range 1-%d", days, maxDays)
	}
	if err := checkIssuable(pub); err != nil {
		return nil, err
	}
	now := o.now()
	if now.After(ca.Cert.NotAfter) {
		return nil, fmt.Errorf("the ca certificate expired on %s; create a new ca", ca.Cert.NotAfter.UTC().Format(time.DateTime+" MST"))
	}
	serial, err := NewSerial(o.rand())
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	tmpl.NotBefore = now.Add(-backdate)
	tmpl.NotAfter = now.Add(time.Duration(days) * 24 * time.Hour)
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = false
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if _, ok := pub.(*rsa.PublicKey); ok {
		tmpl.KeyUsage |= x509.KeyUsageKeyEncipherment
	}
	der, err := x509.CreateCertificate(o.rand(), tmpl, ca.Cert, pub, ca.Key)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// serialBytes is the size of a serial number: 128 random bits.
const serialBytes = 16

// NewSerial returns a positive serial number of 128 random bits read from r
// (crypto/rand.Reader when r is nil). It never returns zero.
func NewSerial(r io.Reader) (*big.Int, error) {
	if r == nil {
		r = Options{}.rand()
	}
	b := make([]byte, serialBytes)
	for range 8 {
		if _, err := io.ReadFull(r, b); err != nil {
			return nil, fmt.Errorf("read random serial: %w", err)
		}
		if n := new(big.Int).SetBytes(b); n.Sign() > 0 {
			return n, nil
		}
	}
	return nil, errors.New("read random serial: the random source returned only zeros")
}
