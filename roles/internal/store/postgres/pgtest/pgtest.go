// Package pgtest is internal/pgtest under the path the store's tests have
// used: throw-away PostgreSQL servers for tests. New code imports
// github.com/dispatcher-dev/dispatcher/internal/pgtest.
package pgtest

import (
	"testing"

	"github.com/dispatcher-dev/dispatcher/internal/pgtest"
)

// Server is a running throw-away PostgreSQL server.
type Server = pgtest.Server

// SkipEnv names the variable that lets a machine without PostgreSQL skip
// these tests instead of failing them.
const SkipEnv = pgtest.SkipEnv

// Start starts a server for t, stopped when t's test is over.
func Start(t testing.TB) *Server { return pgtest.Start(t) }
