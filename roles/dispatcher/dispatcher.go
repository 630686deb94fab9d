package dispatcher

import (
	"errors"

	"github.com/urfave/cli/v2"
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/output"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Usage is the one-line description shown in help.
const Usage = "run allowlisted scripts on agent hosts over mutual TLS"

// DefaultConfig is where dispatcher.conf is read from without --config.
const DefaultConfig = "/etc/dispatcher/dispatcher.conf"

// Commands returns the dispatcher role's commands.
func Commands() []*cli.Command {
	cmds := []*cli.Command{
		setupCACommand(), setupDispatcherCommand(),
		listRequestsCommand(), approveCommand(), denyCommand(), listAgentsCommand(), unpairCommand(),
		runCommand(), pingCommand(), discoverCommand(), statusCommand(), listLocksCommand(),
		renewCommand(), rotateCertCommand(), revokeCommand(), serialStatusCommand(),
		demoCommand(), installCommand(), storeCommand(), migrateCommand(),
	}
	for _, c := range cmds {
		c.Flags = append(c.Flags, globalFlags()...)
		c.Action = reportErrors(c.Action)
		// No "help" subcommand (--help stays): a host named "h" or "help"
		// must reach run and ping as a host.
		c.HideHelpCommand = true
	}
	return cmds
}

// globalFlags are accepted by every command, before or after its arguments.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Value: DefaultConfig, EnvVars: []string{"DISPATCHER_CONFIG"}, Usage: "dispatcher.conf to read"},
		&cli.IntFlag{Name: "port", Usage: "agent port, when a host does not name one (default: the agent's registered port, else 7443)"},
		&cli.BoolFlag{Name: "json", Usage: "print results and errors as JSON"},
		&cli.StringFlag{Name: "username", EnvVars: []string{"USER"}, Usage: "user name passed to auth hooks"},
		&cli.StringFlag{Name: "token", EnvVars: []string{"DISPATCHER_TOKEN"}, Usage: "token passed to auth hooks and agents (the flag wins over $DISPATCHER_TOKEN)"},
	}
}

// env is what a command works with once the config is loaded.
type env struct {
	cfg   *config.Dispatcher
	log   *zap.Logger
	close func() error
}

// load reads dispatcher.conf and builds the logger it asks for. A missing
// file at the default path means defaults; a missing file named with
// --config is an error.
func load(c *cli.Context) (*env, error) {
	cfg, log, closeLog, err := cmdutil.LoadDispatcherConfig(c, "dispatcher")
	if err != nil {
		return nil, err
	}
	return &env{cfg: cfg, log: log, close: closeLog}, nil
}

// loadStore is load followed by opening the store: what most commands
// start with. e.close closes both. On error nothing is left open.
func loadStore(c *cli.Context) (*env, store.Store, error) {
	e, err := load(c)
	if err != nil {
		return nil, nil, err
	}
	st, err := cmdutil.OpenStore(c.Context, e.cfg, e.log)
	if err != nil {
		_ = e.close()
		return nil, nil, err
	}
	closeLog := e.close
	e.close = func() error { return errors.Join(st.Close(), closeLog()) }
	return e, st, nil
}

// reportErrors makes --json errors JSON on stdout ({"ok":false,"error":…},
// plus "conflicts" for a lock conflict); without --json the error goes back
// to roles.Main, which prints it on stderr. An ExitError without a message
// passes as it is: the command has already printed its result.
func reportErrors(action cli.ActionFunc) cli.ActionFunc {
	return func(c *cli.Context) error {
		err := action(c)
		var ee *cmdutil.ExitError
		if err == nil || !c.Bool("json") || errors.As(err, &ee) && ee.Err == nil {
			return err
		}
		body := map[string]any{"ok": false, "error": err.Error()}
		var lc *store.LockConflictError
		if errors.As(err, &lc) {
			body["conflicts"] = lc.Pairs()
		}
		var denied *control.AuthDeniedError
		if errors.As(err, &denied) {
			body["code"] = denied.Code()
		}
		_ = writeJSON(c, body)
		return cmdutil.Exit(cmdutil.Code(err), nil)
	}
}

func writeJSON(c *cli.Context, v any) error { return output.WriteJSON(c.App.Writer, v) }
