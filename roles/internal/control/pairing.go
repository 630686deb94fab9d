package control

import (
	"crypto/subtle"
	"crypto/x509"
	"errors"
	"fmt"
	"maps"
	"math/big"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// Limits of a pairing request's nonce, in hex digits.
const (
	MinNonceLen = 16
	MaxNonceLen = 128
)

// Defaults of PairingOptions (SPEC §2).
const (
	defaultCertDays       = 365
	defaultMaxQueue       = 10
	defaultPairingTimeout = 600 * time.Second
)

// PairingOptions configure a Pairing. Zero values take the SPEC §2
// defaults.
type PairingOptions struct {
	Queue       store.PairingQueue
	Registry    store.Registry
	Revocations store.Revocations

	CA       Pair          // ca and ca_key of dispatcher.conf, read when a request is approved
	CertDays int           // validity of agent certificates (cert_days, 365)
	MaxQueue int           // pending requests at most (pairing_max_queue, 10)
	Timeout  time.Duration // a request expires this long after it arrived (pairing_timeout, 600s)
	PKI      pki.Options   // clock and randomness of certificates and expiry
	Log      *zap.Logger
}

// Pairing is what the control host does with pairing requests and the
// agents they enrol: take requests in, approve or deny them, expire them,
// and unpair agents. It is shared by the pairing listener and the CLI, and
// safe for concurrent use (the store serialises decisions).
type Pairing struct {
	o   PairingOptions
	log *zap.Logger
}

// NewPairing returns a Pairing for o. Queue, Registry and Revocations are
// required.
func NewPairing(o PairingOptions) (*Pairing, error) {
	if o.Queue == nil || o.Registry == nil || o.Revocations == nil {
		return nil, errors.New("control: pairing needs a pairing queue, a registry and a revocation list")
	}
	if o.CertDays <= 0 {
		o.CertDays = defaultCertDays
	}
	if o.MaxQueue <= 0 {
		o.MaxQueue = defaultMaxQueue
	}
	if o.Timeout <= 0 {
		o.Timeout = defaultPairingTimeout
	}
	log := o.Log
	if log == nil {
		log = zap.NewNop()
	}
	return &Pairing{o: o, log: log}, nil
}

func (p *Pairing) now() time.Time { return now(p.o.PKI) }

// InvalidPairRequestError refuses a malformed pairing request (answered
// 400). Reason says what is wrong and may be shown to the agent.
type InvalidPairRequestError struct{ Reason string }

func (e *InvalidPairRequestError) Error() string { return e.Reason }

// AlreadyPairedError refuses to approve a request for a host name that is
// registered, unless the approval replaces it.
type AlreadyPairedError struct {
	Hostname string
	Serial   string // serial of the registered certificate; "" when not recorded
	ReqID    string
}

func (e *AlreadyPairedError) Error() string {
	if e.Serial == "" {
		return fmt.Sprintf("%s is already paired (no serial recorded); approve with --replace to re-pair it", e.Hostname)
	}
	return fmt.Sprintf("%s is already paired (serial %s); approve with --replace to re-pair it and revoke the old certificate", e.Hostname, e.Serial)
}

// ErrUnknownPairRequest answers a poll for a request id that is not queued
// or with the wrong nonce: the two look the same, so request ids cannot be
// probed.
var ErrUnknownPairRequest = errors.New("unknown pairing request")

// ErrRevoked is wrapped by the identity error of an agent whose
// certificate serial is in the revocation list.
var ErrRevoked = errors.New("certificate revoked")

// PendingRequest is a queued request as an operator sees it: the request,
// and whether its host name is registered already (approving it then
// needs replace).
type PendingRequest struct {
	store.PairRequest
	AlreadyPaired bool
	PairedSerial  string // serial of the registered certificate, when AlreadyPaired
}

// CheckPairRequest validates what an agent sent (SPEC §3.5): a valid DNS
// host name, a nonce of MinNonceLen to MaxNonceLen hex digits, a serving
// port 1-65535, tags as agent.conf's [tags] must be and at most
// config.MaxTags of them, and a PEM certificate request of at most 64 KiB
// whose signature verifies. Errors are *InvalidPairRequestError.
func CheckPairRequest(req wire.PairRequest) (*x509.CertificateRequest, error) {
	if err := pki.ValidHostname(req.Hostname); err != nil {
		return nil, &InvalidPairRequestError{Reason: err.Error()}
	}
	if err := checkNonce(req.Nonce); err != nil {
		return nil, err
	}
	if req.Port < 1 || req.Port > 65535 {
		return nil, &InvalidPairRequestError{Reason: fmt.Sprintf("port %d is out of range 1-65535", req.Port)}
	}
	if err := checkPairTags(req.Tags); err != nil {
		return nil, err
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil {
		return nil, &InvalidPairRequestError{Reason: err.Error()}
	}
	return csr, nil
}

// checkPairTags checks the tags a request carries as agent.conf's [tags]
// are checked, and at most config.MaxTags of them (config.CheckTags).
func checkPairTags(tags map[string]string) error {
	if err := config.CheckTags(tags); err != nil {
		return &InvalidPairRequestError{Reason: err.Error()}
	}
	return nil
}

func checkNonce(n string) error {
	if len(n) < MinNonceLen || len(n) > MaxNonceLen {
		return &InvalidPairRequestError{Reason: fmt.Sprintf("nonce must be %d to %d hex digits, got %d characters", MinNonceLen, MaxNonceLen, len(n))}
	}
	for i := 0; i < len(n); i++ {
		c := n[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return &InvalidPairRequestError{Reason: "nonce must be hex digits only"}
		}
	}
	return nil
}

// Submit takes in a pairing request that arrived from sourceIP on a TLS
// connection whose server certificate (the dispatcher's leaf, as served)
// is leafDER. It validates the request (CheckPairRequest), computes the
// code wire.PairingCode(csr DER, leafDER) and queues it, tags included,
// with the pairing_timeout expiry. Refusals are *InvalidPairRequestError,
// *store.PendingExistsError and *store.QueueFullError, each logged as
// pair-reject; a queued request is logged as pair-request. A host name
// that is registered already is queued, flagged AlreadyPaired.
func (p *Pairing) Submit(req wire.PairRequest, sourceIP string, leafDER []byte) (PendingRequest, error) {
	reject := func(err error) (PendingRequest, error) {
		logging.EventLevel(p.log, zapcore.WarnLevel, logging.ActionPairReject, zap.String("host", req.Hostname),
			zap.String("ip", sourceIP), zap.String("reason", err.Error()))
		return PendingRequest{}, err
	}
	csr, err := CheckPairRequest(req)
	if err != nil {
		return reject(err)
	}
	var tags map[string]string
	if len(req.Tags) > 0 {
		tags = maps.Clone(req.Tags)
	}
	now := p.now().UTC()
	r, err := p.o.Queue.AddPairRequest(store.PairRequest{
		Hostname: req.Hostname,
		IP:       sourceIP,
		Port:     req.Port,
		CSR:      req.CSR,
		Nonce:    req.Nonce,
		Code:     wire.PairingCode(csr.Raw, leafDER),
		Created:  now,
		Expires:  now.Add(p.o.Timeout),
		Tags:     tags,
	}, p.o.MaxQueue)
	if err != nil {
		return reject(err)
	}
	pr := p.flag(r)
	fields := []zap.Field{zap.String("reqid", r.ReqID), zap.String("host", r.Hostname),
		zap.String("ip", r.IP), zap.Int("port", r.Port), zap.String("code", r.Code), zap.Bool("already_paired", pr.AlreadyPaired)}
	logging.Event(p.log, logging.ActionPairRequest, append(fields, tagsField(r.Tags)...)...)
	return pr, nil
}

// flag looks r's host name up in the registry.
func (p *Pairing) flag(r store.PairRequest) PendingRequest {
	pr := PendingRequest{PairRequest: r}
	if a, err := p.o.Registry.GetAgent(r.Hostname); err == nil {
		pr.AlreadyPaired, pr.PairedSerial = true, a.Serial
	}
	return pr
}

// Poll returns the request reqid for the agent that sent it: the nonce
// must be the request's (compared in constant time). An unknown reqid and
// a wrong nonce both give ErrUnknownPairRequest. A request pending past its
// expiry is returned denied "expired".
func (p *Pairing) Poll(reqid, nonce string) (store.PairRequest, error) {
	r, err := p.o.Queue.GetPairRequest(reqid)
	if err != nil {
		if errors.Is(err, store.ErrNotFound) || store.ValidReqID(reqid) != nil {
			return store.PairRequest{}, ErrUnknownPairRequest
		}
		return store.PairRequest{}, err
	}
	if subtle.ConstantTimeCompare([]byte(r.Nonce), []byte(nonce)) != 1 {
		return store.PairRequest{}, ErrUnknownPairRequest
	}
	if r.Status == store.PairPending && !r.Pending(p.now()) {
		r.Status, r.Reason = store.PairDenied, store.ReasonExpired
	}
	return r, nil
}

// ListRequests returns the pending requests, oldest first, each flagged
// when its host name is registered.
func (p *Pairing) ListRequests() ([]PendingRequest, error) {
	rs, err := p.o.Queue.ListPairRequests(p.now())
	if err != nil {
		return nil, err
	}
	out := make([]PendingRequest, len(rs))
	for i, r := range rs {
		out[i] = p.flag(r)
	}
	return out, nil
}

// Approval is the outcome of Approve.
type Approval struct {
	Request store.PairRequest // as recorded: approved, with cert and CA
	Agent   store.Agent       // the registry record written
	Cert    *x509.Certificate
	Revoked string // serial of the certificate replaced and revoked, "" when none
}

// Approve approves the pending request reqid: it loads the CA, checks the
// request again, signs the CSR for the requested host name for cert_days
// (pki CA.SignAgentCSR: only the public key is taken from the CSR), writes
// the registry record (the source IP of the pairing connection, the port
// and the tags the agent sent, the key fingerprint and the serial) and
// records the approval with the certificate and the CA for the agent to
// fetch. All of this happens once per request, however many approvals
// race.
//
// A host name that is registered already is refused with an
// *AlreadyPairedError unless replace is set or the record was written by
// an earlier, interrupted approval of this same request; with replace, the old
// certificate's serial is revoked before the record is replaced. Other
// refusals: *MissingCAError, *store.DecidedError (already decided or
// expired), store.ErrNotFound (wrapped).
func (p *Pairing) Approve(reqid string, replace bool) (*Approval, error) {
	ca, err := LoadCA(p.o.CA)
	if err != nil {
		return nil, err
	}
	caPEM := string(pki.CertPEM(ca.Cert))
	var out Approval
	now := p.now().UTC()
	r, err := p.o.Queue.DecidePairRequest(reqid, now, func(r store.PairRequest) (store.Decision, error) {
		csr, err := CheckPairRequest(wire.PairRequest{Hostname: r.Hostname, CSR: r.CSR, Nonce: r.Nonce, Port: r.Port, Tags: r.Tags})
		if err != nil {
			return store.Decision{}, fmt.Errorf("pairing request %s: %w; deny it", r.ReqID, err)
		}
		old, err := p.o.Registry.GetAgent(r.Hostname)
		registered := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return store.Decision{}, err
		}
		// A record carrying this request's id was written by an approval
		// of it that died before recording its decision (kill -9, power
		// cut): the certificate it issued never reached the agent, so it
		// is replaced (and revoked below) without --replace.
		interrupted := registered && old.ReqID == r.ReqID
		if registered && !replace && !interrupted {
			return store.Decision{}, &AlreadyPairedError{Hostname: r.Hostname, Serial: old.Serial, ReqID: r.ReqID}
		}
		cert, err := ca.SignAgentCSR(p.o.PKI, csr, r.Hostname, p.o.CertDays)
		if err != nil {
			return store.Decision{}, err
		}
		fp, err := pki.Fingerprint(csr.PublicKey)
		if err != nil {
			return store.Decision{}, err
		}
		if registered && old.Serial != "" {
			// Revoke first: should the record not be written, the old
			// certificate is refused rather than the new one lost.
			if err := p.revoke(old.Serial, r.Hostname, "replaced by pairing request "+r.ReqID, now); err != nil {
				return store.Decision{}, err
			}
			out.Revoked = old.Serial
		}
		out.Agent = store.Agent{
			Hostname:       r.Hostname,
			IP:             r.IP,
			Port:           r.Port,
			Paired:         now.Format(time.RFC3339),
			Expiry:         pki.FormatOpenSSLTime(cert.NotAfter),
			ReqID:          r.ReqID,
			KeyFingerprint: fp,
			Serial:         pki.FormatSerial(cert.SerialNumber),
		}
		if len(r.Tags) > 0 {
			out.Agent.Tags = maps.Clone(r.Tags)
		}
		if err := p.o.Registry.PutAgent(out.Agent); err != nil {
			return store.Decision{}, fmt.Errorf("write the registry record of %s: %w", r.Hostname, err)
		}
		out.Cert = cert
		return store.Decision{Status: store.PairApproved, Cert: string(pki.CertPEM(cert)), CA: caPEM}, nil
	})
	if err != nil {
		return nil, err
	}
	out.Request = r
	fields := []zap.Field{zap.String("reqid", r.ReqID), zap.String("host", r.Hostname),
		zap.String("ip", r.IP), zap.Int("port", r.Port), zap.String("serial", out.Agent.Serial),
		zap.String("expiry", out.Agent.Expiry), zap.String("replaced_serial", out.Revoked)}
	logging.Event(p.log, logging.ActionPairApprove, append(fields, tagsField(out.Agent.Tags)...)...)
	return &out, nil
}

// tagsField logs an agent's tags, when it has any.
func tagsField(tags map[string]string) []zap.Field {
	if len(tags) == 0 {
		return nil
	}
	return []zap.Field{zap.Any("tags", tags)}
}

// DefaultDenyReason is the reason of a denial without one.
const DefaultDenyReason = "denied by the operator"

// Deny denies the pending request reqid with reason (DefaultDenyReason
// when empty); the agent is told the reason. Refusals as for Approve.
func (p *Pairing) Deny(reqid, reason string) (store.PairRequest, error) {
	reason = strings.TrimSpace(reason)
	if reason == "" {
		reason = DefaultDenyReason
	}
	r, err := p.o.Queue.DecidePairRequest(reqid, p.now(), func(store.PairRequest) (store.Decision, error) {
		return store.Decision{Status: store.PairDenied, Reason: reason}, nil
	})
	if err != nil {
		return store.PairRequest{}, err
	}
	logging.Event(p.log, logging.ActionPairDeny, zap.String("reqid", r.ReqID), zap.String("host", r.Hostname),
		zap.String("ip", r.IP), zap.String("reason", reason))
	return r, nil
}

// Expire denies the requests nobody decided within pairing_timeout
// (reason "expired", logged as pair-deny) and purges answers older than
// pairing_timeout. It returns the requests it denied.
func (p *Pairing) Expire() ([]store.PairRequest, error) {
	expired, err := p.o.Queue.ExpirePairRequests(p.now(), p.o.Timeout)
	for _, r := range expired {
		logging.Event(p.log, logging.ActionPairDeny, zap.String("reqid", r.ReqID), zap.String("host", r.Hostname),
			zap.String("ip", r.IP), zap.String("reason", r.Reason))
	}
	return expired, err
}

// Unpair removes host from the registry and revokes the serial of its
// certificate, so the dispatcher refuses it from then on. It returns the
// record removed. A record without a serial (paired by the Perl
// dispatcher) is removed with nothing to revoke: Agent.Serial is then "".
func (p *Pairing) Unpair(host string) (store.Agent, error) {
	a, err := p.o.Registry.GetAgent(host)
	if errors.Is(err, store.ErrNotFound) {
		return store.Agent{}, fmt.Errorf("%s is not paired (see dispatcher list-agents): %w", host, store.ErrNotFound)
	}
	if err != nil {
		return store.Agent{}, err
	}
	if a.Serial != "" {
		if err := p.revoke(a.Serial, host, "unpaired", p.now()); err != nil {
			return store.Agent{}, err
		}
	}
	if err := p.o.Registry.DeleteAgent(host); err != nil {
		return store.Agent{}, err
	}
	logging.Event(p.log, logging.ActionUnpair, zap.String("host", host), zap.String("serial", a.Serial), zap.String("ip", a.IP))
	return a, nil
}

// revoke adds the serial of a registry record (lowercase hex) to the
// revocation list and logs it.
func (p *Pairing) revoke(serial, host, reason string, at time.Time) error {
	n, err := parseRecordSerial(serial)
	if err != nil {
		return fmt.Errorf("registry record of %s: serial: %w", host, err)
	}
	if err := p.o.Revocations.RevokeSerial(n, host, reason, at); err != nil {
		return fmt.Errorf("revoke serial %s of %s: %w", serial, host, err)
	}
	logging.Event(p.log, logging.ActionRevoke, zap.String("host", host), zap.String("serial", pki.FormatSerial(n)), zap.String("reason", reason))
	return nil
}

// parseRecordSerial reads the serial of a registry record. It is written
// as hex (pki.FormatSerial); a string of decimal digits only is still hex
// here, the first reading pki.ParseSerial returns.
func parseRecordSerial(s string) (*big.Int, error) {
	ns, err := pki.ParseSerial(s)
	if err != nil {
		return nil, err
	}
	return ns[0], nil
}

// ListAgents returns the registered agents, sorted by host name.
func ListAgents(reg store.Registry) ([]store.Agent, error) {
	return reg.ListAgents()
}
