package pki_test

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/pem"
	"io"
	"log"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
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

// v1RSACA is a version 1 self-signed RSA certificate with no extensions
// at all, as openssl req -x509 makes without a configuration
// (pkitest.V1Cert; crypto/x509 only writes version 3 certificates).
func v1RSACA(t testing.TB, key *rsa.PrivateKey, now time.Time) []byte {
	t.Helper()
	const cn = "Perl Dispatcher CA"
	return pkitest.V1Cert(t, cn, cn, 0x1001, &key.PublicKey, key, now.Add(-time.Hour), now.AddDate(10, 0, 0))
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
