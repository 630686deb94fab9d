package dispatcher

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil"
	"github.com/dispatcher-dev/dispatcher/roles/internal/config"
	"github.com/dispatcher-dev/dispatcher/roles/internal/control"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/backend"
)

func migrateCommand() *cli.Command {
	return &cli.Command{
		Name:  "migrate",
		Usage: "check an installation of the Perl dispatcher before this one takes over",
		Description: "\"migrate check\" reads dispatcher.conf, the CA, the dispatcher certificate and state_dir and reports,\n" +
			"without changing anything, what it found and what happens when this dispatcher takes over\n" +
			"(docs/MIGRATING.md).",
		Action: func(c *cli.Context) error { return cli.ShowSubcommandHelp(c) },
		Subcommands: []*cli.Command{{
			Name:  "check",
			Usage: "report what this dispatcher finds of a Perl dispatcher installation; changes nothing",
			Description: "Reads dispatcher.conf (legacy or TOML), the CA, the dispatcher certificate, the registry,\n" +
				"rotation.json, the pairing queue, the lock files and revoked-serials, and prints one line per\n" +
				"finding (OK, INFO, WARN, BLOCK) by section, then what will happen. Nothing is written, not even\n" +
				"a log line. Exit 0 when nothing blocks a takeover, 1 when some finding does (BLOCK).",
			Flags:  globalFlags(),
			Action: reportErrors(migrateCheck),
		}},
	}
}

// migrateCheck is "migrate check": dispatcher.conf is loaded without a
// logger (its problems become findings), then control.MigrateCheck.
func migrateCheck(c *cli.Context) error {
	if c.NArg() > 0 {
		return cmdutil.Usagef("migrate check takes no arguments")
	}
	cfg, mc := loadForMigrate(c.String("config"), c.IsSet("config"))
	r := control.MigrateCheck(control.MigrateCheckOptions{
		Config:   mc,
		CA:       control.Pair{Cert: cfg.CA, Key: cfg.CAKey},
		Identity: control.Pair{Cert: cfg.Cert, Key: cfg.Key},
		StateDir: cfg.StateDir,
		Postgres: backend.IsPostgres(cfg.Store),
		CertDays: cfg.CertDays,
		Now:      time.Now(),
	})
	var err error
	if c.Bool("json") {
		err = writeJSON(c, r)
	} else {
		err = writeMigrateReport(c.App.Writer, r)
	}
	if err == nil && !r.OK {
		return cmdutil.Exit(cmdutil.ExitFailure, nil)
	}
	return err
}

// legacyWarning starts the one warning the loader gives a file in the
// legacy key = value format.
const legacyWarning = "legacy key = value format"

// loadForMigrate reads dispatcher.conf for migrate check: a missing or
// broken file is reported, and the defaults stand in for it. A missing
// file named with --config is the error every other command gives.
func loadForMigrate(path string, named bool) (*config.Dispatcher, control.MigrateConfig) {
	mc := control.MigrateConfig{Path: path}
	cfg, err := config.LoadDispatcher(path, nil)
	switch {
	case errors.Is(err, fs.ErrNotExist) && named:
		mc.Err = fmt.Errorf("config file %s does not exist", path)
	case errors.Is(err, fs.ErrNotExist):
		mc.Missing = true
	case err != nil:
		mc.Err = err
	}
	if err != nil {
		return config.DefaultDispatcher(), mc
	}
	for _, w := range cfg.Warnings {
		if strings.HasPrefix(w.Reason, legacyWarning) {
			mc.Legacy = true
			continue
		}
		mc.Warnings = append(mc.Warnings, control.MigrateConfigWarning{Line: w.Line, Key: w.Key, Reason: w.Reason})
	}
	return cfg, mc
}

// writeMigrateReport prints the report: each section with one line per
// finding, then what will happen, then the verdict.
func writeMigrateReport(w io.Writer, r *control.MigrateReport) error {
	var b strings.Builder
	for _, s := range r.Sections {
		b.WriteString(s.Name + "\n")
		for _, f := range s.Findings {
			fmt.Fprintf(&b, "  %-5s  %s\n", strings.ToUpper(f.Level), f.Text)
		}
	}
	b.WriteString("what will happen\n")
	for _, s := range r.WillHappen {
		fmt.Fprintf(&b, "  - %s\n", s)
	}
	if r.OK {
		b.WriteString("nothing blocks a takeover\n")
	} else {
		fmt.Fprintf(&b, "%s a takeover\n", control.BlockCount(r.Blockers))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
