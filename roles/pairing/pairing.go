package pairing

import "github.com/urfave/cli/v2"

// Usage is the one-line description shown in help.
const Usage = "pairing listener: enrols new agents after the operator approves them"

// Commands returns the pairing role's commands.
func Commands() []*cli.Command { return nil }
