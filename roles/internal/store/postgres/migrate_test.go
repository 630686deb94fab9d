package postgres

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// The migrations are numbered 1, 2, 3, … with no gap or repeat.
func TestMigrationFilesNumbered(t *testing.T) {
	all, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	if len(all) == 0 {
		t.Fatal("no migrations embedded")
	}
	for i, m := range all {
		if m.version != i+1 || m.name == "" || m.sql == "" {
			t.Errorf("migration %d is %04d_%s (%d bytes), want version %d with a name and SQL", i, m.version, m.name, len(m.sql), i+1)
		}
	}
}

// knownVersions lists the versions of the embedded migrations.
func knownVersions(t *testing.T) []int {
	t.Helper()
	all, err := migrations()
	if err != nil {
		t.Fatal(err)
	}
	var out []int
	for _, m := range all {
		out = append(out, m.version)
	}
	return out
}

// appliedVersions reads schema_migrations.
func appliedVersions(t *testing.T, url string) []int {
	t.Helper()
	c := sqlConn(t, url)
	rows, err := c.Query(context.Background(), "SELECT version FROM schema_migrations ORDER BY version")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[int])
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// Nodes starting together on an empty database all open it, and the
// schema is applied once.
func TestOpenConcurrent(t *testing.T) {
	url := newDB(t)
	const nodes = 4
	var wg sync.WaitGroup
	errs := make([]error, nodes)
	start := make(chan struct{})
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			s, err := Open(ctx, url, nil)
			if err == nil {
				// Each node can use the schema straight away.
				_, err = s.ListAgents()
				_ = s.Close()
			}
			errs[i] = err
		}()
	}
	close(start)
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("node %d: %v", i, err)
		}
	}
	if d := cmp.Diff(knownVersions(t), appliedVersions(t, url)); d != "" {
		t.Errorf("schema_migrations (-want +got):\n%s", d)
	}
	c := sqlConn(t, url)
	var applied time.Time
	if err := c.QueryRow(context.Background(), "SELECT applied FROM schema_migrations WHERE version = 1").Scan(&applied); err != nil {
		t.Fatal(err)
	}
	if since := time.Since(applied); since < -time.Minute || since > time.Hour {
		t.Errorf("migration 1 applied at %v", applied)
	}
}

func TestMigrate(t *testing.T) {
	url := newDB(t)
	ctx := context.Background()
	applied, err := Migrate(ctx, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(knownVersions(t), applied); d != "" {
		t.Errorf("Migrate on an empty database applied (-want +got):\n%s", d)
	}
	// Up to date: nothing more, and Open applies nothing either.
	applied, err = Migrate(ctx, url, nil)
	if err != nil || len(applied) != 0 {
		t.Errorf("Migrate on an up-to-date database: applied %v, %v; want none", applied, err)
	}
	openStore(t, url)
	if d := cmp.Diff(knownVersions(t), appliedVersions(t, url)); d != "" {
		t.Errorf("schema_migrations (-want +got):\n%s", d)
	}
}

// A database a newer dispatcher migrated still opens, with a warning.
func TestMigrateNewerSchema(t *testing.T) {
	url := newDB(t)
	ctx := context.Background()
	if _, err := Migrate(ctx, url, nil); err != nil {
		t.Fatal(err)
	}
	exec(t, sqlConn(t, url), "INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')")
	core, logs := observer.New(zapcore.WarnLevel)
	s, err := Open(ctx, url, zap.New(core))
	if err != nil {
		t.Fatalf("open a database with a newer schema: %v", err)
	}
	_ = s.Close()
	if logs.FilterMessageSnippet("newer than this dispatcher").Len() != 1 {
		t.Errorf("warnings: %v", logs.All())
	}
}
