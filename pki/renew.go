package pki

import (
	"crypto/x509"
	"time"
)

// NeedsRenewal reports whether c should be renewed at now: when less than
// half of certDays (taken as certDays × 24 hours) is left before its
// NotAfter, and always once it has expired. The threshold follows the
// configured cert_days rather than c's own lifetime, so raising cert_days
// renews existing certificates at the next contact and lowering it lets them
// run until half of the new period is left. With certDays ≤ 0 the threshold is
// half of c's own validity period. A nil certificate needs renewal.
func NeedsRenewal(c *x509.Certificate, certDays int, now time.Time) bool {
	if c == nil {
		return true
	}
	left := c.NotAfter.Sub(now)
	if left <= 0 {
		return true
	}
	period := time.Duration(certDays) * 24 * time.Hour
	if certDays <= 0 {
		period = c.NotAfter.Sub(c.NotBefore)
	}
	return left < period/2
}
