package dispatcher

import (
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/roles/internal/demo"
)

func demoCommand() *cli.Command {
	return &cli.Command{
		Name:  "demo",
		Usage: "build a throw-away world (CA, dispatcher, three agents) and show a pairing, a run, a ping and a discovery",
		Description: "Everything happens in a new temporary directory, on 127.0.0.1 and free ports, with the\n" +
			"real binary and the command lines an operator would type; nothing outside the directory\n" +
			"is touched. All processes are stopped and the directory removed at the end.",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "keep", Usage: "keep the demo directory to look around afterwards"},
		},
		Action: func(c *cli.Context) error {
			exe, err := os.Executable()
			if err != nil {
				return fmt.Errorf("find this binary to run the demo with: %w", err)
			}
			return demo.Run(c.Context, demo.Options{Exe: exe, Keep: c.Bool("keep"), Out: c.App.Writer})
		},
	}
}
