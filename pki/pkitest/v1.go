package pkitest

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"math/big"
	"testing"
	"time"
)

// V1Cert returns, in PEM, what openssl makes without an extension file
// (req -x509, x509 -req -CA), as the Perl dispatcher did: an X.509 v1
// certificate for pub with subject and issuer common names only, no
// extension at all (no SAN, no EKU, no basic constraints), the serial
// given, signed sha256WithRSAEncryption by signer. Go's x509 cannot make a
// v1 certificate, so it is assembled here.
func V1Cert(t testing.TB, subject, issuer string, serial int64, pub crypto.PublicKey, signer *rsa.PrivateKey, notBefore, notAfter time.Time) []byte {
	t.Helper()
	name := func(cn string) asn1.RawValue {
		der, err := asn1.Marshal(pkix.Name{CommonName: cn}.ToRDNSequence())
		if err != nil {
			t.Fatal(err)
		}
		return asn1.RawValue{FullBytes: der}
	}
	spki, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	alg := pkix.AlgorithmIdentifier{Algorithm: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, Parameters: asn1.NullRawValue}
	type validity struct{ NotBefore, NotAfter time.Time }
	tbs, err := asn1.Marshal(struct {
		SerialNumber *big.Int
		Signature    pkix.AlgorithmIdentifier
		Issuer       asn1.RawValue
		Validity     validity
		Subject      asn1.RawValue
		PublicKey    asn1.RawValue
	}{big.NewInt(serial), alg, name(issuer), validity{notBefore.UTC().Truncate(time.Second), notAfter.UTC().Truncate(time.Second)},
		name(subject), asn1.RawValue{FullBytes: spki}})
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(tbs)
	sig, err := rsa.SignPKCS1v15(rand.Reader, signer, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{asn1.RawValue{FullBytes: tbs}, alg, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		t.Fatal(err)
	}
	if c, err := x509.ParseCertificate(der); err != nil || c.Version != 1 || len(c.Extensions) != 0 {
		t.Fatalf("pkitest: hand-made v1 certificate: %v", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
