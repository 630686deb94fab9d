package dispatcher

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "build a throw-away world (CA, dispatcher, three agents) and show a pairing, a run, a ping and a discovery",
		Action: func(c *cli.Context) error {
			return cmdutil.Exit(cmdutil.ExitFailure, fmt.Errorf("the demo is not available yet: it needs the agent daemon, run and pairing, "+
				"which are still being built; today you can try 'dispatcher setup-ca --config FILE' and 'dispatcher setup-dispatcher --config FILE'"))
		},
	}
}
