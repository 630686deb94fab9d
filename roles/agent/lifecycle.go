package agent

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"net/http"
	"os"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// modeSerial is the mode of revoked-serials and dispatcher-serial when the
// lifecycle endpoints write them (agent.crt gets modeCert, as in pairing).
const modeSerial fs.FileMode = 0o644

// certHost is the host name the agent's certificate is for: its first DNS
// SAN, else (a Perl-era certificate) its common name, else agent.conf's
// hostname. Renewal keeps it: the dispatcher dialled that name.
func (s *snapshot) certHost() string {
	if leaf := s.cert.Leaf; leaf != nil {
		if len(leaf.DNSNames) > 0 {
			return leaf.DNSNames[0]
		}
		if leaf.Subject.CommonName != "" {
			return leaf.Subject.CommonName
		}
	}
	return s.cfg.Hostname
}

// certSerial is the serial of the agent's certificate, in hex.
func (s *snapshot) certSerial() string {
	if s.cert.Leaf == nil {
		return ""
	}
	return pki.FormatSerial(s.cert.Leaf.SerialNumber)
}

// signer is the agent's private key.
func (s *snapshot) signer() (crypto.Signer, error) {
	k, ok := s.cert.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("the agent key (%T) cannot sign", s.cert.PrivateKey)
	}
	return k, nil
}

// swap stores the snapshot change makes of a copy of the current one. The
// caller holds s.mu, so a reload or another swap cannot interleave.
func (s *Server) swap(change func(next *snapshot)) {
	next := *s.snap.Load()
	change(&next)
	s.snap.Store(&next)
}

// handleRenew answers POST /renew with a certificate request for the
// agent's current key and host name: renewal never changes the key.
func (s *Server) handleRenew(w http.ResponseWriter, r *http.Request) {
	var req wire.RenewRequest
	if !decode(w, r, &req) {
		return
	}
	snap := s.snap.Load()
	key, err := snap.signer()
	var csr []byte
	if err == nil {
		csr, err = pki.CreateCSR(pki.Options{}, key, snap.certHost())
	}
	if err != nil {
		logging.EventLevel(s.log, zapcore.ErrorLevel, logging.ActionRenew, zap.String("reqid", req.ReqID), zap.String("peer", peerIP(r)), zap.Error(err))
		wire.WriteError(w, http.StatusInternalServerError, "cannot make a certificate request: "+err.Error())
		return
	}
	logging.Event(s.log, logging.ActionRenew, zap.String("reqid", req.ReqID), zap.String("peer", peerIP(r)), zap.String("host", snap.certHost()),
		zap.String("serial", snap.certSerial()))
	wire.WriteJSON(w, http.StatusOK, wire.RenewResponse{Status: "ok", CSR: string(csr), ReqID: req.ReqID})
}

// handleRenewComplete installs a renewed certificate: it must be for the
// agent's own key and a valid agent certificate for its host name from its
// CA. It is written to the cert file atomically and served from the next
// handshake on, without a restart. Anything else is refused (400 or 409)
// and the current certificate stays.
func (s *Server) handleRenewComplete(w http.ResponseWriter, r *http.Request) {
	var req wire.RenewCompleteRequest
	if !decode(w, r, &req) {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.snap.Load()
	refuse := func(status int, reason string) {
		logging.EventLevel(s.log, zapcore.WarnLevel, logging.ActionRenewComplete, zap.String("reqid", req.ReqID), zap.String("peer", peerIP(r)),
			zap.Bool("ok", false), zap.String("reason", reason))
		wire.WriteError(w, status, reason+"; the agent keeps its current certificate")
	}
	chain, err := pki.ParseCertsPEM([]byte(req.Cert))
	if err != nil {
		refuse(http.StatusBadRequest, "cert: "+err.Error())
		return
	}
	if req.CA != "" {
		if _, err := pki.ParseCertsPEM([]byte(req.CA)); err != nil {
			refuse(http.StatusBadRequest, "ca: "+err.Error())
			return
		}
	}
	key, err := snap.signer()
	if err != nil {
		refuse(http.StatusInternalServerError, err.Error())
		return
	}
	leaf := chain[0]
	if !pki.PublicKeysEqual(leaf.PublicKey, key.Public()) {
		refuse(http.StatusConflict, "the certificate is for another key than this agent's")
		return
	}
	host := snap.certHost()
	if err := pki.VerifyAgent(chain, snap.roots, host, key.Public(), s.now()); err != nil {
		refuse(http.StatusConflict, fmt.Sprintf("not a valid agent certificate for %s from this agent's ca: %v", host, err))
		return
	}
	var certPEM []byte
	raw := make([][]byte, len(chain))
	for i, c := range chain {
		certPEM = append(certPEM, pki.CertPEM(c)...)
		raw[i] = c.Raw
	}
	if err := pki.WriteFileAtomic(snap.cfg.Cert, certPEM, modeCert); err != nil {
		logging.EventLevel(s.log, zapcore.ErrorLevel, logging.ActionRenewComplete, zap.String("reqid", req.ReqID), zap.Bool("ok", false), zap.Error(err))
		wire.WriteError(w, http.StatusInternalServerError, fmt.Sprintf("cannot write %s: %v; the agent keeps its current certificate", snap.cfg.Cert, err))
		return
	}
	old := snap.certSerial()
	s.swap(func(next *snapshot) {
		next.cert = &tls.Certificate{Certificate: raw, PrivateKey: snap.cert.PrivateKey, Leaf: leaf}
	})
	logging.Event(s.log, logging.ActionRenewComplete, zap.String("reqid", req.ReqID), zap.String("peer", peerIP(r)), zap.Bool("ok", true),
		zap.String("serial", pki.FormatSerial(leaf.SerialNumber)), zap.String("old_serial", old),
		zap.String("expiry", pki.FormatOpenSSLTime(leaf.NotAfter)))
	wire.WriteJSON(w, http.StatusOK, wire.StatusResponse{Status: "ok", ReqID: req.ReqID})
}

// roleOnly lets only clients with a dispatcher role certificate through:
// a legacy (Perl) certificate admitted by the serial pin may not change
// what the agent trusts.
func roleOnly(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if pki.CertRole(r.TLS.PeerCertificates[0]) != pki.RoleDispatcher {
			wire.WriteError(w, http.StatusForbidden, wire.ErrForbidden+": a dispatcher certificate with the dispatcher role is needed")
			return
		}
		next(w, r)
	}
}

// handleRevocations merges pushed dispatcher serials into revoked-serials
// (atomically; the file stays the one SIGHUP reloads) and into the live
// snapshot, so the next handshake with one of them is refused.
func (s *Server) handleRevocations(w http.ResponseWriter, r *http.Request) {
	var req wire.RevocationsRequest
	if !decode(w, r, &req) {
		return
	}
	if len(req.Serials) == 0 || len(req.Serials) > wire.MaxRevocationsPush {
		wire.WriteError(w, http.StatusBadRequest, fmt.Sprintf("serials: want 1 to %d serial numbers, got %d", wire.MaxRevocationsPush, len(req.Serials)))
		return
	}
	caller := r.TLS.PeerCertificates[0].SerialNumber
	var pushed []*big.Int
	for i, text := range req.Serials {
		ns, err := pki.ParseSerial(text)
		if err != nil {
			wire.WriteError(w, http.StatusBadRequest, fmt.Sprintf("serials[%d]: %v", i, err))
			return
		}
		for _, n := range ns {
			if n.Cmp(caller) == 0 {
				wire.WriteError(w, http.StatusConflict, "refusing to revoke the certificate this request is made with")
				return
			}
		}
		pushed = append(pushed, ns...)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	snap := s.snap.Load()
	path := snap.cfg.RevokedSerials
	data, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		wire.WriteError(w, http.StatusInternalServerError, fmt.Sprintf("cannot read %s: %v", path, err))
		return
	}
	inFile, _ := pki.ParseSerialList(data)
	var merged pki.SerialSet
	for _, set := range []pki.SerialSet{snap.revoked, inFile} {
		for _, n := range set.Values() {
			merged.Add(n)
		}
	}
	var b bytes.Buffer
	added := 0
	for _, n := range pushed {
		merged.Add(n)
		if inFile.Contains(n) {
			continue
		}
		inFile.Add(n)
		if added == 0 {
			b.Write(data)
			if len(data) > 0 && data[len(data)-1] != '\n' {
				b.WriteByte('\n')
			}
			fmt.Fprintf(&b, "# pushed by the dispatcher %s (reqid %s)\n", s.now().UTC().Format(time.RFC3339), oneLine(req.ReqID))
		}
		added++
		b.WriteString(serialLine(n))
	}
	if added > 0 {
		if err := pki.WriteFileAtomic(path, b.Bytes(), modeSerial); err != nil {
			logging.EventLevel(s.log, zapcore.ErrorLevel, logging.ActionRevoke, zap.String("reqid", req.ReqID), zap.Bool("ok", false), zap.Error(err))
			wire.WriteError(w, http.StatusInternalServerError, fmt.Sprintf("cannot write %s: %v", path, err))
			return
		}
	}
	s.swap(func(next *snapshot) { next.revoked = merged })
	logging.Event(s.log, logging.ActionRevoke, zap.String("reqid", req.ReqID), zap.String("peer", peerIP(r)), zap.Int("added", added),
		zap.Int("total", merged.Len()))
	wire.WriteJSON(w, http.StatusOK, wire.RevocationsResponse{Status: "ok", Added: added, Total: merged.Len(), ReqID: req.ReqID})
}

// handleDispatcherSerial moves the legacy dispatcher-serial pin to the
// serial of the certificate the request is made with (and to no other), so
// that a Perl dispatcher's certificate pinned before is refused from then on.
func (s *Server) handleDispatcherSerial(w http.ResponseWriter, r *http.Request) {
	var req wire.DispatcherSerialRequest
	if !decode(w, r, &req) {
		return
	}
	caller := r.TLS.PeerCertificates[0].SerialNumber
	ns, err := pki.ParseSerial(req.Serial)
	if err != nil {
		wire.WriteError(w, http.StatusBadRequest, "serial: "+err.Error())
		return
	}
	own := false
	for _, n := range ns {
		own = own || n.Cmp(caller) == 0
	}
	if !own {
		wire.WriteError(w, http.StatusConflict, "serial: not the serial of the certificate this request is made with")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	path := s.snap.Load().cfg.DispatcherSerialPath
	if err := pki.WriteFileAtomic(path, []byte(pki.FormatSerial(caller)+"\n"), modeSerial); err != nil {
		logging.EventLevel(s.log, zapcore.ErrorLevel, logging.ActionRotateCert, zap.String("reqid", req.ReqID), zap.Bool("ok", false), zap.Error(err))
		wire.WriteError(w, http.StatusInternalServerError, fmt.Sprintf("cannot write %s: %v", path, err))
		return
	}
	s.swap(func(next *snapshot) { next.pin = new(big.Int).Set(caller) })
	logging.Event(s.log, logging.ActionRotateCert, zap.String("reqid", req.ReqID), zap.String("peer", peerIP(r)),
		zap.String("dispatcher_serial", pki.FormatSerial(caller)))
	wire.WriteJSON(w, http.StatusOK, wire.StatusResponse{Status: "ok", ReqID: req.ReqID})
}

// serialLine writes n as a line of revoked-serials: lowercase hex, 0x
// prefixed when it has no hex letter (so it is never read as decimal).
func serialLine(n *big.Int) string {
	s := pki.FormatSerial(n)
	if !strings.ContainsAny(s, "abcdef") {
		s = "0x" + s
	}
	return s + "\n"
}

func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if r < ' ' || r == 0x7f {
			return ' '
		}
		return r
	}, s)
}

// bindSessions ties every TLS session ticket to the certificate the agent
// served when it was issued. After a renewal a client resuming an older
// session gets a full handshake instead, and with it the new certificate;
// otherwise a dispatcher with a cached session would go on seeing the old
// one until the ticket expired.
func (s *Server) bindSessions(cfg *tls.Config) {
	tag := func() []byte {
		sum := sha256.Sum256(s.snap.Load().cert.Certificate[0])
		return append([]byte("dispatcher-agent-cert:"), sum[:8]...)
	}
	cfg.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = append(ss.Extra, tag())
		return cfg.EncryptTicket(cs, ss)
	}
	cfg.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := cfg.DecryptTicket(identity, cs)
		if err != nil || ss == nil {
			return ss, err
		}
		want := tag()
		for _, e := range ss.Extra {
			if bytes.Equal(e, want) {
				return ss, nil
			}
		}
		return nil, nil // issued for another certificate: full handshake
	}
}
