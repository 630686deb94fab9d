// Benchmarks of identity verification and of what the agent and the
// dispatcher compute about a peer certificate on every handshake or
// request: VerifyDispatcher (agent side, per handshake) and VerifyAgent
// (dispatcher side, per handshake, with and without a pinned key), for role
// and legacy certificates from pkitest; CertRole, the revoked-serials
// lookup and FormatSerial (per request); ParseSerial, CertFingerprint and
// Fingerprint (pins and pairing). Each benchmark checks its result once
// before it is timed.
//
//	go test -run '^$' -bench . ./pki/
package pki_test

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/pki/pkitest"
)

func BenchmarkVerifyDispatcher(b *testing.B) {
	ca := pkitest.NewCA(b)
	roots := ca.Pool()
	now := time.Now()
	for _, c := range []struct {
		name   string
		leaf   *x509.Certificate
		legacy bool
	}{
		{"role", ca.Dispatcher(b).Leaf, false},
		{"legacy", ca.Legacy(b, "dispatcher").Leaf, true},
	} {
		b.Run(c.name, func(b *testing.B) {
			chain := []*x509.Certificate{c.leaf}
			legacy, err := pki.VerifyDispatcher(chain, roots, now)
			if err != nil || legacy != c.legacy {
				b.Fatalf("legacy %v, %v; want legacy %v and no error", legacy, err, c.legacy)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pki.VerifyDispatcher(chain, roots, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkVerifyAgent(b *testing.B) {
	ca := pkitest.NewCA(b)
	roots := ca.Pool()
	now := time.Now()
	const host = "web-01.example.com"
	agent := ca.Agent(b, host).Leaf
	legacy := ca.Legacy(b, host).Leaf

	var ie *pki.IdentityError
	if err := pki.VerifyAgent([]*x509.Certificate{agent}, roots, "web-02.example.com", nil, now); !errors.As(err, &ie) || ie.Kind != pki.IdentityHostMismatch {
		b.Fatalf("agent certificate for another host: %v, want a host mismatch", err)
	}
	for _, c := range []struct {
		name   string
		leaf   *x509.Certificate
		pinned crypto.PublicKey
	}{
		{"role", agent, nil},
		{"role-pinned", agent, agent.PublicKey},
		{"legacy-pinned", legacy, legacy.PublicKey},
	} {
		b.Run(c.name, func(b *testing.B) {
			chain := []*x509.Certificate{c.leaf}
			if err := pki.VerifyAgent(chain, roots, host, c.pinned, now); err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			for b.Loop() {
				if err := pki.VerifyAgent(chain, roots, host, c.pinned, now); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkCertRole is the agent telling a role certificate from a legacy
// one on every request.
func BenchmarkCertRole(b *testing.B) {
	ca := pkitest.NewCA(b)
	leaf := ca.Dispatcher(b).Leaf
	if r := pki.CertRole(leaf); r != pki.RoleDispatcher {
		b.Fatalf("role %v, want dispatcher", r)
	}
	b.ReportAllocs()
	for b.Loop() {
		if pki.CertRole(leaf) != pki.RoleDispatcher {
			b.Fatal("not a dispatcher certificate")
		}
	}
}

// BenchmarkRevokedContains is the agent's revocation check on every
// handshake and request, against 1000 revoked serials of 16 bytes.
func BenchmarkRevokedContains(b *testing.B) {
	var set pki.SerialSet
	for i := range 1000 {
		n, err := pki.NewSerial(nil)
		if err != nil {
			b.Fatal(err)
		}
		if i == 500 {
			n = new(big.Int).SetBytes([]byte("0123456789abcdef"))
		}
		set.Add(n)
	}
	revoked := new(big.Int).SetBytes([]byte("0123456789abcdef"))
	valid := new(big.Int).SetBytes([]byte("fedcba9876543210"))
	if !set.Contains(revoked) || set.Contains(valid) || set.Len() != 1000 {
		b.Fatalf("set of %d: contains revoked %v, valid %v", set.Len(), set.Contains(revoked), set.Contains(valid))
	}
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !set.Contains(revoked) {
				b.Fatal("revoked serial not found")
			}
		}
	})
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if set.Contains(valid) {
				b.Fatal("valid serial found")
			}
		}
	})
}

// BenchmarkFormatSerial formats a 16-byte serial as the logs and pins
// write it.
func BenchmarkFormatSerial(b *testing.B) {
	n := new(big.Int).SetBytes([]byte{0x0a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	want := "0a0102030405060708090a0b0c0d0e0f"
	if got := pki.FormatSerial(n); got != want {
		b.Fatalf("FormatSerial: %q, want %q", got, want)
	}
	b.ReportAllocs()
	for b.Loop() {
		if pki.FormatSerial(n) == "" {
			b.Fatal("empty serial")
		}
	}
}

// BenchmarkParseSerial reads the forms of a serial found in
// dispatcher-serial and revoked-serials files.
func BenchmarkParseSerial(b *testing.B) {
	n := new(big.Int).SetBytes([]byte{0x0a, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15})
	for _, c := range []struct {
		name, in string
		values   int
	}{
		{"hex", "0a0102030405060708090a0b0c0d0e0f", 1},
		{"colons", "0A:01:02:03:04:05:06:07:08:09:0A:0B:0C:0D:0E:0F", 1},
		{"openssl", "serial=0A0102030405060708090A0B0C0D0E0F", 1},
		{"decimal", "1234567", 2},
	} {
		b.Run(c.name, func(b *testing.B) {
			ns, err := pki.ParseSerial(c.in)
			if err != nil || len(ns) != c.values {
				b.Fatalf("ParseSerial(%q): %v, %v; want %d values", c.in, ns, err, c.values)
			}
			if c.values == 1 && ns[0].Cmp(n) != 0 {
				b.Fatalf("ParseSerial(%q) = %v, want %v", c.in, ns[0], n)
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := pki.ParseSerial(c.in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkCertFingerprint(b *testing.B) {
	leaf := pkitest.NewCA(b).Dispatcher(b).Leaf
	sum := sha256.Sum256(leaf.Raw)
	if got, want := pki.CertFingerprint(leaf), "sha256:"+hex.EncodeToString(sum[:]); got != want {
		b.Fatalf("CertFingerprint: %q, want %q", got, want)
	}
	b.ReportAllocs()
	for b.Loop() {
		if pki.CertFingerprint(leaf) == "" {
			b.Fatal("empty fingerprint")
		}
	}
}

// BenchmarkFingerprint is the public key fingerprint of key pins and
// request-pairing --ca-fingerprint.
func BenchmarkFingerprint(b *testing.B) {
	leaf := pkitest.NewCA(b).Dispatcher(b).Leaf
	der, err := x509.MarshalPKIXPublicKey(leaf.PublicKey)
	if err != nil {
		b.Fatal(err)
	}
	sum := sha256.Sum256(der)
	fp, err := pki.Fingerprint(leaf.PublicKey)
	if want := "sha256:" + hex.EncodeToString(sum[:]); err != nil || fp != want {
		b.Fatalf("Fingerprint: %q, %v; want %q", fp, err, want)
	}
	if back, err := pki.ParseFingerprint(fp); err != nil || back != fp {
		b.Fatalf("ParseFingerprint(%q): %q, %v", fp, back, err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pki.Fingerprint(leaf.PublicKey); err != nil {
			b.Fatal(err)
		}
	}
}
