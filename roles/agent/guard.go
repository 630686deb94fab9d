package agent

import (
	"container/list"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
)

// Network guards applied to every connection before net/http sees it
// (docs/SECURITY.md, "Network guards").
const (
	connSlack             = 16               // concurrent connections per address beyond max_concurrent
	handshakeTimeout      = 10 * time.Second // accept to completed TLS handshake
	guardTableCap         = 65536            // addresses the limiter remembers
	ipBlockLogInterval    = 5 * time.Minute  // ip-block logged at most this often per address
	concurrentLogInterval = time.Minute      // rate-block (concurrent) logged at most this often per address
	pruneInterval         = time.Minute      // how often expired limiter entries are dropped
)

// ipFilter is allowed_ips, parsed. With restrict false every address is
// allowed (the list was empty).
type ipFilter struct {
	restrict bool
	prefixes []netip.Prefix
}

// parseAllowedIPs parses allowed_ips entries: addresses and CIDRs, IPv4 and
// IPv6, any prefix length. Entries that do not parse are returned in bad
// and skipped; a list whose every entry is bad still restricts (to nothing).
func parseAllowedIPs(raw []string) (f ipFilter, bad []string) {
	f.restrict = len(raw) > 0
	for _, s := range raw {
		s = strings.TrimSpace(s)
		var p netip.Prefix
		if strings.Contains(s, "/") {
			q, err := netip.ParsePrefix(s)
			if err != nil {
				bad = append(bad, s)
				continue
			}
			p = q.Masked()
			if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
			}
		} else {
			a, err := netip.ParseAddr(s)
			if err != nil {
				bad = append(bad, s)
				continue
			}
			a = normAddr(a)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		f.prefixes = append(f.prefixes, p)
	}
	return f, bad
}

// allows reports whether a may connect.
func (f ipFilter) allows(a netip.Addr) bool {
	if !f.restrict {
		return true
	}
	a = normAddr(a)
	for _, p := range f.prefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// normAddr drops the zone and maps IPv4-mapped IPv6 to IPv4.
func normAddr(a netip.Addr) netip.Addr { return a.WithZone("").Unmap() }

// peerAddr is the normalised address of c's remote end.
func peerAddr(c net.Conn) netip.Addr {
	if ta, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		return normAddr(ta.AddrPort().Addr())
	}
	ap, err := netip.ParseAddrPort(c.RemoteAddr().String())
	if err != nil {
		return netip.Addr{}
	}
	return normAddr(ap.Addr())
}

// limits are the rate limits in force for one decision.
type limits struct {
	volume, probe config.RateLimit
	disabled      bool
	conns         int // concurrent connections per address
}

// limitsOf reads the limits from agent.conf. One dispatcher may hold
// max_concurrent runs, each on its own connection, plus pings and pushes:
// the per-address cap is max_concurrent + connSlack, so a busy dispatcher
// meets "agent busy" answers, not closed connections.
func limitsOf(cfg *config.Agent) limits {
	return limits{volume: cfg.RateLimitVolume, probe: cfg.RateLimitProbe, disabled: cfg.RateLimitDisable,
		conns: cfg.MaxConcurrent + connSlack}
}

// peer is what the limiter remembers about one address.
type peer struct {
	addr                 netip.Addr
	seen                 time.Time
	volStart, probeStart time.Time
	volCount, probeCount int
	blockedUntil         time.Time
	ipLogAt, concLogAt   time.Time
	active               int
	// handshaking counts the connections admitted whose handshake has
	// not ended: they are not held against the volume limit until it
	// fails, so a dispatcher opening many connections at once is not
	// blocked before any of them could authenticate.
	handshaking int
}

// counts advances a fixed window starting at *start and reports whether
// the count now exceeds the limit, not counting grace of it.
func counts(start *time.Time, n *int, rl config.RateLimit, now time.Time, grace int) bool {
	if rl.Limit <= 0 || rl.Window <= 0 {
		return false
	}
	if start.IsZero() || now.Sub(*start) >= rl.Window {
		*start, *n = now, 0
	}
	*n++
	return *n-grace > rl.Limit
}

// limiter holds per-address state, at most max entries: the least recently
// seen is evicted when a new address arrives at the cap.
type limiter struct {
	mu        sync.Mutex
	max       int
	peers     map[netip.Addr]*list.Element // of *peer
	order     *list.List                   // front: most recently seen
	lastPrune time.Time
}

func newLimiter(max int) *limiter {
	return &limiter{max: max, peers: map[netip.Addr]*list.Element{}, order: list.New()}
}

func (l *limiter) len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.peers)
}

// get returns a's entry, creating it; l.mu is held.
func (l *limiter) get(a netip.Addr, now time.Time, lim limits) *peer {
	if now.Sub(l.lastPrune) >= pruneInterval {
		l.prune(now, lim)
	}
	if e, ok := l.peers[a]; ok {
		l.order.MoveToFront(e)
		p := e.Value.(*peer)
		p.seen = now
		return p
	}
	for len(l.peers) >= l.max {
		back := l.order.Back()
		l.order.Remove(back)
		delete(l.peers, back.Value.(*peer).addr)
	}
	p := &peer{addr: a, seen: now}
	l.peers[a] = l.order.PushFront(p)
	return p
}

// prune drops entries nothing depends on any more: idle past every window
// and log interval, not blocked, no connection open.
func (l *limiter) prune(now time.Time, lim limits) {
	l.lastPrune = now
	horizon := max(lim.volume.Window, lim.probe.Window, ipBlockLogInterval, concurrentLogInterval)
	for e := l.order.Back(); e != nil; {
		p := e.Value.(*peer)
		if now.Sub(p.seen) < horizon {
			return
		}
		prev := e.Prev()
		if p.active == 0 && !now.Before(p.blockedUntil) {
			l.order.Remove(e)
			delete(l.peers, p.addr)
		}
		e = prev
	}
}

// verdict is the limiter's answer for a new connection.
type verdict int

const (
	admitted verdict = iota
	refusedBlocked
	refusedVolume     // this connection started a block
	refusedConcurrent // over limits.conns
)

// admit counts a new connection from a and decides. log says whether this
// refusal should be logged (once per block period or log interval).
func (l *limiter) admit(a netip.Addr, now time.Time, lim limits) (p *peer, v verdict, log bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p = l.get(a, now, lim)
	if !lim.disabled {
		if now.Before(p.blockedUntil) {
			return p, refusedBlocked, false
		}
		if counts(&p.volStart, &p.volCount, lim.volume, now, p.handshaking) {
			p.blockedUntil = now.Add(lim.volume.Block)
			p.volStart, p.volCount = time.Time{}, 0
			return p, refusedVolume, true
		}
	}
	if p.active >= lim.conns {
		log = p.concLogAt.IsZero() || now.Sub(p.concLogAt) >= concurrentLogInterval
		if log {
			p.concLogAt = now
		}
		return p, refusedConcurrent, log
	}
	p.active++
	p.handshaking++
	return p, admitted, false
}

// handshakeDone ends the handshake of a connection admit admitted. One
// that authenticated the dispatcher is taken off the volume count: the
// volume limit is on connections that do not authenticate, so a busy
// dispatcher (every CLI command is a new connection) is never blocked by
// it, while floods from anyone else still are.
func (l *limiter) handshakeDone(p *peer, authenticated bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	p.handshaking--
	if authenticated && p.volCount > 0 {
		p.volCount--
	}
}

// release ends a connection admit admitted.
func (l *limiter) release(p *peer) {
	l.mu.Lock()
	p.active--
	l.mu.Unlock()
}

// failure counts a failed handshake from a and reports whether it started
// a block.
func (l *limiter) failure(a netip.Addr, now time.Time, lim limits) bool {
	if lim.disabled {
		return false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.get(a, now, lim)
	if now.Before(p.blockedUntil) {
		return false
	}
	if counts(&p.probeStart, &p.probeCount, lim.probe, now, 0) {
		p.blockedUntil = now.Add(lim.probe.Block)
		p.probeStart, p.probeCount = time.Time{}, 0
		return true
	}
	return false
}

// ipRefused notes a connection refused by allowed_ips and reports whether
// to log it.
func (l *limiter) ipRefused(a netip.Addr, now time.Time, lim limits) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	p := l.get(a, now, lim)
	if !p.ipLogAt.IsZero() && now.Sub(p.ipLogAt) < ipBlockLogInterval {
		return false
	}
	p.ipLogAt = now
	return true
}

// blocked reports whether a is blocked at now.
func (l *limiter) blocked(a netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.peers[a]
	return ok && now.Before(e.Value.(*peer).blockedUntil)
}

// guard is the agent's listener: it refuses connections by allowed_ips,
// rate limits and the per-address cap, then completes the TLS handshake
// under handshakeTimeout, counting failures, before handing the *tls.Conn
// to net/http. Every decision reads the live snapshot.
type guard struct {
	inner   net.Listener
	s       *Server
	lim     *limiter
	tlsConf *tls.Config
	timeout time.Duration
	ready   chan net.Conn
	errc    chan error
	ctx     context.Context
	stop    context.CancelFunc
	once    sync.Once
}

func (s *Server) newGuard(inner net.Listener, tlsConf *tls.Config) *guard {
	ctx, stop := context.WithCancel(context.Background())
	g := &guard{inner: inner, s: s, lim: s.limiter, tlsConf: tlsConf, timeout: s.handshakeTimeout,
		ready: make(chan net.Conn), errc: make(chan error), ctx: ctx, stop: stop}
	go g.run()
	return g
}

func (g *guard) Addr() net.Addr { return g.inner.Addr() }

// Accept returns the next connection that passed every guard and completed
// its handshake.
func (g *guard) Accept() (net.Conn, error) {
	select {
	case c := <-g.ready:
		return c, nil
	case err := <-g.errc:
		return nil, err
	case <-g.ctx.Done():
		return nil, net.ErrClosed
	}
}

func (g *guard) Close() error {
	var err error
	g.once.Do(func() {
		g.stop()
		err = g.inner.Close()
	})
	return err
}

func (g *guard) run() {
	for {
		c, err := g.inner.Accept()
		if err != nil {
			select {
			case g.errc <- err:
			case <-g.ctx.Done():
				return
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if gc := g.admit(c); gc != nil {
			go g.handshake(gc)
		}
	}
}

// admit applies allowed_ips, the rate limits and the per-address cap; a
// refused connection is closed before any TLS byte.
func (g *guard) admit(c net.Conn) *guardConn {
	cfg := g.s.snap.Load()
	a, now, lim := peerAddr(c), g.s.now(), limitsOf(cfg.cfg)
	if !cfg.ips.allows(a) {
		_ = c.Close()
		if g.lim.ipRefused(a, now, lim) {
			logging.EventLevel(g.s.log, zapcore.WarnLevel, logging.ActionIPBlock, zap.String("peer", a.String()),
				zap.Int64("next_log_s", int64(ipBlockLogInterval/time.Second)))
		}
		return nil
	}
	p, v, log := g.lim.admit(a, now, lim)
	switch v {
	case admitted:
		return &guardConn{Conn: c, lim: g.lim, p: p}
	case refusedVolume:
		g.logRateBlock(a, "volume", lim.volume)
	case refusedConcurrent:
		if log {
			logging.EventLevel(g.s.log, zapcore.WarnLevel, logging.ActionRateBlock, zap.String("peer", a.String()),
				zap.String("limit", "concurrent"), zap.Int("max", lim.conns))
		}
	}
	_ = c.Close()
	return nil
}

func (g *guard) logRateBlock(a netip.Addr, which string, rl config.RateLimit) {
	logging.EventLevel(g.s.log, zapcore.WarnLevel, logging.ActionRateBlock, zap.String("peer", a.String()),
		zap.String("limit", which), zap.Int("max", rl.Limit), zap.Int64("window_s", int64(rl.Window/time.Second)),
		zap.Int64("block_s", int64(rl.Block/time.Second)))
}

// handshake completes TLS within the handshake deadline; a failure counts
// towards rate_limit_probe.
func (g *guard) handshake(gc *guardConn) {
	tc := tls.Server(gc, g.tlsConf)
	_ = gc.SetDeadline(time.Now().Add(g.timeout))
	err := tc.HandshakeContext(g.ctx)
	g.lim.handshakeDone(gc.p, err == nil) // a completed handshake has passed the identity checks
	if err != nil {
		var rh tls.RecordHeaderError
		if errors.As(err, &rh) && rh.Conn != nil && looksLikeHTTP(rh.RecordHeader) {
			// Plain HTTP on the TLS port (curl http://host:7443): say so,
			// as net/http does on its own TLS listeners, rather than close
			// without a word. Still a failed handshake below.
			_, _ = io.WriteString(rh.Conn, plainHTTPAnswer)
		}
		_ = tc.Close()
		if g.ctx.Err() != nil {
			return
		}
		if abandoned(err) {
			// The peer went away or stalled mid-handshake: a scanner, or a
			// dispatcher whose connect_timeout ran out on a loaded host.
			// It stays on the volume count, but is no probe: counting it
			// would block a slow dispatcher for rate_limit_probe's hour.
			return
		}
		a, lim := gc.p.addr, limitsOf(g.s.snap.Load().cfg)
		if g.lim.failure(a, g.s.now(), lim) {
			g.logRateBlock(a, "probe", lim.probe)
		}
		return
	}
	_ = gc.SetDeadline(time.Time{})
	select {
	case g.ready <- tc:
	case <-g.ctx.Done():
		_ = tc.Close()
	}
}

// abandoned reports whether a handshake failed because the peer closed,
// reset or stalled the connection, rather than by what it sent.
func abandoned(err error) bool {
	var ne net.Error
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || (errors.As(err, &ne) && ne.Timeout())
}

// plainHTTPAnswer is the whole answer to a plain HTTP request on the TLS
// port: 400 with a JSON error, as every refusal of the agent.
var plainHTTPAnswer = func() string {
	body := `{"error":"plain http sent to the agent's tls port: use https with the dispatcher's client certificate"}` + "\n"
	return "HTTP/1.0 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\nContent-Length: " +
		strconv.Itoa(len(body)) + "\r\n\r\n" + body
}()

// looksLikeHTTP reports whether the first five bytes of a connection are
// the start of an HTTP request rather than of a TLS record.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "DELET", "PATCH", "OPTIO", "CONNE":
		return true
	}
	return false
}

// guardConn releases its per-address slot when closed.
type guardConn struct {
	net.Conn
	lim  *limiter
	p    *peer
	once sync.Once
}

func (c *guardConn) Close() error {
	c.once.Do(func() { c.lim.release(c.p) })
	return c.Conn.Close()
}
