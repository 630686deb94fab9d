package postgres

import (
	"testing"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/storetest"
)

// TestConformance runs the store conformance suite against the PostgreSQL
// store: a and b are two Opens of one new database, two connection pools,
// as two dispatcher nodes have them.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (a, b store.Store) {
		url := newDB(t)
		return openStore(t, url), openStore(t, url)
	})
}
