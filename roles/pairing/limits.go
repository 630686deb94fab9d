package pairing

import (
	"fmt"
	"net/http"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/httplimit"
)

// Bounds of the pairing listener, besides maxPairBody and the timeouts of
// server.go. The listener faces whatever can reach port 7444, before any
// identity is known, so each resource a client can hold has a bound.
const (
	// maxConns bounds the connections open at once. Over it the listener
	// stops accepting: new connections wait in the kernel's backlog until
	// one closes (readHeaderTimeout, readTimeout and idleTimeout guarantee
	// one does).
	maxConns = 1024
	// maxSubmits bounds the POST /pair requests being checked and queued
	// at once (CSR signature, registry look-up, a file written under the
	// queue lock); more are answered 429 with Retry-After. The body is
	// read before a slot is taken, so a slow client holds none.
	maxSubmits = 16
	// maxPolls bounds the GET /pair/{reqid} long polls waiting at once
	// (each re-reads its request every pollEvery). A poll over it is
	// answered at once with the request's state, "pending" included, as
	// the protocol allows: the agent polls again a second later.
	maxPolls = 64
	// maxHeaderLines bounds a request's header lines (every value of
	// every header, and Host), as the agent's listener does: 431 beyond.
	maxHeaderLines = 32
	// retryAfter is the Retry-After of a 429 for a busy listener.
	retryAfter = time.Second
)

// guard refuses, before next sees them, requests with more than
// maxHeaderLines header lines (431) and paths with empty, "." or ".."
// segments (400; net/http's mux would answer them with a redirect). The
// path is checked as sent, as the mux matches it: an escaped "%2e%2e" or
// "..%2f" is part of a segment, and as a request id gets the 404 of an
// unknown one.
func guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n := httplimit.HeaderLines(r); n > maxHeaderLines {
			w.Header().Set("Connection", "close")
			answerError(w, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("too many header lines: %d; the limit is %d", n, maxHeaderLines))
			return
		}
		if !httplimit.CleanPath(r.URL.EscapedPath()) {
			answerError(w, http.StatusBadRequest, "bad request path: no empty, . or .. segments")
			return
		}
		next.ServeHTTP(w, r)
	})
}
