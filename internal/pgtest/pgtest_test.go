package pgtest

import (
	"context"
	"testing"

	"github.com/jackc/pgx/v5"
)

// The harness gives a working server and separate databases.
func TestStart(t *testing.T) {
	s := Start(t)
	a, b := s.NewDB(t), s.NewDB(t)
	if a == b {
		t.Fatalf("two databases with one URL %s", a)
	}
	ctx := context.Background()
	c, err := pgx.Connect(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	var n int
	if err := c.QueryRow(ctx, "SELECT 41 + 1").Scan(&n); err != nil || n != 42 {
		t.Fatalf("SELECT 41 + 1 = %d, %v", n, err)
	}
}
