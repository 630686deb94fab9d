package dispatcher

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/install"
)

// geteuid is os.Geteuid; tests replace it to see an unprivileged run.
var geteuid = os.Geteuid

func installCommand() *cli.Command {
	return &cli.Command{
		Name:      "install",
		Usage:     "install this binary, its role symlinks, user, config skeleton and service on this host",
		UsageText: "dispatcher install [--role dispatcher|agent|api] [--prefix DIR] [--root DIR] [--init systemd|openrc|none] [--dry-run]",
		Description: "Copies the running binary to PREFIX/bin/dispatcher with the dispatcher-agent,\n" +
			"dispatcher-api and dispatcher-pairing symlinks, creates the role's system user and\n" +
			"group, its configuration directory with the example configuration (never replacing\n" +
			"an existing file), its state directory and its service unit, with the modes of\n" +
			"docs/CLI.md. Each step is skipped when already done, so running it again changes\n" +
			"nothing. Services are not enabled or started. Needs root unless --root names a\n" +
			"staging directory; --dry-run shows the plan without changing anything.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "role", Value: install.RoleDispatcher, Usage: "what this host runs: dispatcher, agent or api"},
			&cli.StringFlag{Name: "prefix", Value: install.DefaultPrefix, Usage: "the binary goes to `DIR`/bin"},
			&cli.StringFlag{Name: "root", Value: "/", Usage: "lay everything down under `DIR` (like DESTDIR), for packages and tests"},
			&cli.StringFlag{Name: "init", Usage: "service to write: systemd, openrc or none (default: detected under --root)"},
			&cli.BoolFlag{Name: "dry-run", Usage: "print what would be done and change nothing"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cmdutil.Usagef("install takes no arguments (see dispatcher install --help)")
			}
			plan, err := install.NewPlan(install.Options{Role: c.String("role"), Prefix: c.String("prefix"), Root: c.String("root"), Init: c.String("init"), Geteuid: geteuid})
			if err != nil {
				return err
			}
			w := c.App.Writer
			if need := plan.NeedRoot(); len(need) > 0 && !c.Bool("dry-run") {
				return errors.New("these steps need root:\n  " + strings.Join(need, "\n  ") + "\nrun it with sudo (nothing was changed; --dry-run shows the whole plan)")
			}
			n := plan.Changes()
			if c.Bool("dry-run") {
				for _, a := range plan.Actions {
					fmt.Fprintln(w, a)
				}
				fmt.Fprintf(w, "dry run: %s, nothing done\n", changes(n))
				return nil
			}
			if err := plan.Apply(func(a install.Action) { fmt.Fprintln(w, a) }); err != nil {
				return err
			}
			fmt.Fprintln(w, changes(n))
			for _, s := range plan.Next {
				fmt.Fprintln(w, "next: "+s)
			}
			return nil
		},
	}
}

// changes is the summary line of an install.
func changes(n int) string {
	switch n {
	case 0:
		return "nothing to change"
	case 1:
		return "1 change"
	}
	return fmt.Sprintf("%d changes", n)
}
