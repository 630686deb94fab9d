package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// DefaultAgentPort is the agent port when neither the host argument, the
// --port option nor the registry names one.
const DefaultAgentPort = 7443

// Target is a host as the user named it: "name" or "name:port". Name is
// the agent's identity (its certificate must carry it); Port is 0 unless
// given.
type Target struct {
	Arg  string // as given, for results
	Name string
	Port int
}

// ParseTarget reads "name" or "name:port". The name must be a valid DNS
// host name (so it can never be a path or an option), the port 1-65535.
func ParseTarget(s string) (Target, error) {
	name, port := s, 0
	if i := strings.LastIndexByte(s, ':'); i >= 0 {
		name = s[:i]
		p, err := strconv.Atoi(s[i+1:])
		if err != nil || p < 1 || p > 65535 {
			return Target{}, fmt.Errorf("host %q: port must be a number 1-65535", s)
		}
		port = p
	}
	if err := pki.ValidHostname(name); err != nil {
		return Target{}, fmt.Errorf("host %q: %w", s, err)
	}
	return Target{Arg: s, Name: name, Port: port}, nil
}

// parseTargets parses every host argument and refuses an empty list, more
// than max, and a host named twice (with or without a port).
func parseTargets(hosts []string, max int) ([]Target, error) {
	if len(hosts) == 0 {
		return nil, errors.New("no hosts given")
	}
	if max > 0 && len(hosts) > max {
		return nil, fmt.Errorf("%d hosts given; the limit is max_hosts = %d (raise it in dispatcher.conf)", len(hosts), max)
	}
	ts := make([]Target, len(hosts))
	seen := make(map[string]string, len(hosts))
	for i, h := range hosts {
		t, err := ParseTarget(h)
		if err != nil {
			return nil, err
		}
		key := strings.ToLower(t.Name)
		if prev, ok := seen[key]; ok {
			return nil, fmt.Errorf("host %s is given twice (%q and %q)", t.Name, prev, h)
		}
		seen[key] = h
		ts[i] = t
	}
	return ts, nil
}

// dialPlan is where and how one host is reached.
type dialPlan struct {
	target     wire.Target
	pin        string // normalised key fingerprint from the registry, "" = none
	registered bool
	tags       map[string]string // the registry record's tags, as planned
}

// plan looks host up in the registry and DNS. The port is the first of:
// the one in the host argument, the --port option, the registry's, 7443.
// The address is the name when it resolves, else the registry's ip; with
// PreferRegistry, the registry's ip when it has one.
func (e *Engine) plan(ctx context.Context, t Target, flagPort int) (dialPlan, error) {
	a, err := e.o.Registry.GetAgent(t.Name)
	registered := err == nil
	if err != nil && !errors.Is(err, store.ErrNotFound) {
		return dialPlan{}, err
	}
	port := t.Port
	for _, p := range []int{flagPort, a.Port, DefaultAgentPort} {
		if port == 0 {
			port = p
		}
	}
	var pin string
	if registered && a.KeyFingerprint != "" {
		pin, err = pki.ParseFingerprint(a.KeyFingerprint)
		if err != nil {
			return dialPlan{}, fmt.Errorf("registry record of %s: key_fingerprint: %w; re-pair the agent or fix the record", t.Name, err)
		}
	}
	host := t.Name
	if e.o.PreferRegistry && registered && a.IP != "" {
		host = a.IP
	} else if rerr := e.resolve(ctx, t.Name); rerr != nil {
		if !registered || a.IP == "" {
			return dialPlan{}, fmt.Errorf("connect: cannot resolve %s and the registry has no address for it; pair the agent or give a name that resolves", t.Name)
		}
		host = a.IP
	}
	return dialPlan{
		target:     wire.Target{Host: t.Name, Addr: net.JoinHostPort(host, strconv.Itoa(port))},
		pin:        pin,
		registered: registered,
		tags:       a.Tags,
	}, nil
}

// resolveTTL is how long an answer (found or not) is reused. Concurrent
// requests for one name share a single lookup, so a fan-out of many runs
// to the same agents, or a busy API, does not flood the resolver.
const resolveTTL = 30 * time.Second

// resolveCache remembers recent lookups; the zero value is ready to use.
type resolveCache struct {
	mu sync.Mutex
	m  map[string]*lookup
}

type lookup struct {
	done chan struct{} // closed when err is set
	err  error
	at   time.Time
}

// resolve reports whether name resolves, within the connect timeout.
func (e *Engine) resolve(ctx context.Context, name string) error {
	key := strings.ToLower(name)
	c := &e.dns
	c.mu.Lock()
	l, ok := c.m[key]
	if !ok || (isDone(l.done) && time.Since(l.at) > resolveTTL) {
		if c.m == nil {
			c.m = map[string]*lookup{}
		}
		l = &lookup{done: make(chan struct{})}
		c.m[key] = l
		c.mu.Unlock()
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.o.ConnectTimeout)
		err := e.lookup(lctx, name)
		cancel()
		l.err, l.at = err, time.Now()
		close(l.done)
		return err
	}
	c.mu.Unlock()
	select {
	case <-l.done:
		return l.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// lookup asks Options.Resolve, else the system resolver.
func (e *Engine) lookup(ctx context.Context, name string) error {
	if e.o.Resolve != nil {
		return e.o.Resolve(ctx, name)
	}
	addrs, err := net.DefaultResolver.LookupHost(ctx, name)
	if err == nil && len(addrs) == 0 {
		err = fmt.Errorf("no address for %s", name)
	}
	return err
}

func isDone(ch chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// NewReqID returns a new request id: 16 lowercase hex digits (64 random
// bits from crypto/rand).
func NewReqID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
