package pki

import (
	"crypto"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
)

// Minimum RSA sizes. Existing (Perl-made) keys of 1024 bits and more are
// loaded and used as they are; the standard library refuses smaller ones
// anyway. New certificates are only issued for RSA keys of 2048 bits or more.
const (
	minRSABitsLoad  = 1024
	minRSABitsIssue = 2048
)

// GenerateKey returns a new ECDSA P-256 private key.
func GenerateKey(o Options) (crypto.Signer, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), o.rand())
	if err != nil {
		return nil, fmt.Errorf("generate p-256 key: %w", err)
	}
	return k, nil
}

// MarshalKeyPEM encodes k as an unencrypted PKCS#8 "PRIVATE KEY" PEM block.
func MarshalKeyPEM(k crypto.Signer) ([]byte, error) {
	if k == nil {
		return nil, errors.New("marshal private key: no key")
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ParseKeyPEM decodes the first private key in data. It reads PKCS#8
// ("PRIVATE KEY"), PKCS#1 ("RSA PRIVATE KEY") and SEC1 ("EC PRIVATE KEY")
// blocks, skipping blocks that hold no key (such as the "EC PARAMETERS" block
// that openssl ecparam writes first). Only ECDSA (P-256, P-384, P-521) and RSA
// keys are accepted; encrypted keys are refused with an error saying how to
// decrypt them.
func ParseKeyPEM(data []byte) (crypto.Signer, error) {
	var seen []string
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		switch b.Type {
		case "ENCRYPTED PRIVATE KEY":
			return nil, errEncryptedKey
		case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY":
			if b.Headers["Proc-Type"] != "" || b.Headers["DEK-Info"] != "" {
				return nil, errEncryptedKey
			}
			k, err := parseKeyDER(b.Type, b.Bytes)
			if err != nil {
				return nil, fmt.Errorf("parse %s: %w", strings.ToLower(b.Type), err)
			}
			return k, nil
		default:
			seen = append(seen, b.Type)
		}
	}
	if len(seen) > 0 {
		return nil, fmt.Errorf("no private key found (found %s); expected a PRIVATE KEY, RSA PRIVATE KEY or EC PRIVATE KEY block", strings.Join(seen, ", "))
	}
	return nil, errors.New("no private key found: data is not PEM")
}

var errEncryptedKey = errors.New("private key is encrypted; decrypt it first (openssl pkey -in KEY -out KEY.plain) and keep the result mode 0600")

// parseKeyDER parses der according to the PEM label first and then, since
// labels are often wrong in hand-made files, the other two encodings. The
// error reported is the one for the label's own encoding.
func parseKeyDER(label string, der []byte) (crypto.Signer, error) {
	type parser struct {
		label string
		parse func([]byte) (any, error)
	}
	parsers := []parser{
		{"PRIVATE KEY", x509.ParsePKCS8PrivateKey},
		{"RSA PRIVATE KEY", func(b []byte) (any, error) { return x509.ParsePKCS1PrivateKey(b) }},
		{"EC PRIVATE KEY", func(b []byte) (any, error) { return x509.ParseECPrivateKey(b) }},
	}
	var key any
	var labelErr error
	for _, p := range parsers {
		if p.label == label {
			key, labelErr = p.parse(der)
		}
	}
	if labelErr != nil {
		for _, p := range parsers {
			if p.label == label {
				continue
			}
			if k, err := p.parse(der); err == nil {
				key, labelErr = k, nil
				break
			}
		}
	}
	if labelErr != nil {
		return nil, labelErr
	}
	switch k := key.(type) {
	case *ecdsa.PrivateKey:
		if err := checkCurve(k.Curve); err != nil {
			return nil, err
		}
		return k, nil
	case *rsa.PrivateKey:
		if n := k.N.BitLen(); n < minRSABitsLoad {
			return nil, fmt.Errorf("rsa key is %d bits; at least %d are needed", n, minRSABitsLoad)
		}
		return k, nil
	case ed25519.PrivateKey:
		return nil, errors.New("ed25519 keys are not supported; use an ECDSA P-256 or RSA key")
	case *ecdh.PrivateKey:
		return nil, errors.New("x25519 keys cannot sign; use an ECDSA P-256 or RSA key")
	default:
		return nil, fmt.Errorf("unsupported key type %T; use an ECDSA P-256 or RSA key", key)
	}
}

func checkCurve(c elliptic.Curve) error {
	switch c {
	case elliptic.P256(), elliptic.P384(), elliptic.P521():
		return nil
	}
	return fmt.Errorf("ecdsa curve %s is not supported; use P-256", c.Params().Name)
}

// checkIssuable reports whether a certificate may be issued for pub.
func checkIssuable(pub crypto.PublicKey) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		return checkCurve(k.Curve)
	case *rsa.PublicKey:
		if n := k.N.BitLen(); n < minRSABitsIssue {
			return fmt.Errorf("rsa key is %d bits; at least %d are needed", n, minRSABitsIssue)
		}
		return nil
	case ed25519.PublicKey:
		return errors.New("ed25519 keys are not supported; use an ECDSA P-256 or RSA key")
	case nil:
		return errors.New("no public key")
	default:
		return fmt.Errorf("unsupported key type %T; use an ECDSA P-256 or RSA key", pub)
	}
}

// PublicKeysEqual reports whether a and b are the same public key. Nil keys
// are never equal to anything.
func PublicKeysEqual(a, b crypto.PublicKey) bool {
	if a == nil || b == nil {
		return false
	}
	ea, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ea.Equal(b)
}

// Fingerprint returns "sha256:" followed by the lowercase hex SHA-256 of the
// PKIX (SubjectPublicKeyInfo) DER encoding of pub. It identifies a key
// independently of any certificate carrying it, and is the form used for key
// pins and for request-pairing --ca-fingerprint.
func Fingerprint(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("fingerprint: %w", err)
	}
	sum := sha256.Sum256(der)
	return "sha256:" + hex.EncodeToString(sum[:]), nil
}

// ParseFingerprint normalises a fingerprint typed by a person to the form
// Fingerprint returns. It accepts any letter case and colon-separated hex
// ("sha256:AB:CD:…"), and requires the "sha256:" prefix and 32 bytes.
func ParseFingerprint(s string) (string, error) {
	t := asciiLower(strings.TrimSpace(s))
	h, ok := strings.CutPrefix(t, "sha256:")
	if !ok {
		return "", errors.New(`fingerprint must start with "sha256:"`)
	}
	h = strings.ReplaceAll(h, ":", "")
	b, err := hex.DecodeString(h)
	if err != nil {
		return "", errors.New("fingerprint is not hex after \"sha256:\"")
	}
	if len(b) != sha256.Size {
		return "", fmt.Errorf("fingerprint has %d bytes; a sha256 fingerprint has 32 (64 hex digits)", len(b))
	}
	return "sha256:" + h, nil
}
