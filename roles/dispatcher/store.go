package dispatcher

import (
	"fmt"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store/backend"
)

func storeCommand() *cli.Command {
	return &cli.Command{
		Name:  "store",
		Usage: "manage the state store: migrate the PostgreSQL schema",
		Description: "The state store is files in state_dir unless dispatcher.conf sets store to a postgres:// URL\n" +
			"(docs/HIGH-AVAILABILITY.md). Every dispatcher, api and pairing process applies pending\n" +
			"migrations when it opens the PostgreSQL store; \"store migrate\" does only that, for a\n" +
			"deployment step before the nodes are restarted.",
		Action: func(c *cli.Context) error { return cli.ShowSubcommandHelp(c) },
		Subcommands: []*cli.Command{{
			Name:  "migrate",
			Usage: "apply the PostgreSQL schema migrations not applied yet, and say which",
			Flags: globalFlags(),
			Action: reportErrors(func(c *cli.Context) error {
				e, err := load(c)
				if err != nil {
					return err
				}
				defer e.close()
				if !backend.IsPostgres(e.cfg.Store) {
					return fmt.Errorf("store is not set in %s: the files store in state_dir has no schema to migrate", c.String("config"))
				}
				applied, err := backend.Migrate(c.Context, e.cfg.Store, e.log)
				if err != nil {
					return err
				}
				if c.Bool("json") {
					if applied == nil {
						applied = []int{}
					}
					return writeJSON(c, map[string]any{"ok": true, "applied": applied})
				}
				if len(applied) == 0 {
					_, err = fmt.Fprintln(c.App.Writer, "the schema is up to date")
					return err
				}
				v := make([]string, len(applied))
				for i, n := range applied {
					v[i] = fmt.Sprint(n)
				}
				_, err = fmt.Fprintf(c.App.Writer, "applied migrations %s\n", strings.Join(v, ", "))
				return err
			}),
		}},
	}
}
