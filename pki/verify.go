package pki

import (
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
	"time"
)

// IdentityKind says which identity check failed, for callers that branch
// (to pick a log action or a status code).
type IdentityKind int

const (
	// IdentityNoCertificate: the peer presented no certificate, or there
	// was nothing to check against (no CA pool, no host name).
	IdentityNoCertificate IdentityKind = iota + 1
	// IdentityUntrusted: the certificate does not chain to the CA.
	IdentityUntrusted
	// IdentityExpired: a certificate in the chain is expired or not yet valid.
	IdentityExpired
	// IdentityWrongUsage: the extended key usage does not allow the use.
	IdentityWrongUsage
	// IdentityWrongRole: the role URI SAN is not the one expected.
	IdentityWrongRole
	// IdentityHostMismatch: the certificate is for another host name.
	IdentityHostMismatch
	// IdentityKeyMismatch: the public key differs from the pinned key.
	IdentityKeyMismatch
	// IdentityNotPinned: a legacy certificate (no role) with nothing pinned.
	IdentityNotPinned
)

func (k IdentityKind) String() string {
	switch k {
	case IdentityNoCertificate:
		return "no-certificate"
	case IdentityUntrusted:
		return "untrusted"
	case IdentityExpired:
		return "expired"
	case IdentityWrongUsage:
		return "wrong-usage"
	case IdentityWrongRole:
		return "wrong-role"
	case IdentityHostMismatch:
		return "host-mismatch"
	case IdentityKeyMismatch:
		return "key-mismatch"
	case IdentityNotPinned:
		return "not-pinned"
	}
	return fmt.Sprintf("IdentityKind(%d)", int(k))
}

// IdentityError is returned by VerifyDispatcher and VerifyAgent when a peer
// fails an identity check. Reason is lowercase, holds no secret and may be
// shown to the peer and to the user; Err, when set, is the underlying
// error from crypto/x509, for logs.
type IdentityError struct {
	Kind   IdentityKind
	Reason string
	Err    error
}

func (e *IdentityError) Error() string { return e.Reason }

func (e *IdentityError) Unwrap() error { return e.Err }

func identityErr(k IdentityKind, err error, format string, args ...any) *IdentityError {
	return &IdentityError{Kind: k, Reason: fmt.Sprintf(format, args...), Err: err}
}

// VerifyDispatcher checks the certificate chain a client presented to an
// agent (chain[0] is the leaf; the rest are optional intermediates). The
// leaf must chain to roots at now with extended key usage clientAuth. If it
// carries a role URI SAN the role must be dispatcher. If it carries none it
// is a legacy certificate from the Perl dispatcher: VerifyDispatcher returns
// legacy true and a nil error, and the caller must then compare its serial
// with the agent's dispatcher-serial pin. Revocation is the caller's check.
//
// A zero now means time.Now. Errors are *IdentityError.
func VerifyDispatcher(chain []*x509.Certificate, roots *x509.CertPool, now time.Time) (legacy bool, err error) {
	leaf, err := verifyChain(chain, roots, now, x509.ExtKeyUsageClientAuth, RoleAgent)
	if err != nil {
		return false, err
	}
	switch CertRole(leaf) {
	case RoleDispatcher:
		return false, nil
	case RoleNone:
		return true, nil
	case RoleAgent:
		return false, wrongRoleErr(RoleAgent)
	default:
		return false, wrongRoleErr(RoleInvalid)
	}
}

// VerifyAgent checks the certificate chain an agent presented to the
// dispatcher dialling hostname. The leaf must chain to roots at now with
// extended key usage serverAuth; its role URI SAN, when present, must be
// agent; one of its DNS SANs must equal hostname ignoring case (a legacy
// certificate with no SANs at all is matched on its common name instead).
// When pinned is not nil the leaf's public key must equal it. A legacy
// certificate (no role) is only accepted with a pinned key, since its
// extended key usage cannot tell an agent from a dispatcher. Revocation is
// the caller's check.
//
// A zero now means time.Now. Errors are *IdentityError.
func VerifyAgent(chain []*x509.Certificate, roots *x509.CertPool, hostname string, pinned crypto.PublicKey, now time.Time) error {
	if hostname == "" {
		return identityErr(IdentityNoCertificate, nil, "no host name to verify the agent certificate against")
	}
	leaf, err := verifyChain(chain, roots, now, x509.ExtKeyUsageServerAuth, RoleDispatcher)
	if err != nil {
		return err
	}
	role := CertRole(leaf)
	switch role {
	case RoleAgent, RoleNone:
	case RoleDispatcher:
		return wrongRoleErr(RoleDispatcher)
	default:
		return wrongRoleErr(RoleInvalid)
	}
	if err := matchHost(leaf, hostname); err != nil {
		return err
	}
	if pinned == nil {
		if role == RoleNone {
			return identityErr(IdentityNotPinned, nil, "legacy agent certificate (no role) and no pinned key for %q; re-pair the agent", hostname)
		}
		return nil
	}
	if !PublicKeysEqual(leaf.PublicKey, pinned) {
		return identityErr(IdentityKeyMismatch, nil, "public key does not match the pinned key")
	}
	return nil
}

func matchHost(leaf *x509.Certificate, hostname string) error {
	noSANs := len(leaf.DNSNames) == 0 && len(leaf.IPAddresses) == 0 &&
		len(leaf.URIs) == 0 && len(leaf.EmailAddresses) == 0
	if noSANs {
		if strings.EqualFold(leaf.Subject.CommonName, hostname) {
			return nil
		}
		return identityErr(IdentityHostMismatch, nil, "host name mismatch: certificate is for %q, dialled %q", leaf.Subject.CommonName, hostname)
	}
	for _, n := range leaf.DNSNames {
		if strings.EqualFold(n, hostname) {
			return nil
		}
	}
	if len(leaf.DNSNames) == 0 {
		return identityErr(IdentityHostMismatch, nil, "host name mismatch: certificate has no DNS name, dialled %q", hostname)
	}
	return identityErr(IdentityHostMismatch, nil, "host name mismatch: certificate is for %q, dialled %q", strings.Join(leaf.DNSNames, ", "), hostname)
}

// wrongRoleErr is the error for a leaf claiming role r where the other role
// is expected.
func wrongRoleErr(r Role) *IdentityError {
	switch r {
	case RoleAgent:
		return identityErr(IdentityWrongRole, nil, "agent certificate presented as dispatcher")
	case RoleDispatcher:
		return identityErr(IdentityWrongRole, nil, "dispatcher certificate presented as agent")
	}
	return identityErr(IdentityWrongRole, nil, "certificate carries an unknown dispatcher role")
}

// verifyChain checks chain[0] against roots for usage and returns it. When
// the usage is wrong and the leaf claims role wrong, the error names the role
// (which says more than the key usage) if the chain is otherwise trusted.
func verifyChain(chain []*x509.Certificate, roots *x509.CertPool, now time.Time, usage x509.ExtKeyUsage, wrong Role) (*x509.Certificate, error) {
	if len(chain) == 0 || chain[0] == nil {
		return nil, identityErr(IdentityNoCertificate, nil, "no certificate presented")
	}
	if roots == nil {
		// A nil pool would make crypto/x509 trust the system roots.
		return nil, identityErr(IdentityNoCertificate, nil, "no dispatcher ca configured to verify the certificate")
	}
	if now.IsZero() {
		now = time.Now()
	}
	leaf := chain[0]
	inter := x509.NewCertPool()
	for _, c := range chain[1:] {
		if c != nil {
			inter.AddCert(c)
		}
	}
	opts := x509.VerifyOptions{
		Roots:         roots,
		Intermediates: inter,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{usage},
	}
	_, err := leaf.Verify(opts)
	if err == nil {
		return leaf, nil
	}
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return nil, identityErr(IdentityUntrusted, err, "certificate not signed by the dispatcher ca")
	}
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) {
		switch invalid.Reason {
		case x509.Expired:
			return nil, expiredErr(invalid.Cert, leaf, now, err)
		case x509.IncompatibleUsage:
			if CertRole(leaf) == wrong {
				opts.KeyUsages = []x509.ExtKeyUsage{x509.ExtKeyUsageAny}
				if _, anyErr := leaf.Verify(opts); anyErr == nil {
					return nil, wrongRoleErr(wrong)
				}
			}
			what := "client"
			if usage == x509.ExtKeyUsageServerAuth {
				what = "server"
			}
			return nil, identityErr(IdentityWrongUsage, err, "certificate not valid for %s authentication", what)
		case x509.NotAuthorizedToSign:
			return nil, identityErr(IdentityUntrusted, err, "certificate chain contains a certificate that may not sign")
		}
	}
	return nil, identityErr(IdentityUntrusted, err, "certificate verification failed: %v", err)
}

func expiredErr(bad, leaf *x509.Certificate, now time.Time, err error) *IdentityError {
	if bad == nil {
		bad = leaf
	}
	what := "certificate"
	if bad != leaf {
		what = "ca certificate"
	}
	const layout = "2006-01-02 15:04:05 MST"
	if now.Before(bad.NotBefore) {
		return identityErr(IdentityExpired, err, "%s not valid before %s; check the clocks", what, bad.NotBefore.UTC().Format(layout))
	}
	return identityErr(IdentityExpired, err, "%s expired on %s", what, bad.NotAfter.UTC().Format(layout))
}
