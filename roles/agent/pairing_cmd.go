package agent

import (
	"context"
	"fmt"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
)

func requestPairingCommand() *cli.Command {
	return &cli.Command{
		Name:  "request-pairing",
		Usage: "ask the dispatcher for this agent's certificate (pairing, port 7444)",
		Description: "Checks that the directories of cert, key and ca in agent.conf can be written, makes a new\n" +
			"key (it never leaves this host) and a certificate request for the host name, sends it to the\n" +
			"dispatcher's pairing listener and shows a 6-digit code: approve on the dispatcher only if it\n" +
			"shows the same code. The [tags] of agent.conf go with the request: the dispatcher shows them\n" +
			"before approval and registers them. On approval agent.key (0640), agent.crt and ca.crt (0644)\n" +
			"are written.\n" +
			"\n" +
			"Foreground: prints \"Request ID: ID\" and \"Pairing code: NNNNNN …\" and waits (--timeout,\n" +
			"default 600 s). --background prints the request id alone on stdout (the code goes to stderr)\n" +
			"and returns 0 at once; a background process waits (default 30 s) and logs the outcome.\n" +
			"\n" +
			"--ca-fingerprint sha256:HEX pins the dispatcher CA (SHA-256 of its public key, as\n" +
			"  openssl x509 -in ca.crt -pubkey -noout | openssl pkey -pubin -outform DER | sha256sum\n" +
			"prints it on the dispatcher): to any other server nothing is sent.\n" +
			"\n" +
			"Exit status (foreground, and of the background process): 0 certificate stored, 2 no answer\n" +
			"in time (key and request removed), 3 denied (nothing stored), 1 any other failure.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dispatcher", Usage: "the dispatcher: `HOST`, address or HOST:PORT (required)"},
			&cli.IntFlag{Name: "port", Usage: "dispatcher pairing `PORT`", DefaultText: "pairing_port in agent.conf, 7444"},
			&cli.StringFlag{Name: "hostname", Usage: "`NAME` to pair under", DefaultText: "hostname in agent.conf"},
			&cli.BoolFlag{Name: "background", Usage: "print the request id and return at once; a background process waits for the answer"},
			&cli.IntFlag{Name: "timeout", Usage: "`SECONDS` to wait for the answer, 1-600", DefaultText: "600, or 30 with --background"},
			&cli.StringFlag{Name: "ca-fingerprint", Usage: "`sha256:HEX` of the dispatcher CA's public key: pair only with a dispatcher it signed"},
			&cli.BoolFlag{Name: "force", Usage: "pair again although this agent has a valid certificate (replaced only on approval)"},
			&cli.StringFlag{Name: "resume", Hidden: true, Usage: "wait for the request recorded in this state file (the background process)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cmdutil.Usagef("request-pairing takes no arguments (got %q): name the dispatcher with --dispatcher HOST", c.Args().First())
			}
			p := pathsOf(c)
			if state := c.String("resume"); state != "" {
				return resumeCommand(c, p, state)
			}
			if c.String("dispatcher") == "" {
				return cmdutil.Usagef("--dispatcher is required: the dispatcher's host name or address, e.g. request-pairing --dispatcher ctl-01")
			}
			env, err := openAgent(c, p)
			if err != nil {
				return err
			}
			defer env.close()
			return requestPairing(c.Context, env, p, pairFlags{
				dispatcher: c.String("dispatcher"), hostname: c.String("hostname"), pin: c.String("ca-fingerprint"),
				port: c.Int("port"), portSet: c.IsSet("port"), timeout: c.Int("timeout"), timeoutSet: c.IsSet("timeout"),
				background: c.Bool("background"), force: c.Bool("force"),
			})
		},
	}
}

// resumeCommand is the background waiting process. It logs as agent.conf
// says, or to stderr (its log) when agent.conf no longer loads: the
// outcome must be recorded somewhere.
func resumeCommand(c *cli.Context, p paths, state string) error {
	env, err := openAgent(c, p)
	if err != nil {
		log, closeLog, lerr := logging.New(logging.Options{Output: logging.OutputStderr, Tag: "dispatcher-agent", Stderr: c.App.ErrWriter})
		if lerr != nil {
			return err
		}
		defer closeLog()
		logging.EventLevel(log, zapcore.WarnLevel, logging.ActionConfigWarn, zap.String("file", p.config), zap.Error(err))
		env = &agentEnv{log: log, close: func() {}}
	}
	defer env.close()
	_, err = resumePairing(c.Context, state, env.log)
	return err
}

// agentEnv is what a local command works with once agent.conf is loaded.
type agentEnv struct {
	cfg            *config.Agent
	log            *zap.Logger
	close          func()
	stdout, stderr io.Writer
}

// openAgent loads agent.conf (its warnings go to stderr) and builds the
// logger it asks for.
func openAgent(c *cli.Context, p paths) (*agentEnv, error) {
	boot, closeBoot, err := logging.New(logging.Options{Output: logging.OutputStderr, Tag: "dispatcher-agent", Stderr: c.App.ErrWriter})
	if err != nil {
		return nil, err
	}
	cfg, err := loadConfig(p, boot)
	closeBoot()
	if err != nil {
		return nil, err
	}
	log, closeLog, err := logging.New(logging.Options{Output: cfg.Log, Format: cfg.LogFormat, Tag: "dispatcher-agent", Stderr: c.App.ErrWriter})
	if err != nil {
		return nil, fmt.Errorf("set up logging: %w", err)
	}
	return &agentEnv{cfg: cfg, log: log, close: func() { _ = closeLog() }, stdout: c.App.Writer, stderr: c.App.ErrWriter}, nil
}

func pathsOf(c *cli.Context) paths {
	return paths{config: c.String("config"), allowlist: c.String("allowlist"), configSet: c.IsSet("config"), allowlistSet: c.IsSet("allowlist")}
}

// requestPairing checks everything it can without the network, sends the
// request, and then waits in the foreground or starts the background
// waiting process.
func requestPairing(ctx context.Context, env *agentEnv, p paths, f pairFlags) error {
	o, err := pairOptionsFor(env.cfg, f)
	if err != nil {
		return err
	}
	pr := newPairer(pairFilesFor(env.cfg), env.log)
	if err := pr.checkNotPaired(o.force); err != nil {
		return err
	}
	if err := checkWritable(pr.files); err != nil {
		return err
	}
	previous, _ := validIdentity(pr.files, pr.now())
	st, replaced, err := pr.submit(ctx, o)
	if err != nil {
		return err
	}
	printTicket(env.stdout, env.stderr, st, f.background)
	pr.logRequest(st, f.background)
	if replaced != nil {
		fmt.Fprintf(env.stderr, "Note: this replaces pending request %s (sent to %s): deny it on the dispatcher.\n", replaced.ReqID, replaced.Dispatcher)
	}
	if o.hostname != env.cfg.Hostname {
		fmt.Fprintf(env.stderr, "Note: pairing as %s, but agent.conf says hostname = %q: set it to %s so the agent answers to that name.\n",
			o.hostname, env.cfg.Hostname, o.hostname)
	}
	if f.background {
		pid, where, err := startWaiter(p, env.cfg, st)
		if err != nil {
			_ = removePending(pr.files)
			return fmt.Errorf("start the background waiting process: %w (pairing request %s abandoned)", err, st.ReqID)
		}
		fmt.Fprintf(env.stderr, "Waiting in the background (pid %d) until %s; the outcome is logged to %s.\n"+
			"Check with: dispatcher-agent pairing-status\n", pid, st.Deadline.Local().Format(time.DateTime), where)
		return nil
	}
	fmt.Fprintf(env.stderr, "Waiting up to %ds for the operator to approve on the dispatcher (Ctrl-C gives up)...\n", int(o.wait.Seconds()))
	cert, err := pr.await(ctx, st)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.stdout, "Paired as %s: certificate stored in %s (expires %s, serial %s)\n", st.Hostname, pr.files.Cert,
		pki.FormatOpenSSLTime(cert.NotAfter), pki.FormatSerial(cert.SerialNumber))
	if previous != nil {
		fmt.Fprintln(env.stderr, "Reload a running agent to use the new certificate: systemctl reload dispatcher-agent (or send it SIGHUP).")
	}
	return nil
}

// startWaiter starts this program again as "dispatcher-agent
// request-pairing --resume STATE" in a session of its own, with stdin and
// stdout on /dev/null and stderr on the agent's log, and does not wait for
// it. It returns the process id and where the outcome is logged.
func startWaiter(p paths, cfg *config.Agent, st *pairState) (int, string, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, "", err
	}
	args := []string{"dispatcher-agent", "request-pairing", "--resume", st.Files.state()}
	if p.configSet {
		abs, err := filepath.Abs(p.config)
		if err != nil {
			return 0, "", err
		}
		args = append(args, "--config", abs)
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, "", err
	}
	defer null.Close()
	errOut, where, err := waiterStderr(cfg, st.Files, null)
	if err != nil {
		return 0, "", err
	}
	if errOut != null {
		defer errOut.Close()
	}
	cmd := &osexec.Cmd{
		Path:        exe,
		Args:        args, // argv[0] selects the agent role, whatever the binary is called
		Dir:         "/",
		Stdin:       null,
		Stdout:      null,
		Stderr:      errOut,
		SysProcAttr: detached(),
	}
	if err := cmd.Start(); err != nil {
		return 0, "", err
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return pid, where, nil
}

// waiterStderr opens what the background waiter's stderr is: the log file
// when agent.conf logs to one, pairing.log beside the key when it logs to
// stderr (there is no terminal in the background), /dev/null with syslog.
func waiterStderr(cfg *config.Agent, files pairFiles, null *os.File) (*os.File, string, error) {
	out := cfg.LogOutput()
	switch {
	case out == config.LogSyslog:
		return null, "syslog (tag dispatcher-agent)", nil
	case out == config.LogStderr:
		out = files.waitLog()
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, logging.LogFileMode)
	if err != nil {
		return nil, "", fmt.Errorf("open %s for the background process: %w", out, err)
	}
	return f, out, nil
}
