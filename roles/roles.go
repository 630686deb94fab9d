package roles

import (
	"context"
	"fmt"
	"io"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/roles/agent"
	"github.com/dispatcher-dev/dispatcher/roles/api"
	"github.com/dispatcher-dev/dispatcher/roles/dispatcher"
	"github.com/dispatcher-dev/dispatcher/roles/internal/clidoc"
	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/pairing"
)

// The four roles.
const (
	Dispatcher = "dispatcher"
	Agent      = "agent"
	API        = "api"
	Pairing    = "pairing"
)

// byName maps the basename the binary was started under to its role. Any
// name not listed (dispatcher-linux-amd64, a renamed copy) is the
// dispatcher.
var byName = map[string]string{
	"dispatcher":         Dispatcher,
	"dispatcher-agent":   Agent,
	"dispatcher-api":     API,
	"dispatcher-pairing": Pairing,
}

// programName is how each role names itself in help, --version and errors.
var programName = map[string]string{
	Dispatcher: "dispatcher",
	Agent:      "dispatcher-agent",
	API:        "dispatcher-api",
	Pairing:    "dispatcher-pairing",
}

// RoleOf returns the role for argv[0]. Symlinks are deliberately not
// resolved: a symlink named dispatcher-agent selects the agent role.
func RoleOf(argv0 string) string {
	if r, ok := byName[filepath.Base(argv0)]; ok {
		return r
	}
	return Dispatcher
}

// Main runs the role selected by args[0] with args[1:] and returns the
// process exit code. It never calls os.Exit.
func Main(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	argv0 := "dispatcher"
	if len(args) > 0 {
		argv0 = args[0]
		args = args[1:]
	}
	role := RoleOf(argv0)
	err := run(ctx, NewApp(role, stdin, stdout, stderr), args)
	if err != nil {
		if msg := err.Error(); msg != "" && !isSilent(err) {
			fmt.Fprintf(stderr, "%s: %s\n", programName[role], msg)
		}
	}
	return cmdutil.Code(err)
}

// isSilent reports an ExitError without a message: the command already
// told the user (for instance as JSON on stdout).
func isSilent(err error) bool {
	ee, ok := err.(*cmdutil.ExitError)
	return ok && ee.Err == nil
}

func run(ctx context.Context, app *cli.App, args []string) error {
	argv := append([]string{app.Name}, cmdutil.Permute(app, args)...)
	return app.RunContext(ctx, argv)
}

// NewApp builds the command-line application of role. Nothing in it writes
// to the process's own streams or exits: output goes to stdout and stderr,
// input comes from stdin, and errors come back from Run.
func NewApp(role string, stdin io.Reader, stdout, stderr io.Writer) *cli.App {
	name := programName[role]
	// serve is the action of the role started without a command: the
	// pairing role serves, as pairing-mode does, and the api role serves.
	var serve cli.ActionFunc
	app := &cli.App{
		Name:            name,
		HelpName:        name,
		Reader:          stdin,
		Writer:          stdout,
		ErrWriter:       stderr,
		HideVersion:     true,
		HideHelpCommand: false,
		// A comma is part of a repeatable option's value: --tag role=web,db
		// means role web or db, not two options.
		DisableSliceFlagSeparator: true,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "version", Usage: "print the version, commit and Go version, then exit"},
		},
		ExitErrHandler: func(*cli.Context, error) {}, // roles.Main decides exit codes
		OnUsageError: func(_ *cli.Context, err error, _ bool) error {
			return cmdutil.Usagef("%v (see %s --help)", err, name)
		},
		Action: func(c *cli.Context) error {
			if c.Bool("version") {
				fmt.Fprintln(c.App.Writer, cmdutil.VersionLine(name))
				return nil
			}
			if serve != nil && c.NArg() == 0 {
				return serve(c)
			}
			return unknownCommand(c)
		},
	}
	switch role {
	case Agent:
		app.Usage = agent.Usage
		app.Commands = agent.Commands()
	case API:
		app.Usage = api.Usage
		app.Commands = api.Commands()
		app.Flags = append(app.Flags, api.Flags()...)
		serve = api.Serve
	case Pairing:
		app.Usage = pairing.Usage
		app.Commands = pairing.Commands()
		app.Flags = append(app.Flags, pairing.Flags()...)
		serve = pairing.Serve
	default:
		app.Usage = dispatcher.Usage
		app.Commands = append(dispatcher.Commands(), delegations(stdin, stdout, stderr)...)
	}
	app.Commands = append(app.Commands, versionCommand(name))
	app.Commands = append(app.Commands, clidoc.Commands(func(*cli.App) clidoc.ManOptions { return manOptions(role) })...)
	for _, c := range app.Commands {
		setUsageErrors(c, name)
	}
	return app
}

// delegations are the subcommand forms of the other roles:
// "dispatcher agent …" is "dispatcher-agent …", and so on.
func delegations(stdin io.Reader, stdout, stderr io.Writer) []*cli.Command {
	var cmds []*cli.Command
	for _, r := range []string{Agent, API, Pairing} {
		r := r
		cmds = append(cmds, &cli.Command{
			Name:            r,
			Usage:           "run as " + programName[r] + " (same as starting the binary under that name)",
			SkipFlagParsing: true,
			HideHelp:        true,
			Action: func(c *cli.Context) error {
				return run(c.Context, NewApp(r, stdin, stdout, stderr), c.Args().Slice())
			},
		})
	}
	// pairing-mode is the pairing role's serve, under the Perl dispatcher's
	// name for it.
	cmds = append(cmds, &cli.Command{
		Name:            "pairing-mode",
		Usage:           "serve the pairing listener and approve agents (same as " + programName[Pairing] + " serve)",
		SkipFlagParsing: true,
		HideHelp:        true,
		Action: func(c *cli.Context) error {
			return run(c.Context, NewApp(Pairing, stdin, stdout, stderr), append([]string{"serve"}, c.Args().Slice()...))
		},
	})
	return cmds
}

func versionCommand(name string) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print the version, commit and Go version",
		Action: func(c *cli.Context) error {
			fmt.Fprintln(c.App.Writer, cmdutil.VersionLine(name))
			return nil
		},
	}
}

// unknownCommand prints usage on stderr and asks for exit 2.
func unknownCommand(c *cli.Context) error {
	out := c.App.Writer
	c.App.Writer = c.App.ErrWriter
	defer func() { c.App.Writer = out }()
	if c.NArg() == 0 {
		_ = cli.ShowAppHelp(c)
		return cmdutil.Exit(cmdutil.ExitUsage, nil)
	}
	fmt.Fprintf(c.App.ErrWriter, "%s: unknown command %q\n\n", c.App.Name, c.Args().First())
	_ = cli.ShowAppHelp(c)
	return cmdutil.Exit(cmdutil.ExitUsage, nil)
}

func setUsageErrors(c *cli.Command, name string) {
	if c.OnUsageError == nil {
		c.OnUsageError = func(_ *cli.Context, err error, _ bool) error {
			return cmdutil.Usagef("%v (see %s %s --help)", err, name, c.Name)
		}
	}
	for _, sub := range c.Subcommands {
		setUsageErrors(sub, name)
	}
}

// manPages holds what each role's man page says beyond its commands and
// flags.
var manPages = map[string]struct {
	description string
	files       []clidoc.ManFile
}{
	Dispatcher: {
		description: "The control-host command line of dispatcher: it runs scripts named in each agent's allowlist " +
			"on agent hosts over HTTPS with mutual TLS (agents listen on port 7443), pairs new agents, and renews, " +
			"rotates and revokes certificates issued by the private CA it sets up.\n\n" +
			"The same binary is every role: started as dispatcher-agent, dispatcher-api or dispatcher-pairing " +
			"(or given the role as first command) it is that role. Set-up is dispatcher setup-ca, then " +
			"dispatcher setup-dispatcher, then dispatcher pairing-mode while agents request pairing.",
		files: []clidoc.ManFile{
			{Path: dispatcher.DefaultConfig, Text: "configuration (--config, $DISPATCHER_CONFIG)"},
			{Path: "/etc/dispatcher/ca.key", Text: "the CA private key (0600); ca.crt beside it is the CA certificate"},
			{Path: "/etc/dispatcher/dispatcher.key", Text: "the dispatcher's key (0600); dispatcher.crt beside it is its certificate"},
			{Path: "/var/lib/dispatcher", Text: "state: agent registry, pairing queue, runs, locks (state_dir)"},
		},
	},
	Agent: {
		description: "The agent daemon of dispatcher: it listens on port 7443 for the dispatcher, identified by " +
			"mutual TLS, and runs only the scripts named in its allowlist, with the arguments it was sent. " +
			"request-pairing enrols it with a dispatcher once; serve runs it.",
		files: []clidoc.ManFile{
			{Path: "/etc/dispatcher-agent/agent.conf", Text: "configuration (--config)"},
			{Path: "/etc/dispatcher-agent/scripts.conf", Text: "the allowlist of scripts (--allowlist)"},
			{Path: "/etc/dispatcher-agent/agent.key", Text: "the agent's key (0640); agent.crt and ca.crt beside it come from pairing"},
		},
	},
	API: {
		description: "The HTTP API of dispatcher (port 7445, 127.0.0.1 by default): runs, pings, discovery, " +
			"status and live output for pipelines, authorised by the auth hook. Started without a command it serves.",
		files: []clidoc.ManFile{
			{Path: dispatcher.DefaultConfig, Text: "configuration (--config)"},
		},
	},
	Pairing: {
		description: "The pairing listener of dispatcher (port 7444): agents send their certificate requests to it, " +
			"and the operator approves each after comparing its 6-digit code. Started without a command it serves, " +
			"as dispatcher pairing-mode does.",
		files: []clidoc.ManFile{
			{Path: dispatcher.DefaultConfig, Text: "configuration (--config)"},
		},
	},
}

// manOptions are the parts of role's man page that are not in its app.
func manOptions(role string) clidoc.ManOptions {
	page := manPages[role]
	var see []string
	for _, r := range []string{Dispatcher, Agent, API, Pairing} {
		if r != role {
			see = append(see, programName[r]+"(1)")
		}
	}
	return clidoc.ManOptions{
		Source:      "dispatcher " + cmdutil.Build().Version,
		Description: page.description,
		Files:       page.files,
		SeeAlso:     see,
	}
}
