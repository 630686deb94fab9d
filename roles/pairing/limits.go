package pairing

import (
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
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

// limitListener is a net.Listener with at most cap(slots) connections
// open at once: Accept takes a slot before it accepts, and a connection
// gives its slot back when it is closed. Over the bound Accept waits, so
// the connections beyond wait in the kernel's backlog (and are refused by
// the kernel once that is full) rather than being accepted and dropped.
type limitListener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	// Connections accepted and not closed, and the most there were at
	// once: what the bound is about, counted apart from the slots.
	conns, peak atomic.Int64
}

func newLimitListener(ln net.Listener, max int) *limitListener {
	return &limitListener{Listener: ln, slots: make(chan struct{}, max), done: make(chan struct{})}
}

// Accept waits for a free slot, then for a connection.
func (l *limitListener) Accept() (net.Conn, error) {
	select {
	case l.slots <- struct{}{}:
	case <-l.done:
		return nil, net.ErrClosed
	}
	c, err := l.Listener.Accept()
	if err != nil {
		<-l.slots
		return nil, err
	}
	n := l.conns.Add(1)
	for p := l.peak.Load(); n > p && !l.peak.CompareAndSwap(p, n); p = l.peak.Load() {
	}
	return &limitConn{Conn: c, release: func() {
		l.conns.Add(-1)
		<-l.slots
	}}, nil
}

// Close closes the listener and ends an Accept waiting for a slot.
func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// limitConn gives its slot back once, when it is first closed.
type limitConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// guard refuses, before next sees them, requests with more than
// maxHeaderLines header lines (431) and paths with empty, "." or ".."
// segments (400; net/http's mux would answer them with a redirect). The
// path is checked as sent, as the mux matches it: an escaped "%2e%2e" or
// "..%2f" is part of a segment, and as a request id gets the 404 of an
// unknown one.
func guard(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := 0
		if r.Host != "" {
			n++ // net/http moves Host out of r.Header
		}
		for _, vs := range r.Header {
			n += len(vs)
		}
		if n > maxHeaderLines {
			w.Header().Set("Connection", "close")
			answerError(w, http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("too many header lines: %d; the limit is %d", n, maxHeaderLines))
			return
		}
		if !cleanPath(r.URL.EscapedPath()) {
			answerError(w, http.StatusBadRequest, "bad request path: no empty, . or .. segments")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// cleanPath refuses empty, "." and ".." segments.
func cleanPath(p string) bool {
	if !strings.HasPrefix(p, "/") {
		return false
	}
	segs := strings.Split(p[1:], "/")
	for i, seg := range segs {
		if seg == "." || seg == ".." || seg == "" && i != len(segs)-1 {
			return false
		}
	}
	return true
}
