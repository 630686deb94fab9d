package control

import (
	"context"
	"crypto"
	"crypto/x509"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// Options configure an Engine. Timeouts and widths come from
// dispatcher.conf; zero values take the SPEC §2 defaults.
type Options struct {
	Identity       Identity
	ConnectTimeout time.Duration // TCP connect + TLS handshake, and name resolution (10s)
	ReadTimeout    time.Duration // from connection to answer, plus the script timeout for run (60s)
	Parallel       int           // hosts in flight at once (256)
	MaxHosts       int           // hosts per call (10000)
	RunRetention   time.Duration // stored runs older than this are pruned after a run (24h; <0: never)

	Registry store.Registry
	Runs     store.Runs
	Locks    store.Locks
	// Revocations, when set, lists agent certificate serials the engine
	// refuses (unpaired or replaced agents). It is read at the start of
	// every run, ping and discovery. When it is also a
	// store.DispatcherRevocations, that list is pushed to agents on
	// contact; when Registry is also a store.Rotations, a rotated
	// dispatcher serial is too (renew.go).
	Revocations store.Revocations

	// CA (ca and ca_key of dispatcher.conf) signs renewed agent
	// certificates, valid CertDays days (cert_days, 365); renewal is due
	// below half of CertDays. The CA is read the first time a renewal is
	// due. Without CA.Cert agents are not renewed.
	CA       Pair
	CertDays int

	// Authorize is called before any lock is taken or any agent contacted,
	// for run, ping and discover. A non-nil error refuses the whole call
	// and is returned as it is. Nil allows everything: the auth hook plugs
	// in here.
	Authorize func(ctx context.Context, a AuthRequest) error

	// Resolve reports whether an agent's name resolves (nil: the system
	// resolver, bounded by ConnectTimeout). A name that does not resolve is
	// dialled at the registry's ip.
	Resolve func(ctx context.Context, name string) error
	// PreferRegistry dials a registered agent at the registry's ip without
	// a lookup (resolve = "registry"); names are looked up only for hosts
	// the registry has no address for.
	PreferRegistry bool
	Now            func() time.Time
	Log            *zap.Logger
}

// AuthRequest is what a call asks for, as the auth hook will see it.
type AuthRequest struct {
	Action   string // "run", "ping" or "discover"
	Script   string
	Hosts    []string
	Args     []string
	Username string
	Token    string
}

// Engine fans requests out to agents. It holds one wire.Client (one
// connection pool and TLS session cache) for the process; make one per
// process and Close it at exit. It is safe for concurrent use.
type Engine struct {
	o      Options
	client *wire.Client
	log    *zap.Logger
	pins   sync.Map // agent name → normalised key fingerprint pinned in the registry
	// firstUse holds the names of registered agents whose record pins no
	// key (records of the Perl dispatcher): their legacy certificate is
	// accepted on chain and name, and its key pinned at that first contact
	// (pinFirstUse).
	firstUse sync.Map

	revoked atomic.Pointer[pki.SerialSet] // as last read from Options.Revocations
	life    lifecycle                     // renewal and pushes (renew.go)
	dns     resolveCache                  // name lookups shared by concurrent requests (targets.go)

	lastPrune atomic.Int64 // Options.Now of the last prune of stored runs, unix ns (run.go)
}

// Defaults of Options.
const (
	defaultConnectTimeout = 10 * time.Second
	defaultReadTimeout    = 60 * time.Second
	defaultParallel       = 256
	defaultMaxHosts       = 10000
	defaultRunRetention   = 24 * time.Hour
)

// New returns an Engine for o. Registry, Runs and Locks are required, and
// so is an identity with a CA.
func New(o Options) (*Engine, error) {
	if o.Registry == nil || o.Runs == nil || o.Locks == nil {
		return nil, errors.New("control: engine needs a registry, a run store and locks")
	}
	if o.Identity.Roots == nil || len(o.Identity.Cert.Certificate) == 0 {
		return nil, errors.New("control: engine needs the dispatcher certificate and the ca")
	}
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = defaultConnectTimeout
	}
	if o.ReadTimeout <= 0 {
		o.ReadTimeout = defaultReadTimeout
	}
	if o.Parallel <= 0 {
		o.Parallel = defaultParallel
	}
	if o.MaxHosts <= 0 {
		o.MaxHosts = defaultMaxHosts
	}
	if o.RunRetention == 0 {
		o.RunRetention = defaultRunRetention
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Log == nil {
		o.Log = zap.NewNop()
	}
	e := &Engine{o: o, log: o.Log}
	e.client = wire.NewClient(wire.ClientConfig{
		Cert:           o.Identity.Cert,
		Roots:          o.Identity.Roots,
		ConnectTimeout: o.ConnectTimeout,
		ReadTimeout:    o.ReadTimeout,
		VerifyPeer:     e.verifyPeer,
		Log:            o.Log,
	})
	return e, nil
}

// Close closes idle connections to agents.
func (e *Engine) Close() { e.client.Close() }

// verifyPeer is the identity check of every handshake, resumed ones
// included (SPEC §4): a serial that is not revoked, chain to the CA,
// serverAuth, agent role, a DNS SAN equal to the name dialled, and — when
// the registry pins one — the agent's public key.
func (e *Engine) verifyPeer(host string, chain []*x509.Certificate) error {
	if set := e.revoked.Load(); set != nil && len(chain) > 0 && chain[0] != nil && set.Contains(chain[0].SerialNumber) {
		return &pki.IdentityError{Kind: pki.IdentityUntrusted, Err: ErrRevoked,
			Reason: fmt.Sprintf("certificate serial %s is revoked (the agent was unpaired, re-paired or revoked); pair %s again to use it", pki.FormatSerial(chain[0].SerialNumber), host)}
	}
	var pinned crypto.PublicKey
	if v, ok := e.pins.Load(host); ok && len(chain) > 0 && chain[0] != nil {
		pin := v.(string)
		fp, err := pki.Fingerprint(chain[0].PublicKey)
		if err != nil || fp != pin {
			return &pki.IdentityError{Kind: pki.IdentityKeyMismatch,
				Reason: fmt.Sprintf("public key %s does not match the key pinned for %s in the registry (%s); if the agent was re-paired, pair it again here", fp, host, pin)}
		}
		pinned = chain[0].PublicKey
	} else if _, ok := e.firstUse.Load(host); ok && len(chain) > 0 && chain[0] != nil && pki.CertRole(chain[0]) == pki.RoleNone {
		// A Perl-paired agent met for the first time: chain and name
		// decide, as for the Perl dispatcher; afterContact pins its key.
		pinned = chain[0].PublicKey
	}
	return adviseRepair(pki.VerifyAgent(chain, e.o.Identity.Roots, host, pinned, e.o.Now()), chain, e.o.Now())
}

// loadRevoked reads the revocation list for the call about to start. A
// list that cannot be read stops the call: contacting agents without it
// could reach a revoked one. Lines that do not parse are logged.
func (e *Engine) loadRevoked() error {
	if e.o.Revocations == nil {
		return nil
	}
	set, warnings, err := e.o.Revocations.RevokedSerials()
	if err != nil {
		return fmt.Errorf("revoked serials: %w; fix or remove the file so agents can be checked against it", err)
	}
	for _, w := range warnings {
		logging.EventLevel(e.log, zapcore.WarnLevel, logging.ActionConfigWarn, zap.String("file", "revoked-serials"), zap.Error(w))
	}
	if old := e.revoked.Swap(&set); old != nil && !sameSerials(*old, set) {
		// Kept-alive connections were checked against the old list in
		// their handshake: drop them so that none reaches a revoked agent.
		e.client.Close()
	}
	e.loadPushes()
	return nil
}

// parallel returns the fan-out width for a call asking for p.
func (e *Engine) parallel(p int) int {
	if p > 0 {
		return p
	}
	return e.o.Parallel
}

// hostDeadline bounds one host of a call, as a backstop to the client's own
// connect and read timeouts: resolution, connection, and the answer.
func (e *Engine) hostDeadline(extra time.Duration) time.Duration {
	return 2*e.o.ConnectTimeout + e.o.ReadTimeout + extra + time.Second
}

// prepare plans how to reach t and records its pin for verifyPeer.
func (e *Engine) prepare(ctx context.Context, t Target, flagPort int) (dialPlan, error) {
	p, err := e.plan(ctx, t, flagPort)
	if err != nil {
		return p, err
	}
	if p.pin != "" {
		e.pins.Store(t.Name, p.pin)
	} else {
		e.pins.Delete(t.Name)
	}
	if p.registered && p.pin == "" {
		e.firstUse.Store(t.Name, true)
	} else {
		e.firstUse.Delete(t.Name)
	}
	return p, nil
}

// contactRecorder is a registry that keeps contact times apart from the
// records (store.Files.RecordContact), so noting one costs no rewrite.
type contactRecorder interface {
	RecordContact(host string, at time.Time) error
}

// touch records a successful contact, for registered agents only: through
// RecordContact when the registry has it, else in the record itself, at
// most once a minute per agent.
func (e *Engine) touch(p dialPlan) {
	if !p.registered {
		return
	}
	if cr, ok := e.o.Registry.(contactRecorder); ok {
		if err := cr.RecordContact(p.target.Host, e.o.Now().UTC()); err != nil {
			e.log.Debug("record last contact", zap.String("host", p.target.Host), zap.Error(err))
		}
		return
	}
	a, err := e.o.Registry.GetAgent(p.target.Host)
	if err != nil {
		return
	}
	now := e.o.Now().UTC().Truncate(time.Second)
	if now.Sub(a.LastContact) < time.Minute {
		return
	}
	a.LastContact = now
	if err := e.o.Registry.PutAgent(a); err != nil {
		// Best effort: an operator without write access to the registry
		// still runs scripts.
		e.log.Debug("record last contact", zap.String("host", a.Hostname), zap.Error(err))
	}
}

// logIdentity logs a serial-reject event when err says the agent failed
// the identity checks (SPEC §4).
func (e *Engine) logIdentity(reqid, host string, err error) {
	var ie *pki.IdentityError
	if errors.As(err, &ie) {
		logging.EventLevel(e.log, zapcore.WarnLevel, logging.ActionSerialReject, zap.String("reqid", reqid),
			zap.String("host", host), zap.String("check", ie.Kind.String()), zap.String("reason", ie.Reason))
	}
}

// authorize runs Options.Authorize.
func (e *Engine) authorize(ctx context.Context, a AuthRequest) error {
	if e.o.Authorize == nil {
		return nil
	}
	return e.o.Authorize(ctx, a)
}

// FormatRTT writes a round-trip time as results carry it: whole
// milliseconds, "12ms".
func FormatRTT(d time.Duration) string {
	return fmt.Sprintf("%dms", d.Milliseconds())
}
