package api

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/hook"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/httplimit"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Defaults of Options, and the server's fixed timeouts.
const (
	defaultMaxRequests  = 1024
	defaultRunRetention = 24 * time.Hour
	defaultDrainTimeout = 60 * time.Second // SIGTERM: how long runs in flight may finish

	readHeaderTimeout = 10 * time.Second  // slowloris
	idleTimeout       = 120 * time.Second // keep-alive connections
	maxHeaderBytes    = 64 << 10
	cancelWait        = 10 * time.Second // DELETE waits this long for a cancelled run to be over
	stragglerWait     = 10 * time.Second // after the drain: cancelled runs storing their results
	pollEvery         = 500 * time.Millisecond
	keepAliveEvery    = 15 * time.Second // SSE comment lines, so proxies keep a quiet stream open
)

// Options configure a Server. Engine, Runs and Registry are required.
type Options struct {
	Engine   *control.Engine
	Runs     store.Runs
	Registry store.Registry

	// Hook is the auth hook, asked for every request but /health; nil:
	// AllowByDefault decides (api_auth_default).
	Hook           *hook.Runner
	AllowByDefault bool
	// TrustedProxies are the proxies whose X-Forwarded-For is believed
	// (api_trusted_proxies).
	TrustedProxies []netip.Prefix
	MaxRequests    int           // requests in progress at once, /health and /metrics left out (1024)
	MaxConns       int           // connections open at once; more wait to be accepted (4096)
	MaxAsyncRuns   int           // runs with "async": true in flight at once; more get 503 (256)
	MaxStreams     int           // event streams open at once; more get 503 (256)
	RunRetention   time.Duration // stored runs older than this are purged (24h)
	DrainTimeout   time.Duration // on shutdown, runs in flight get this long to finish (60s)
	// TLS, when set, makes Serve answer HTTPS (api_cert, api_key).
	TLS *tls.Config

	Log *zap.Logger
	Now func() time.Time
}

// Server is the HTTP API. Make one with New, then Serve it, or use it as
// an http.Handler (tests).
type Server struct {
	o       Options
	log     *zap.Logger
	tracker *control.Tracker
	metrics *metrics
	mux     *http.ServeMux
	routes  map[string]*route // by mux pattern
	sem     chan struct{}
	async   chan struct{} // a slot per async run in flight (MaxAsyncRuns)
	streams chan struct{} // a slot per event stream open (MaxStreams)
	version string
	openapi []byte
	// draining ends when Serve starts to shut down.
	draining      context.Context
	startDraining context.CancelFunc

	// Timings, shortened by tests.
	pollEvery, keepAliveEvery, cancelWait, purgeEvery time.Duration
	readHeaderTimeout, bodyTimeout, writeTimeout      time.Duration
	// listener is the bounded listener Serve answers on, for tests.
	listener atomic.Pointer[httplimit.Listener]
}

// route is one endpoint.
type route struct {
	method, path string // the path as documented
	summary      string
	open         bool // no auth, no request limit (/health)
	unlimited    bool // not counted against MaxRequests (/metrics)
	handle       http.HandlerFunc
}

// New returns a Server for o.
func New(o Options) (*Server, error) {
	if o.Engine == nil || o.Runs == nil || o.Registry == nil {
		return nil, errors.New("api: the server needs the engine, the run store and the registry")
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = defaultMaxRequests
	}
	if o.MaxConns <= 0 {
		o.MaxConns = defaultMaxConns
	}
	if o.MaxAsyncRuns <= 0 {
		o.MaxAsyncRuns = defaultMaxAsyncRuns
	}
	if o.MaxStreams <= 0 {
		o.MaxStreams = defaultMaxStreams
	}
	if o.RunRetention == 0 {
		o.RunRetention = defaultRunRetention
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = defaultDrainTimeout
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	s := &Server{
		o:                 o,
		log:               o.Log,
		tracker:           control.NewTracker(o.Engine),
		metrics:           newMetrics(),
		mux:               http.NewServeMux(),
		routes:            map[string]*route{},
		sem:               make(chan struct{}, o.MaxRequests),
		async:             make(chan struct{}, o.MaxAsyncRuns),
		streams:           make(chan struct{}, o.MaxStreams),
		version:           cmdutil.Build().Version,
		pollEvery:         pollEvery,
		keepAliveEvery:    keepAliveEvery,
		cancelWait:        cancelWait,
		purgeEvery:        min(max(o.RunRetention/4, time.Second), 10*time.Minute),
		readHeaderTimeout: readHeaderTimeout,
		bodyTimeout:       bodyTimeout,
		writeTimeout:      writeTimeout,
	}
	s.draining, s.startDraining = context.WithCancel(context.Background())
	s.openapi = openapiDoc(s.version)
	s.tracker.OnFinish = s.runFinished
	for _, rt := range []*route{
		{method: "GET", path: "/", summary: "this index", handle: s.handleIndex},
		{method: "GET", path: "/health", summary: "liveness, without authentication", open: true, handle: s.handleHealth},
		{method: "POST", path: "/ping", summary: "ping agents", handle: s.handlePing},
		{method: "POST", path: "/run", summary: `run a script on agents ("async": true: in the background)`, handle: s.handleRun},
		{method: "GET", path: "/discovery", summary: "agents' versions, tags and scripts (?host=…)", handle: s.handleDiscovery},
		{method: "POST", path: "/discovery", summary: "agents' versions, tags and scripts", handle: s.handleDiscovery},
		{method: "GET", path: "/status/{reqid}", summary: "a stored run", handle: s.handleStatus},
		{method: "GET", path: "/runs/{reqid}/events", summary: "a run's output and results as Server-Sent Events", handle: s.handleEvents},
		{method: "DELETE", path: "/runs/{reqid}", summary: "cancel a run", handle: s.handleCancel},
		{method: "GET", path: "/openapi.json", summary: "OpenAPI 3.1 document", handle: s.handleOpenAPI},
		{method: "GET", path: "/openapi-live.json", summary: "OpenAPI document with the live fleet's hosts and scripts", handle: s.handleOpenAPILive},
		{method: "GET", path: "/metrics", summary: "Prometheus metrics", unlimited: true, handle: s.handleMetrics},
	} {
		pattern := rt.method + " " + rt.path
		if rt.path == "/" {
			pattern = "GET /{$}"
		}
		s.routes[pattern] = rt
		s.mux.HandleFunc(pattern, rt.handle)
	}
	notFound := &route{path: "", handle: s.handleNotFound}
	s.routes["/"] = notFound
	s.mux.HandleFunc("/", notFound.handle)
	return s, nil
}

// ServeHTTP answers one request: it works out the caller, refuses
// requests with more than maxHeaderLines header lines, unclean paths and
// requests over MaxRequests, denies every request but /health at once
// when there is no hook and api_auth_default is deny, then routes it. Each
// request is logged (api-request) and counted.
//
// Deadlines are per request, on the connection: a request with a body
// must send it within bodyTimeout (net/http lifts the deadline once the
// body is read to its end; a body nobody reads keeps it, so net/http's
// discarding of it after the answer is bounded too), and each write of
// the answer must be taken within writeTimeout (the recorder arms it).
// Neither is a limit on how long a request may last. A request without a
// body gets no read deadline: net/http is already reading the connection
// in the background to notice the client going away, and a deadline would
// end that read, and the request with it.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rc := http.NewResponseController(w)
	// A deadline armed for the previous request on this connection must
	// not fail what net/http writes for this one (100 Continue).
	_ = rc.SetWriteDeadline(time.Time{})
	if hasBody(r) {
		_ = rc.SetReadDeadline(start.Add(s.bodyTimeout))
	}
	rec := &recorder{ResponseWriter: w, rc: rc, writeTimeout: s.writeTimeout}
	st := s.newState(r)
	r = withState(r, st)
	name := "other"
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			st.err = fmt.Errorf("panic: %v", p)
			if rec.status == 0 {
				writeJSON(rec, http.StatusInternalServerError, errorBody{Error: "internal error"})
			}
		}
		s.finish(rec, r, st, name, start)
	}()
	if n := httplimit.HeaderLines(r); n > maxHeaderLines {
		rec.Header().Set("Connection", "close")
		fail(rec, r, errorf(http.StatusRequestHeaderFieldsTooLarge, "too many header lines: %d; the limit is %d", n, maxHeaderLines))
		return
	}
	if !httplimit.CleanPath(r.URL.Path) /* already unescaped: %2e%2e is ".." here */ {
		fail(rec, r, errorf(http.StatusBadRequest, "bad request path %q: no empty, . or .. segments", r.URL.Path))
		return
	}
	_, pattern := s.mux.Handler(r)
	rt := s.routes[pattern]
	if rt != nil && rt.path != "" {
		name = rt.method + " " + rt.path
	}
	if rt == nil || !rt.open {
		if rt == nil || !rt.unlimited {
			select {
			case s.sem <- struct{}{}:
				defer func() { <-s.sem }()
			default:
				fail(rec, r, errorf(http.StatusServiceUnavailable, "too many requests in progress (api_max_requests = %d); try again", s.o.MaxRequests))
				return
			}
		}
		if s.o.Hook == nil && !s.o.AllowByDefault {
			fail(rec, r, s.denyByDefault(hook.Context{Action: actionOf(name), SourceIP: st.sourceIP, Username: st.username}))
			return
		}
	}
	s.mux.ServeHTTP(rec, r)
}

// actionOf is the hook action of a route, for the log of a refusal.
func actionOf(route string) string {
	switch route {
	case "POST /run":
		return string(hook.ActionRun)
	case "POST /ping":
		return string(hook.ActionPing)
	case "GET /discovery", "POST /discovery", "GET /openapi-live.json":
		return string(hook.ActionDiscovery)
	case "GET /status/{reqid}", "GET /runs/{reqid}/events":
		return actionStatus
	case "DELETE /runs/{reqid}":
		return actionCancel
	case "GET /metrics":
		return actionMetrics
	}
	return actionAPI
}

// finish logs the request and counts it. The token is never logged.
func (s *Server) finish(rec *recorder, r *http.Request, st *reqState, route string, start time.Time) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	s.metrics.request(route, status)
	fields := []zap.Field{zap.String("method", r.Method), zap.String("path", r.URL.Path), zap.String("route", route),
		zap.Int("status", status), zap.String("source_ip", st.sourceIP), zap.Int64("bytes", rec.bytes),
		zap.Duration("took", time.Since(start).Round(time.Millisecond))}
	if st.peer != st.sourceIP {
		fields = append(fields, zap.String("peer", st.peer))
	}
	if st.username != "" {
		fields = append(fields, zap.String("username", st.username))
	}
	if st.reqid != "" {
		fields = append(fields, zap.String("reqid", st.reqid))
	}
	lvl := zapcore.InfoLevel
	if st.err != nil {
		lvl = zapcore.ErrorLevel
		fields = append(fields, zap.String("error", st.err.Error()))
	}
	logging.EventLevel(s.log, lvl, logging.ActionAPIRequest, fields...)
}

// recorder notes the status and size of an answer, and arms the write
// deadline (writeTimeout) before each write.
type recorder struct {
	http.ResponseWriter
	rc           *http.ResponseController
	writeTimeout time.Duration
	status       int
	bytes        int64
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.arm()
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	r.arm()
	n, err := r.ResponseWriter.Write(b)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the connection (flush, read
// deadlines).
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// arm gives the next write writeTimeout to be taken by the client. The
// last write's deadline also covers what net/http flushes once the
// handler is done.
func (r *recorder) arm() {
	if r.rc != nil && r.writeTimeout > 0 {
		_ = r.rc.SetWriteDeadline(time.Now().Add(r.writeTimeout))
	}
}

func (s *Server) now() time.Time { return s.o.Now() }

// runFinished counts a run that is over.
func (s *Server) runFinished(lr *control.LiveRun) {
	report, cancelled, took, err := lr.Result()
	result := "ok"
	switch {
	case err != nil:
		result = "error"
	case cancelled:
		result = "cancelled"
	case report == nil || !report.OK:
		result = "failed"
	}
	s.metrics.run(result)
	s.metrics.observe(string(hook.ActionRun), took)
}

// Serve answers on ln until ctx ends, then shuts down: it stops accepting
// connections, lets runs in flight finish for DrainTimeout, cancels those
// still running then (their results are stored, as cancelled), and waits
// for the requests in progress to be answered.
//
// At most MaxConns connections are open at once; more wait to be
// accepted. Headers must arrive within readHeaderTimeout of the request's
// start (for HTTPS this also bounds the handshake) and be at most
// maxHeaderBytes; idle keep-alive connections are closed after
// idleTimeout. There is no ReadTimeout or WriteTimeout, which would cut
// sync runs and event streams: ServeHTTP sets per-request deadlines.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	bounded := httplimit.NewListener(ln, s.o.MaxConns)
	s.listener.Store(bounded)
	ln = bounded
	srv := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		TLSConfig:         s.o.TLS,
		ErrorLog:          zap.NewStdLog(s.log.Named("http").WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))),
		// Runs and their requests outlive the signal: the drain ends them.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	scheme := "http"
	if s.o.TLS != nil {
		scheme = "https"
	}
	logging.Event(s.log, logging.ActionStart, zap.String("addr", ln.Addr().String()), zap.String("scheme", scheme),
		zap.String("version", s.version), zap.Bool("auth_hook", s.o.Hook != nil), zap.Bool("allow_by_default", s.o.AllowByDefault))
	purgeCtx, stopPurge := context.WithCancel(ctx)
	defer stopPurge()
	go s.purge(purgeCtx)

	errc := make(chan error, 1)
	go func() {
		if s.o.TLS != nil {
			errc <- srv.ServeTLS(ln, "", "")
		} else {
			errc <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	s.startDraining()
	shut := make(chan error, 1)
	go func() { shut <- srv.Shutdown(context.Background()) }() // closes the listener at once
	dctx, cancel := context.WithTimeout(context.Background(), s.o.DrainTimeout)
	cancelled, derr := s.tracker.Drain(dctx, stragglerWait)
	cancel()
	var err error
	select {
	case err = <-shut:
	case <-time.After(stragglerWait):
		err = srv.Close()
	}
	fields := []zap.Field{zap.Int("runs_cancelled", cancelled)}
	if derr != nil {
		fields = append(fields, zap.Error(derr))
	}
	logging.Event(s.log, logging.ActionStop, fields...)
	if err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return derr
}

// purge removes stored runs past RunRetention, now and every purgeEvery,
// until ctx ends.
func (s *Server) purge(ctx context.Context) {
	p, ok := s.o.Runs.(interface {
		PruneRuns(cutoff time.Time) (int, error)
	})
	if !ok || s.o.RunRetention < 0 {
		return
	}
	t := time.NewTicker(s.purgeEvery)
	defer t.Stop()
	for {
		n, err := p.PruneRuns(s.now().Add(-s.o.RunRetention))
		if err != nil {
			s.log.Warn("purge stored runs", zap.Error(err))
		} else if n > 0 {
			s.log.Debug("purged stored runs", zap.Int("runs", n))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
