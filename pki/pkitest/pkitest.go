package pkitest

import (
	"crypto"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// Days is the validity of the certificates CA issues.
const Days = 365

// CA is a test certificate authority.
type CA struct {
	*pki.CA
	certPEM []byte
	keyPEM  []byte
	serial  atomic.Int64
}

// NewCA returns a new CA with an ECDSA P-256 key.
func NewCA(t testing.TB) *CA {
	t.Helper()
	ca, err := pki.NewCA(pki.Options{}, "pkitest CA")
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	keyPEM, err := pki.MarshalKeyPEM(ca.Key)
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	return &CA{CA: ca, certPEM: pki.CertPEM(ca.Cert), keyPEM: keyPEM}
}

// Pool returns a pool holding only the CA certificate.
func (c *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(c.Cert)
	return p
}

// CertPEM returns the CA certificate in PEM.
func (c *CA) CertPEM() []byte { return append([]byte(nil), c.certPEM...) }

// KeyPEM returns the CA private key in PEM (PKCS#8).
func (c *CA) KeyPEM() []byte { return append([]byte(nil), c.keyPEM...) }

// WriteFiles writes dir/ca.crt (mode 0644) and dir/ca.key (mode 0600).
func (c *CA) WriteFiles(t testing.TB, dir string) {
	t.Helper()
	if err := pki.WriteFileAtomic(filepath.Join(dir, "ca.crt"), c.certPEM, 0o644); err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	if err := pki.WriteFileAtomic(filepath.Join(dir, "ca.key"), c.keyPEM, 0o600); err != nil {
		t.Fatalf("pkitest: %v", err)
	}
}

// Agent returns an agent certificate for hostname, made from a certificate
// request as pairing does.
func (c *CA) Agent(t testing.TB, hostname string) tls.Certificate {
	t.Helper()
	key := newKey(t)
	csrPEM, err := pki.CreateCSR(pki.Options{}, key, hostname)
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	csr, err := pki.ParseCSR(csrPEM)
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	cert, err := c.SignAgentCSR(pki.Options{}, csr, hostname, Days)
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	return pair(cert, key)
}

// Dispatcher returns a dispatcher certificate, also valid as a server
// certificate for localhost, 127.0.0.1 and ::1.
func (c *CA) Dispatcher(t testing.TB) tls.Certificate {
	t.Helper()
	key := newKey(t)
	cert, err := c.IssueDispatcher(pki.Options{}, key.Public(), Days, []string{"localhost", "127.0.0.1", "::1"})
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	return pair(cert, key)
}

// Legacy returns a certificate like those the Perl dispatcher issued:
// subject common name only, no SANs, no key usages, a small serial number.
func (c *CA) Legacy(t testing.TB, commonName string) tls.Certificate {
	t.Helper()
	now := time.Now()
	return c.Issue(t, &x509.Certificate{
		SerialNumber: big.NewInt(c.serial.Add(1)),
		Subject:      pkix.Name{CommonName: commonName},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(Days * 24 * time.Hour),
	})
}

// Issue signs tmpl with the CA for a new P-256 key, for certificates the
// other methods do not make (expired ones, odd extensions). A nil
// SerialNumber gets a random one.
func (c *CA) Issue(t testing.TB, tmpl *x509.Certificate) tls.Certificate {
	t.Helper()
	key := newKey(t)
	if tmpl.SerialNumber == nil {
		n, err := pki.NewSerial(nil)
		if err != nil {
			t.Fatalf("pkitest: %v", err)
		}
		tmpl.SerialNumber = n
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.Cert, key.Public(), c.Key)
	if err != nil {
		t.Fatalf("pkitest: issue certificate: %v", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	return pair(cert, key)
}

// PEM returns the certificate and private key of tc in PEM, as they are
// written to agent.crt and agent.key.
func PEM(t testing.TB, tc tls.Certificate) (certPEM, keyPEM []byte) {
	t.Helper()
	for _, der := range tc.Certificate {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatalf("pkitest: %v", err)
		}
		certPEM = append(certPEM, pki.CertPEM(cert)...)
	}
	signer, ok := tc.PrivateKey.(crypto.Signer)
	if !ok {
		t.Fatalf("pkitest: private key %T is not a crypto.Signer", tc.PrivateKey)
	}
	keyPEM, err := pki.MarshalKeyPEM(signer)
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	return certPEM, keyPEM
}

func newKey(t testing.TB) crypto.Signer {
	t.Helper()
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatalf("pkitest: %v", err)
	}
	return key
}

func pair(cert *x509.Certificate, key crypto.Signer) tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{cert.Raw}, PrivateKey: key, Leaf: cert}
}
