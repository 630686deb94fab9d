package agent

import (
	"bufio"
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/wire"
)

// Levels of a self-check line.
const (
	checkOK   = "OK"
	checkWarn = "WARN"
	checkFail = "FAIL"
	checkPass = "PASS" // self-ping
)

// expiryWarning is how close to its expiry the agent certificate makes
// self-check warn (the dispatcher renews at half of cert_days).
const expiryWarning = 30 * 24 * time.Hour

func selfCheckCommand() *cli.Command {
	return &cli.Command{
		Name:    "self-check",
		Aliases: []string{"ping-self"},
		Usage:   "check agent.conf, the allowlist, script_dirs, certificates and revocations (no network)",
		Description: "Loads everything the daemon loads, as it loads it, and reports each part on one line:\n" +
			"OK, WARN (works, but look) or FAIL (the agent cannot work so). Exits 1 if any line is FAIL.\n" +
			"Nothing is sent over the network: see self-ping for a live check of the listener.",
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cmdutil.Usagef("self-check takes no arguments")
			}
			r := &checkReport{w: c.App.Writer}
			selfCheck(r, pathsOf(c), time.Now())
			if r.failed > 0 {
				return cmdutil.Exit(cmdutil.ExitFailure, fmt.Errorf("self-check: %d of %d checks failed", r.failed, r.lines))
			}
			return nil
		},
	}
}

// checkReport prints self-check lines and counts failures.
type checkReport struct {
	w             io.Writer
	lines, failed int
}

func (r *checkReport) add(level, format string, args ...any) {
	r.lines++
	if level == checkFail {
		r.failed++
	}
	fmt.Fprintf(r.w, "%-4s %s\n", level, fmt.Sprintf(format, args...))
}

// selfCheck runs every check with the loaders the daemon uses (snapshot.go),
// silenced: what they would log is reported here instead.
func selfCheck(r *checkReport, p paths, now time.Time) {
	nop := zap.NewNop()
	cfg, err := loadConfig(p, nop)
	if err != nil {
		r.add(checkFail, "agent.conf: %v", err)
		return
	}
	if _, err := os.Stat(p.config); errors.Is(err, fs.ErrNotExist) {
		r.add(checkWarn, "agent.conf %s does not exist: using the defaults (hostname %s)", p.config, cfg.Hostname)
	} else {
		r.add(checkOK, "agent.conf %s: hostname %s, port %d, %d warning(s)", p.config, cfg.Hostname, cfg.Port, len(cfg.Warnings))
	}
	for _, w := range cfg.Warnings {
		r.add(checkWarn, "agent.conf: %s", w)
	}

	checkAllowlist(r, p, cfg, nop)
	checkScriptDirs(r, cfg)
	checkIdentity(r, cfg, now)

	set, bad, err := loadRevoked(cfg)
	switch {
	case err != nil:
		r.add(checkFail, "revoked-serials: %v", err)
	case len(bad) > 0:
		r.add(checkWarn, "revoked-serials %s: %d serial(s), %d bad line(s) ignored: %v", cfg.RevokedSerials, set.Len(), len(bad), errors.Join(bad...))
	case fileMissing(cfg.RevokedSerials):
		r.add(checkOK, "revoked-serials %s: absent (nothing revoked)", cfg.RevokedSerials)
	default:
		r.add(checkOK, "revoked-serials %s: %d serial(s)", cfg.RevokedSerials, set.Len())
	}

	switch pin, err := loadPin(cfg); {
	case err != nil:
		r.add(checkFail, "dispatcher-serial: %v", err)
	case pin == nil:
		r.add(checkOK, "dispatcher-serial %s: absent (dispatchers are recognised by their certificate's role)", cfg.DispatcherSerialPath)
	default:
		r.add(checkOK, "dispatcher-serial %s: present, pins %s (for a dispatcher certificate without a role)", cfg.DispatcherSerialPath, pki.FormatSerial(pin))
	}

	if ps, err := readState(pairFilesFor(cfg).state()); err != nil {
		r.add(checkWarn, "pairing: %v", err)
	} else if ps != nil {
		r.add(checkWarn, "pairing: request %s to %s pending until %s (see pairing-status)", ps.ReqID, ps.Dispatcher, ps.Deadline.UTC().Format(time.RFC3339))
	}
}

func fileMissing(path string) bool {
	_, err := os.Stat(path)
	return errors.Is(err, fs.ErrNotExist)
}

func checkAllowlist(r *checkReport, p paths, cfg *config.Agent, log *zap.Logger) {
	al, err := loadAllowlist(p, cfg, log)
	switch {
	case err != nil:
		r.add(checkFail, "scripts.conf: %v", err)
		return
	case al.missing:
		r.add(checkWarn, "scripts.conf %s does not exist: no script can run", p.allowlist)
		return
	}
	skipped := 0
	for _, w := range al.skipped {
		if w.Name != "" {
			skipped++
		}
	}
	r.add(checkOK, "scripts.conf %s: %d script(s) loaded, %d skipped", p.allowlist, al.allow.Len(), skipped+len(al.warnings))
	for _, w := range al.warnings {
		r.add(checkWarn, "scripts.conf: %s", w)
	}
	for _, w := range al.skipped {
		if w.Name != "" { // script_dirs problems are reported by checkScriptDirs
			r.add(checkWarn, "scripts.conf: %s", w)
		}
	}
}

func checkScriptDirs(r *checkReport, cfg *config.Agent) {
	if len(cfg.ScriptDirs) == 0 {
		r.add(checkWarn, "script_dirs: not set: any absolute path in scripts.conf may run (set script_dirs to confine scripts)")
		return
	}
	for _, d := range cfg.ScriptDirs {
		fi, err := os.Stat(d)
		switch {
		case err != nil:
			r.add(checkFail, "script_dirs: %s: %v: no script in it can run", d, unwrapPath(err))
		case !fi.IsDir():
			r.add(checkFail, "script_dirs: %s is not a directory", d)
		default:
			r.add(checkOK, "script_dirs: %s exists", d)
		}
	}
}

// checkIdentity reports the certificate, the key and the CA.
func checkIdentity(r *checkReport, cfg *config.Agent, now time.Time) {
	cert, certErr := loadCert(cfg)
	cas, roots, caErr := loadCA(cfg)
	if certErr != nil {
		r.add(checkFail, "certificate: %v", certErr)
	}
	if caErr != nil {
		r.add(checkFail, "ca: %v", caErr)
	} else {
		var names []string
		for _, c := range cas {
			fp, _ := pki.Fingerprint(c.PublicKey)
			names = append(names, fmt.Sprintf("%q %s", c.Subject.CommonName, fp))
		}
		r.add(checkOK, "ca %s: %s", cfg.CA, strings.Join(names, ", "))
	}
	if certErr != nil {
		return
	}
	leaf := cert.Leaf
	what := fmt.Sprintf("certificate %s: %s, serial %s, expires %s", cfg.Cert, certName(leaf), pki.FormatSerial(leaf.SerialNumber), pki.FormatOpenSSLTime(leaf.NotAfter))
	left := leaf.NotAfter.Sub(now)
	switch {
	case caErr != nil:
		r.add(checkWarn, "%s (not checked against the ca)", what)
	default:
		if err := verifyOwn(cert.Certificate, cert.PrivateKey, roots, cfg.Hostname, now); err != nil {
			r.add(checkFail, "%s: %v", what, err)
		} else if pki.CertRole(leaf) == pki.RoleNone {
			r.add(checkWarn, "%s: legacy certificate without a role (issued by the Perl dispatcher): pair again to get one", what)
		} else if left < expiryWarning {
			r.add(checkWarn, "%s: agent certificate for %s, %d day(s) left (the dispatcher renews it on contact)", what, cfg.Hostname, int(left.Hours()/24))
		} else {
			r.add(checkOK, "%s: agent certificate for %s, signed by the ca, %d days left", what, cfg.Hostname, int(left.Hours()/24))
		}
	}
	fi, err := os.Stat(cfg.Key)
	switch {
	case err != nil:
		r.add(checkFail, "key %s: %v", cfg.Key, err)
	default:
		r.add(checkOK, "key %s matches the certificate (mode %04o)", cfg.Key, fi.Mode().Perm())
	}
}

// selfPingTimeout bounds connect, handshake and answer of self-ping.
const selfPingTimeout = 5 * time.Second

func selfPingCommand() *cli.Command {
	return &cli.Command{
		Name:  "self-ping",
		Usage: "check that the running agent refuses this agent's own certificate as a client",
		Description: "Connects to the running agent on loopback (or its bind address) and the port in agent.conf,\n" +
			"presenting the agent's OWN certificate as the client certificate, and asks for /ping.\n" +
			"An agent certificate is not a dispatcher, so the listener must refuse it (a stolen agent\n" +
			"certificate must not drive other agents):\n" +
			"\n" +
			"  PASS  the handshake (or, for a legacy certificate, the request) is refused: the listener\n" +
			"        is up and enforces identity;\n" +
			"  FAIL  the request is served (identity not enforced), nothing listens, or the connection\n" +
			"        is closed before the handshake (allowed_ips or the rate limit; the check counts as\n" +
			"        one refused handshake from this address).\n" +
			"\n" +
			"Exits 0 on PASS, 1 on FAIL.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Usage: "`HOST:PORT` of the listener (default: 127.0.0.1, or bind, and port from agent.conf)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cmdutil.Usagef("self-ping takes no arguments")
			}
			cfg, err := loadConfig(pathsOf(c), zap.NewNop())
			if err != nil {
				return err
			}
			addr := c.String("addr")
			if addr == "" {
				addr = selfAddr(cfg)
			}
			level, msg := selfPing(c.Context, cfg, addr)
			fmt.Fprintf(c.App.Writer, "%-4s %s\n", level, msg)
			if level != checkPass {
				return cmdutil.Exit(cmdutil.ExitFailure, nil)
			}
			return nil
		},
	}
}

// selfAddr is where the agent of cfg can be reached from this host.
func selfAddr(cfg *config.Agent) string {
	host := cfg.Bind
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		host = "127.0.0.1"
		if ip != nil && ip.To4() == nil {
			host = "::1"
		}
	}
	return net.JoinHostPort(host, strconv.Itoa(cfg.Port))
}

// selfPing connects to addr with the agent's own certificate and reports
// whether the listener refused it.
func selfPing(ctx context.Context, cfg *config.Agent, addr string) (level, msg string) {
	cert, err := loadCert(cfg)
	if err != nil {
		return checkFail, err.Error()
	}
	_, roots, err := loadCA(cfg)
	if err != nil {
		return checkFail, err.Error()
	}
	ctx, cancel := context.WithTimeout(ctx, selfPingTimeout)
	defer cancel()
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return checkFail, fmt.Sprintf("no agent listening on %s (is dispatcher-agent serve running?)", addr)
		}
		return checkFail, fmt.Sprintf("connect to %s: %v", addr, err)
	}
	defer raw.Close()
	_ = raw.SetDeadline(time.Now().Add(selfPingTimeout))
	var notUs error
	conn := tls.Client(raw, &tls.Config{
		MinVersion:   tls.VersionTLS12,
		Certificates: []tls.Certificate{*cert},
		// The listener is checked below: it must be this agent.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			notUs = verifyListener(cs.PeerCertificates, roots, cfg.Hostname, cert.Leaf.PublicKey)
			return notUs
		},
	})
	refused := fmt.Sprintf("listener on %s is up and refuses agent certificates as clients", addr)
	err = conn.HandshakeContext(ctx)
	if err == nil {
		// Under TLS 1.3 the client finishes first: the refusal comes with
		// the answer.
		err = askPing(conn)
		if err == nil {
			return checkFail, fmt.Sprintf("identity not enforced: the listener on %s served /ping to this agent's own certificate", addr)
		}
	}
	var op *net.OpError
	var status *statusError
	switch {
	case notUs != nil:
		return checkFail, fmt.Sprintf("the listener on %s is not this agent: %v", addr, notUs)
	case errors.As(err, &status) && status.code == http.StatusForbidden:
		return checkPass, fmt.Sprintf("%s (request refused: %s)", refused, status.text)
	case errors.As(err, &status):
		return checkFail, fmt.Sprintf("the listener on %s answered %d %s to this agent's own certificate", addr, status.code, status.text)
	case errors.As(err, &op) && op.Op == "remote error":
		return checkPass, fmt.Sprintf("%s (%v)", refused, op.Err)
	case errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET):
		return checkFail, fmt.Sprintf("the listener on %s closed the connection without a tls alert (allowed_ips or the rate limit excludes this address?)", addr)
	}
	return checkFail, fmt.Sprintf("tls with %s: %v", addr, err)
}

// verifyListener checks that the listener presents this agent's own
// identity: an agent certificate for hostname, from the CA, for key.
func verifyListener(chain []*x509.Certificate, roots *x509.CertPool, hostname string, key crypto.PublicKey) error {
	return pki.VerifyAgent(chain, roots, hostname, key, time.Time{})
}

// statusError is an answer to self-ping's request other than 200.
type statusError struct {
	code int
	text string
}

func (e *statusError) Error() string { return fmt.Sprintf("%d %s", e.code, e.text) }

// askPing sends POST /ping on conn and reads the answer: nil for 200, a
// *statusError for another status, the connection's error otherwise.
func askPing(conn *tls.Conn) error {
	const body = `{"reqid":"self-ping"}`
	req := "POST " + wire.PathPing + " HTTP/1.1\r\nHost: self-ping\r\nContent-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\nConnection: close\r\n\r\n" + body
	if _, err := io.WriteString(conn, req); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	return &statusError{code: resp.StatusCode, text: strings.TrimSpace(string(b))}
}
