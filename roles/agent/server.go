package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/exec"
	"github.com/dispatcher-dev/dispatcher/hook"
	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// Timeouts of the agent's HTTP server. Runs may take long, so there is no
// write timeout; slow clients are bounded while sending headers.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	drainTimeout      = 60 * time.Second // SIGTERM: how long runs in flight may finish
)

// Server is the agent daemon.
type Server struct {
	paths  paths
	log    *zap.Logger
	snap   atomic.Pointer[snapshot]
	runner *exec.Runner
	slots  atomic.Int64 // runs in flight
	now    func() time.Time
	mu     sync.Mutex // serialises snapshot swaps: reload, renewal and pushes

	perScript        scriptSlots   // runs in flight per script, for max_concurrent in scripts.conf (scriptslots.go)
	limiter          *limiter      // per-address network guard state (guard.go)
	handshakeTimeout time.Duration // accept to completed TLS handshake
}

func newServer(p paths, log *zap.Logger) (*Server, error) {
	s := &Server{paths: p, log: log, runner: &exec.Runner{Log: log.Named("exec")}, now: time.Now,
		limiter: newLimiter(guardTableCap), handshakeTimeout: handshakeTimeout}
	snap, err := loadSnapshot(p, log)
	if err != nil {
		return nil, err
	}
	s.snap.Store(snap)
	return s, nil
}

// setLogger switches to the configured logger once it is known.
func (s *Server) setLogger(log *zap.Logger) {
	s.log = log
	s.runner.Log = log.Named("exec")
}

// Reload builds a new snapshot and swaps it in; on failure the old one stays.
func (s *Server) Reload() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	old := s.snap.Load()
	snap, err := loadSnapshot(s.paths, s.log)
	if err != nil {
		logging.EventLevel(s.log, zapcore.ErrorLevel, logging.ActionReload, zap.Bool("ok", false), zap.Error(err))
		return err
	}
	s.snap.Store(snap)
	logging.Event(s.log, logging.ActionReload, append([]zap.Field{zap.Bool("ok", true)}, snap.diff(old)...)...)
	return nil
}

// tlsConfig checks identities against the current snapshot, so a reload
// takes effect on the next handshake, resumed ones included.
func (s *Server) tlsConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAnyClientCert, // verified below, against the live snapshot
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.snap.Load().cert, nil
		},
		VerifyConnection: s.verifyClient,
		NextProtos:       []string{"http/1.1"},
	}
	s.bindSessions(cfg)
	return cfg
}

func (s *Server) verifyClient(cs tls.ConnectionState) error {
	snap := s.snap.Load()
	// A legacy certificate (no role SAN) passes here and meets the serial
	// pin in identity(), which answers 403 as the Perl agent did.
	_, err := pki.VerifyDispatcher(cs.PeerCertificates, snap.roots, s.now())
	if err == nil && snap.revoked.Contains(cs.PeerCertificates[0].SerialNumber) {
		err = errors.New(wire.ErrCertRevoked)
	}
	if err != nil {
		serial := ""
		if len(cs.PeerCertificates) > 0 {
			serial = pki.FormatSerial(cs.PeerCertificates[0].SerialNumber)
		}
		logging.EventLevel(s.log, zapcore.WarnLevel, logging.ActionSerialReject, zap.String("serial", serial), zap.String("reason", err.Error()), zap.Bool("resumed", cs.DidResume))
		return err
	}
	return nil
}

// handler is the agent's HTTP surface.
func (s *Server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathPing, s.identity(s.handlePing))
	mux.HandleFunc("POST "+wire.PathRun, s.identity(s.handleRun))
	mux.HandleFunc("GET "+wire.PathCapabilities, s.identity(s.handleCapabilities))
	mux.HandleFunc("POST "+wire.PathRenew, s.identity(s.handleRenew))
	mux.HandleFunc("POST "+wire.PathRenewComplete, s.identity(s.handleRenewComplete))
	mux.HandleFunc("POST "+wire.PathRevocations, s.identity(roleOnly(s.handleRevocations)))
	mux.HandleFunc("POST "+wire.PathDispatcherSerial, s.identity(roleOnly(s.handleDispatcherSerial)))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		wire.WriteError(w, http.StatusNotFound, "not found")
	})
	return wire.LimitRequests(mux)
}

// identity applies the legacy dispatcher-serial pin to certificates without
// a role SAN; role certificates were fully checked in the handshake.
func (s *Server) identity(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil || len(r.TLS.PeerCertificates) == 0 {
			wire.WriteError(w, http.StatusForbidden, wire.ErrForbidden)
			return
		}
		leaf := r.TLS.PeerCertificates[0]
		if s.snap.Load().revoked.Contains(leaf.SerialNumber) {
			// Revoked since this kept-alive connection's handshake (a
			// push or a reload): refused from its next request on.
			logging.EventLevel(s.log, zapcore.WarnLevel, logging.ActionSerialReject, zap.String("serial", pki.FormatSerial(leaf.SerialNumber)),
				zap.String("peer", peerIP(r)), zap.String("reason", wire.ErrCertRevoked))
			wire.WriteError(w, http.StatusForbidden, wire.ErrCertRevoked)
			return
		}
		if pki.CertRole(leaf) == pki.RoleNone {
			snap := s.snap.Load()
			if snap.pin == nil || snap.pin.Cmp(leaf.SerialNumber) != 0 {
				logging.EventLevel(s.log, zapcore.WarnLevel, logging.ActionSerialReject, zap.String("serial", pki.FormatSerial(leaf.SerialNumber)),
					zap.String("peer", peerIP(r)), zap.Bool("pinned", snap.pin != nil))
				wire.WriteError(w, http.StatusForbidden, wire.ErrSerialMismatch)
				return
			}
		}
		next(w, r)
	}
}

func (s *Server) handlePing(w http.ResponseWriter, r *http.Request) {
	var req wire.PingRequest
	if !decode(w, r, &req) {
		return
	}
	snap := s.snap.Load()
	exp := snap.leafExpiry()
	logging.Event(s.log, logging.ActionPing, zap.String("reqid", req.ReqID), zap.String("peer", peerIP(r)))
	wire.WriteJSON(w, http.StatusOK, wire.PingResponse{
		Status:    "ok",
		Host:      snap.cfg.Hostname,
		Version:   cmdutil.Build().Version,
		Expiry:    pki.FormatOpenSSLTime(exp),
		ExpiryISO: exp.UTC().Format(time.RFC3339),
		ReqID:     req.ReqID,
	})
}

func (s *Server) handleCapabilities(w http.ResponseWriter, r *http.Request) {
	snap := s.snap.Load()
	if d := s.authorize(r.Context(), snap, hook.Context{Action: string(hook.ActionDiscovery), SourceIP: peerIP(r)}); !d.Allowed() {
		wire.WriteError(w, http.StatusForbidden, d.Error())
		return
	}
	resp := wire.CapabilitiesResponse{
		Status:  "ok",
		Host:    snap.cfg.Hostname,
		Version: cmdutil.Build().Version,
		Tags:    snap.cfg.Tags,
		Scripts: []wire.ScriptInfo{},
	}
	for _, e := range snap.allow.Entries() {
		fi, err := os.Stat(e.Path)
		resp.Scripts = append(resp.Scripts, wire.ScriptInfo{Name: e.Name, Path: e.Path, Executable: err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0})
	}
	wire.WriteJSON(w, http.StatusOK, resp)
}

// runContext is the JSON the script reads on stdin (SPEC.md §5).
type runContext struct {
	Script    string   `json:"script"`
	Args      []string `json:"args"`
	ReqID     string   `json:"reqid"`
	PeerIP    string   `json:"peer_ip"`
	Username  string   `json:"username"`
	Token     string   `json:"token"`
	Timestamp string   `json:"timestamp"`
}

func (s *Server) handleRun(w http.ResponseWriter, r *http.Request) {
	var req wire.RunRequest
	if !decode(w, r, &req) {
		return
	}
	if err := exec.CheckArgs(req.Args); err != nil {
		wire.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	snap := s.snap.Load()
	peer := peerIP(r)
	refuse := func(msg string, fields ...zap.Field) {
		logging.EventLevel(s.log, zapcore.WarnLevel, logging.ActionRun, append([]zap.Field{zap.String("reqid", req.ReqID),
			zap.String("script", req.Script), zap.String("peer", peer), zap.Int("exit", -1), zap.String("error", msg)}, fields...)...)
		s.answer(w, r, wire.RunResponse{Script: req.Script, Exit: -1, ReqID: req.ReqID, Error: msg})
	}
	entry, err := snap.allow.Lookup(req.Script)
	if err != nil {
		var na *exec.NotAllowedError
		reason := err.Error()
		if errors.As(err, &na) {
			reason = na.Reason
		}
		refuse(wire.ErrScriptNotPermitted, zap.String("reason", reason))
		return
	}
	if d := s.authorize(r.Context(), snap, hook.Context{Action: string(hook.ActionRun), Script: req.Script, Args: nonNil(req.Args),
		Username: req.Username, Token: req.Token, SourceIP: peer}); !d.Allowed() {
		refuse(d.Error()) // the hook runner logged auth-deny
		return
	}
	if n := s.slots.Add(1); n > int64(snap.cfg.MaxConcurrent) {
		s.slots.Add(-1)
		refuse(fmt.Sprintf("agent busy: %d runs in progress (max_concurrent)", snap.cfg.MaxConcurrent))
		return
	}
	defer s.slots.Add(-1)
	if ok, n := s.perScript.acquire(entry.Name, entry.MaxConcurrent); !ok {
		refuse(scriptBusy(entry.Name, n, entry.MaxConcurrent), zap.String("reason", "script at its max_concurrent"),
			zap.Int("in_flight", n), zap.Int("max_concurrent", entry.MaxConcurrent))
		return
	}
	defer s.perScript.release(entry.Name)

	stdin, _ := json.Marshal(runContext{
		Script: req.Script, Args: nonNil(req.Args), ReqID: req.ReqID, PeerIP: peer,
		Username: req.Username, Token: req.Token, Timestamp: s.now().UTC().Format(time.RFC3339),
	})
	xr := exec.Request{
		Entry:       entry,
		Args:        req.Args,
		Stdin:       stdin,
		Env:         map[string]string{"DISPATCHER_REQID": req.ReqID, "DISPATCHER_SCRIPT": req.Script, "DISPATCHER_USERNAME": req.Username, "DISPATCHER_PEER_IP": peer},
		Timeout:     effectiveTimeout(req.Timeout, entry.Timeout, snap.cfg.DefaultTimeout.Duration),
		OutputLimit: int64(snap.cfg.OutputLimit),
		ScriptDirs:  snap.allow.ScriptDirs(),
		// The output stays in the runner's chunks and the answer is
		// encoded straight from them: a run that prints output_limit on
		// both streams costs the agent 2 × output_limit and a few
		// buffers, not copies of it (docs/DEVELOPER.md, "Run output on
		// the wire").
		Chunked: true,
	}
	var stream *wire.StreamWriter
	if wire.WantsStream(r) {
		stream = wire.NewStreamWriter(w)
		xr.OnOutput = func(name string, data []byte) { _ = stream.Output(name, data) }
	}
	res := s.runner.Run(r.Context(), xr)
	defer res.Release()
	answer := &wire.RunAnswer{
		Response: wire.RunResponse{Script: req.Script, Exit: res.Exit, ReqID: req.ReqID, Truncated: res.Truncated,
			Signal: res.Signal, DurationMS: res.Duration.Milliseconds(), Error: res.Error},
		Stdout: res.StdoutChunks.Chunks(),
		Stderr: res.StderrChunks.Chunks(),
	}
	logging.Event(s.log, logging.ActionRun, zap.String("reqid", req.ReqID), zap.String("script", req.Script), zap.String("peer", peer),
		zap.String("username", req.Username), zap.Int("exit", res.Exit), zap.String("signal", res.Signal),
		zap.Int64("duration_ms", answer.Response.DurationMS), zap.Bool("truncated", res.Truncated), zap.String("error", res.Error))
	write := func() error { return wire.WriteRunAnswer(w, answer) }
	if stream != nil {
		write = func() error { return stream.FinalAnswer(answer) }
	}
	if err := write(); err != nil {
		s.log.Debug("answering a run", zap.String("reqid", req.ReqID), zap.Error(err))
	}
}

// authorize asks the agent's auth hook, when agent.conf names one; without
// a hook every request that passed the allowlist is allowed.
func (s *Server) authorize(ctx context.Context, snap *snapshot, c hook.Context) hook.Decision {
	if snap.cfg.AuthHook == "" {
		return hook.Decision{Outcome: hook.Allow}
	}
	c.Timestamp = s.now()
	r := &hook.Runner{Path: snap.cfg.AuthHook, Timeout: snap.cfg.HookTimeout.Duration, Log: s.log.Named("hook")}
	return r.Check(ctx, c)
}

// answer writes a run response in the form the client asked for.
func (s *Server) answer(w http.ResponseWriter, r *http.Request, resp wire.RunResponse) {
	if wire.WantsStream(r) {
		_ = wire.NewStreamWriter(w).Final(resp)
		return
	}
	wire.WriteJSON(w, http.StatusOK, resp)
}

// effectiveTimeout: the entry's timeout (else default_timeout) is the
// operator's ceiling; a shorter request timeout wins.
func effectiveTimeout(reqSeconds int, entry, def time.Duration) time.Duration {
	limit := entry
	if limit == 0 {
		limit = def
	}
	if reqSeconds > 0 {
		if req := time.Duration(reqSeconds) * time.Second; limit == 0 || req < limit {
			return req
		}
	}
	return limit
}

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	if err := wire.DecodeRequest(r, v); err != nil {
		var re *wire.RequestError
		if errors.As(err, &re) {
			wire.WriteError(w, re.Status, re.Msg)
		} else {
			wire.WriteError(w, http.StatusBadRequest, err.Error())
		}
		return false
	}
	return true
}

func peerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func nonNil(s []string) []string {
	if s == nil {
		return []string{}
	}
	return s
}

// Listen opens the TCP listener on bind:port from agent.conf.
func (s *Server) Listen() (net.Listener, error) {
	cfg := s.snap.Load().cfg
	addr := net.JoinHostPort(cfg.Bind, strconv.Itoa(cfg.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("listen on %s: %w (is another agent running? change port or bind in agent.conf)", addr, err)
	}
	return ln, nil
}

// Serve answers on ln until ctx ends, then drains: no new connections, runs
// in flight get drainTimeout to finish before their connections are closed
// (which kills their process groups).
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	cfg := s.snap.Load().cfg
	srv := &http.Server{
		Handler:           s.handler(),
		TLSConfig:         s.tlsConfig(),
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    wire.MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(s.log.Named("http").WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))),
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	logging.Event(s.log, logging.ActionStart, zap.String("addr", ln.Addr().String()), zap.String("host", cfg.Hostname),
		zap.String("version", cmdutil.Build().Version), zap.Int("scripts", len(s.snap.Load().allow.Entries())))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(s.newGuard(ln, srv.TLSConfig)) }()
	select {
	case err := <-errc:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	dctx, cancel := context.WithTimeout(context.Background(), drainTimeout)
	defer cancel()
	err := srv.Shutdown(dctx)
	if errors.Is(err, context.DeadlineExceeded) {
		// Runs still going after the drain period: closing their
		// connections cancels them, which kills their process groups.
		err = srv.Close()
	}
	logging.Event(s.log, logging.ActionStop, zap.Int64("runs_in_flight", s.slots.Load()))
	if err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}
