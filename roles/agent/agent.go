package agent

import "github.com/urfave/cli/v2"

// Usage is the one-line description shown in help.
const Usage = "agent daemon: runs allowlisted scripts for the dispatcher over mutual TLS"

// Commands returns the agent role's commands.
func Commands() []*cli.Command { return nil }
