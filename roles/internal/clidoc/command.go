package clidoc

import (
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
)

// Commands returns "completion" (with subcommands bash and zsh) and the
// hidden "man", which write the completion script or man page of the app
// they are run in. man(app) supplies the parts of the page not in the app;
// it is called only when the page is written.
func Commands(man func(app *cli.App) ManOptions) []*cli.Command {
	shell := func(name string, gen func(*cli.Context) error) *cli.Command {
		return &cli.Command{
			Name:   name,
			Usage:  "print the " + name + " completion script",
			Action: gen,
		}
	}
	return []*cli.Command{
		{
			Name:      "completion",
			Usage:     "print a shell completion script (bash or zsh)",
			ArgsUsage: "bash|zsh",
			Description: "bash: source <(NAME completion bash), or save the output as\n" +
				"/usr/share/bash-completion/completions/NAME.\n\n" +
				"zsh: save the output as _NAME in a directory of $fpath (before compinit runs).",
			HideHelpCommand: true,
			Subcommands: []*cli.Command{
				shell("bash", func(c *cli.Context) error { return Bash(c.App.Writer, c.App) }),
				shell("zsh", func(c *cli.Context) error { return Zsh(c.App.Writer, c.App) }),
			},
			Action: func(c *cli.Context) error {
				if c.NArg() == 0 {
					return cmdutil.Usagef("completion: name a shell: bash or zsh")
				}
				return cmdutil.Usagef("completion: unknown shell %q: bash or zsh", c.Args().First())
			},
		},
		{
			Name:   "man",
			Usage:  "print the man page (roff)",
			Hidden: true,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "date", Usage: "date for the page header, e.g. 2026-11-26"},
			},
			Action: func(c *cli.Context) error {
				if c.NArg() > 0 {
					return cmdutil.Usagef("man: unexpected argument %q", c.Args().First())
				}
				o := man(c.App)
				if d := c.String("date"); d != "" {
					o.Date = d
				}
				if err := Man(c.App.Writer, c.App, o); err != nil {
					return fmt.Errorf("write man page: %w", err)
				}
				return nil
			},
		},
	}
}
