package postgres

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/roles/internal/logging"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// migration is one file of migrations/: NNNN_name.sql, applied in the
// order of NNNN.
type migration struct {
	version int
	name    string
	sql     string
}

// migrations returns the embedded migrations in order. Their versions are
// 1, 2, 3, … (a test checks it), so a database's schema_migrations says
// exactly which were applied.
func migrations() ([]migration, error) {
	entries, err := fs.ReadDir(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	var out []migration
	for _, e := range entries {
		num, name, ok := strings.Cut(strings.TrimSuffix(e.Name(), ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v < 1 {
			return nil, fmt.Errorf("migration file %s: want NNNN_name.sql", e.Name())
		}
		b, err := migrationFiles.ReadFile("migrations/" + e.Name())
		if err != nil {
			return nil, err
		}
		out = append(out, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].version < out[j].version })
	return out, nil
}

// Advisory lock keys of the store, in the two-int4 key space of
// pg_advisory_lock(int, int), apart from the bigint keys of the run locks'
// holders: the first is "disp", the second says what is locked.
const (
	lockSpace      = 0x64697370
	lockMigrations = 1
	lockQueue      = 2
)

// migrateTimeout bounds the wait for another node's migrations.
const migrateTimeout = 5 * time.Minute

// migrate applies on c, one node at a time, the migrations the database
// has not had, each in a transaction that also records it in
// schema_migrations, and returns their versions.
func migrate(ctx context.Context, c *pgx.Conn, log *zap.Logger) (applied []int, err error) {
	all, err := migrations()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	if _, err := c.Exec(ctx, "SELECT pg_advisory_lock($1, $2)", lockSpace, lockMigrations); err != nil {
		return nil, fmt.Errorf("wait for the schema migration lock: %w", err)
	}
	defer func() {
		uctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
		defer cancel()
		if _, uerr := c.Exec(uctx, "SELECT pg_advisory_unlock($1, $2)", lockSpace, lockMigrations); uerr != nil {
			closeConn(c) // ending the session releases the lock
		}
	}()
	if _, err := c.Exec(ctx, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version integer PRIMARY KEY,
	name    text NOT NULL,
	applied timestamptz NOT NULL DEFAULT now()
)`); err != nil {
		return nil, fmt.Errorf("create schema_migrations: %w", err)
	}
	rows, err := c.Query(ctx, "SELECT version FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	done, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		return nil, fmt.Errorf("read schema_migrations: %w", err)
	}
	have := make(map[int]bool, len(done))
	newest := 0
	for _, v := range done {
		have[v] = true
		newest = max(newest, v)
	}
	if known := all[len(all)-1].version; newest > known {
		// A newer dispatcher migrated the database: its migrations keep
		// the schema readable by older nodes during a rolling upgrade.
		log.Warn("the database schema is newer than this dispatcher; upgrade this node",
			zap.Int("schema_version", newest), zap.Int("known_version", known))
	}
	for _, m := range all {
		if have[m.version] {
			continue
		}
		err := pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.version, m.name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("apply schema migration %04d_%s: %w", m.version, m.name, err)
		}
		logging.Event(log, logging.ActionStoreMigrate, zap.Int("version", m.version), zap.String("name", m.name))
		applied = append(applied, m.version)
	}
	return applied, nil
}
