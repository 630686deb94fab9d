package pki

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Role URIs carried as URI SANs. They say what a certificate may be used
// for, independently of its serial number or host name.
const (
	RoleAgentURI      = "urn:dispatcher:agent"
	RoleDispatcherURI = "urn:dispatcher:dispatcher"
)

// rolePrefix marks a URI SAN as a role claim. A certificate with such a URI
// that is not exactly one known role is RoleInvalid, never legacy.
const rolePrefix = "urn:dispatcher:"

// Role is the identity a certificate claims through its role URI SAN.
type Role int

const (
	// RoleNone is a legacy certificate (made by the Perl dispatcher) that
	// carries no role; callers fall back to pins for it.
	RoleNone Role = iota
	// RoleAgent is an agent certificate (urn:dispatcher:agent).
	RoleAgent
	// RoleDispatcher is a dispatcher certificate (urn:dispatcher:dispatcher).
	RoleDispatcher
	// RoleInvalid is a certificate with an unknown urn:dispatcher: URI or
	// with more than one role. It is refused everywhere.
	RoleInvalid
)

func (r Role) String() string {
	switch r {
	case RoleNone:
		return "none"
	case RoleAgent:
		return "agent"
	case RoleDispatcher:
		return "dispatcher"
	case RoleInvalid:
		return "invalid"
	}
	return fmt.Sprintf("Role(%d)", int(r))
}

// CertRole returns the role c claims. URIs are compared ignoring ASCII
// letter case.
func CertRole(c *x509.Certificate) Role {
	if c == nil {
		return RoleNone
	}
	role := RoleNone
	for _, u := range c.URIs {
		if u == nil {
			continue
		}
		s := asciiLower(u.String())
		if !strings.HasPrefix(s, rolePrefix) {
			continue
		}
		var r Role
		switch s {
		case RoleAgentURI:
			r = RoleAgent
		case RoleDispatcherURI:
			r = RoleDispatcher
		default:
			return RoleInvalid
		}
		if role != RoleNone && role != r {
			return RoleInvalid
		}
		role = r
	}
	return role
}

// CertPEM encodes c as a "CERTIFICATE" PEM block. Nil gives nil.
func CertPEM(c *x509.Certificate) []byte {
	if c == nil {
		return nil
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}

// ParseCertPEM returns the first certificate in data. Blocks of other types
// before it are skipped.
func ParseCertPEM(data []byte) (*x509.Certificate, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no CERTIFICATE PEM block found")
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate: %w", err)
		}
		return c, nil
	}
}

// ParseCertsPEM returns every certificate in data, in order. Blocks of other
// types are skipped; a certificate that does not parse is an error.
func ParseCertsPEM(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New("no CERTIFICATE PEM block found")
	}
	return certs, nil
}

// CertFingerprint returns "sha256:" followed by the lowercase hex SHA-256 of
// c's DER encoding (what openssl x509 -fingerprint -sha256 shows, without
// colons). Nil gives "".
func CertFingerprint(c *x509.Certificate) string {
	if c == nil {
		return ""
	}
	sum := sha256.Sum256(c.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}
