package postgres

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/jackc/pgx/v5"
)

func TestRedactURL(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://db.example.com/dispatcher", "postgres://db.example.com/dispatcher"},
		{"postgres://alice@db/d", "postgres://alice@db/d"},
		{"postgres://alice:s3cret@db:5432/d?sslmode=verify-full", "postgres://alice:xxxxx@db:5432/d?sslmode=verify-full"},
		{"postgresql://alice:p%40ss@db/d", "postgresql://alice:xxxxx@db/d"},
		{"postgres://alice:p@ss@db/d", "postgres://alice:xxxxx@db/d"},
		{"postgres://alice:s3cret@h1:5432,h2:5433/d", "postgres://alice:xxxxx@h1:5432,h2:5433/d"},
		{"postgres://db/d?user=alice&password=s3cret&sslmode=require", "postgres://db/d?user=alice&password=xxxxx&sslmode=require"},
		{"postgres://db/d?sslpassword=k3y&Password=x", "postgres://db/d?sslpassword=xxxxx&Password=xxxxx"},
		{"postgres://db/d?pass%77ord=s3cret", "postgres://db/d?pass%77ord=xxxxx"},
		{"postgres://:s3cret@/d?host=/run/postgresql", "postgres://:xxxxx@/d?host=/run/postgresql"},
		{"postgres://alice:s3cret@db/d#frag", "postgres://alice:xxxxx@db/d#frag"},
		{"host=db password=s3cret", "(a store setting that is not a URL)"},
	} {
		if got := redactURL(tc.in); got != tc.want {
			t.Errorf("redactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// No error of Open or Migrate shows the password, wherever it came from.
func TestPasswordNotInErrors(t *testing.T) {
	const secret = "S3cret-Pw-7f1c"
	t.Setenv("PGCONNECT_TIMEOUT", "3")
	for _, tc := range []struct {
		name, url string
		env       bool // the password in PGPASSWORD instead
		wantIn    string
	}{
		{"unreachable server", "postgres://alice:" + secret + "@127.0.0.1:1/d?sslmode=disable", false, "postgres://alice:xxxxx@127.0.0.1:1/d"},
		{"password parameter", "postgresql://alice@127.0.0.1:1/d?sslmode=disable&password=" + secret, false, "password=xxxxx"},
		{"PGPASSWORD", "postgres://alice@127.0.0.1:1/d?sslmode=disable", true, "postgres://alice@127.0.0.1:1/d"},
		{"bad port", "postgres://alice:" + secret + "@127.0.0.1:port/d", false, "postgres://alice:xxxxx@127.0.0.1:port/d"},
		{"bad parameter", "postgres://alice:" + secret + "@127.0.0.1/d?sslmode=sometimes", false, "xxxxx"},
		{"bad pool size", "postgres://alice:" + secret + "@127.0.0.1/d?pool_max_conns=0", false, "pool_max_conns"},
		{"not postgres", "mysql://alice:" + secret + "@127.0.0.1/d", false, "not a postgres:// or postgresql:// URL"},
		{"keyword form", "host=127.0.0.1 password=" + secret, false, "not a URL"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env {
				t.Setenv("PGPASSWORD", secret)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_, err := Open(ctx, tc.url, nil)
			if err == nil {
				t.Fatal("Open succeeded")
			}
			if strings.Contains(err.Error(), secret) || !strings.Contains(err.Error(), tc.wantIn) {
				t.Errorf("Open: %v\nwant no password and %q", err, tc.wantIn)
			}
			_, err = Migrate(ctx, tc.url, nil)
			if err == nil || strings.Contains(err.Error(), secret) {
				t.Errorf("Migrate: %v", err)
			}
		})
	}
}

// The password comes from the URL, else PGPASSWORD, else the password
// file (?passfile=, PGPASSFILE, ~/.pgpass), as libpq takes it; wherever it
// came from, it is one of the secrets scrubbed from errors.
func TestPasswordSources(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	named := write("named", "db.example.com:5432:d:alice:from-named-file\n")
	env := write("env", "*:*:*:alice:from-env-file\n")
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".pgpass"), []byte("db.example.com:*:d:*:from-home-file\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, url, pgpassword, pgpassfile, want string
	}{
		{"user info", "postgres://alice:from%2Furl@db.example.com/d", "from-env", env, "from/url"},
		{"parameter", "postgres://alice@db.example.com/d?password=from-param", "from-env", env, "from-param"},
		{"PGPASSWORD", "postgres://alice@db.example.com/d", "from-env", env, "from-env"},
		{"passfile parameter", "postgres://alice@db.example.com/d?passfile=" + named, "", env, "from-named-file"},
		{"PGPASSFILE", "postgres://alice@db.example.com/d", "", env, "from-env-file"},
		{"~/.pgpass", "postgres://bob@db.example.com/d", "", "", "from-home-file"},
		{"none", "postgres://bob@other.example.com/d", "", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("HOME", home)
			t.Setenv("PGPASSWORD", tc.pgpassword)
			t.Setenv("PGPASSFILE", tc.pgpassfile)
			if tc.pgpassword == "" {
				os.Unsetenv("PGPASSWORD")
			}
			if tc.pgpassfile == "" {
				os.Unsetenv("PGPASSFILE")
			}
			cfg, err := parseURL(tc.url, nil)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.conn.Password != tc.want {
				t.Errorf("password %q, want %q", cfg.conn.Password, tc.want)
			}
			if tc.want != "" && !slices.Contains(cfg.secrets, tc.want) {
				t.Errorf("secrets %q lack the password", cfg.secrets)
			}
		})
	}
}

// A scrubbed error hides the password and still unwraps.
func TestScrubbedError(t *testing.T) {
	cfg := &dbConfig{secrets: []string{"hunter2"}}
	base := errors.New("auth failed for password hunter2")
	err := cfg.scrub(base)
	if err.Error() != "auth failed for password xxxxx" || !errors.Is(err, base) {
		t.Errorf("scrub: %q, Is = %v", err, errors.Is(err, base))
	}
	if plain := errors.New("no secret here"); cfg.scrub(plain) != plain {
		t.Error("an error without the password was wrapped")
	}
}

// pool_max_conns bounds the connections of the store's short calls and
// is not sent to the server (which would refuse an unknown parameter);
// application_name says who is connected.
func TestPoolMaxConns(t *testing.T) {
	url := newDB(t)
	s := openStore(t, url+"&pool_max_conns=2")
	if cap(s.pool.slots) != 2 {
		t.Fatalf("pool of %d connections, want 2", cap(s.pool.slots))
	}
	var wg sync.WaitGroup
	errs := make(chan error, 50)
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := s.AgentNames(); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	var n int
	c := sqlConn(t, url)
	if err := c.QueryRow(context.Background(), "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND application_name = 'dispatcher'").Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n < 1 || n > 2 {
		t.Errorf("%d connections of the store open, want 1 or 2", n)
	}
}

func TestClose(t *testing.T) {
	s, _ := newStore(t)
	if _, err := s.AgentNames(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AgentNames(); err == nil || !strings.Contains(err.Error(), "closed") {
		t.Errorf("AgentNames after Close: %v", err)
	}
}

// The store's sessions get TCP keepalives of about a minute, so that the
// server notices a vanished node; a URL that sets them wins.
func TestSessionKeepalives(t *testing.T) {
	for _, tc := range []struct {
		name, params string
		want         []string
	}{
		{"default", "", []string{"30", "10", "3"}},
		{"set in the URL", "&tcp_keepalives_idle=300", []string{"300", "10", "3"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openStore(t, newDB(t)+tc.params)
			var got []string
			err := s.call("test", func(ctx context.Context, c *pgx.Conn) error {
				for _, name := range []string{"tcp_keepalives_idle", "tcp_keepalives_interval", "tcp_keepalives_count"} {
					var v string
					if err := c.QueryRow(ctx, "SELECT current_setting($1)", name).Scan(&v); err != nil {
						return err
					}
					got = append(got, v)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("keepalives (-want +got):\n%s", d)
			}
		})
	}
}
