package httplimit

import (
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
)

// Listener is a net.Listener with at most a fixed number of connections
// open at once: Accept takes a slot before it accepts, and a connection
// gives its slot back when it is closed. Over the bound Accept waits, so
// the connections beyond wait in the kernel's backlog (and are refused by
// the kernel once that is full) rather than being accepted and dropped.
type Listener struct {
	net.Listener
	slots     chan struct{}
	done      chan struct{}
	closeOnce sync.Once
	// Connections accepted and not closed, and the most there were at
	// once: what the bound is about, counted apart from the slots.
	conns, peak atomic.Int64
}

// NewListener bounds ln to max connections open at once.
func NewListener(ln net.Listener, max int) *Listener {
	return &Listener{Listener: ln, slots: make(chan struct{}, max), done: make(chan struct{})}
}

// Accept waits for a free slot, then for a connection.
func (l *Listener) Accept() (net.Conn, error) {
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
	return &conn{Conn: c, release: func() {
		l.conns.Add(-1)
		<-l.slots
	}}, nil
}

// Close closes the listener and ends an Accept waiting for a slot.
func (l *Listener) Close() error {
	l.closeOnce.Do(func() { close(l.done) })
	return l.Listener.Close()
}

// Open returns the connections accepted and not closed.
func (l *Listener) Open() int64 { return l.conns.Load() }

// Peak returns the most connections that were open at once.
func (l *Listener) Peak() int64 { return l.peak.Load() }

// conn gives its slot back once, when it is first closed.
type conn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *conn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// HeaderLines counts a request's header lines: every value of every
// header, and Host, which net/http moves out of r.Header.
func HeaderLines(r *http.Request) int {
	n := 0
	if r.Host != "" {
		n++
	}
	for _, vs := range r.Header {
		n += len(vs)
	}
	return n
}

// CleanPath reports whether p starts with "/" and has no empty (but a
// last), "." or ".." segment, so that no id taken from it climbs out of a
// directory and no redirect is answered.
func CleanPath(p string) bool {
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
