//go:build unix

package store_test

import (
	"testing"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/storetest"
)

// TestConformance runs the store conformance suite against the files
// store: a and b are two Files on one state directory, as two dispatcher
// processes on one host have them.
func TestConformance(t *testing.T) {
	storetest.Run(t, func(t *testing.T) (a, b store.Store) {
		dir := t.TempDir()
		return store.NewFiles(dir), store.NewFiles(dir)
	})
}
