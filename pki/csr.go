package pki

import (
	"crypto"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"unicode/utf8"
)

// MaxCSRSize is the largest certificate request, in bytes of PEM, that
// ParseCSR reads.
const MaxCSRSize = 64 << 10

// ParseCSR decodes a PEM certificate request ("CERTIFICATE REQUEST" or the
// older "NEW CERTIFICATE REQUEST") and checks its signature. It refuses data
// over MaxCSRSize, anything that is not exactly one such block, a request
// whose signature does not verify, and one whose key no certificate may be
// issued for (as SignAgentCSR would refuse it: Ed25519, RSA under 2048 bits,
// curves other than P-256, P-384 and P-521). Nothing in the request is
// trusted beyond that: SignAgentCSR uses only its public key.
func ParseCSR(data []byte) (*x509.CertificateRequest, error) {
	if len(data) > MaxCSRSize {
		return nil, fmt.Errorf("certificate request is %d bytes; the limit is %d", len(data), MaxCSRSize)
	}
	b, rest := pem.Decode(data)
	if b == nil {
		return nil, errors.New("certificate request is not PEM")
	}
	if b.Type != "CERTIFICATE REQUEST" && b.Type != "NEW CERTIFICATE REQUEST" {
		return nil, fmt.Errorf("PEM block is %q, not a CERTIFICATE REQUEST", b.Type)
	}
	if next, _ := pem.Decode(rest); next != nil {
		return nil, errors.New("certificate request is followed by another PEM block; send exactly one")
	}
	csr, err := x509.ParseCertificateRequest(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("certificate request signature is invalid: %w", err)
	}
	if err := checkIssuable(csr.PublicKey); err != nil {
		return nil, fmt.Errorf("certificate request: %w", err)
	}
	return csr, nil
}

// CreateCSR returns a PEM certificate request signed by key with common name
// and one DNS SAN equal to hostname.
func CreateCSR(o Options, key crypto.Signer, hostname string) ([]byte, error) {
	if err := ValidHostname(hostname); err != nil {
		return nil, fmt.Errorf("create csr: %w", err)
	}
	if key == nil {
		return nil, errors.New("create csr: no key")
	}
	tmpl := &x509.CertificateRequest{
		Subject:  pkix.Name{CommonName: hostname},
		DNSNames: []string{hostname},
	}
	der, err := x509.CreateCertificateRequest(o.rand(), tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("create csr for %q: %w", hostname, err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der}), nil
}

// Host name limits of RFC 1035 and RFC 1123.
const (
	maxHostnameLen = 253
	maxLabelLen    = 63
)

// ValidHostname reports whether h is a DNS host name the dispatcher accepts:
// dot-separated labels of 1 to 63 ASCII letters, digits and hyphens, no label
// starting or ending with a hyphen, at most 253 characters in all, and no
// trailing dot. The error says what is wrong.
func ValidHostname(h string) error {
	switch {
	case h == "":
		return errors.New("host name is empty")
	case len(h) > maxHostnameLen:
		return fmt.Errorf("host name is %d characters long; the limit is %d", len(h), maxHostnameLen)
	case h[len(h)-1] == '.':
		return fmt.Errorf("host name %q ends with a dot; give it without the dot", h)
	}
	start := 0
	for i := 0; i <= len(h); i++ {
		if i < len(h) && h[i] != '.' {
			c := h[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				r, _ := utf8.DecodeRuneInString(h[i:])
				return fmt.Errorf("host name %q contains %q; only letters, digits, '-' and '.' are allowed", h, r)
			}
			continue
		}
		label := h[start:i]
		switch {
		case label == "":
			return fmt.Errorf("host name %q has an empty label", h)
		case len(label) > maxLabelLen:
			return fmt.Errorf("host name label %q is %d characters long; the limit is %d", label, len(label), maxLabelLen)
		case label[0] == '-' || label[len(label)-1] == '-':
			return fmt.Errorf("host name label %q starts or ends with '-'", label)
		}
		start = i + 1
	}
	return nil
}
