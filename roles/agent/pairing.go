package agent

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// Exit codes of request-pairing, in the foreground and of the background
// waiting process (SPEC.md §3.2). 1 is any other failure.
const (
	ExitPairTimeout = 2 // no answer in time (or the dispatcher forgot the request)
	ExitPairDenied  = 3 // the operator denied the request
)

// How long request-pairing waits for the operator, in seconds.
const (
	defaultWait           = 600 // foreground: the dispatcher's default pairing_timeout
	defaultBackgroundWait = 30
	maxWait               = 600
	nonceBytes            = 16
)

// pairOptions are request-pairing's choices once the flags and agent.conf
// are combined and checked.
type pairOptions struct {
	dispatcher string            // host:port of the pairing listener
	hostname   string            // the name to pair under
	port       int               // the agent's serving port, sent to the dispatcher
	pin        string            // normalised --ca-fingerprint; "" = none
	tags       map[string]string // agent.conf's [tags], sent for the registry
	wait       time.Duration
	force      bool
}

// pairer runs the agent's side of pairing over files.
type pairer struct {
	files          pairFiles
	log            *zap.Logger
	now            func() time.Time
	connectTimeout time.Duration
}

func newPairer(files pairFiles, log *zap.Logger) *pairer {
	if log == nil {
		log = zap.NewNop()
	}
	return &pairer{files: files, log: log, now: time.Now}
}

// dispatcherAddr makes host:port of --dispatcher (HOST, HOST:PORT, an IP
// address or [IPv6]:PORT) and the port to use when it names none. A port in
// both places must agree.
func dispatcherAddr(arg string, port int, portSet bool) (string, error) {
	host := arg
	if h, p, err := net.SplitHostPort(arg); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return "", cmdutil.Usagef("--dispatcher %q: the port must be 1-65535", arg)
		}
		if portSet && n != port {
			return "", cmdutil.Usagef("--dispatcher %q and --port %d name different ports", arg, port)
		}
		host, port = h, n
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	}
	if host == "" {
		return "", cmdutil.Usagef("--dispatcher is required: the dispatcher's host name or address, e.g. --dispatcher ctl-01")
	}
	if net.ParseIP(host) == nil {
		if err := pki.ValidHostname(host); err != nil {
			return "", cmdutil.Usagef("--dispatcher: %v", err)
		}
	}
	if port < 1 || port > 65535 {
		return "", cmdutil.Usagef("--port must be 1-65535, got %d", port)
	}
	return net.JoinHostPort(host, strconv.Itoa(port)), nil
}

// checkNotPaired refuses to pair an agent whose certificate is valid now
// for its key, unless force.
func (pr *pairer) checkNotPaired(force bool) error {
	leaf, err := validIdentity(pr.files, pr.now())
	if err != nil || leaf == nil || force {
		return nil
	}
	return fmt.Errorf("already paired as %s (certificate %s valid until %s, serial %s): use --force to pair again "+
		"(the dispatcher operator then approves with --replace)", certName(leaf), pr.files.Cert,
		pki.FormatOpenSSLTime(leaf.NotAfter), pki.FormatSerial(leaf.SerialNumber))
}

// validIdentity returns the certificate at files.Cert when it belongs to
// the key at files.Key and is valid at now; nil when there is no
// certificate file. An error says why an existing certificate is not
// usable.
func validIdentity(files pairFiles, now time.Time) (*x509.Certificate, error) {
	certPEM, err := os.ReadFile(files.Cert)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	leaf, err := pki.ParseCertPEM(certPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", files.Cert, err)
	}
	keyPEM, err := pki.ReadKeyFile(files.Key, pki.KeyModeGroup)
	if err != nil {
		return nil, err
	}
	key, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", files.Key, err)
	}
	if !pki.PublicKeysEqual(leaf.PublicKey, key.Public()) {
		return nil, fmt.Errorf("%s does not belong to the key %s", files.Cert, files.Key)
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return nil, fmt.Errorf("%s is not valid now (valid %s to %s)", files.Cert,
			pki.FormatOpenSSLTime(leaf.NotBefore), pki.FormatOpenSSLTime(leaf.NotAfter))
	}
	return leaf, nil
}

// certName is the host name a certificate is for.
func certName(c *x509.Certificate) string {
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.CommonName
}

// submit makes a key and a request, sends the request and records it in
// pairing.json. A pending request of an earlier run is replaced. On any
// failure nothing of this request is left on disk.
func (pr *pairer) submit(ctx context.Context, o pairOptions) (st *pairState, replaced *pairState, err error) {
	files := pr.files
	unlock, err := lockDir(files.dir())
	if err != nil {
		return nil, nil, err
	}
	defer unlock()

	// An earlier request still waiting is superseded: its waiting process
	// sees that pairing.json no longer names it and leaves our files alone.
	replaced, _ = readState(files.state())
	if err := removePending(files); err != nil {
		return nil, nil, fmt.Errorf("remove the material of an earlier request: %w", err)
	}
	key, err := pki.GenerateKey(pki.Options{})
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := pki.MarshalKeyPEM(key)
	if err != nil {
		return nil, nil, err
	}
	csrPEM, err := pki.CreateCSR(pki.Options{}, key, o.hostname)
	if err != nil {
		return nil, nil, err
	}
	nonce := make([]byte, nonceBytes)
	if _, err := rand.Read(nonce); err != nil {
		return nil, nil, fmt.Errorf("make nonce: %w", err)
	}
	defer func() {
		if err != nil {
			_ = removePending(files)
		}
	}()
	// The key never leaves the agent; it waits beside agent.key until
	// the certificate for it arrives.
	if err := pki.WriteNewFileAtomic(files.pendingKey(), keyPEM, modePendingKey); err != nil {
		return nil, nil, err
	}
	if err := pki.WriteFileAtomic(files.csr(), csrPEM, modeCSR); err != nil {
		return nil, nil, err
	}
	client, err := wire.NewPairingClient(wire.PairingConfig{Addr: o.dispatcher, CAFingerprint: o.pin, ConnectTimeout: pr.connectTimeout, Log: pr.log})
	if err != nil {
		return nil, nil, err
	}
	defer client.Close()
	st = &pairState{Nonce: hex.EncodeToString(nonce), Hostname: o.hostname, Dispatcher: o.dispatcher, Pin: o.pin, Files: files}
	ticket, err := client.Request(ctx, wire.PairRequest{Hostname: o.hostname, CSR: string(csrPEM), Nonce: st.Nonce, Port: o.port, Tags: o.tags})
	if err != nil {
		return nil, nil, err
	}
	st.ReqID, st.Code, st.Leaf = ticket.ReqID, ticket.Code, ticket.Leaf.Raw
	st.Sent = pr.now().UTC()
	st.Deadline = st.Sent.Add(o.wait)
	if err := st.write(); err != nil {
		return nil, nil, err
	}
	return st, replaced, nil
}

// logRequest logs the pair-request event of a request sent.
func (pr *pairer) logRequest(st *pairState, background bool) {
	leaf := ""
	if c, err := x509.ParseCertificate(st.Leaf); err == nil {
		leaf = pki.CertFingerprint(c)
	}
	logging.Event(pr.log, logging.ActionPairRequest, zap.String("reqid", st.ReqID), zap.String("host", st.Hostname),
		zap.String("dispatcher", st.Dispatcher), zap.String("code", st.Code), zap.Bool("pinned", st.Pin != ""),
		zap.String("dispatcher_cert", leaf), zap.Bool("background", background),
		zap.String("deadline", st.Deadline.UTC().Format(time.RFC3339)))
}

// await waits for the answer to st until its deadline (or until ctx ends)
// and concludes: it stores the certificate and returns it, or removes the
// pending material and returns an error whose exit code says why.
func (pr *pairer) await(ctx context.Context, st *pairState) (*x509.Certificate, error) {
	client, err := wire.NewPairingClient(wire.PairingConfig{Addr: st.Dispatcher, CAFingerprint: st.Pin, ConnectTimeout: pr.connectTimeout, Log: pr.log})
	if err != nil {
		return nil, err
	}
	defer client.Close()
	wctx, cancel := context.WithDeadline(ctx, st.Deadline)
	defer cancel()
	answer, err := client.Wait(wctx, st.ReqID, st.Nonce)
	return pr.conclude(st, answer, err)
}

// conclude acts on the answer to st (or on waitErr), under the directory
// lock and only if pairing.json still names st: a newer request may have
// replaced it.
func (pr *pairer) conclude(st *pairState, answer *wire.PairAnswer, waitErr error) (*x509.Certificate, error) {
	unlock, err := lockDir(st.Files.dir())
	if err != nil {
		return nil, err
	}
	defer unlock()
	if cur, _ := readState(st.Files.state()); cur == nil || cur.ReqID != st.ReqID {
		pr.reject(st, "replaced by a newer request", cmdutil.ExitFailure)
		return nil, fmt.Errorf("pairing request %s was replaced by a newer request: its answer is ignored", st.ReqID)
	}

	fail := func(code int, reason string, err error) (*x509.Certificate, error) {
		if rmErr := removePending(st.Files); rmErr != nil {
			err = errors.Join(err, fmt.Errorf("remove pending files: %w", rmErr))
		}
		pr.reject(st, reason, code)
		return nil, cmdutil.Exit(code, err)
	}
	if waitErr != nil {
		switch {
		case errors.Is(waitErr, context.DeadlineExceeded):
			detail := ""
			if msg := waitErr.Error(); strings.Contains(msg, "last error") {
				detail = " (" + msg + ")"
			}
			return fail(ExitPairTimeout, "timeout", fmt.Errorf("no answer to pairing request %s within %ds%s: the new key and request were removed; "+
				"run request-pairing again when the operator is ready", st.ReqID, int(st.Deadline.Sub(st.Sent).Round(time.Second).Seconds()), detail))
		case errors.Is(waitErr, wire.ErrRequestUnknown):
			return fail(ExitPairTimeout, "expired", fmt.Errorf("pairing request %s: %v on the dispatcher: the new key and request were removed; "+
				"run request-pairing again", st.ReqID, waitErr))
		case errors.Is(waitErr, context.Canceled):
			return fail(cmdutil.ExitFailure, "cancelled", fmt.Errorf("cancelled: pairing request %s abandoned and its key removed (deny it on the dispatcher)", st.ReqID))
		}
		return fail(cmdutil.ExitFailure, waitErr.Error(), fmt.Errorf("pairing request %s: %w: the new key and request were removed", st.ReqID, waitErr))
	}
	if answer.Status == wire.PairDenied {
		reason := ""
		if answer.Reason != "" {
			reason = " (" + answer.Reason + ")"
		}
		if rmErr := removePending(st.Files); rmErr != nil {
			pr.log.Warn("remove pending files", zap.Error(rmErr))
		}
		logging.EventLevel(pr.log, zapcore.WarnLevel, logging.ActionPairDeny, zap.String("reqid", st.ReqID),
			zap.String("host", st.Hostname), zap.String("reason", answer.Reason), zap.Int("exit", ExitPairDenied))
		return nil, cmdutil.Exit(ExitPairDenied, fmt.Errorf("pairing request %s was denied by the dispatcher%s: nothing stored, the new key was removed", st.ReqID, reason))
	}

	id, err := pr.check(st, answer)
	if err != nil {
		return fail(cmdutil.ExitFailure, err.Error(), fmt.Errorf("refusing the approval of pairing request %s: %w: nothing stored, the new key was removed", st.ReqID, err))
	}
	if err := pr.store(id); err != nil {
		pr.reject(st, err.Error(), cmdutil.ExitFailure)
		return nil, fmt.Errorf("store the certificate of pairing request %s: %w (the new key is still in %s)", st.ReqID, err, st.Files.pendingKey())
	}
	if err := removePending(st.Files); err != nil {
		pr.log.Warn("remove pending files", zap.Error(err))
	}
	logging.Event(pr.log, logging.ActionPairApprove, zap.String("reqid", st.ReqID), zap.String("host", st.Hostname),
		zap.String("serial", pki.FormatSerial(id.cert.SerialNumber)), zap.String("expiry", pki.FormatOpenSSLTime(id.cert.NotAfter)),
		zap.String("cert", st.Files.Cert), zap.Int("exit", 0))
	return id.cert, nil
}

func (pr *pairer) reject(st *pairState, reason string, code int) {
	logging.EventLevel(pr.log, zapcore.WarnLevel, logging.ActionPairReject, zap.String("reqid", st.ReqID),
		zap.String("host", st.Hostname), zap.String("reason", reason), zap.Int("exit", code))
}

// identity is an approved certificate with everything checked, ready to
// store.
type identity struct {
	keyPEM []byte
	cert   *x509.Certificate
	chain  []*x509.Certificate // intermediates sent after the certificate, if any
	cas    []*x509.Certificate
}

// check verifies an approval: the nonce is ours; the certificate is an
// agent certificate for our host name and our key, issued by the CA sent
// (which must be the pinned one when there is a pin); and that CA signed
// the dispatcher certificates the request and the answer travelled over,
// so the CA we are about to trust is the one of the dispatcher whose code
// the operator compared.
func (pr *pairer) check(st *pairState, a *wire.PairAnswer) (*identity, error) {
	if subtle.ConstantTimeCompare([]byte(a.Nonce), []byte(st.Nonce)) != 1 {
		return nil, errors.New("the approval does not carry the request's nonce (someone other than the dispatcher may have answered)")
	}
	keyPEM, err := pki.ReadKeyFile(st.Files.pendingKey(), pki.KeyModeGroup)
	if err != nil {
		return nil, fmt.Errorf("read the pending key: %w", err)
	}
	key, err := pki.ParseKeyPEM(keyPEM)
	if err != nil {
		return nil, fmt.Errorf("read the pending key: %w", err)
	}
	certs, err := pki.ParseCertsPEM([]byte(a.Cert))
	if err != nil {
		return nil, fmt.Errorf("the certificate sent: %w", err)
	}
	cas, err := pki.ParseCertsPEM([]byte(a.CA))
	if err != nil {
		return nil, fmt.Errorf("the ca sent: %w", err)
	}
	roots := x509.NewCertPool()
	if st.Pin != "" {
		var pinned *x509.Certificate
		for _, c := range cas {
			if fp, err := pki.Fingerprint(c.PublicKey); err == nil && fp == st.Pin {
				pinned = c
			}
		}
		if pinned == nil {
			return nil, fmt.Errorf("the ca sent is not the one --ca-fingerprint %s pins", st.Pin)
		}
		roots.AddCert(pinned)
	} else {
		for _, c := range cas {
			roots.AddCert(c)
		}
	}
	cert := certs[0]
	if !pki.PublicKeysEqual(cert.PublicKey, key.Public()) {
		return nil, errors.New("the certificate is for another key than the one this agent sent")
	}
	if err := pki.VerifyAgent(certs, roots, st.Hostname, key.Public(), pr.now()); err != nil {
		return nil, fmt.Errorf("the certificate is not a valid agent certificate for %s from the ca sent: %w", st.Hostname, err)
	}
	seen := []*x509.Certificate{a.Leaf}
	if leaf, err := x509.ParseCertificate(st.Leaf); err == nil {
		seen = append(seen, leaf)
	} else {
		return nil, fmt.Errorf("pairing state: dispatcher certificate: %w", err)
	}
	for _, leaf := range seen {
		if leaf == nil {
			continue
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, CurrentTime: pr.now(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}); err != nil {
			return nil, fmt.Errorf("the ca sent did not sign the dispatcher certificate %s the request travelled to (a man in the middle?)",
				pki.CertFingerprint(leaf))
		}
	}
	return &identity{keyPEM: keyPEM, cert: cert, chain: certs[1:], cas: cas}, nil
}

// store writes ca.crt, agent.key and agent.crt, each atomically.
func (pr *pairer) store(id *identity) error {
	var caPEM, certPEM []byte
	for _, c := range id.cas {
		caPEM = append(caPEM, pki.CertPEM(c)...)
	}
	for _, c := range append([]*x509.Certificate{id.cert}, id.chain...) {
		certPEM = append(certPEM, pki.CertPEM(c)...)
	}
	if err := pki.WriteFileAtomic(pr.files.CA, caPEM, modeCert); err != nil {
		return err
	}
	if err := pki.WriteFileAtomic(pr.files.Key, id.keyPEM, modeKey); err != nil {
		return err
	}
	return pki.WriteFileAtomic(pr.files.Cert, certPEM, modeCert)
}

// resumePairing is the background waiting process: it reads the state
// request-pairing --background left at statePath, waits for the answer
// and concludes. Its error carries the exit code (0 stored, 2 timeout,
// 3 denied, 1 anything else); the outcome is logged either way.
func resumePairing(ctx context.Context, statePath string, log *zap.Logger) (*x509.Certificate, error) {
	st, err := readState(statePath)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("no pending pairing request in %s", statePath)
	}
	pr := newPairer(st.Files, log)
	return pr.await(ctx, st)
}

// pairOptionsFor combines the flags with agent.conf and checks them all,
// before anything is written or sent. The tags of agent.conf go with the
// request; more than a dispatcher takes (config.MaxTags) are refused here.
func pairOptionsFor(cfg *config.Agent, f pairFlags) (pairOptions, error) {
	o := pairOptions{hostname: cfg.Hostname, port: cfg.Port, tags: cfg.Tags, force: f.force}
	if err := config.CheckTags(cfg.Tags); err != nil {
		return o, fmt.Errorf("the [tags] of agent.conf cannot be sent for pairing: %w", err)
	}
	if f.hostname != "" {
		o.hostname = f.hostname
	}
	if err := pki.ValidHostname(o.hostname); err != nil {
		if f.hostname != "" {
			return o, cmdutil.Usagef("--hostname: %v", err)
		}
		return o, fmt.Errorf("hostname %q in agent.conf cannot be paired: %v; set a DNS name there or give --hostname", o.hostname, err)
	}
	port := cfg.PairingPort
	if f.portSet {
		port = f.port
	}
	addr, err := dispatcherAddr(f.dispatcher, port, f.portSet)
	if err != nil {
		return o, err
	}
	o.dispatcher = addr
	wait := defaultWait
	if f.background {
		wait = defaultBackgroundWait
	}
	if f.timeoutSet {
		if f.timeout < 1 || f.timeout > maxWait {
			return o, cmdutil.Usagef("--timeout must be 1-%d seconds, got %d", maxWait, f.timeout)
		}
		wait = f.timeout
	}
	o.wait = time.Duration(wait) * time.Second
	if f.pin != "" {
		if o.pin, err = pki.ParseFingerprint(f.pin); err != nil {
			return o, cmdutil.Usagef("--ca-fingerprint: %v (want sha256:HEX of the ca's public key; see docs/INSTALL.md)", err)
		}
	}
	return o, nil
}

// pairFlags are request-pairing's flags as given.
type pairFlags struct {
	dispatcher, hostname, pin string
	port, timeout             int
	portSet, timeoutSet       bool
	background, force         bool
}

// printTicket tells the user what was sent: in the foreground the request
// id and the code on stdout; in the background the request id alone on
// stdout (scripts read it) and the code on stderr, first.
func printTicket(stdout, stderr io.Writer, st *pairState, background bool) {
	codeLine := fmt.Sprintf("Pairing code: %s — check that the dispatcher shows the same code before approving\n", st.Code)
	if background {
		fmt.Fprint(stderr, codeLine)
		fmt.Fprintln(stdout, st.ReqID)
		return
	}
	fmt.Fprintf(stdout, "Request ID: %s\n", st.ReqID)
	fmt.Fprint(stdout, codeLine)
}
