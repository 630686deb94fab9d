package postgres

import (
	"context"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"go.uber.org/zap/zaptest"

	"github.com/dispatcher-dev/dispatcher/internal/pgtest"
)

// One PostgreSQL server serves every test of the package (each test gets
// a database of its own): it is started by the first test that needs it
// and stopped by TestMain when all are done.
var (
	serverOnce  sync.Once
	server      *pgtest.Server
	serverStops []func()
)

func TestMain(m *testing.M) {
	code := m.Run()
	for _, stop := range serverStops {
		stop()
	}
	os.Exit(code)
}

// keepServer is the first test's testing.TB, except that what pgtest.Start
// would clean up at the end of that test is kept for TestMain.
type keepServer struct{ testing.TB }

func (k keepServer) Cleanup(f func()) { serverStops = append(serverStops, f) }

// newDB returns the URL of a new empty database.
func newDB(t *testing.T) string {
	t.Helper()
	serverOnce.Do(func() { server = pgtest.Start(keepServer{t}) })
	if server == nil {
		if os.Getenv(pgtest.SkipEnv) == "1" {
			t.Skipf("no PostgreSQL server (%s=1)", pgtest.SkipEnv)
		}
		t.Fatal("the PostgreSQL test server did not start: see the first test that failed")
	}
	return server.NewDB(t)
}

// openStore opens the store at url for the test, closed when it ends.
func openStore(t *testing.T, url string) *Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	s, err := Open(ctx, url, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

// newStore opens a store on a new database and returns it with the URL.
func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	url := newDB(t)
	return openStore(t, url), url
}

// sqlConn is a connection of the test's own to the database at url.
func sqlConn(t *testing.T, url string) *pgx.Conn {
	t.Helper()
	ctx := context.Background()
	c, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close(ctx) })
	return c
}

// exec runs statements on c and fails the test on an error.
func exec(t *testing.T, c *pgx.Conn, sql string, args ...any) {
	t.Helper()
	if _, err := c.Exec(context.Background(), sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}
