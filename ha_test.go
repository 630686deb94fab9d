package main

import (
	"errors"
	"os"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/dispatcher-dev/dispatcher/internal/pgtest"
)

func init() {
	scriptCmds["pgdb"] = cmdPGDB
	// [skip-postgres]: DISPATCHER_SKIP_POSTGRES=1, this machine has no
	// PostgreSQL and says so; scripts that need it skip.
	scriptConds["skip-postgres"] = func() bool { return os.Getenv(pgtest.SkipEnv) == "1" }
}

// pgdb VAR: start a throw-away PostgreSQL server for this script (stopped
// when it ends) and set VAR to the URL of an empty database on it. Without
// the PostgreSQL binaries it fails, saying how to install them; a script
// that needs PostgreSQL starts with "[skip-postgres] skip".
func cmdPGDB(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: pgdb VAR")
	}
	s, err := pgtest.New()
	if errors.Is(err, pgtest.ErrMissing) {
		ts.Fatalf("%v: install it (apt-get install postgresql) or set %s=1 to skip the PostgreSQL scripts", err, pgtest.SkipEnv)
	}
	ts.Check(err)
	ts.Defer(s.Stop)
	url, err := s.CreateDB("script")
	ts.Check(err)
	ts.Setenv(args[0], url)
}
