package api

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/hook"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
)

// Headers the API reads.
const (
	headerUsername = "X-Dispatcher-Username"
	headerForward  = "X-Forwarded-For"
)

// Hook actions of the API's own endpoints (run, ping and discovery are the
// CLI's). docs/HOOKS.md lists them.
const (
	actionStatus  = "status"  // GET /status/{reqid}, GET /runs/{reqid}/events
	actionCancel  = "cancel"  // DELETE /runs/{reqid}
	actionMetrics = "metrics" // GET /metrics
	actionAPI     = string(hook.ActionAPI)
)

// reqState is what the API knows about a request, for its handlers and
// its log line. The token is here to pass it on, never to log it.
type reqState struct {
	sourceIP string // the client: the socket's peer, or what a trusted proxy says
	peer     string // the socket's peer
	username string
	token    string
	reqid    string // the run the request is about, when there is one
	err      error  // why a request failed with 5xx
}

type stateKey struct{}

func stateOf(r *http.Request) *reqState {
	if st, ok := r.Context().Value(stateKey{}).(*reqState); ok {
		return st
	}
	return &reqState{}
}

// newState reads the caller from the connection and the headers.
func (s *Server) newState(r *http.Request) *reqState {
	peer := peerAddr(r)
	st := &reqState{peer: peer.String(), sourceIP: s.clientAddr(peer, r.Header.Values(headerForward)).String()}
	if !peer.IsValid() {
		st.peer, st.sourceIP = r.RemoteAddr, r.RemoteAddr
	}
	st.username = r.Header.Get(headerUsername)
	if v := r.Header.Get("Authorization"); len(v) > 7 && strings.EqualFold(v[:7], "bearer ") {
		st.token = strings.TrimSpace(v[7:])
	}
	return st
}

func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// clientAddr is the client's address: the peer's, unless the peer is a
// trusted proxy. Then X-Forwarded-For is read from the right (each proxy
// appends the address it received the request from) and the first address
// that is not a trusted proxy is the client; when every one is, the
// leftmost. A value that is not an address stops the walk at the last
// good one, so a client cannot smuggle one in past a proxy.
func (s *Server) clientAddr(peer netip.Addr, forwarded []string) netip.Addr {
	if !s.trusted(peer) || len(forwarded) == 0 {
		return peer
	}
	var hops []string
	for _, v := range forwarded {
		hops = append(hops, strings.Split(v, ",")...)
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a, err := netip.ParseAddr(strings.TrimSpace(hops[i]))
		if err != nil {
			break
		}
		client = a.Unmap()
		if !s.trusted(client) {
			break
		}
	}
	return client
}

func (s *Server) trusted(a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, p := range s.o.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// authorize asks the auth hook about a request of r (SPEC §8): with the
// caller's username, token and address. With no hook, AllowByDefault
// decides. A refusal is a *control.AuthDeniedError (403 with its code).
func (s *Server) authorize(r *http.Request, hc hook.Context) error {
	st := stateOf(r)
	hc.Username, hc.Token, hc.SourceIP = st.username, st.token, st.sourceIP
	if hc.Args == nil {
		hc.Args = []string{}
	}
	if s.o.Hook == nil {
		if s.o.AllowByDefault {
			s.metrics.decision("default", hook.Allow.String())
			return nil
		}
		return s.denyByDefault(hc)
	}
	hc.Timestamp = s.now()
	d := s.o.Hook.Check(r.Context(), hc) // it logs its refusals (auth-deny)
	s.metrics.decision("hook", d.Outcome.String())
	if !d.Allowed() {
		return &control.AuthDeniedError{Decision: d}
	}
	return nil
}

// reasonNoHook is why a request is refused without a hook.
const reasonNoHook = `no auth_hook is configured and api_auth_default is "deny" (set auth_hook, or api_auth_default = "allow" on a trusted network)`

func (s *Server) denyByDefault(hc hook.Context) error {
	d := hook.Decision{Outcome: hook.Denied, Reason: reasonNoHook}
	s.metrics.decision("default", d.Outcome.String())
	logging.EventLevel(s.log, zapcore.WarnLevel, logging.ActionAuthDeny, zap.String("request", hc.Action),
		zap.String("outcome", d.Outcome.String()), zap.String("reason", "api_auth_default deny"),
		zap.String("source_ip", hc.SourceIP), zap.String("username", hc.Username))
	return &control.AuthDeniedError{Decision: d}
}

// withState stores st in r's context.
func withState(r *http.Request, st *reqState) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), stateKey{}, st))
}
