package control

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// DefaultRevokeReason is the reason of a revocation without one.
const DefaultRevokeReason = "revoked by the operator"

// Kinds of revocation.
const (
	RevokedAgent      = "agent"      // an agent certificate: the dispatcher refuses it
	RevokedDispatcher = "dispatcher" // a dispatcher certificate: pushed to agents, which refuse it
)

// RevokeOptions say where revocations are recorded.
type RevokeOptions struct {
	Registry    store.Registry
	Revocations store.Revocations           // revoked-serials: agent certificates the dispatcher refuses
	Dispatcher  store.DispatcherRevocations // revoked-dispatcher-serials: pushed to agents on contact
	// OwnCert is the path of this dispatcher's certificate (cert in
	// dispatcher.conf): its serial is never revoked, which would cut this
	// dispatcher off from every agent it reaches.
	OwnCert string
	Now     func() time.Time
	Log     *zap.Logger
}

// Revocation is what Revoke recorded.
type Revocation struct {
	Kind    string   `json:"kind"`           // RevokedAgent or RevokedDispatcher
	Host    string   `json:"host,omitempty"` // the agent, for RevokedAgent
	Serials []string `json:"serials"`        // lowercase hex
	Reason  string   `json:"reason"`
}

// Revoke revokes what target names: a registered agent's host name (its
// registered serial), or a certificate serial in any form pki.ParseSerial
// reads. A serial that is a registered agent's is that agent. Any other
// serial is taken for a dispatcher certificate (another node's, or the one
// rotate-cert replaced): it goes to the dispatcher revocation list, pushed
// to every agent at its next contact, and to revoked-serials too, so that
// nothing presenting it is trusted anywhere. An all-digit serial is
// ambiguous and both its readings are revoked. This dispatcher's own
// serial is refused: rotate-cert first.
//
// An agent revocation keeps the registry record (unpair removes it): the
// dispatcher refuses the agent in the TLS handshake, before any request
// or token is sent, until it is paired again.
func Revoke(o RevokeOptions, target, reason string) (*Revocation, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	reason = strings.TrimSpace(reason)
	if reason == "" {
		reason = DefaultRevokeReason
	}
	target = strings.TrimSpace(target)
	if pki.ValidHostname(target) == nil {
		a, err := o.Registry.GetAgent(target)
		if err == nil {
			return revokeAgent(o, a, reason)
		}
		if !errors.Is(err, store.ErrNotFound) {
			return nil, err
		}
	}
	serials, err := pki.ParseSerial(target)
	if err != nil {
		return nil, fmt.Errorf("%q is neither a registered agent (see dispatcher list-agents) nor a certificate serial: %v", target, err)
	}
	if own, err := certSerial(o.OwnCert); err == nil {
		for _, n := range serials {
			if n.Cmp(own) == 0 {
				return nil, fmt.Errorf("serial %s is this dispatcher's own certificate (%s): run dispatcher rotate-cert first, then revoke the old serial", pki.FormatSerial(n), o.OwnCert)
			}
		}
	}
	agents, err := o.Registry.ListAgents()
	if err != nil {
		return nil, err
	}
	for _, a := range agents {
		n, err := parseRecordSerial(a.Serial)
		if a.Serial == "" || err != nil {
			continue
		}
		for _, s := range serials {
			if s.Cmp(n) == 0 {
				return revokeAgent(o, a, reason)
			}
		}
	}
	if o.Dispatcher == nil {
		return nil, errors.New("revoke: this store keeps no dispatcher revocation list")
	}
	out := &Revocation{Kind: RevokedDispatcher, Reason: reason}
	now := o.Now()
	for _, n := range serials {
		if err := o.Dispatcher.RevokeDispatcherSerial(n, reason, now); err != nil {
			return nil, fmt.Errorf("revoke serial %s: %w", pki.FormatSerial(n), err)
		}
		if err := o.Revocations.RevokeSerial(n, "dispatcher", reason, now); err != nil {
			return nil, fmt.Errorf("revoke serial %s: %w", pki.FormatSerial(n), err)
		}
		out.Serials = append(out.Serials, pki.FormatSerial(n))
	}
	logging.Event(o.Log, logging.ActionRevoke, zap.String("kind", out.Kind), zap.Strings("serials", out.Serials), zap.String("reason", reason))
	return out, nil
}

func revokeAgent(o RevokeOptions, a store.Agent, reason string) (*Revocation, error) {
	if a.Serial == "" {
		return nil, fmt.Errorf("%s has no certificate serial in the registry (paired by the Perl dispatcher): revoke its serial instead (openssl x509 -serial on its agent.crt), or unpair it", a.Hostname)
	}
	n, err := parseRecordSerial(a.Serial)
	if err != nil {
		return nil, fmt.Errorf("registry record of %s: serial: %w", a.Hostname, err)
	}
	if err := o.Revocations.RevokeSerial(n, a.Hostname, reason, o.Now()); err != nil {
		return nil, fmt.Errorf("revoke serial %s of %s: %w", a.Serial, a.Hostname, err)
	}
	out := &Revocation{Kind: RevokedAgent, Host: a.Hostname, Serials: []string{pki.FormatSerial(n)}, Reason: reason}
	logging.Event(o.Log, logging.ActionRevoke, zap.String("kind", out.Kind), zap.String("host", a.Hostname),
		zap.String("serial", out.Serials[0]), zap.String("reason", reason))
	return out, nil
}

// certSerial reads the serial of the certificate at path.
func certSerial(path string) (*big.Int, error) {
	if path == "" {
		return nil, errors.New("no certificate")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := pki.ParseCertPEM(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c.SerialNumber, nil
}

// pushRevocations sends the dispatcher revocation list to the agent of p
// (POST /revocations) unless its record a says it has accepted this very
// list already (its digest).
func (e *Engine) pushRevocations(ctx context.Context, reqid string, p dialPlan, a store.Agent, ps *pushState) {
	if len(ps.revoked) == 0 || a.ExtraString(store.FieldRevocationsPushed) == ps.digest {
		return
	}
	host := p.target.Host
	resp, err := e.client.PushRevocations(ctx, p.target, wire.RevocationsRequest{Serials: ps.revoked, ReqID: reqid})
	if errors.Is(err, wire.ErrNotFound) {
		e.recordUnsupported(reqid, host)
		return
	}
	if err != nil {
		logging.EventLevel(e.log, zapcore.ErrorLevel, logging.ActionRevoke, zap.String("reqid", reqid), zap.String("host", host),
			zap.String("status", StatusError), zap.String("reason", "push of the dispatcher revocation list failed; tried again at the next contact"), zap.Error(err))
		return
	}
	err = e.updateAgent(host, func(a *store.Agent) error {
		a.SetExtraString(store.FieldRevocationsPushed, ps.digest)
		return nil
	})
	fields := []zap.Field{zap.String("reqid", reqid), zap.String("host", host), zap.String("status", "pushed"),
		zap.Int("added", resp.Added), zap.Int("total", resp.Total)}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	logging.Event(e.log, logging.ActionRevoke, fields...)
}
