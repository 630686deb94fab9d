package api

import "github.com/urfave/cli/v2"

// Usage is the one-line description shown in help.
const Usage = "HTTP API over the dispatcher's operations"

// Commands returns the api role's commands.
func Commands() []*cli.Command { return nil }
