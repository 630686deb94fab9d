package postgres

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Pool limits. The pool is ours rather than pgxpool's so that the module
// graph stays as go.mod has it (pgxpool needs jackc/puddle and
// golang.org/x/sync); it needs little: bounded short uses, and
// connections taken outside the bound for the callers that hold one for a
// long time (a run's locks) or that call back into the store while holding
// one (DecidePairRequest's decide).
const (
	// pingAfter: a connection idle for longer is pinged before it is used
	// again, so that one the server or a firewall dropped is replaced
	// rather than failing the caller's statement.
	pingAfter = time.Second
	// maxIdleTime: a connection idle for longer is closed.
	maxIdleTime = 5 * time.Minute
	// pingTimeout bounds that ping.
	pingTimeout = 5 * time.Second
	// closeTimeout bounds the goodbye to the server when a connection is
	// closed.
	closeTimeout = 2 * time.Second
)

// defaultMaxConns is pgxpool's default: the greater of 4 and the number of
// CPUs.
func defaultMaxConns() int { return max(4, runtime.NumCPU()) }

var errClosed = errors.New("the store is closed")

// pool is a small connection pool: at most cap(slots) connections in use
// through get(ctx, true) at a time, any number through get(ctx, false),
// and at most cap(slots) idle ones kept for reuse.
type pool struct {
	cfg     *pgx.ConnConfig
	connect func(ctx context.Context, cfg *pgx.ConnConfig) (*pgx.Conn, error)
	slots   chan struct{}

	mu     sync.Mutex
	idle   []idleConn // most recently used last
	closed bool
}

type idleConn struct {
	c     *pgx.Conn
	since time.Time
}

func newPool(cfg *pgx.ConnConfig, maxConns int, connect func(context.Context, *pgx.ConnConfig) (*pgx.Conn, error)) *pool {
	return &pool{cfg: cfg, connect: connect, slots: make(chan struct{}, maxConns)}
}

// get returns a connection for the caller's sole use until put. bounded
// waits for one of the pool's slots first.
func (p *pool) get(ctx context.Context, bounded bool) (*pgx.Conn, error) {
	if bounded {
		select {
		case p.slots <- struct{}{}:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	c, err := p.take(ctx)
	if err != nil && bounded {
		<-p.slots
	}
	return c, err
}

// take reuses an idle connection that still works, or opens one.
func (p *pool) take(ctx context.Context) (*pgx.Conn, error) {
	for {
		p.mu.Lock()
		if p.closed {
			p.mu.Unlock()
			return nil, errClosed
		}
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		ic := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()

		idle := time.Since(ic.since)
		if idle > maxIdleTime {
			closeConn(ic.c)
			continue
		}
		if idle > pingAfter {
			pctx, cancel := context.WithTimeout(ctx, pingTimeout)
			err := ic.c.Ping(pctx)
			cancel()
			if err != nil {
				closeConn(ic.c)
				continue
			}
		}
		return ic.c, nil
	}
	return p.connect(ctx, p.cfg.Copy())
}

// put gives c back. A connection that is broken, inside a transaction or
// busy is closed instead of kept.
func (p *pool) put(c *pgx.Conn, bounded bool) {
	if bounded {
		defer func() { <-p.slots }()
	}
	if c.IsClosed() || c.PgConn().IsBusy() || c.PgConn().TxStatus() != 'I' {
		closeConn(c)
		return
	}
	p.mu.Lock()
	if p.closed || len(p.idle) >= cap(p.slots) {
		p.mu.Unlock()
		closeConn(c)
		return
	}
	p.idle = append(p.idle, idleConn{c, time.Now()})
	p.mu.Unlock()
}

// close closes the idle connections; those in use are closed when they
// are put back.
func (p *pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle, p.closed = nil, true
	p.mu.Unlock()
	for _, ic := range idle {
		closeConn(ic.c)
	}
}

func closeConn(c *pgx.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	_ = c.Close(ctx)
}
