package pki_test

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"

	"github.com/dispatcher-dev/dispatcher/pki"
)

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

func TestGenerateKeyIsP256(t *testing.T) {
	k, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ec, ok := k.(*ecdsa.PrivateKey)
	if !ok || ec.Curve != elliptic.P256() {
		t.Fatalf("GenerateKey returned %T, want a P-256 *ecdsa.PrivateKey", k)
	}
}

func TestKeyPEMRoundTrip(t *testing.T) {
	ec, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ecKey := ec.(*ecdsa.PrivateKey)
	sec1, err := x509.MarshalECPrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPKCS8, err := pki.MarshalKeyPEM(ec)
	if err != nil {
		t.Fatal(err)
	}
	rsaPKCS8, err := pki.MarshalKeyPEM(rsaKey())
	if err != nil {
		t.Fatal(err)
	}
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p384DER, _ := x509.MarshalECPrivateKey(p384)
	// openssl ecparam -genkey writes the curve parameters first.
	ecParams := append(pemBlock("EC PARAMETERS", []byte{0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07}), pemBlock("EC PRIVATE KEY", sec1)...)
	// Mislabelled: PKCS#1 content under a PKCS#8 label.
	mislabelled := pemBlock("PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey()))

	tests := []struct {
		name string
		pem  []byte
		want crypto.PublicKey
	}{
		{"ec pkcs8", ecPKCS8, ec.Public()},
		{"ec sec1", pemBlock("EC PRIVATE KEY", sec1), ec.Public()},
		{"ec sec1 after parameters", ecParams, ec.Public()},
		{"ec p-384", pemBlock("EC PRIVATE KEY", p384DER), p384.Public()},
		{"rsa pkcs1", pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey())), rsaKey().Public()},
		{"rsa pkcs8", rsaPKCS8, rsaKey().Public()},
		{"rsa mislabelled", mislabelled, rsaKey().Public()},
		{"leading text", append([]byte("key for web-01\n"), ecPKCS8...), ec.Public()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := pki.ParseKeyPEM(tt.pem)
			if err != nil {
				t.Fatal(err)
			}
			if !pki.PublicKeysEqual(k.Public(), tt.want) {
				t.Fatal("parsed key has another public key")
			}
			// Back to PEM and again: the same key.
			again, err := pki.MarshalKeyPEM(k)
			if err != nil {
				t.Fatal(err)
			}
			if b, _ := pem.Decode(again); b == nil || b.Type != "PRIVATE KEY" {
				t.Fatalf("MarshalKeyPEM wrote %q, want a PRIVATE KEY block", again)
			}
			k2, err := pki.ParseKeyPEM(again)
			if err != nil {
				t.Fatal(err)
			}
			if !pki.PublicKeysEqual(k2.Public(), tt.want) {
				t.Fatal("round trip changed the key")
			}
			// And it signs.
			digest := sha256Sum([]byte("x"))
			if _, err := k2.Sign(rand.Reader, digest, crypto.SHA256); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseKeyPEMRefuses(t *testing.T) {
	_, edPriv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edDER, _ := x509.MarshalPKCS8PrivateKey(edPriv)
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224DER, _ := x509.MarshalECPrivateKey(p224)
	ca := mustCA(t)
	legacyEncrypted := pem.EncodeToMemory(&pem.Block{
		Type:    "RSA PRIVATE KEY",
		Headers: map[string]string{"Proc-Type": "4,ENCRYPTED", "DEK-Info": "AES-128-CBC,00112233445566778899AABBCCDDEEFF"},
		Bytes:   []byte{1, 2, 3},
	})
	tests := []struct {
		name, in, want string
	}{
		{"empty", "", "not PEM"},
		{"garbage", "hello", "not PEM"},
		{"pkcs8 encrypted", string(pemBlock("ENCRYPTED PRIVATE KEY", []byte{1, 2})), "private key is encrypted; decrypt it first"},
		{"legacy encrypted", string(legacyEncrypted), "private key is encrypted"},
		{"certificate", string(pki.CertPEM(ca.Cert)), "no private key found (found CERTIFICATE)"},
		{"ed25519", string(pemBlock("PRIVATE KEY", edDER)), "ed25519 keys are not supported"},
		{"p-224", string(pemBlock("EC PRIVATE KEY", p224DER)), "curve P-224 is not supported"},
		{"corrupt", string(pemBlock("PRIVATE KEY", []byte{0x30, 0x03, 1, 2, 3})), "parse private key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := pki.ParseKeyPEM([]byte(tt.in))
			if k != nil {
				t.Errorf("returned a key")
			}
			wantErrContains(t, err, tt.want)
		})
	}
}

func TestFingerprint(t *testing.T) {
	k, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fp, err := pki.Fingerprint(k.Public())
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(k.Public())
	if want := "sha256:" + hexString(sha256Sum(der)); fp != want {
		t.Fatalf("Fingerprint = %q, want %q", fp, want)
	}
	upper := "SHA256:" + strings.ToUpper(colonHex(sha256Sum(der)))
	norm, err := pki.ParseFingerprint(upper)
	if err != nil || norm != fp {
		t.Fatalf("ParseFingerprint(%q) = %q, %v; want %q", upper, norm, err, fp)
	}
	for in, want := range map[string]string{
		"abcd":           `must start with "sha256:"`,
		"sha256:zz":      "not hex",
		"sha256:abcd":    "has 2 bytes",
		"sha1:" + fp[7:]: `must start with "sha256:"`,
	} {
		_, err := pki.ParseFingerprint(in)
		wantErrContains(t, err, want)
	}
	if _, err := pki.Fingerprint(struct{}{}); err == nil {
		t.Fatal("Fingerprint of a non-key succeeded")
	}

	ca := mustCA(t)
	certFP := pki.CertFingerprint(ca.Cert)
	if want := "sha256:" + hexString(sha256Sum(ca.Cert.Raw)); certFP != want {
		t.Fatalf("CertFingerprint = %q, want %q", certFP, want)
	}
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	var s strings.Builder
	for _, c := range b {
		s.WriteByte(digits[c>>4])
		s.WriteByte(digits[c&15])
	}
	return s.String()
}

func colonHex(b []byte) string {
	h := hexString(b)
	var parts []string
	for i := 0; i < len(h); i += 2 {
		parts = append(parts, h[i:i+2])
	}
	return strings.Join(parts, ":")
}

// FuzzParseKeyPEM: a refusal is an error with a message and no key; an
// accepted key marshals (MarshalKeyPEM) to PEM that reads back as the same
// key.
func FuzzParseKeyPEM(f *testing.F) {
	ec, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		f.Fatal(err)
	}
	ecPEM, _ := pki.MarshalKeyPEM(ec)
	sec1, _ := x509.MarshalECPrivateKey(ec.(*ecdsa.PrivateKey))
	f.Add(ecPEM)
	f.Add(pemBlock("EC PRIVATE KEY", sec1))
	f.Add(pemBlock("RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(rsaKey())))
	f.Add(pemBlock("ENCRYPTED PRIVATE KEY", []byte{0x30, 0}))
	f.Add([]byte("-----BEGIN PRIVATE KEY-----\n-----END PRIVATE KEY-----\n"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		k, err := pki.ParseKeyPEM(data)
		if err != nil {
			if k != nil {
				t.Fatal("key returned with an error")
			}
			if err.Error() == "" {
				t.Fatal("refusal without a message")
			}
			return
		}
		out, err := pki.MarshalKeyPEM(k)
		if err != nil {
			t.Fatalf("accepted key does not marshal: %v", err)
		}
		k2, err := pki.ParseKeyPEM(out)
		if err != nil {
			t.Fatalf("marshalled key does not parse: %v", err)
		}
		if !pki.PublicKeysEqual(k.Public(), k2.Public()) {
			t.Fatal("round trip changed the key")
		}
	})
}
