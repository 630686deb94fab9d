package control

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// Identity is what the dispatcher shows agents and checks them against: its
// own certificate and key, and the CA that issued every agent's.
type Identity struct {
	Cert  tls.Certificate
	Roots *x509.CertPool
}

// MissingIdentityError says the dispatcher's certificate, key or CA could
// not be read: the dispatcher has not been set up (or config points
// elsewhere).
type MissingIdentityError struct {
	Path string
	Err  error
}

func (e *MissingIdentityError) Error() string {
	return fmt.Sprintf("no usable dispatcher identity at %s: %v", e.Path, e.Err)
}

func (e *MissingIdentityError) Unwrap() error { return e.Err }

// LoadIdentity reads the dispatcher's certificate and key (cert, key) and
// the CA certificate (ca). Every failure is a *MissingIdentityError naming
// the file.
func LoadIdentity(cert, key, ca string) (Identity, error) {
	certPEM, err := os.ReadFile(cert)
	if err != nil {
		return Identity{}, &MissingIdentityError{Path: cert, Err: err}
	}
	keyPEM, err := pki.ReadKeyFile(key, pki.KeyModeOwner)
	if err != nil {
		return Identity{}, &MissingIdentityError{Path: key, Err: err}
	}
	caPEM, err := os.ReadFile(ca)
	if err != nil {
		return Identity{}, &MissingIdentityError{Path: ca, Err: err}
	}
	chain, err := pki.ParseCertsPEM(certPEM)
	if err != nil {
		return Identity{}, &MissingIdentityError{Path: cert, Err: err}
	}
	signer, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		return Identity{}, &MissingIdentityError{Path: key, Err: err}
	}
	if !pki.PublicKeysEqual(chain[0].PublicKey, signer.Public()) {
		return Identity{}, &MissingIdentityError{Path: key, Err: fmt.Errorf("key does not belong to the certificate %s", cert)}
	}
	cas, err := pki.ParseCertsPEM(caPEM)
	if err != nil {
		return Identity{}, &MissingIdentityError{Path: ca, Err: err}
	}
	roots := x509.NewCertPool()
	for _, c := range cas {
		roots.AddCert(c)
	}
	tc := tls.Certificate{PrivateKey: signer, Leaf: chain[0]}
	for _, c := range chain {
		tc.Certificate = append(tc.Certificate, c.Raw)
	}
	return Identity{Cert: tc, Roots: roots}, nil
}
