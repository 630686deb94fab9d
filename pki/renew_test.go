package pki_test

import (
	"crypto/x509"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
)

func TestNeedsRenewal(t *testing.T) {
	const day = 24 * time.Hour
	// A real agent certificate issued at t0 for 365 days.
	ca := mustCA(t)
	_, csr := newCSR(t, "web-01")
	cert, err := ca.SignAgentCSR(fixedClock(t0), csr, "web-01", 365)
	if err != nil {
		t.Fatal(err)
	}
	if !cert.NotAfter.Equal(t0.Add(365 * day)) {
		t.Fatalf("NotAfter = %v, want t0 + 365 days", cert.NotAfter)
	}
	end := cert.NotAfter

	tests := []struct {
		name     string
		cert     *x509.Certificate
		certDays int
		now      time.Time
		want     bool
	}{
		{"fresh", cert, 365, t0, false},
		{"more than half left", cert, 365, end.Add(-183 * day), false},
		{"exactly half left", cert, 365, end.Add(-365 * day / 2), false},
		{"just under half left", cert, 365, end.Add(-365*day/2 + time.Second), true},
		{"a day left", cert, 365, end.Add(-day), true},
		{"expired", cert, 365, end.Add(time.Second), true},
		{"at expiry", cert, 365, end, true},
		{"cert_days lowered to 30: 100 days left", cert, 30, end.Add(-100 * day), false},
		{"cert_days lowered to 30: 14 days left", cert, 30, end.Add(-14 * day), true},
		{"cert_days raised to 1000", cert, 1000, t0, true},
		{"no cert_days: own lifetime, fresh", cert, 0, t0, false},
		{"no cert_days: own lifetime, old", cert, 0, end.Add(-100 * day), true},
		{"nil certificate", nil, 365, t0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := pki.NeedsRenewal(tt.cert, tt.certDays, tt.now); got != tt.want {
				t.Fatalf("NeedsRenewal = %v, want %v", got, tt.want)
			}
		})
	}
}
