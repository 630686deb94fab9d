package backend

import (
	"context"
	"fmt"
	"strings"

	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/postgres"
)

// Open returns the store of dispatcher.conf's store and state_dir values.
// The PostgreSQL store is connected (within ctx) and its schema migrated
// before Open returns. The caller closes the store.
func Open(ctx context.Context, url, stateDir string, log *zap.Logger) (store.Store, error) {
	switch {
	case url == "":
		return store.NewFiles(stateDir), nil
	case IsPostgres(url):
		st, err := postgres.Open(ctx, url, log)
		if err != nil {
			return nil, err // not a store.Store holding a nil *postgres.Store
		}
		return st, nil
	}
	return nil, fmt.Errorf("store: want empty (files in state_dir) or a postgres:// URL, got a value starting %q", scheme(url))
}

// Migrate applies the PostgreSQL store's pending schema migrations and
// returns the versions it applied.
func Migrate(ctx context.Context, url string, log *zap.Logger) ([]int, error) {
	return postgres.Migrate(ctx, url, log)
}

// IsPostgres reports whether url names the PostgreSQL store.
func IsPostgres(url string) bool {
	u := strings.ToLower(url)
	return strings.HasPrefix(u, "postgres://") || strings.HasPrefix(u, "postgresql://")
}

// scheme is what url starts with, up to its first ':' (never a password).
func scheme(url string) string {
	if i := strings.IndexAny(url, ":/@"); i >= 0 {
		return url[:i]
	}
	if len(url) > 10 {
		return url[:10] + "…"
	}
	return url
}
