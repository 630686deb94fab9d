package pairing

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/httplimit"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// Limits and timeouts of the pairing listener.
const (
	// maxPairBody bounds POST /pair: a CSR of pki.MaxCSRSize PEM bytes,
	// JSON-escaped, plus the other fields.
	maxPairBody       = pki.MaxCSRSize + 8<<10
	readHeaderTimeout = 10 * time.Second // the TLS handshake and the headers (slowloris)
	// readTimeout bounds reading a whole request, body included (a slow
	// body gets 408). A long poll's connection is read in the background
	// meanwhile, so a poll also ends, "pending", readTimeout after its
	// request began: keep it at least wire.MaxPairPoll.
	readTimeout     = wire.MaxPairPoll * time.Second
	writeTimeout    = wire.MaxPairPoll*time.Second + 15*time.Second // a long poll, then the answer
	idleTimeout     = 60 * time.Second
	shutdownTimeout = 5 * time.Second

	defaultPollEvery  = 200 * time.Millisecond // how often a long poll re-reads the request
	defaultSweepEvery = 5 * time.Second        // how often expired requests are denied and old answers purged
)

// reasonUnknown answers a poll for an unknown request and one with the
// wrong nonce alike.
const reasonUnknown = "unknown pairing request"

// server is the pairing listener: POST /pair and GET /pair/{reqid} of
// WIRE.md over TLS with the dispatcher certificate.
type server struct {
	pairing *control.Pairing
	cert    tls.Certificate // the dispatcher leaf, then the CA: agents can pin the CA's key
	log     *zap.Logger

	maxPoll    time.Duration // a poll waits at most this long for a decision
	pollEvery  time.Duration
	sweepEvery time.Duration
	queued     chan struct{} // signalled (without blocking) when a request is queued

	maxConns int           // connections open at once (maxConns)
	submits  chan struct{} // a slot per POST /pair being checked and queued (maxSubmits)
	polls    chan struct{} // a slot per long poll waiting (maxPolls)
	// Timeouts of the http.Server, shortened by tests.
	readHeaderTimeout, readTimeout time.Duration
	// listener is the bounded listener serve answers on, for tests.
	listener atomic.Pointer[httplimit.Listener]
}

func newServer(p *control.Pairing, cert tls.Certificate, log *zap.Logger) *server {
	if log == nil {
		log = zap.NewNop()
	}
	return &server{
		pairing:    p,
		cert:       cert,
		log:        log,
		maxPoll:    wire.MaxPairPoll * time.Second,
		pollEvery:  defaultPollEvery,
		sweepEvery: defaultSweepEvery,
		queued:     make(chan struct{}, 1),

		maxConns:          maxConns,
		submits:           make(chan struct{}, maxSubmits),
		polls:             make(chan struct{}, maxPolls),
		readHeaderTimeout: readHeaderTimeout,
		readTimeout:       readTimeout,
	}
}

// leafDER is the certificate the listener serves, which the pairing code
// binds.
func (s *server) leafDER() []byte { return s.cert.Certificate[0] }

func (s *server) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+wire.PathPair, s.handlePair)
	mux.HandleFunc("GET "+wire.PathPairPrefix+"{reqid}", s.handlePoll)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		answerError(w, http.StatusNotFound, "not found")
	})
	return guard(mux)
}

func answerError(w http.ResponseWriter, status int, reason string) {
	wire.WriteJSON(w, status, wire.PairResponse{Status: wire.PairError, Reason: reason})
}

func (s *server) handlePair(w http.ResponseWriter, r *http.Request) {
	ip := peerIP(r)
	reject := func(status int, reason string) {
		logging.EventLevel(s.log, zapcore.WarnLevel, logging.ActionPairReject, zap.String("ip", ip), zap.String("reason", reason))
		if status == http.StatusRequestEntityTooLarge || status == http.StatusRequestTimeout {
			// What is left of the body is not waited for.
			w.Header().Set("Connection", "close")
		}
		answerError(w, status, reason)
	}
	tooLarge := fmt.Sprintf("request too large: the limit is %d bytes (a CSR may have %d)", maxPairBody, pki.MaxCSRSize)
	if r.ContentLength > maxPairBody {
		reject(http.StatusRequestEntityTooLarge, tooLarge)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxPairBody))
	if err != nil {
		var (
			mbe *http.MaxBytesError
			ne  net.Error
		)
		switch {
		case errors.As(err, &mbe):
			reject(http.StatusRequestEntityTooLarge, tooLarge)
		case errors.Is(err, os.ErrDeadlineExceeded) || errors.As(err, &ne) && ne.Timeout():
			reject(http.StatusRequestTimeout, fmt.Sprintf("request not received in time: send it within %v", readTimeout))
		default:
			reject(http.StatusBadRequest, "cannot read request body")
		}
		return
	}
	// DecodeRequest refuses what encoding/json alone would take: keys
	// given twice, and keys that are a field's name only ignoring case.
	r.Body = io.NopCloser(bytes.NewReader(data))
	var req wire.PairRequest
	if err := wire.DecodeRequest(r, &req); err != nil {
		reject(http.StatusBadRequest, err.Error())
		return
	}
	// The body is in: a slot only for checking and queueing it.
	select {
	case s.submits <- struct{}{}:
		defer func() { <-s.submits }()
	default:
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter/time.Second)))
		reject(http.StatusTooManyRequests, fmt.Sprintf("the pairing listener is busy: %d requests are being checked at once; "+
			"nothing was queued, try again in a second", maxSubmits))
		return
	}
	pr, err := s.pairing.Submit(req, ip, s.leafDER())
	var (
		invalid *control.InvalidPairRequestError
		exists  *store.PendingExistsError
		full    *store.QueueFullError
	)
	switch {
	case err == nil:
	case errors.As(err, &invalid):
		answerError(w, http.StatusBadRequest, err.Error())
		return
	case errors.As(err, &exists):
		answerError(w, http.StatusConflict, err.Error())
		return
	case errors.As(err, &full):
		answerError(w, http.StatusTooManyRequests, err.Error())
		return
	default:
		logging.EventLevel(s.log, zapcore.ErrorLevel, logging.ActionPairReject, zap.String("host", req.Hostname), zap.String("ip", ip), zap.Error(err))
		answerError(w, http.StatusInternalServerError, "the dispatcher could not queue the request; its log says why")
		return
	}
	select {
	case s.queued <- struct{}{}:
	default:
	}
	wire.WriteJSON(w, http.StatusAccepted, wire.PairResponse{Status: wire.PairPending, ReqID: pr.ReqID})
}

// handlePoll answers GET /pair/{reqid} once the request is decided, or
// "pending" after maxPoll (or when the listener shuts down). An unknown
// request, a request id that cannot be one and a wrong nonce all get the
// same 404. With maxPolls polls waiting already, it answers at once.
func (s *server) handlePoll(w http.ResponseWriter, r *http.Request) {
	reqid, nonce := r.PathValue("reqid"), r.Header.Get(wire.HeaderNonce)
	if store.ValidReqID(reqid) != nil {
		answerError(w, http.StatusNotFound, reasonUnknown)
		return
	}
	wait := true
	select {
	case s.polls <- struct{}{}:
		defer func() { <-s.polls }()
	default:
		wait = false
	}
	deadline := time.NewTimer(s.maxPoll)
	defer deadline.Stop()
	tick := time.NewTicker(s.pollEvery)
	defer tick.Stop()
	for {
		rec, err := s.pairing.Poll(reqid, nonce)
		switch {
		case errors.Is(err, control.ErrUnknownPairRequest):
			answerError(w, http.StatusNotFound, reasonUnknown)
			return
		case err != nil:
			logging.EventLevel(s.log, zapcore.ErrorLevel, logging.ActionPairRequest, zap.String("reqid", reqid), zap.Error(err))
			answerError(w, http.StatusInternalServerError, "the dispatcher could not read the request; its log says why")
			return
		case rec.Status == store.PairApproved:
			wire.WriteJSON(w, http.StatusOK, wire.PairResponse{Status: wire.PairApproved, ReqID: rec.ReqID, Cert: rec.Cert, CA: rec.CA, Nonce: rec.Nonce})
			return
		case rec.Status == store.PairDenied:
			wire.WriteJSON(w, http.StatusOK, wire.PairResponse{Status: wire.PairDenied, ReqID: rec.ReqID, Reason: rec.Reason})
			return
		}
		if wait {
			select {
			case <-tick.C:
				continue
			case <-deadline.C:
			case <-r.Context().Done():
			}
		}
		wire.WriteJSON(w, http.StatusOK, wire.PairResponse{Status: wire.PairPending, ReqID: rec.ReqID})
		return
	}
}

// serve answers on ln until ctx ends, and meanwhile denies expired
// requests and purges old answers every sweepEvery.
func (s *server) serve(ctx context.Context, ln net.Listener) error {
	cfg := &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{s.cert},
		NextProtos:   []string{"http/1.1"},
	}
	srv := &http.Server{
		Handler:           s.handler(),
		TLSConfig:         cfg,
		ReadHeaderTimeout: s.readHeaderTimeout,
		ReadTimeout:       s.readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    wire.MaxHeaderBytes,
		ErrorLog:          zap.NewStdLog(s.log.Named("http").WithOptions(zap.IncreaseLevel(zapcore.WarnLevel))),
		// Long polls end (answering "pending") when ctx does.
		BaseContext: func(net.Listener) context.Context { return ctx },
	}
	logging.Event(s.log, logging.ActionStart, zap.String("addr", ln.Addr().String()), zap.String("role", "pairing"))
	errc := make(chan error, 1)
	bounded := httplimit.NewListener(ln, s.maxConns)
	s.listener.Store(bounded)
	go func() { errc <- srv.Serve(tls.NewListener(bounded, cfg)) }()
	sweep := time.NewTicker(s.sweepEvery)
	defer sweep.Stop()
	s.expire()
wait:
	for {
		select {
		case err := <-errc:
			return fmt.Errorf("serve: %w", err)
		case <-sweep.C:
			s.expire()
		case <-ctx.Done():
			break wait
		}
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	logging.Event(s.log, logging.ActionStop, zap.String("role", "pairing"))
	if err != nil {
		return fmt.Errorf("shut down: %w", err)
	}
	return nil
}

func (s *server) expire() {
	if _, err := s.pairing.Expire(); err != nil {
		logging.EventLevel(s.log, zapcore.ErrorLevel, logging.ActionPairDeny, zap.String("reason", store.ReasonExpired), zap.Error(err))
	}
}

func peerIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
