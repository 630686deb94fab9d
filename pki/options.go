package pki

import (
	"crypto/rand"
	"io"
	"time"
)

// Options carries the clock and the source of randomness used when keys,
// serial numbers and certificates are made. The zero value uses time.Now and
// crypto/rand.Reader; tests inject a fixed clock to exercise expiry and
// renewal without sleeping.
//
// Since Go 1.26 the standard library ignores a custom Rand for key
// generation and signing unless GODEBUG=cryptocustomrand=1 is set; Rand is
// still honoured for serial numbers.
type Options struct {
	// Now returns the current time. Nil means time.Now.
	Now func() time.Time
	// Rand is the source of randomness. Nil means crypto/rand.Reader.
	Rand io.Reader
}

func (o Options) now() time.Time {
	if o.Now != nil {
		return o.Now()
	}
	return time.Now()
}

func (o Options) rand() io.Reader {
	if o.Rand != nil {
		return o.Rand
	}
	return rand.Reader
}
