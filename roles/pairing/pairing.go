package pairing

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/output"
)

// Usage is the one-line description shown in help.
const Usage = "pairing listener: enrols new agents after the operator approves them"

// promptEvery is how often the interactive prompt re-reads the queue for
// requests another listener received and decisions taken elsewhere.
const promptEvery = time.Second

// Commands returns the pairing role's commands. Started with no command
// the role serves too (see Serve).
func Commands() []*cli.Command {
	return []*cli.Command{{
		Name:  "serve",
		Usage: "serve the pairing listener (port 7444) until SIGTERM, or q at the prompt",
		Description: "Listens with TLS and the dispatcher certificate for agents asking to be paired\n" +
			"(dispatcher-agent request-pairing). On a terminal each request is shown with its host\n" +
			"name, source IP, request id and 6-digit code, and approved or denied at the prompt.\n" +
			"Without a terminal it serves until SIGTERM; approve and deny requests from another\n" +
			"process with 'dispatcher list-requests', 'dispatcher approve ID', 'dispatcher deny ID'.",
		Flags:  Flags(),
		Action: Serve,
	}}
}

// Flags are the options of serve, also accepted by the role without a
// command.
func Flags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Value: config.DefaultDispatcherConfig, EnvVars: []string{"DISPATCHER_CONFIG"}, Usage: "dispatcher.conf to read"},
		&cli.IntFlag{Name: "port", Usage: "port to listen on", DefaultText: "pairing_port in dispatcher.conf, 7444"},
		&cli.StringFlag{Name: "bind", Usage: "address to listen on", DefaultText: "all addresses"},
	}
}

// Serve runs the pairing listener: the role's default action, serve, and
// dispatcher pairing-mode.
func Serve(c *cli.Context) error {
	port, err := cmdutil.PortFlag(c)
	if err != nil {
		return err
	}
	cfg, log, closeLog, err := load(c)
	if err != nil {
		return err
	}
	defer closeLog()
	if port == 0 {
		port = cfg.PairingPort
	}
	cert, caFingerprint, err := servingCert(cfg)
	if err != nil {
		return err
	}
	st, err := cmdutil.OpenStore(c.Context, cfg, log)
	if err != nil {
		return err
	}
	defer st.Close()
	p, err := control.NewPairing(control.PairingOptions{
		Queue: st, Registry: st, Revocations: st,
		CA:       control.Pair{Cert: cfg.CA, Key: cfg.CAKey},
		CertDays: cfg.CertDays,
		MaxQueue: cfg.PairingMaxQueue,
		Timeout:  cfg.PairingTimeout.Duration,
		Log:      log,
	})
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(c.String("bind"), strconv.Itoa(port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (is pairing-mode already running? choose another with --port or pairing_port)", addr, err)
	}
	srv := newServer(p, cert, log)
	interactive := isTerminal(c.App.Reader) && isTerminal(c.App.Writer)
	banner := c.App.ErrWriter
	if interactive {
		banner = c.App.Writer
	}
	writeBanner(banner, ln.Addr().String(), cert, caFingerprint)

	ctx, cancel := context.WithCancel(c.Context)
	defer cancel()
	if interactive {
		pr := newPrompt(c.App.Reader, c.App.Writer, p, promptEvery, srv.queued)
		go func() {
			pr.run(ctx)
			cancel()
		}()
	}
	return srv.serve(ctx, ln)
}

// load reads dispatcher.conf and builds the logger it asks for.
func load(c *cli.Context) (*config.Dispatcher, *zap.Logger, func() error, error) {
	return cmdutil.LoadDispatcherConfig(c, "dispatcher-pairing")
}

// servingCert is the dispatcher certificate and key followed by the CA
// certificates of the ca file, so that an agent sees the CA and can check
// it against the fingerprint it was given (request-pairing
// --ca-fingerprint). It also returns that fingerprint: pki.Fingerprint of
// the (first) CA's public key.
func servingCert(cfg *config.Dispatcher) (tls.Certificate, string, error) {
	id, err := control.LoadIdentity(cfg.Cert, cfg.Key, cfg.CA)
	if err != nil {
		return tls.Certificate{}, "", fmt.Errorf("%w: run 'dispatcher setup-ca' and 'dispatcher setup-dispatcher' first (or fix cert, key and ca in dispatcher.conf)", err)
	}
	caPEM, err := os.ReadFile(cfg.CA)
	if err != nil {
		return tls.Certificate{}, "", &control.MissingIdentityError{Path: cfg.CA, Err: err}
	}
	cas, err := pki.ParseCertsPEM(caPEM)
	if err != nil {
		return tls.Certificate{}, "", &control.MissingIdentityError{Path: cfg.CA, Err: err}
	}
	fp, err := pki.Fingerprint(cas[0].PublicKey)
	if err != nil {
		return tls.Certificate{}, "", &control.MissingIdentityError{Path: cfg.CA, Err: err}
	}
	cert := id.Cert
	cert.Certificate = cert.Certificate[:1:1]
	for _, ca := range cas {
		cert.Certificate = append(cert.Certificate, ca.Raw)
	}
	return cert, fp, nil
}

// writeBanner says where the listener is and what agents can pin.
func writeBanner(w io.Writer, addr string, cert tls.Certificate, caFingerprint string) {
	fmt.Fprintf(w, "pairing listener on %s\n", addr)
	fmt.Fprintf(w, "  dispatcher certificate  %s\n", pki.CertFingerprint(cert.Leaf))
	fmt.Fprintf(w, "  ca key fingerprint      %s\n", caFingerprint)
	fmt.Fprintf(w, "agents: dispatcher-agent request-pairing --dispatcher THIS-HOST --ca-fingerprint %s\n", caFingerprint)
}

// isTerminal reports whether v, the app's input or output, is a terminal.
func isTerminal(v any) bool {
	f, ok := v.(*os.File)
	return ok && output.IsTerminal(f)
}
