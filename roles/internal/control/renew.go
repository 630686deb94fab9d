package control

import (
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
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

// ExpiryWarnDays: ping and list-agents flag an agent certificate with
// fewer days than this left.
const ExpiryWarnDays = 30

// renewalRetry is how long after a 404 on /renew (an agent too old to
// renew: the Perl agent) renewal and pushes are not tried again.
const renewalRetry = 24 * time.Hour

// RenewalUnsupported is the registry note of an agent that answered 404
// to /renew.
const RenewalUnsupported = "renewal not supported by this agent version"

// Status values of renewal results (with StatusError).
const (
	RenewRenewed     = "renewed"
	RenewNotDue      = "not-due"
	RenewUnsupported = "unsupported"
)

// errRenewalUnsupported is the renewal error of an agent that answered 404.
var errRenewalUnsupported = errors.New(RenewalUnsupported)

// lifecycle is the Engine's certificate lifecycle state for the process.
type lifecycle struct {
	caOnce sync.Once
	ca     *pki.CA
	caErr  error

	// renewed holds, per agent name, the certificate this process
	// installed: a pooled connection or a resumed session still shows
	// the agent's previous one.
	renewed sync.Map
	// pushes is what agents are told on contact, as read at the start of
	// the current call.
	pushes atomic.Pointer[pushState]
}

// pushState is what the dispatcher pushes to agents it contacts.
type pushState struct {
	revoked  []string        // revoked dispatcher serials, lowercase hex, sorted
	digest   string          // of revoked; recorded per agent once accepted
	rotation *store.Rotation // the last rotate-cert; nil when there was none
}

// signingCA loads the CA once per process, the first time a renewal needs
// it.
func (e *Engine) signingCA() (*pki.CA, error) {
	e.life.caOnce.Do(func() {
		if e.o.CA.Cert == "" {
			e.life.caErr = errors.New("no ca configured to sign renewals")
			return
		}
		e.life.ca, e.life.caErr = LoadCA(e.o.CA)
	})
	return e.life.ca, e.life.caErr
}

func (e *Engine) certDays() int {
	if e.o.CertDays > 0 {
		return e.o.CertDays
	}
	return defaultCertDays
}

// loadPushes reads, for the call about to start, the dispatcher
// revocation list (when Options.Revocations is also a
// store.DispatcherRevocations) and the rotation state (when
// Options.Registry is also a store.Rotations). What cannot be read is
// logged and not pushed: the call goes on.
func (e *Engine) loadPushes() {
	var ps pushState
	if dr, ok := e.o.Revocations.(store.DispatcherRevocations); ok {
		set, warnings, err := dr.RevokedDispatcherSerials()
		for _, w := range warnings {
			logging.EventLevel(e.log, zapcore.WarnLevel, logging.ActionConfigWarn, zap.String("file", "revoked-dispatcher-serials"), zap.Error(w))
		}
		if err != nil {
			logging.EventLevel(e.log, zapcore.ErrorLevel, logging.ActionRevoke, zap.String("reason", "dispatcher revocations not pushed"), zap.Error(err))
		}
		h := sha256.New()
		for _, n := range set.Values() {
			s := pki.FormatSerial(n)
			ps.revoked = append(ps.revoked, s)
			h.Write([]byte(s + "\n"))
		}
		if len(ps.revoked) > 0 {
			ps.digest = "sha256:" + hex.EncodeToString(h.Sum(nil))[:32]
		}
	}
	if rs, ok := e.o.Registry.(store.Rotations); ok {
		r, err := rs.GetRotation()
		switch {
		case err == nil:
			ps.rotation = &r
		case !errors.Is(err, store.ErrNotFound):
			logging.EventLevel(e.log, zapcore.ErrorLevel, logging.ActionRotateCert, zap.String("reason", "rotation state unreadable; new serial not pushed"), zap.Error(err))
		}
	}
	e.life.pushes.Store(&ps)
}

// sameSerials reports whether a and b hold the same serials.
func sameSerials(a, b pki.SerialSet) bool {
	if a.Len() != b.Len() {
		return false
	}
	for _, n := range a.Values() {
		if !b.Contains(n) {
			return false
		}
	}
	return true
}

// ownSerial is the serial of the certificate this dispatcher presents.
func (e *Engine) ownSerial() string {
	leaf := e.o.Identity.Cert.Leaf
	if leaf == nil && len(e.o.Identity.Cert.Certificate) > 0 {
		leaf, _ = x509.ParseCertificate(e.o.Identity.Cert.Certificate[0])
	}
	if leaf == nil {
		return ""
	}
	return pki.FormatSerial(leaf.SerialNumber)
}

// adviseRepair completes the identity error of an agent whose certificate
// has expired: the dispatcher no longer talks to it, so it cannot be
// renewed, only paired again.
func adviseRepair(err error, chain []*x509.Certificate, now time.Time) error {
	var ie *pki.IdentityError
	if !errors.As(err, &ie) || ie.Kind != pki.IdentityExpired || len(chain) == 0 || chain[0] == nil || !now.After(chain[0].NotAfter) {
		return err
	}
	cp := *ie
	cp.Reason += "; re-pair this agent (dispatcher-agent request-pairing)"
	return &cp
}

// contactNote is what happened to an agent's certificate after a
// successful contact.
type contactNote struct {
	leaf        *x509.Certificate // the certificate the agent presented
	renewed     *x509.Certificate // installed on this contact
	renewErr    error
	unsupported bool // the agent cannot renew (404)
}

// lifeContext bounds the lifecycle work after a contact by d on its own:
// the host's deadline (spent on a long run, perhaps) does not cut it short,
// but cancelling the call does.
func lifeContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	stop := context.AfterFunc(ctx, func() {
		if errors.Is(ctx.Err(), context.Canceled) {
			cancel()
		}
	})
	return lctx, func() { stop(); cancel() }
}

// afterContact runs after every successful run, ping or discovery of a
// registered agent, on the same client (the kept-alive connection): it
// renews the agent's certificate when it is due, pushes the dispatcher
// revocation list when the agent has not accepted it yet, and pushes this
// dispatcher's serial after a rotation. Failures are logged and never
// change the caller's result.
func (e *Engine) afterContact(ctx context.Context, reqid string, p dialPlan, leaf *x509.Certificate) contactNote {
	n := contactNote{leaf: leaf}
	if !p.registered || leaf == nil {
		return n
	}
	if p.pin == "" && pki.CertRole(leaf) == pki.RoleNone {
		p.pin = e.pinFirstUse(reqid, p.target.Host, leaf)
	}
	due := e.o.CA.Cert != "" && e.due(p.target.Host, leaf)
	ps := e.life.pushes.Load()
	if !due && (ps == nil || len(ps.revoked) == 0 && (ps.rotation == nil || ps.rotation.CurrentSerial != e.ownSerial())) {
		return n // the common case: nothing to do, nothing read
	}
	a, err := e.o.Registry.GetAgent(p.target.Host)
	if err != nil {
		return n
	}
	ctx, cancel := lifeContext(ctx, e.o.ConnectTimeout+e.o.ReadTimeout)
	defer cancel()
	capable := !recently(a.ExtraTime(store.FieldRenewalUnsupported), e.o.Now(), renewalRetry)
	if capable && due {
		r, err := e.renewOne(ctx, reqid, p, leaf)
		n.renewed, n.renewErr = r.cert, err
		if errors.Is(err, errRenewalUnsupported) {
			n.unsupported, capable = true, false
		}
	}
	if ps != nil && capable {
		e.pushRevocations(ctx, reqid, p, a, ps)
	}
	if ps != nil {
		e.pushSerial(ctx, reqid, p, a, ps, capable)
	}
	return n
}

func recently(t, now time.Time, d time.Duration) bool {
	return !t.IsZero() && now.Sub(t) < d
}

// due reports whether the agent's certificate needs renewal
// (pki.NeedsRenewal against cert_days), counting a certificate this
// process installed since leaf was presented.
func (e *Engine) due(host string, leaf *x509.Certificate) bool {
	if v, ok := e.life.renewed.Load(host); ok {
		if c := v.(*x509.Certificate); c.NotAfter.After(leaf.NotAfter) && pki.PublicKeysEqual(c.PublicKey, leaf.PublicKey) {
			leaf = c
		}
	}
	return pki.NeedsRenewal(leaf, e.certDays(), e.o.Now())
}

// renewal is the outcome of renewOne.
type renewal struct {
	old  *x509.Certificate // the certificate the agent had
	cert *x509.Certificate // the one it has now; nil when renewal failed
}

// renewOne renews the certificate of the agent of p: it asks the agent for
// a certificate request (POST /renew), checks that it is for the pinned key
// (the registry's key_fingerprint, or without one the key of the
// certificate the agent presents) and asks for nothing but the agent's host
// name, signs it with the CA for cert_days, delivers it (POST
// /renew-complete) and records the new serial and expiry in the registry.
// leaf is the certificate the agent presented on the contact, if known.
// Every failure is logged at error level (ACTION=renew); a 404 (an agent
// too old to renew) is recorded in the registry instead and returns
// errRenewalUnsupported.
func (e *Engine) renewOne(ctx context.Context, reqid string, p dialPlan, leaf *x509.Certificate) (renewal, error) {
	host := p.target.Host
	out := renewal{old: leaf}
	fail := func(err error) (renewal, error) {
		fields := []zap.Field{zap.String("reqid", reqid), zap.String("host", host), zap.String("status", StatusError), zap.Error(err)}
		if out.old != nil {
			fields = append(fields, zap.String("serial", pki.FormatSerial(out.old.SerialNumber)))
		}
		logging.EventLevel(e.log, zapcore.ErrorLevel, logging.ActionRenew, fields...)
		return out, err
	}
	var peer wire.Peer
	resp, err := e.client.Renew(wire.WithPeer(ctx, &peer), p.target, wire.RenewRequest{ReqID: reqid})
	if l := peer.Leaf(); l != nil {
		out.old = l // the connection the request travelled on
	}
	if errors.Is(err, wire.ErrNotFound) {
		e.recordUnsupported(reqid, host)
		return out, errRenewalUnsupported
	}
	if err != nil {
		return fail(fmt.Errorf("ask for a certificate request: %w", err))
	}
	csr, err := pki.ParseCSR([]byte(resp.CSR))
	if err != nil {
		return fail(fmt.Errorf("the agent's certificate request: %w", err))
	}
	if err := checkRenewalCSR(csr, host, p.pin, out.old); err != nil {
		return fail(err)
	}
	ca, err := e.signingCA()
	if err != nil {
		return fail(err)
	}
	cert, err := ca.SignAgentCSR(pki.Options{Now: e.o.Now}, csr, host, e.certDays())
	if err != nil {
		return fail(err)
	}
	if _, err := e.client.RenewComplete(ctx, p.target, wire.RenewCompleteRequest{Cert: string(pki.CertPEM(cert)),
		CA: string(pki.CertPEM(ca.Cert)), ReqID: reqid}); err != nil {
		return fail(fmt.Errorf("deliver the new certificate (serial %s): %w", pki.FormatSerial(cert.SerialNumber), err))
	}
	out.cert = cert
	e.life.renewed.Store(host, cert)
	fields := []zap.Field{zap.String("reqid", reqid), zap.String("host", host), zap.String("status", RenewRenewed),
		zap.String("serial", pki.FormatSerial(cert.SerialNumber)), zap.String("expiry", pki.FormatOpenSSLTime(cert.NotAfter))}
	if out.old != nil {
		fields = append(fields, zap.String("old_serial", pki.FormatSerial(out.old.SerialNumber)))
	}
	if err := e.recordRenewal(host, cert); err != nil {
		// The agent serves the new certificate; only the registry lags.
		logging.EventLevel(e.log, zapcore.ErrorLevel, logging.ActionRenew, append(fields, zap.Error(err))...)
		return out, nil
	}
	logging.Event(e.log, logging.ActionRenew, fields...)
	return out, nil
}

// checkRenewalCSR refuses a renewal request for another key than the
// pinned one (pin, a normalised fingerprint; without a pin, the key of
// leaf) and one that asks for more than the agent's host name. Only the
// public key of the request is used (SignAgentCSR), so the second check
// only catches an agent that is not what it seems.
func checkRenewalCSR(csr *x509.CertificateRequest, host, pin string, leaf *x509.Certificate) error {
	fp, err := pki.Fingerprint(csr.PublicKey)
	if err != nil {
		return fmt.Errorf("certificate request: %w", err)
	}
	switch {
	case pin != "":
		if fp != pin {
			return fmt.Errorf("certificate request refused: it is for key %s, not the key pinned for %s (%s)", fp, host, pin)
		}
	case leaf != nil:
		if !pki.PublicKeysEqual(csr.PublicKey, leaf.PublicKey) {
			return fmt.Errorf("certificate request refused: it is for key %s, not the key of the agent's certificate", fp)
		}
	default:
		return errors.New("certificate request refused: no pinned key to check it against")
	}
	if cn := csr.Subject.CommonName; cn != "" && !strings.EqualFold(cn, host) {
		return fmt.Errorf("certificate request refused: it asks for the name %q, not %s", cn, host)
	}
	for _, n := range csr.DNSNames {
		if !strings.EqualFold(n, host) {
			return fmt.Errorf("certificate request refused: it asks for the name %q, not %s", n, host)
		}
	}
	if len(csr.IPAddresses)+len(csr.URIs)+len(csr.EmailAddresses) > 0 {
		return errors.New("certificate request refused: it asks for IP, URI or e-mail names")
	}
	for _, ext := range csr.Extensions {
		if !ext.Id.Equal(oidSubjectAltName) {
			return fmt.Errorf("certificate request refused: it asks for extension %s", ext.Id)
		}
	}
	return nil
}

// oidSubjectAltName is the one extension a renewal request may carry.
var oidSubjectAltName = asn1.ObjectIdentifier{2, 5, 29, 17}

// recordRenewal writes the renewed certificate's serial and expiry, the
// renewal time and (when none was pinned yet) its key to the registry.
func (e *Engine) recordRenewal(host string, cert *x509.Certificate) error {
	return e.updateAgent(host, func(a *store.Agent) error {
		a.Serial = pki.FormatSerial(cert.SerialNumber)
		a.Expiry = pki.FormatOpenSSLTime(cert.NotAfter)
		a.SetExtraTime(store.FieldLastRenewal, e.o.Now())
		a.SetExtraString(store.FieldRenewalUnsupported, "")
		if a.KeyFingerprint == "" {
			fp, err := pki.Fingerprint(cert.PublicKey)
			if err != nil {
				return err
			}
			a.KeyFingerprint = fp
		}
		return nil
	})
}

// errPinned: the record pins a key already; nothing to write.
var errPinned = errors.New("key pinned already")

// pinFirstUse pins, in the registry record of host, which has none (a
// record of the Perl dispatcher), the key of the legacy certificate host
// was just accepted with on chain and name (verifyPeer): from this contact
// on only that key is accepted for it (SPEC §4). It returns the pin, or ""
// when it could not be written (logged; tried again at the next contact).
func (e *Engine) pinFirstUse(reqid, host string, leaf *x509.Certificate) string {
	fp, err := pki.Fingerprint(leaf.PublicKey)
	if err == nil {
		err = e.updateAgent(host, func(a *store.Agent) error {
			if a.KeyFingerprint != "" {
				return errPinned
			}
			a.KeyFingerprint = fp
			return nil
		})
	}
	fields := []zap.Field{zap.String("reqid", reqid), zap.String("host", host), zap.String("key_fingerprint", fp),
		zap.String("serial", pki.FormatSerial(leaf.SerialNumber))}
	switch {
	case errors.Is(err, errPinned):
		return "" // by another process meanwhile: the next call reads it
	case err != nil:
		logging.EventLevel(e.log, zapcore.ErrorLevel, logging.ActionKeyPin, append(fields, zap.Error(err))...)
		return ""
	}
	e.pins.Store(host, fp)
	e.firstUse.Delete(host)
	logging.Event(e.log, logging.ActionKeyPin, fields...)
	return fp
}

// recordUnsupported notes in the registry that the agent cannot renew.
func (e *Engine) recordUnsupported(reqid, host string) {
	err := e.updateAgent(host, func(a *store.Agent) error {
		a.SetExtraTime(store.FieldRenewalUnsupported, e.o.Now())
		return nil
	})
	fields := []zap.Field{zap.String("reqid", reqid), zap.String("host", host), zap.String("status", RenewUnsupported),
		zap.String("reason", RenewalUnsupported+" (404 on POST /renew); tried again in a day")}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	logging.EventLevel(e.log, zapcore.WarnLevel, logging.ActionRenew, fields...)
}

// updateAgent reads the record of host, lets change modify it and writes
// it back.
func (e *Engine) updateAgent(host string, change func(a *store.Agent) error) error {
	a, err := e.o.Registry.GetAgent(host)
	if err != nil {
		return err
	}
	if err := change(&a); err != nil {
		return err
	}
	if err := e.o.Registry.PutAgent(a); err != nil {
		return fmt.Errorf("update the registry record of %s: %w", host, err)
	}
	return nil
}

// RenewedCert is a certificate installed on an agent: its serial and end
// of validity (OpenSSL text form).
type RenewedCert struct {
	Serial string `json:"serial"`
	Expiry string `json:"expiry"`
}

// certNote fills in what a ping result says about the agent's certificate.
func (r *PingResult) certNote(n contactNote, now time.Time) {
	if n.leaf == nil {
		return
	}
	r.Serial = pki.FormatSerial(n.leaf.SerialNumber)
	days := DaysLeft(n.leaf.NotAfter, now)
	r.ExpiresInDays = &days
	if n.renewed != nil {
		r.Renewed = &RenewedCert{Serial: pki.FormatSerial(n.renewed.SerialNumber), Expiry: pki.FormatOpenSSLTime(n.renewed.NotAfter)}
		return
	}
	r.ExpiryWarning = days < ExpiryWarnDays
}

// DaysLeft is the number of whole days from now to notAfter (negative once
// it has passed).
func DaysLeft(notAfter, now time.Time) int {
	d := notAfter.Sub(now)
	days := int(d / (24 * time.Hour))
	if d < 0 && d%(24*time.Hour) != 0 {
		days-- // floor
	}
	return days
}

// RenewRequest renews the certificates of agents now, whether due or not
// (dispatcher renew).
type RenewRequest struct {
	Hosts    []string // registered agents, "name" or "name:port"
	Port     int
	Parallel int
	OnResult func(i int, r RenewResult)
}

// RenewResult is one agent's renewal, the JSON shape of renew --json.
// Status is RenewRenewed, RenewNotDue, RenewUnsupported or StatusError.
type RenewResult struct {
	Host      string `json:"host"`
	Status    string `json:"status"`
	OldSerial string `json:"old_serial,omitempty"`
	Serial    string `json:"serial,omitempty"` // the new certificate's
	Expiry    string `json:"expiry,omitempty"` // the new certificate's, OpenSSL text form
	RTT       string `json:"rtt"`
	Error     string `json:"error,omitempty"`
}

// RenewReport is the outcome of Renew or RenewDue: OK when no agent
// failed.
type RenewReport struct {
	OK      bool          `json:"ok"`
	Results []RenewResult `json:"results"`
}

// Renew renews the certificate of every host of req now, ignoring the
// half-life rule, at most Parallel at a time; results come back in the
// order of req.Hosts. Only registered agents are renewed. The CA is loaded
// first: a missing or unreadable CA is the error, and nothing is done. A
// host that fails is a result with status "error" (and an error line in
// the log); one that answers 404 has status "unsupported".
func (e *Engine) Renew(ctx context.Context, req RenewRequest) (*RenewReport, error) {
	targets, err := parseTargets(req.Hosts, e.o.MaxHosts)
	if err != nil {
		return nil, err
	}
	if _, err := e.signingCA(); err != nil {
		return nil, err
	}
	if err := e.loadRevoked(); err != nil {
		return nil, err
	}
	reqid := NewReqID()
	results, ok := collect(ctx, len(targets), e.parallel(req.Parallel), func(ctx context.Context, i int) RenewResult {
		return e.renewForced(ctx, reqid, targets[i], req.Port)
	}, renewOK, req.OnResult)
	return &RenewReport{OK: ok, Results: results}, nil
}

func (e *Engine) renewForced(ctx context.Context, reqid string, t Target, port int) RenewResult {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 2*e.hostDeadline(0))
	defer cancel()
	res := RenewResult{Host: t.Arg, Status: StatusError}
	p, err := e.prepare(ctx, t, port)
	if err == nil && !p.registered {
		err = fmt.Errorf("%s is not registered: only paired agents are renewed (see dispatcher list-agents)", t.Name)
		logging.EventLevel(e.log, zapcore.ErrorLevel, logging.ActionRenew, zap.String("reqid", reqid), zap.String("host", t.Name), zap.String("status", StatusError), zap.Error(err))
	}
	var r renewal
	if err == nil {
		r, err = e.renewOne(ctx, reqid, p, nil)
		e.logIdentity(reqid, t.Name, err)
	}
	if r.old != nil {
		res.OldSerial = pki.FormatSerial(r.old.SerialNumber)
	}
	switch {
	case errors.Is(err, errRenewalUnsupported):
		res.Status, res.Error = RenewUnsupported, RenewalUnsupported
	case err != nil:
		res.Error = err.Error()
	default:
		res.Status, res.Serial, res.Expiry = RenewRenewed, pki.FormatSerial(r.cert.SerialNumber), pki.FormatOpenSSLTime(r.cert.NotAfter)
		e.touch(p)
	}
	res.RTT = FormatRTT(time.Since(start))
	return res
}

// RenewDue contacts every host (every registered agent when hosts is
// empty) with a ping, which renews the certificates that are due (less
// than half of cert_days left) and pushes revocations and a rotated serial,
// as every contact does. It is the API's scheduled sweep (SweepRenewals):
// agents nobody runs anything on are renewed too. It asks no auth hook.
// Results: RenewRenewed, RenewNotDue, RenewUnsupported or StatusError (the
// agent did not answer, or renewal failed).
func (e *Engine) RenewDue(ctx context.Context, hosts []string, parallel int) (*RenewReport, error) {
	if len(hosts) == 0 {
		agents, err := e.o.Registry.ListAgents()
		if err != nil {
			return nil, err
		}
		for _, a := range agents {
			hosts = append(hosts, a.Hostname)
		}
		if len(hosts) == 0 {
			return &RenewReport{OK: true, Results: []RenewResult{}}, nil
		}
	}
	targets, err := parseTargets(hosts, 0)
	if err != nil {
		return nil, err
	}
	if err := e.loadRevoked(); err != nil {
		return nil, err
	}
	reqid := NewReqID()
	results, ok := collect(ctx, len(targets), e.parallel(parallel), func(ctx context.Context, i int) RenewResult {
		pr, n := e.pingNote(ctx, reqid, targets[i], 0)
		res := RenewResult{Host: pr.Host, Status: RenewNotDue, RTT: pr.RTT, Serial: pr.Serial}
		switch {
		case pr.Status != StatusOK:
			res.Status, res.Error = StatusError, pr.Error
		case n.unsupported:
			res.Status, res.Error = RenewUnsupported, RenewalUnsupported
		case n.renewErr != nil:
			res.Status, res.Error = StatusError, n.renewErr.Error()
		case n.renewed != nil:
			res.Status, res.OldSerial = RenewRenewed, pr.Serial
			res.Serial, res.Expiry = pr.Renewed.Serial, pr.Renewed.Expiry
		}
		return res
	}, renewOK, nil)
	return &RenewReport{OK: ok, Results: results}, nil
}

// renewOK: a renewal result counts as a failure only on an error.
func renewOK(r RenewResult) bool { return r.Status != StatusError }

// SweepRenewals runs RenewDue over every registered agent every interval
// (renew_interval) until ctx ends, and returns then. Each wait is moved by
// a random amount of up to ±10% of interval, so that several API nodes do
// not sweep in step; the first sweep starts within the first 10%. An
// interval ≤ 0 (renew_interval = 0) returns at once. Each sweep is logged
// as one renew line with its counts (STATUS=sweep); each host's renewal,
// failure or push has its own lines. Run it in a goroutine of the API
// process, on the engine the API serves with (Options.CA and CertDays set).
func (e *Engine) SweepRenewals(ctx context.Context, interval time.Duration) {
	e.sweepEvery(ctx, interval, interval/10)
}

// sweepEvery is SweepRenewals with the jitter given (at most half the
// interval).
func (e *Engine) sweepEvery(ctx context.Context, interval, jitter time.Duration) {
	if interval <= 0 {
		return
	}
	jitter = min(max(jitter, 0), interval/2)
	wait := time.Duration(0)
	if jitter > 0 {
		wait = rand.N(jitter)
	}
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		e.sweepOnce(ctx)
		wait = interval
		if jitter > 0 {
			wait += rand.N(2*jitter) - jitter
		}
	}
}

func (e *Engine) sweepOnce(ctx context.Context) {
	report, err := e.RenewDue(ctx, nil, 0)
	if err != nil {
		logging.EventLevel(e.log, zapcore.ErrorLevel, logging.ActionRenew, zap.String("status", "sweep-failed"), zap.Error(err))
		return
	}
	count := map[string]int{}
	for _, r := range report.Results {
		count[r.Status]++
	}
	logging.Event(e.log, logging.ActionRenew, zap.String("status", "sweep"), zap.Int("agents", len(report.Results)),
		zap.Int("renewed", count[RenewRenewed]), zap.Int("failed", count[StatusError]), zap.Int("unsupported", count[RenewUnsupported]))
}

// AgentCert is what the registry says about an agent's certificate, for
// list-agents.
type AgentCert struct {
	ExpiresInDays *int      // whole days left; nil when the expiry is not recorded or unreadable
	Warning       bool      // fewer than ExpiryWarnDays days left
	Expired       bool      // past its expiry: the agent must be paired again
	Revoked       bool      // its serial is in revoked-serials
	LastRenewal   time.Time // zero when never renewed
	Note          string    // for the operator: expiry, revocation, renewal trouble
}

// DescribeAgentCert reads the certificate state of a registry record at
// now; revoked is the revocation list (revoked-serials).
func DescribeAgentCert(a store.Agent, revoked pki.SerialSet, now time.Time) AgentCert {
	var c AgentCert
	c.LastRenewal = a.ExtraTime(store.FieldLastRenewal)
	var notes []string
	if a.Serial != "" {
		if n, err := parseRecordSerial(a.Serial); err == nil && revoked.Contains(n) {
			c.Revoked = true
			notes = append(notes, "revoked")
		}
	}
	if exp, err := pki.ParseOpenSSLTime(a.Expiry); err == nil {
		days := DaysLeft(exp, now)
		c.ExpiresInDays = &days
		switch {
		case !now.Before(exp):
			c.Expired = true
			notes = append(notes, "EXPIRED: re-pair (dispatcher-agent request-pairing)")
		case days < ExpiryWarnDays:
			c.Warning = true
			notes = append(notes, fmt.Sprintf("WARN expires in %dd", days))
		}
	}
	if t := a.ExtraTime(store.FieldRenewalUnsupported); !t.IsZero() {
		notes = append(notes, RenewalUnsupported)
	}
	c.Note = strings.Join(notes, "; ")
	return c
}
