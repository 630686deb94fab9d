package agent

import (
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
)

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "serve the dispatcher on port 7443 (mutual TLS) until SIGTERM; SIGHUP reloads",
		Description: "Loads agent.conf, scripts.conf, the agent certificate, the CA, revoked-serials and the\n" +
			"dispatcher-serial pin, then serves /ping, /run and /capabilities, and the certificate\n" +
			"lifecycle (/renew, /renew-complete, /revocations, /dispatcher-serial). SIGHUP reloads all of\n" +
			"them without dropping the listening socket or runs in flight; SIGTERM stops accepting\n" +
			"and lets runs in flight finish (up to 60 s).",
		Action: func(c *cli.Context) error {
			if os.Getenv("GOGC") == "" {
				// An agent is mostly idle and sits on every host: collect
				// at half the default heap growth. The heap after a burst
				// of runs stays ~2 MB smaller for a negligible CPU cost
				// (docs/BENCHMARKS.md); GOGC in the environment still wins.
				debug.SetGCPercent(agentGCPercent)
			}
			srv, closeLog, err := open(pathsOf(c), c.App.ErrWriter)
			if err != nil {
				return err
			}
			defer closeLog()

			hup := make(chan os.Signal, 1)
			signal.Notify(hup, syscall.SIGHUP)
			defer signal.Stop(hup)
			go func() {
				for range hup {
					_ = srv.Reload() // logged; the old snapshot stays on failure
				}
			}()
			ln, err := srv.Listen()
			if err != nil {
				return err
			}
			return srv.Serve(c.Context, ln)
		},
	}
}

// agentGCPercent is the agent daemon's GOGC unless the environment sets one.
const agentGCPercent = 50

// Open loads an agent daemon from the agent.conf and scripts.conf at
// configPath and allowlistPath (both must exist) as "serve" does, with the
// logger agent.conf asks for; "stderr" means the writer given. The caller
// serves it with Listen (or its own listener) and Serve, and calls the
// returned function once Serve has returned, to close the log.
//
// It is what the fleet simulator (bench/fleetsim) runs thousands of in one
// process.
func Open(configPath, allowlistPath string, stderr io.Writer) (*Server, func(), error) {
	return open(paths{config: configPath, allowlist: allowlistPath, configSet: true, allowlistSet: true}, stderr)
}

func open(p paths, stderr io.Writer) (*Server, func(), error) {
	boot, closeBoot, err := logging.New(logging.Options{Output: logging.OutputStderr, Tag: "dispatcher-agent", Stderr: stderr})
	if err != nil {
		return nil, nil, err
	}
	srv, err := newServer(p, boot)
	closeBoot()
	if err != nil {
		return nil, nil, err
	}
	cfg := srv.snap.Load().cfg
	log, closeLog, err := logging.New(logging.Options{Output: cfg.Log, Format: cfg.LogFormat, Tag: "dispatcher-agent", Stderr: stderr})
	if err != nil {
		return nil, nil, err
	}
	srv.setLogger(log)
	return srv, func() { _ = closeLog() }, nil
}
