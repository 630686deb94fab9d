package agent

import "github.com/urfave/cli/v2"

// Usage is the one-line description shown in help.
const Usage = "agent daemon: runs allowlisted scripts for the dispatcher over mutual TLS"

// Default paths of the agent's files.
const (
	DefaultConfig    = "/etc/dispatcher-agent/agent.conf"
	DefaultAllowlist = "/etc/dispatcher-agent/scripts.conf"
)

// Commands returns the agent role's commands.
func Commands() []*cli.Command {
	cmds := []*cli.Command{
		serveCommand(), requestPairingCommand(), pairingStatusCommand(), selfCheckCommand(), selfPingCommand(),
	}
	for _, c := range cmds {
		c.Flags = append(c.Flags, globalFlags()...)
		// No "help" subcommand (--help stays), as in the dispatcher role.
		c.HideHelpCommand = true
	}
	return cmds
}

// globalFlags are accepted by every agent command, before or after its
// arguments.
func globalFlags() []cli.Flag {
	return []cli.Flag{
		&cli.StringFlag{Name: "config", Value: DefaultConfig, EnvVars: []string{"DISPATCHER_AGENT_CONFIG"}, Usage: "agent.conf to read"},
		&cli.StringFlag{Name: "allowlist", Value: DefaultAllowlist, EnvVars: []string{"DISPATCHER_AGENT_ALLOWLIST"}, Usage: "scripts.conf to read"},
	}
}
