package pki_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// rsaKey is the one RSA key of the tests: generating it is slow.
var rsaKey = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

func fixedClock(t time.Time) pki.Options {
	return pki.Options{Now: func() time.Time { return t }}
}

func mustCA(t testing.TB) *pki.CA {
	t.Helper()
	ca, err := pki.NewCA(pki.Options{}, "test CA")
	if err != nil {
		t.Fatal(err)
	}
	return ca
}

func pemBlock(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// v1RSACA builds, by hand, a version 1 self-signed RSA certificate with no
// extensions at all, as openssl req -x509 makes without a configuration.
// crypto/x509 only writes version 3 certificates.
func v1RSACA(t testing.TB, key *rsa.PrivateKey, now time.Time) []byte {
	t.Helper()
	name, err := asn1.Marshal(pkix.Name{CommonName: "Perl Dispatcher CA"}.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	spki, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	sigAlg := pkix.AlgorithmIdentifier{
		Algorithm:  asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}, // sha256WithRSAEncryption
		Parameters: asn1.NullRawValue,
	}
	type validity struct{ NotBefore, NotAfter time.Time }
	tbs := struct {
		SerialNumber *big.Int
		Signature    pkix.AlgorithmIdentifier
		Issuer       asn1.RawValue
		Validity     validity
		Subject      asn1.RawValue
		PublicKey    asn1.RawValue
	}{
		SerialNumber: big.NewInt(0x1001),
		Signature:    sigAlg,
		Issuer:       asn1.RawValue{FullBytes: name},
		Validity:     validity{now.Add(-time.Hour).UTC().Truncate(time.Second), now.AddDate(10, 0, 0).UTC().Truncate(time.Second)},
		Subject:      asn1.RawValue{FullBytes: name},
		PublicKey:    asn1.RawValue{FullBytes: spki},
	}
	tbsDER, err := asn1.Marshal(tbs)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := (*rsa.PrivateKey).Sign(key, rand.Reader, sha256Sum(tbsDER), cryptoSHA256)
	if err != nil {
		t.Fatal(err)
	}
	der, err := asn1.Marshal(struct {
		TBS       asn1.RawValue
		Algorithm pkix.AlgorithmIdentifier
		Signature asn1.BitString
	}{asn1.RawValue{FullBytes: tbsDER}, sigAlg, asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatalf("hand-made v1 certificate does not parse: %v", err)
	}
	if c.Version != 1 || len(c.Extensions) != 0 {
		t.Fatalf("hand-made certificate is version %d with %d extensions, want 1 and 0", c.Version, len(c.Extensions))
	}
	return pemBlock("CERTIFICATE", der)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func wantErrContains(t *testing.T, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Fatalf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Fatalf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Fatalf("error %q does not contain %q", err, want)
	}
}

func discardLogger() *log.Logger { return log.New(io.Discard, "", 0) }
