package agent

import (
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/wire"
)

type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// guardWorld is an agent whose agent.conf ends with extra instead of
// rate_limit_disable = true, with an injected clock and observed logs.
type guardWorld struct {
	*world
	logs  *observer.ObservedLogs
	clock *fakeClock
	base  string // agent.conf without the guard settings
}

func newGuardWorld(t *testing.T, extra string, adjust func(*Server)) *guardWorld {
	t.Helper()
	core, logs := observer.New(zapcore.InfoLevel)
	w := setupWorld(t, zap.New(core))
	data, err := os.ReadFile(filepath.Join(w.dir, "agent.conf"))
	if err != nil {
		t.Fatal(err)
	}
	g := &guardWorld{world: w, logs: logs, clock: &fakeClock{t: time.Now()},
		base: strings.Replace(string(data), "rate_limit_disable = true\n", "", 1)}
	g.setConf(extra)
	w.srv.now = g.clock.now
	if adjust != nil {
		adjust(w.srv)
	}
	w.start()
	return g
}

// setConf rewrites agent.conf with extra and reloads.
func (g *guardWorld) setConf(extra string) {
	g.t.Helper()
	write(g.t, filepath.Join(g.dir, "agent.conf"), g.base+extra+"\n", 0o640)
	if err := g.srv.Reload(); err != nil {
		g.t.Fatal(err)
	}
}

func (g *guardWorld) count(action string) int {
	return g.logs.FilterMessage(action).Len()
}

func dialerFrom(src string) *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
}

// clientFrom connects from src with cert (none when nil), one connection
// per request.
func (g *guardWorld) clientFrom(src string, cert *tls.Certificate) *http.Client {
	tc := &tls.Config{RootCAs: g.ca.Pool(), ServerName: "web-01"}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: tc, DisableKeepAlives: true, DialContext: dialerFrom(src).DialContext,
	}}
}

func (g *guardWorld) ping(src string) error {
	disp := g.ca.Dispatcher(g.t)
	resp, body, err := g.post(g.clientFrom(src, &disp), wire.PathPing, wire.PingRequest{})
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("ping: %d %s", resp.StatusCode, body)
	}
	return nil
}

// rawRefused reports whether a plain TCP connection from src is closed by
// the agent without it sending a byte.
func (g *guardWorld) rawRefused(src string) bool {
	g.t.Helper()
	return rawRefused(g.t, g.addr, src)
}

// rawRefused reports whether a plain TCP connection from src to addr is
// closed by the agent without it sending a byte.
func rawRefused(t *testing.T, addr, src string) bool {
	t.Helper()
	c, err := dialerFrom(src).Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	if n > 0 {
		t.Fatalf("the agent sent %d bytes on a refused connection", n)
	}
	return err != nil
}

// handshaking returns the handshakes in progress from a.
func (g *guardWorld) handshaking(a netip.Addr) int {
	l := g.srv.limiter
	l.mu.Lock()
	defer l.mu.Unlock()
	if e, ok := l.peers[a]; ok {
		return e.Value.(*peer).handshaking
	}
	return 0
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if f() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

var lo1, lo2 = netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")

func TestGuardAllowedIPs(t *testing.T) {
	g := newGuardWorld(t, `rate_limit_disable = true
allowed_ips = "127.0.0.2/32, 10.0.0.0/33, ::ffff:127.0.0.3"`, nil)
	if n := g.count(logging.ActionConfigWarn); n != 1 {
		t.Errorf("config-warn logged %d times for one invalid entry, want 1", n)
	}
	if err := g.ping("127.0.0.2"); err != nil {
		t.Fatalf("allowed address refused: %v", err)
	}
	if err := g.ping("127.0.0.3"); err != nil {
		t.Fatalf("address allowed as IPv4-mapped IPv6 refused: %v", err)
	}
	for range 3 {
		if !g.rawRefused("127.0.0.1") {
			t.Fatal("a connection from outside allowed_ips was kept open")
		}
	}
	if err := g.ping("127.0.0.1"); err == nil {
		t.Fatal("a TLS client outside allowed_ips was served")
	}
	if n := g.count(logging.ActionIPBlock); n != 1 {
		t.Errorf("ip-block logged %d times, want once per period", n)
	}
	g.clock.advance(ipBlockLogInterval)
	g.rawRefused("127.0.0.1")
	// The refusal is logged just after the connection is closed.
	eventually(t, "the second ip-block line", func() bool { return g.count(logging.ActionIPBlock) == 2 })
	// SIGHUP: the new list applies to the next connection.
	g.setConf(`rate_limit_disable = true
allowed_ips = "127.0.0.0/8"`)
	if err := g.ping("127.0.0.1"); err != nil {
		t.Errorf("refused after the reload allowed it: %v", err)
	}
}

func TestParseAllowedIPs(t *testing.T) {
	for _, tc := range []struct {
		list      []string
		bad       int
		allow     []string
		deny      []string
		restricts bool
	}{
		{list: nil, allow: []string{"1.2.3.4", "::1"}},
		{list: []string{"10.0.0.0/8"}, allow: []string{"10.255.0.1", "::ffff:10.1.1.1"}, deny: []string{"11.0.0.1", "::1"}, restricts: true},
		{list: []string{"10.1.2.3/0"}, allow: []string{"8.8.8.8"}, deny: []string{"2001:db8::1"}, restricts: true},
		{list: []string{"192.168.1.7"}, allow: []string{"192.168.1.7"}, deny: []string{"192.168.1.8"}, restricts: true},
		{list: []string{"192.168.1.7/31"}, allow: []string{"192.168.1.6"}, deny: []string{"192.168.1.8"}, restricts: true},
		{list: []string{"2001:db8::/32"}, allow: []string{"2001:db8:ffff::1"}, deny: []string{"2001:db9::1", "10.0.0.1"}, restricts: true},
		{list: []string{"2001:db8::5/128", "fe80::1%eth0"}, allow: []string{"2001:db8::5", "fe80::1"}, deny: []string{"2001:db8::6"}, restricts: true},
		{list: []string{"::ffff:10.0.0.0/104"}, allow: []string{"10.3.4.5"}, deny: []string{"11.0.0.1"}, restricts: true},
		{list: []string{"::/0"}, allow: []string{"::1"}, deny: []string{"1.2.3.4"}, restricts: true},
		{list: []string{"10.0.0.0/33", "nonsense", "", "1.2.3.4/", "::1/129", "1.2.3"}, bad: 6, deny: []string{"10.0.0.1"}, restricts: true},
		{list: []string{" 10.0.0.1 ", "bad", "10.0.0.2"}, bad: 1, allow: []string{"10.0.0.1", "10.0.0.2"}, deny: []string{"10.0.0.3"}, restricts: true},
	} {
		f, bad := parseAllowedIPs(tc.list)
		if len(bad) != tc.bad || f.restrict != tc.restricts {
			t.Errorf("%q: bad %q restrict %v, want %d bad, restrict %v", tc.list, bad, f.restrict, tc.bad, tc.restricts)
		}
		for _, a := range tc.allow {
			if !f.allows(netip.MustParseAddr(a)) {
				t.Errorf("%q refuses %s", tc.list, a)
			}
		}
		for _, a := range tc.deny {
			if f.allows(netip.MustParseAddr(a)) {
				t.Errorf("%q allows %s", tc.list, a)
			}
		}
	}
}

func FuzzAllowedIPs(f *testing.F) {
	for _, s := range []string{"10.0.0.0/8, 2001:db8::/32", "192.168.1.7", "::ffff:1.2.3.4/120", "fe80::1%eth0", "1.2.3.4/99", ",,", "::/0"} {
		f.Add(s, "10.1.2.3")
	}
	f.Fuzz(func(t *testing.T, list, addr string) {
		entries := strings.Split(list, ",")
		flt, bad := parseAllowedIPs(entries)
		if len(flt.prefixes)+len(bad) != len(entries) {
			t.Fatalf("%d prefixes + %d bad != %d entries", len(flt.prefixes), len(bad), len(entries))
		}
		for _, p := range flt.prefixes {
			if !flt.allows(p.Addr()) {
				t.Fatalf("%v does not allow its own address", p)
			}
		}
		if a, err := netip.ParseAddr(addr); err == nil {
			flt.allows(a)
		}
	})
}

// The volume limit counts connections that do not authenticate the
// dispatcher (here: clients without a certificate, the probe limit set out
// of the way).
func TestGuardVolumeLimit(t *testing.T) {
	g := newGuardWorld(t, `rate_limit_volume = "3/60/300"
rate_limit_probe = "1000/600/3600"`, nil)
	anon := func() {
		t.Helper()
		if _, _, err := g.post(g.clientFrom("127.0.0.1", nil), wire.PathPing, wire.PingRequest{}); err == nil {
			t.Fatal("a client without a certificate was served")
		}
	}
	anon()
	anon()
	// The dispatcher from the same address takes nothing off the limit.
	for range 5 {
		if err := g.ping("127.0.0.1"); err != nil {
			t.Fatalf("the dispatcher was refused under the limit: %v", err)
		}
	}
	anon() // the 3rd connection that did not authenticate: the limit
	eventually(t, "the handshakes to end", func() bool { return g.handshaking(lo1) == 0 })
	if err := g.ping("127.0.0.1"); err == nil {
		t.Fatal("the 4th connection after 3 unauthenticated ones was served")
	}
	if !g.srv.limiter.blocked(lo1, g.clock.now()) {
		t.Fatal("the address is not blocked")
	}
	if err := g.ping("127.0.0.2"); err != nil {
		t.Errorf("another address was refused: %v", err)
	}
	for range 3 {
		_ = g.rawRefused("127.0.0.1")
	}
	if n := g.count(logging.ActionRateBlock); n != 1 {
		t.Errorf("rate-block logged %d times, want once per block period", n)
	}
	g.clock.advance(299 * time.Second)
	if err := g.ping("127.0.0.1"); err == nil {
		t.Fatal("served before the block ended")
	}
	g.clock.advance(2 * time.Second)
	if err := g.ping("127.0.0.1"); err != nil {
		t.Errorf("still refused after the block: %v", err)
	}
}

// The default 10/60/300, without anything in agent.conf, never blocks the
// dispatcher itself: every CLI command is a new connection, and each one
// that authenticates is taken off the count.
func TestGuardDefaultVolumeSparesTheDispatcher(t *testing.T) {
	g := newGuardWorld(t, "", nil)
	for i := range 30 {
		if err := g.ping("127.0.0.1"); err != nil {
			t.Fatalf("connection %d of the dispatcher refused: %v", i+1, err)
		}
	}
	// Nor does a burst of connections opened at once, before any of them
	// has authenticated.
	var wg sync.WaitGroup
	errs := make(chan error, 24)
	for range 24 {
		wg.Go(func() {
			if err := g.ping("127.0.0.1"); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("a connection of a burst of 24 was refused: %v", err)
	}
	if g.srv.limiter.blocked(lo1, g.clock.now()) || g.count(logging.ActionRateBlock) != 0 {
		t.Error("the dispatcher's address was blocked")
	}
}

func TestGuardProbeLimit(t *testing.T) {
	g := newGuardWorld(t, `rate_limit_probe = "2/600/3600"
rate_limit_volume = "1000/60/300"`, nil)
	for range 3 {
		if _, _, err := g.post(g.clientFrom("127.0.0.1", nil), wire.PathPing, wire.PingRequest{}); err == nil {
			t.Fatal("a client without a certificate was served")
		}
	}
	eventually(t, "the probe block", func() bool { return g.srv.limiter.blocked(lo1, g.clock.now()) })
	if err := g.ping("127.0.0.1"); err == nil {
		t.Fatal("a good client was served from a blocked address")
	}
	if err := g.ping("127.0.0.2"); err != nil {
		t.Errorf("another address was refused: %v", err)
	}
	if n := g.count(logging.ActionRateBlock); n != 1 {
		t.Errorf("rate-block logged %d times, want 1", n)
	}
	g.clock.advance(3601 * time.Second)
	if err := g.ping("127.0.0.1"); err != nil {
		t.Errorf("still refused after the block: %v", err)
	}
}

func TestGuardRateLimitDisable(t *testing.T) {
	g := newGuardWorld(t, `rate_limit_disable = true
rate_limit_volume = "1/60/300"
rate_limit_probe = "1/600/3600"`, nil)
	for range 3 {
		if _, _, err := g.post(g.clientFrom("127.0.0.1", nil), wire.PathPing, wire.PingRequest{}); err == nil {
			t.Fatal("a client without a certificate was served")
		}
	}
	for i := range 5 {
		if err := g.ping("127.0.0.1"); err != nil {
			t.Fatalf("connection %d refused with rate limits disabled: %v", i+1, err)
		}
	}
	if g.srv.limiter.blocked(lo1, g.clock.now()) || g.count(logging.ActionRateBlock) != 0 {
		t.Error("blocked with rate limits disabled")
	}
}

func TestGuardConcurrentCap(t *testing.T) {
	g := newGuardWorld(t, "rate_limit_disable = true\nmax_concurrent = 4", nil)
	var open []net.Conn
	t.Cleanup(func() {
		for _, c := range open {
			c.Close()
		}
	})
	for range 4 + connSlack {
		c, err := dialerFrom("127.0.0.1").Dial("tcp", g.addr)
		if err != nil {
			t.Fatal(err)
		}
		open = append(open, c)
	}
	eventually(t, "the cap", func() bool { return g.rawRefused("127.0.0.1") })
	if !g.rawRefused("127.0.0.1") {
		t.Fatal("a connection over the per-address cap was kept")
	}
	if err := g.ping("127.0.0.2"); err != nil {
		t.Errorf("another address was refused: %v", err)
	}
	if n := g.logs.FilterMessage(logging.ActionRateBlock).FilterField(zap.String("limit", "concurrent")).Len(); n != 1 {
		t.Errorf("concurrent rate-block logged %d times, want 1", n)
	}
	open[0].Close()
	eventually(t, "a free slot", func() bool { return g.ping("127.0.0.1") == nil })
}

func TestGuardHandshakeTimeout(t *testing.T) {
	g := newGuardWorld(t, "rate_limit_disable = true", func(s *Server) { s.handshakeTimeout = 200 * time.Millisecond })
	start := time.Now()
	if !g.rawRefused("127.0.0.1") {
		t.Fatal("a silent connection was kept past the handshake deadline")
	}
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("closed after %v, before the deadline", d)
	}
	if err := g.ping("127.0.0.1"); err != nil {
		t.Errorf("a prompt client was refused: %v", err)
	}
}

func TestLimiterBounded(t *testing.T) {
	l := newLimiter(guardTableCap)
	lim := limitsOf(config.DefaultAgent())
	now := time.Now()
	var last netip.Addr
	for i := range 100_000 {
		last = netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		p, v, _ := l.admit(last, now, lim)
		if v != admitted {
			t.Fatalf("%v refused", last)
		}
		l.release(p)
		l.failure(last, now, lim)
	}
	if n := l.len(); n > guardTableCap {
		t.Errorf("%d entries, cap %d", n, guardTableCap)
	}
	if _, ok := l.peers[last]; !ok {
		t.Error("the newest address was evicted")
	}
	// Once every window has passed, entries are pruned.
	l.admit(lo2, now.Add(time.Hour+pruneInterval), lim)
	if n := l.len(); n != 1 {
		t.Errorf("%d entries after pruning, want 1", n)
	}
}
