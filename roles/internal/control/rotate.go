package control

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// UpdateSerialScript is the allowlisted script through which Perl agents
// learn a new dispatcher serial (its one argument); the dispatcher runs it
// after a rotation on agents that do not have POST /dispatcher-serial.
const UpdateSerialScript = "update-dispatcher-serial"

// DefaultOverlapDays is cert_overlap_days when not configured.
const DefaultOverlapDays = 7

// RotateOptions configure RotateCert.
type RotateOptions struct {
	// Identity says where the CA and the dispatcher certificate and key
	// are, the validity (cert_days) and the DNS names; with no DNS names
	// the new certificate gets those of the old one. Force is implied:
	// the old files are kept as FILE.old-TIMESTAMP.
	Identity DispatcherIdentity
	// OverlapDays (cert_overlap_days): agents not told the new serial
	// after this long are stale rather than pending.
	OverlapDays int
	// RevokeOld puts the old certificate's serial on the dispatcher
	// revocation list, so agents refuse it after their next contact.
	RevokeOld bool

	Registry    store.Registry
	Rotations   store.Rotations
	Revocations store.DispatcherRevocations // for RevokeOld
	PKI         pki.Options
	Log         *zap.Logger
}

// RotateResult is what RotateCert did.
type RotateResult struct {
	Written    *Written
	Rotation   store.Rotation
	Pending    int  // agents marked pending
	RevokedOld bool // the old serial is on the dispatcher revocation list
}

// RotateCert replaces the dispatcher's own key and certificate with new
// ones from the CA (SetupDispatcher with force, the old files kept as
// backups). Agents accept the new certificate at once: they check the
// dispatcher role, not a serial. For agents still pinned by serial (Perl
// agents, migrated fleets) it records the rotation in rotation.json
// (current_serial, previous_serial, rotated_at, overlap_expires,
// overlap_days, as the Perl dispatcher did) and marks every registered
// agent serial_status "pending": the engine pushes the new serial at each
// agent's next contact, and serial-status shows who has it. With RevokeOld
// the old serial is revoked for agents as well.
func RotateCert(o RotateOptions) (*RotateResult, error) {
	if o.Registry == nil || o.Rotations == nil {
		return nil, errors.New("control: rotate-cert needs a registry and a rotation store")
	}
	if o.RevokeOld && o.Revocations == nil {
		return nil, errors.New("control: rotate-cert --revoke-old needs a dispatcher revocation list")
	}
	if o.OverlapDays < 0 {
		o.OverlapDays = DefaultOverlapDays
	}
	old, err := readCert(o.Identity.At.Cert)
	if err != nil {
		return nil, err
	}
	id := o.Identity
	id.Force = true
	if len(id.DNSNames) == 0 && old != nil {
		id.DNSNames = append(id.DNSNames, old.DNSNames...)
		for _, ip := range old.IPAddresses {
			id.DNSNames = append(id.DNSNames, ip.String())
		}
	}
	w, err := SetupDispatcher(o.PKI, o.Log, id)
	if err != nil {
		return nil, err
	}
	now := now(o.PKI).UTC().Truncate(time.Second)
	res := &RotateResult{Written: w, Rotation: store.Rotation{
		CurrentSerial:  pki.FormatSerial(w.Cert.SerialNumber),
		RotatedAt:      now,
		OverlapExpires: now.Add(time.Duration(o.OverlapDays) * 24 * time.Hour),
		OverlapDays:    o.OverlapDays,
	}}
	if old != nil {
		res.Rotation.PreviousSerial = pki.FormatSerial(old.SerialNumber)
	}
	if err := o.Rotations.PutRotation(res.Rotation); err != nil {
		return res, fmt.Errorf("the new certificate is in place, but the rotation could not be recorded: %w", err)
	}
	agents, err := o.Registry.ListAgents()
	if err != nil {
		return res, fmt.Errorf("the new certificate is in place, but the agents could not be marked pending: %w", err)
	}
	var errs []error
	for _, a := range agents {
		a.SetExtraString(store.FieldSerialStatus, store.SerialPending)
		a.SetExtraTime(store.FieldSerialBroadcast, now)
		if err := o.Registry.PutAgent(a); err != nil {
			errs = append(errs, err)
			continue
		}
		res.Pending++
	}
	if o.RevokeOld && old != nil {
		if err := o.Revocations.RevokeDispatcherSerial(old.SerialNumber, "replaced by rotate-cert", now); err != nil {
			errs = append(errs, fmt.Errorf("revoke the old serial %s: %w", res.Rotation.PreviousSerial, err))
		} else {
			res.RevokedOld = true
		}
	}
	logging.Event(o.Log, logging.ActionRotateCert, zap.String("serial", res.Rotation.CurrentSerial), zap.String("old_serial", res.Rotation.PreviousSerial),
		zap.String("overlap_expires", res.Rotation.OverlapExpires.Format(time.RFC3339)), zap.Int("agents_pending", res.Pending),
		zap.Bool("revoked_old", res.RevokedOld))
	if len(errs) > 0 {
		return res, fmt.Errorf("the new certificate is in place, but: %w", errors.Join(errs...))
	}
	return res, nil
}

// readCert reads the certificate at path; a missing file is nil, nil.
func readCert(path string) (*x509.Certificate, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the current dispatcher certificate: %w", err)
	}
	c, err := pki.ParseCertPEM(data)
	if err != nil {
		return nil, fmt.Errorf("read the current dispatcher certificate %s: %w", path, err)
	}
	return c, nil
}

// pushSerial tells the agent of p this dispatcher's serial after a
// rotation: when the agent is pending (or stale) and this dispatcher holds
// the certificate rotate-cert made (so a node still on the old one never
// moves agents back), POST /dispatcher-serial, or for agents without it
// (capable false, or a 404: Perl agents) a run of the allowlisted
// update-dispatcher-serial script with the serial as its argument. Success
// marks the agent current; a failure leaves it pending, or stale once the
// overlap window is over.
func (e *Engine) pushSerial(ctx context.Context, reqid string, p dialPlan, a store.Agent, ps *pushState, capable bool) {
	if ps.rotation == nil {
		return
	}
	ours := e.ownSerial()
	if ours == "" || ps.rotation.CurrentSerial != ours {
		return
	}
	if st := a.ExtraString(store.FieldSerialStatus); st != store.SerialPending && st != store.SerialStale {
		return
	}
	host := p.target.Host
	var err error = wire.ErrNotFound
	if capable {
		_, err = e.client.PushDispatcherSerial(ctx, p.target, wire.DispatcherSerialRequest{Serial: ours, ReqID: reqid})
	}
	via := wire.PathDispatcherSerial
	if errors.Is(err, wire.ErrNotFound) {
		via = UpdateSerialScript
		var r *wire.RunResponse
		r, err = e.client.Run(ctx, p.target, wire.RunRequest{Script: UpdateSerialScript, Args: []string{ours}, ReqID: reqid, Username: "dispatcher"}, nil)
		if err == nil && r.Exit != 0 {
			err = fmt.Errorf("%s exited %d: %s", UpdateSerialScript, r.Exit, r.Error)
		}
	}
	now := e.o.Now()
	if err != nil {
		status := store.SerialPending
		if now.After(ps.rotation.OverlapExpires) {
			status = store.SerialStale
		}
		_ = e.updateAgent(host, func(a *store.Agent) error {
			a.SetExtraString(store.FieldSerialStatus, status)
			return nil
		})
		logging.EventLevel(e.log, zapcore.WarnLevel, logging.ActionRotateCert, zap.String("reqid", reqid), zap.String("host", host),
			zap.String("serial_status", status), zap.String("via", via), zap.Error(err))
		return
	}
	err = e.updateAgent(host, func(a *store.Agent) error {
		a.SetExtraString(store.FieldSerialStatus, store.SerialCurrent)
		a.SetExtraString(store.FieldDispatcherSerial, ours)
		a.SetExtraTime(store.FieldSerialConfirmed, now)
		return nil
	})
	fields := []zap.Field{zap.String("reqid", reqid), zap.String("host", host), zap.String("serial_status", store.SerialCurrent),
		zap.String("dispatcher_serial", ours), zap.String("via", via)}
	if err != nil {
		fields = append(fields, zap.Error(err))
	}
	logging.Event(e.log, logging.ActionRotateCert, fields...)
}

// AgentSerial is one agent's view of the dispatcher serial, a row of
// serial-status.
type AgentSerial struct {
	Hostname         string `json:"hostname"`
	Status           string `json:"serial_status"` // store.SerialCurrent, SerialPending or SerialStale
	DispatcherSerial string `json:"dispatcher_serial,omitempty"`
	Broadcast        string `json:"serial_broadcast,omitempty"` // when it was marked pending
	Confirmed        string `json:"serial_confirmed,omitempty"` // when it confirmed the new serial
	LastContact      string `json:"last_contact,omitempty"`
}

// SerialReport is serial-status: this dispatcher's certificate serial, the
// last rotation, and every agent's state.
type SerialReport struct {
	OK             bool          `json:"ok"`
	CurrentSerial  string        `json:"current_serial"` // of the certificate in use (cert in dispatcher.conf)
	PreviousSerial string        `json:"previous_serial,omitempty"`
	RotatedAt      string        `json:"rotated_at,omitempty"`
	OverlapExpires string        `json:"overlap_expires,omitempty"`
	Agents         []AgentSerial `json:"agents"`
}

// SerialStatus reports every registered agent's serial_status. An agent
// without one (never rotated, or paired after the rotation) is current. A
// pending agent past the overlap window becomes stale, in the registry too
// (logged), as the Perl dispatcher did. ownCert is the dispatcher's
// certificate file.
func SerialStatus(reg store.Registry, rot store.Rotations, ownCert string, now time.Time, log *zap.Logger) (*SerialReport, error) {
	out := &SerialReport{OK: true, Agents: []AgentSerial{}}
	if n, err := certSerial(ownCert); err == nil {
		out.CurrentSerial = pki.FormatSerial(n)
	}
	var overlap time.Time
	r, err := rot.GetRotation()
	switch {
	case err == nil:
		out.PreviousSerial, out.RotatedAt = r.PreviousSerial, stamp(r.RotatedAt)
		out.OverlapExpires, overlap = stamp(r.OverlapExpires), r.OverlapExpires
	case !errors.Is(err, store.ErrNotFound):
		return nil, err
	}
	agents, err := reg.ListAgents()
	if err != nil {
		return nil, err
	}
	for _, a := range agents {
		st := a.ExtraString(store.FieldSerialStatus)
		if st == store.SerialPending && !overlap.IsZero() && now.After(overlap) {
			st = store.SerialStale
			a.SetExtraString(store.FieldSerialStatus, st)
			if err := reg.PutAgent(a); err == nil {
				logging.EventLevel(log, zapcore.WarnLevel, logging.ActionRotateCert, zap.String("host", a.Hostname), zap.String("serial_status", st),
					zap.String("reason", "overlap window expired without confirmation"))
			}
		}
		if st == "" {
			st = store.SerialCurrent
		}
		out.Agents = append(out.Agents, AgentSerial{Hostname: a.Hostname, Status: st, DispatcherSerial: a.ExtraString(store.FieldDispatcherSerial),
			Broadcast: a.ExtraString(store.FieldSerialBroadcast), Confirmed: a.ExtraString(store.FieldSerialConfirmed), LastContact: stamp(a.LastContact)})
	}
	return out, nil
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}
