// Package postgrestest opens the PostgreSQL store for tests of other
// packages, on a database from internal/pgtest: one handle per call, so
// that two calls on one URL play two nodes sharing the database.
package postgrestest

import (
	"context"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store/postgres"
)

// Open opens the store at url for t, logging to t, and closes it when t
// ends.
func Open(t testing.TB, url string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := postgres.Open(ctx, url, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}
