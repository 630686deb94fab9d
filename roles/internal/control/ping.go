package control

import (
	"context"
	"maps"
	"strconv"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// Status values of ping and discovery results.
const (
	StatusOK    = "ok"
	StatusError = "error"
)

// PingRequest pings many hosts.
type PingRequest struct {
	Hosts    []string // "name" or "name:port"; results come back in this order
	Username string   // for Options.Authorize
	Token    string   // for Options.Authorize; not sent to agents
	Port     int      // port for hosts that name none; 0 = registry, then 7443
	Parallel int      // 0 = Options.Parallel
	Rollout  Rollout  // batches and when to stop early, as for runs

	// OnResult, when set, receives each host's result as it completes (in
	// completion order, one call at a time).
	OnResult func(i int, r PingResult)
	// OnBatch, when set, hears of each batch as it starts.
	OnBatch func(BatchEvent)
}

// PingResult is one host's answer to a ping, in the JSON shape of
// ping --json (SPEC §6). Status is "ok" or "error"; Expiry is the agent
// certificate's notAfter in OpenSSL text form, as the agent sent it.
//
// For an agent that answered, Serial and ExpiresInDays describe the
// certificate it presented in the handshake, ExpiryWarning says it has
// fewer than ExpiryWarnDays days left, and Renewed is the certificate
// installed on this contact when renewal was due (renew.go).
type PingResult struct {
	Host          string        `json:"host"`
	Status        string        `json:"status"`
	RTT           string        `json:"rtt"`
	Expiry        string        `json:"expiry"`
	Version       string        `json:"version"`
	Error         string        `json:"error,omitempty"`
	Serial        string        `json:"serial,omitempty"`
	ExpiresInDays *int          `json:"expires_in_days,omitempty"`
	ExpiryWarning bool          `json:"expiry_warning,omitempty"`
	Renewed       *RenewedCert  `json:"renewed,omitempty"`
	Attempted     *bool         `json:"attempted,omitempty"` // false: a rollout did not start this host
	Duration      time.Duration `json:"-"`                   // RTT as a duration
}

// PingReport is the outcome of a ping (SPEC §6): OK when every host
// answered.
type PingReport struct {
	OK      bool           `json:"ok"`
	Results []PingResult   `json:"results"`
	Batches *store.Batches `json:"batches,omitempty"` // with a batch size or fail-fast
}

// Ping asks every host of req whether it is up (POST /ping), at most
// Parallel at a time, and returns the results in the order of req.Hosts.
// A host that fails is a result with status "error"; the error is non-nil
// only for bad arguments or a refusal by Options.Authorize.
func (e *Engine) Ping(ctx context.Context, req PingRequest) (*PingReport, error) {
	targets, err := parseTargets(req.Hosts, e.o.MaxHosts)
	if err != nil {
		return nil, err
	}
	if err := req.Rollout.Check(); err != nil {
		return nil, err
	}
	if err := e.authorize(ctx, AuthRequest{Action: logging.ActionPing, Hosts: req.Hosts, Username: req.Username, Token: req.Token}); err != nil {
		return nil, err
	}
	if err := e.loadRevoked(); err != nil {
		return nil, err
	}
	reqid := NewReqID()
	report := &PingReport{OK: true, Results: make([]PingResult, len(targets))}
	plan := req.Rollout.plan(len(targets))
	batches := rollout(ctx, plan, req.Hosts, e.parallel(req.Parallel), func(ctx context.Context, i int) PingResult {
		return e.pingOne(ctx, reqid, targets[i], req.Port)
	}, func(i int, why string) PingResult {
		return PingResult{Host: targets[i].Arg, Status: StatusError, RTT: FormatRTT(0), Error: notAttempted(why), Attempted: falsePtr()}
	}, func(r PingResult) bool { return r.Status != StatusOK }, func(i int, r PingResult) {
		report.Results[i] = r
		if r.Status != StatusOK {
			report.OK = false
		}
		if req.OnResult != nil {
			req.OnResult(i, r)
		}
	}, req.OnBatch, nil)
	if plan.batched() {
		report.Batches = &batches
	}
	return report, nil
}

func (e *Engine) pingOne(ctx context.Context, reqid string, t Target, port int) PingResult {
	r, _ := e.pingNote(ctx, reqid, t, port)
	return r
}

// pingNote is pingOne, also returning what happened to the agent's
// certificate after the contact (renew.go).
func (e *Engine) pingNote(ctx context.Context, reqid string, t Target, port int) (PingResult, contactNote) {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, e.hostDeadline(0))
	defer cancel()
	res := PingResult{Host: t.Arg, Status: StatusError}
	p, err := e.prepare(ctx, t, port)
	var resp *wire.PingResponse
	var peer wire.Peer
	var note contactNote
	if err == nil {
		resp, err = e.client.Ping(wire.WithPeer(ctx, &peer), p.target, wire.PingRequest{ReqID: reqid})
	}
	res.Duration = time.Since(start)
	res.RTT = FormatRTT(res.Duration)
	switch {
	case err != nil:
		res.Error = err.Error()
		e.logIdentity(reqid, t.Name, err)
	case resp.Status != StatusOK:
		res.Version, res.Expiry = resp.Version, resp.Expiry
		res.Error = "agent answered status " + quoteStatus(resp.Status)
	default:
		res.Status, res.Version, res.Expiry = StatusOK, resp.Version, resp.Expiry
		e.touch(p)
		note = e.afterContact(ctx, reqid, p, peer.Leaf())
		res.certNote(note, e.o.Now())
	}
	logResult(e.log, logging.ActionPing, reqid, t.Name, res.Status, res.Duration, res.Error)
	return res, note
}

// DiscoverRequest asks hosts what they can run. With no Hosts it asks
// every registered agent.
type DiscoverRequest struct {
	Hosts    []string
	Username string
	Token    string
	Port     int
	Parallel int
	OnResult func(i int, r DiscoverResult)
}

// DiscoverResult is one host's capabilities, the JSON shape of
// discover --json: the agent's version, tags and allowlisted scripts.
type DiscoverResult struct {
	Host     string            `json:"host"`
	Status   string            `json:"status"`
	RTT      string            `json:"rtt"`
	Version  string            `json:"version"`
	Tags     map[string]string `json:"tags"`
	Scripts  []wire.ScriptInfo `json:"scripts"`
	Error    string            `json:"error,omitempty"`
	Duration time.Duration     `json:"-"`
}

// DiscoverReport is the outcome of a discovery: OK when every host
// answered.
type DiscoverReport struct {
	OK      bool             `json:"ok"`
	Results []DiscoverResult `json:"results"`
}

// Discover asks every host of req for its capabilities (GET
// /capabilities), like Ping.
func (e *Engine) Discover(ctx context.Context, req DiscoverRequest) (*DiscoverReport, error) {
	hosts := req.Hosts
	if len(hosts) == 0 {
		agents, err := e.o.Registry.ListAgents()
		if err != nil {
			return nil, err
		}
		for _, a := range agents {
			hosts = append(hosts, a.Hostname)
		}
		if len(hosts) == 0 {
			return &DiscoverReport{OK: true, Results: []DiscoverResult{}}, nil
		}
	}
	targets, err := parseTargets(hosts, e.o.MaxHosts)
	if err != nil {
		return nil, err
	}
	if err := e.authorize(ctx, AuthRequest{Action: logging.ActionDiscover, Hosts: hosts, Username: req.Username, Token: req.Token}); err != nil {
		return nil, err
	}
	if err := e.loadRevoked(); err != nil {
		return nil, err
	}
	reqid := NewReqID()
	results, ok := collect(ctx, len(targets), e.parallel(req.Parallel), func(ctx context.Context, i int) DiscoverResult {
		return e.discoverOne(ctx, reqid, targets[i], req.Port)
	}, func(r DiscoverResult) bool { return r.Status == StatusOK }, req.OnResult)
	return &DiscoverReport{OK: ok, Results: results}, nil
}

func (e *Engine) discoverOne(ctx context.Context, reqid string, t Target, port int) DiscoverResult {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, e.hostDeadline(0))
	defer cancel()
	res := DiscoverResult{Host: t.Arg, Status: StatusError, Tags: map[string]string{}, Scripts: []wire.ScriptInfo{}}
	p, err := e.prepare(ctx, t, port)
	var resp *wire.CapabilitiesResponse
	var peer wire.Peer
	if err == nil {
		resp, err = e.client.Capabilities(wire.WithPeer(ctx, &peer), p.target)
	}
	res.Duration = time.Since(start)
	res.RTT = FormatRTT(res.Duration)
	if err != nil {
		res.Error = err.Error()
		e.logIdentity(reqid, t.Name, err)
	} else {
		res.Status, res.Version = StatusOK, resp.Version
		if resp.Tags != nil {
			res.Tags = resp.Tags
		}
		if resp.Scripts != nil {
			res.Scripts = resp.Scripts
		}
		if resp.Status != StatusOK {
			res.Status, res.Error = StatusError, "agent answered status "+quoteStatus(resp.Status)
		} else {
			e.touch(p)
			e.afterContact(ctx, reqid, p, peer.Leaf())
			if p.registered && !sameTags(p.tags, res.Tags) {
				e.refreshTags(reqid, t.Name, res.Tags)
			}
		}
	}
	logResult(e.log, logging.ActionDiscover, reqid, t.Name, res.Status, res.Duration, res.Error)
	return res
}

// sameTags reports whether two tag sets are equal, nil and empty alike.
func sameTags(a, b map[string]string) bool {
	return maps.Equal(a, b) || len(a) == 0 && len(b) == 0
}

// refreshTags makes host's registry record hold the tags the agent
// published, when they differ (Discover calls it only when the record it
// planned with held others, so an unchanged fleet costs no extra read). Tags that agent.conf could not have held
// (config.CheckTags: bad names, long or unprintable values, too many) are
// not stored.
// Failures are logged and change no result.
func (e *Engine) refreshTags(reqid, host string, tags map[string]string) {
	a, err := e.o.Registry.GetAgent(host)
	if err != nil || sameTags(a.Tags, tags) {
		return
	}
	fields := []zap.Field{zap.String("reqid", reqid), zap.String("host", host), zap.Any("tags", tags), zap.Any("old", a.Tags)}
	if err := config.CheckTags(tags); err != nil {
		logging.EventLevel(e.log, zapcore.WarnLevel, logging.ActionTagsUpdate, append(fields, zap.Error(err))...)
		return
	}
	a.Tags = maps.Clone(tags)
	if err := e.o.Registry.PutAgent(a); err != nil {
		logging.EventLevel(e.log, zapcore.WarnLevel, logging.ActionTagsUpdate, append(fields, zap.Error(err))...)
		return
	}
	logging.Event(e.log, logging.ActionTagsUpdate, fields...)
}

func logResult(log *zap.Logger, action, reqid, host, status string, rtt time.Duration, errText string) {
	fields := []zap.Field{zap.String("reqid", reqid), zap.String("host", host), zap.String("status", status),
		zap.Duration("rtt", rtt.Round(time.Millisecond))}
	lvl := zapcore.InfoLevel
	if errText != "" {
		lvl = zapcore.WarnLevel
		fields = append(fields, zap.String("error", errText))
	}
	logging.EventLevel(log, lvl, action, fields...)
}

// quoteStatus shows a status an agent sent, cut short.
func quoteStatus(s string) string {
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	return strconv.Quote(s)
}
