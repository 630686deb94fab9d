package dispatcher

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/backend"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/transfer"
)

func storeCommand() *cli.Command {
	return &cli.Command{
		Name:  "store",
		Usage: "manage the state store: migrate the PostgreSQL schema, import a state directory into it, export it",
		Description: "The state store is files in state_dir unless dispatcher.conf sets store to a postgres:// URL\n" +
			"(docs/HIGH-AVAILABILITY.md). Every dispatcher, api and pairing process applies pending\n" +
			"migrations when it opens the PostgreSQL store; \"store migrate\" does only that, for a\n" +
			"deployment step before the nodes are restarted. \"store import\" copies a state directory (the Perl\n" +
			"dispatcher's included) into PostgreSQL, \"store export\" copies PostgreSQL into a state directory.",
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
		}, storeImportCommand(), storeExportCommand()},
	}
}

func storeImportCommand() *cli.Command {
	return &cli.Command{
		Name:      "import",
		Usage:     "copy a files-store state directory (the Perl dispatcher's too) into the PostgreSQL store",
		ArgsUsage: "[--from STATE_DIR] [--merge]",
		Description: "Copies the registry (records byte for byte, contact times), the pairing queue, the stored runs,\n" +
			"both revocation lists and the rotation state from --from (default: state_dir) into the PostgreSQL\n" +
			"store named by store in dispatcher.conf. Locks are not copied. Stop every dispatcher, api and\n" +
			"pairing process first. A database that holds state already is refused unless --merge: then each\n" +
			"record replaces the one of the same key and the others stay. Running it again with --merge\n" +
			"completes an import that stopped half-way.",
		Flags: append(globalFlags(),
			&cli.StringFlag{Name: "from", Usage: "the state directory to copy (default: state_dir of dispatcher.conf)"},
			&cli.BoolFlag{Name: "merge", Usage: "copy into a database that holds state: replace records of the same key, keep the others"},
		),
		Action: reportErrors(func(c *cli.Context) error {
			if c.NArg() > 0 {
				return cmdutil.Usagef("store import takes no arguments: name the state directory with --from DIR")
			}
			e, err := load(c)
			if err != nil {
				return err
			}
			defer e.close()
			if !backend.IsPostgres(e.cfg.Store) {
				return fmt.Errorf("store is not a postgres:// URL in %s: import copies a state directory into the PostgreSQL store; set store first (docs/HIGH-AVAILABILITY.md)", c.String("config"))
			}
			dir := c.String("from")
			if dir == "" {
				dir = e.cfg.StateDir
			}
			if fi, err := os.Stat(dir); err != nil {
				return fmt.Errorf("--from: %w", err)
			} else if !fi.IsDir() {
				return fmt.Errorf("--from %s is not a directory", dir)
			}
			pg, err := openTarget(c, e)
			if err != nil {
				return err
			}
			defer pg.Close()
			n, err := transfer.Copy(c.Context, store.NewFiles(dir), pg, transfer.Options{Merge: c.Bool("merge"), Warn: warn(c)})
			var ne *transfer.NotEmptyError
			if errors.As(err, &ne) {
				return fmt.Errorf("the PostgreSQL store already holds state (%s): import does not mix two states; add --merge to copy into it anyway (records of the same key are replaced, the others stay), or set store to an empty database", ne.First)
			}
			return reportCopy(c, "imported "+dir+" into the PostgreSQL store", "import --merge", n, err)
		}),
	}
}

func storeExportCommand() *cli.Command {
	return &cli.Command{
		Name:      "export",
		Usage:     "copy the PostgreSQL store into a files-store state directory",
		ArgsUsage: "--to STATE_DIR [--force]",
		Description: "Copies the registry, the pairing queue, the stored runs, both revocation lists and the rotation\n" +
			"state from the PostgreSQL store named by store in dispatcher.conf into --to, a state directory\n" +
			"the files store (and the Perl dispatcher) reads. Locks are not copied. --to is required: nothing\n" +
			"is written into state_dir unless --to names it. A directory that holds state already is refused\n" +
			"unless --force: then each record replaces the one of the same key and the others stay.",
		Flags: append(globalFlags(),
			&cli.StringFlag{Name: "to", Usage: "the state directory to write (created when missing)"},
			&cli.BoolFlag{Name: "force", Usage: "copy into a directory that holds state: replace records of the same key, keep the others"},
		),
		Action: reportErrors(func(c *cli.Context) error {
			dir := c.String("to")
			if dir == "" || c.NArg() > 0 {
				return cmdutil.Usagef("store export needs --to STATE_DIR, the directory to write")
			}
			e, err := load(c)
			if err != nil {
				return err
			}
			defer e.close()
			if !backend.IsPostgres(e.cfg.Store) {
				return fmt.Errorf("store is not a postgres:// URL in %s: export copies the PostgreSQL store into a state directory, and the files store is one already", c.String("config"))
			}
			if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
				return fmt.Errorf("--to %s is not a directory", dir)
			}
			pg, err := openTarget(c, e)
			if err != nil {
				return err
			}
			defer pg.Close()
			n, err := transfer.Copy(c.Context, pg, store.NewFiles(dir), transfer.Options{Merge: c.Bool("force"), Warn: warn(c)})
			var ne *transfer.NotEmptyError
			if errors.As(err, &ne) {
				return fmt.Errorf("%s already holds state (%s): export writes a new state directory; name an empty or new one, or add --force to copy into it anyway (records of the same key are replaced, the others stay)", dir, ne.First)
			}
			return reportCopy(c, "exported the PostgreSQL store to "+dir, "export --force", n, err)
		}),
	}
}

// transferStore is the PostgreSQL store as import and export use it.
type transferStore interface {
	transfer.Target
	Close() error
}

// openTarget opens the store of dispatcher.conf (migrating its schema).
func openTarget(c *cli.Context, e *env) (transferStore, error) {
	st, err := cmdutil.OpenStore(c.Context, e.cfg, e.log)
	if err != nil {
		return nil, err
	}
	t, ok := st.(transferStore)
	if !ok {
		_ = st.Close()
		return nil, errors.New("the store of dispatcher.conf cannot be copied record by record")
	}
	return t, nil
}

// warn prints a warning of the copy on stderr.
func warn(c *cli.Context) func(error) {
	return func(err error) { fmt.Fprintf(c.App.ErrWriter, "warning: %v\n", err) }
}

// reportCopy prints what a copy copied: a line per concern, or with --json
// {"ok":true,"agents":N,…}. When the copy failed after writing records, the
// error says how to complete it.
func reportCopy(c *cli.Context, title, again string, n transfer.Counts, err error) error {
	if err != nil {
		if n.Copied() > 0 {
			return fmt.Errorf("%w (the %d records copied before stay, each whole: fix the cause, then run store %s to complete the copy)", err, n.Copied(), again)
		}
		return err
	}
	if c.Bool("json") {
		return writeJSON(c, struct {
			OK bool `json:"ok"`
			transfer.Counts
		}{true, n})
	}
	var b strings.Builder
	b.WriteString(title + ":\n")
	for _, row := range []struct {
		what string
		n    int
	}{
		{"agents", n.Agents}, {"contact times", n.ContactTimes}, {"pairing requests", n.PairRequests}, {"runs", n.Runs},
		{"agent revocations", n.AgentRevocations}, {"dispatcher revocations", n.DispatcherRevocations}, {"rotation", n.Rotation},
	} {
		fmt.Fprintf(&b, "  %-24s%d\n", row.what, row.n)
	}
	if n.Skipped > 0 {
		fmt.Fprintf(&b, "  %-24s%d (see the warnings)\n", "skipped", n.Skipped)
	}
	b.WriteString("locks are not copied: they end with the processes that hold them\n")
	_, err = fmt.Fprint(c.App.Writer, b.String())
	return err
}
