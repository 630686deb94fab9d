package postgres

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"go.uber.org/zap"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Store is the dispatcher's state in a PostgreSQL database. It implements
// store.Store and is safe for concurrent use by goroutines and by any
// number of processes and nodes sharing the database.
type Store struct {
	pool  *pool
	where string // the URL without its password, for error messages
	log   *zap.Logger
	node  string // os.Hostname, written beside the locks this node holds
}

var _ store.Store = (*Store)(nil)

// Time limits of the store's calls, which take no context.
const (
	// opTimeout bounds one call (waiting for a connection included), so a
	// database that stopped answering is an error rather than a hang.
	opTimeout = 30 * time.Second
	// decideTimeout bounds DecidePairRequest, which holds its transaction
	// while the caller's decide runs.
	decideTimeout = 5 * time.Minute
	// lockWait is the lock_timeout of the transactions that wait for a
	// lock another node holds (the pairing queue, a run's locks being
	// taken): the files store's stateLockWait.
	lockWait = 10 * time.Second
	// idleInTx is the idle_in_transaction_session_timeout of those
	// transactions: the server ends the session of a node that stops
	// half-way, so its locks go with it.
	idleInTx = 2 * time.Minute
	// defaultConnectTimeout bounds each connection attempt (per host)
	// when neither the URL nor PGCONNECT_TIMEOUT says.
	defaultConnectTimeout = 10 * time.Second
)

// Open connects to the PostgreSQL database at rawURL, applies the schema
// migrations it has not applied yet (see Migrate) and returns the store.
//
// rawURL is a postgres:// or postgresql:// URL as libpq reads it; pgx
// parses it (pgx.ParseConfig), so the PG* environment variables fill what
// it leaves out (PGHOST, PGPORT, PGDATABASE, PGUSER, PGPASSWORD,
// PGSSLMODE, PGSSLROOTCERT, PGSERVICE, PGOPTIONS, PGAPPNAME,
// PGCONNECT_TIMEOUT, …). The password is taken from the URL (user:password@
// or ?password=), else from PGPASSWORD, else from the password file named
// by ?passfile=, PGPASSFILE or ~/.pgpass, matched on the first host, port,
// database and user as libpq does (pgx does not check the file's mode,
// which libpq does). pool_max_conns is the store's, not the server's: the
// connections the store uses at once for its short calls (default the
// greater of 4 and the number of CPUs; each run holding locks and each
// pairing decision in progress uses one more). Defaults that differ from
// libpq's: connect_timeout 10 s, application_name "dispatcher", and TCP
// keepalives of about a minute for the session (tcp_keepalives_idle,
// _interval and _count; see the package documentation).
//
// Errors name the database by its URL with the password replaced by
// xxxxx; no error carries the password.
func Open(ctx context.Context, rawURL string, log *zap.Logger) (*Store, error) {
	cfg, log, err := prepare(rawURL, log)
	if err != nil {
		return nil, err
	}
	p := newPool(cfg.conn, cfg.maxConns, cfg.connect)
	c, err := p.get(ctx, false)
	if err == nil {
		_, err = migrate(ctx, c, log)
		p.put(c, false)
	}
	if err != nil {
		p.close()
		return nil, cfg.scrub(fmt.Errorf("open store %s: %w", cfg.where, err))
	}
	node, _ := os.Hostname()
	return &Store{pool: p, where: cfg.where, log: log, node: node}, nil
}

// Migrate connects to the database at rawURL (as Open does), applies the
// schema migrations it has not applied yet and returns their versions, in
// order; none when the schema is up to date. It is what "dispatcher store
// migrate" runs; Open does the same on its own.
//
// Several nodes may migrate at once: migrations run one node at a time
// under a PostgreSQL advisory lock, each in its own transaction, recorded
// in the table schema_migrations (version, name, applied).
func Migrate(ctx context.Context, rawURL string, log *zap.Logger) ([]int, error) {
	cfg, log, err := prepare(rawURL, log)
	if err != nil {
		return nil, err
	}
	c, err := cfg.connect(ctx, cfg.conn.Copy())
	if err != nil {
		return nil, cfg.scrub(fmt.Errorf("migrate store %s: %w", cfg.where, err))
	}
	defer closeConn(c)
	applied, err := migrate(ctx, c, log)
	if err != nil {
		return applied, cfg.scrub(fmt.Errorf("migrate store %s: %w", cfg.where, err))
	}
	return applied, nil
}

// Close closes the store's idle connections, and each connection in use
// as its call ends. Locks still held stay held until released.
func (s *Store) Close() error {
	s.pool.close()
	return nil
}

// dbConfig is a parsed URL.
type dbConfig struct {
	conn     *pgx.ConnConfig
	maxConns int
	where    string   // the URL, redacted
	secrets  []string // the password in its spellings, scrubbed from errors
	setup    string   // statements run on each new connection
}

// The session settings a new connection gets unless the URL sets them:
// TCP keepalives short enough that the server notices a node that vanished
// (power cut, network gone) within about a minute and drops its session,
// and with it the locks it held. They apply to TCP connections only.
var keepalives = []struct{ name, value string }{
	{"tcp_keepalives_idle", "30"},
	{"tcp_keepalives_interval", "10"},
	{"tcp_keepalives_count", "3"},
}

// prepare is the start of Open and Migrate: the store's logger (nil: none)
// and the connection settings of rawURL.
func prepare(rawURL string, log *zap.Logger) (*dbConfig, *zap.Logger, error) {
	if log == nil {
		log = zap.NewNop()
	}
	log = log.Named("store")
	cfg, err := parseURL(rawURL, log)
	return cfg, log, err
}

func parseURL(raw string, log *zap.Logger) (*dbConfig, error) {
	if log == nil {
		log = zap.NewNop()
	}
	where := redactURL(raw)
	lower := strings.ToLower(raw)
	if !strings.HasPrefix(lower, "postgres://") && !strings.HasPrefix(lower, "postgresql://") {
		return nil, fmt.Errorf("store %s: not a postgres:// or postgresql:// URL; set store to postgres://USER@HOST/DATABASE, or leave it empty to keep the state in state_dir", where)
	}
	cfg := &dbConfig{where: where, secrets: urlSecrets(raw), maxConns: defaultMaxConns()}
	conn, err := pgx.ParseConfig(raw)
	if err != nil {
		return nil, cfg.scrub(fmt.Errorf("store %s: %w", where, err))
	}
	if conn.Password != "" {
		cfg.secrets = append(cfg.secrets, conn.Password)
	}
	for k, v := range conn.RuntimeParams {
		if !strings.HasPrefix(k, "pool_") {
			continue
		}
		delete(conn.RuntimeParams, k)
		if k != "pool_max_conns" {
			log.Warn("ignoring a connection pool parameter of pgxpool the store does not use", zap.String("parameter", k))
			continue
		}
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			return nil, fmt.Errorf("store %s: pool_max_conns %q is not a number of connections (1 or more)", where, v)
		}
		cfg.maxConns = n
	}
	if conn.ConnectTimeout == 0 {
		conn.ConnectTimeout = defaultConnectTimeout
	}
	if _, ok := conn.RuntimeParams["application_name"]; !ok {
		conn.RuntimeParams["application_name"] = "dispatcher"
	}
	var sets []string
	options := conn.RuntimeParams["options"]
	for _, ka := range keepalives {
		if _, ok := conn.RuntimeParams[ka.name]; !ok && !strings.Contains(options, ka.name) {
			sets = append(sets, "SET "+ka.name+" = "+ka.value)
		}
	}
	cfg.setup = strings.Join(sets, "; ")
	cfg.conn = conn
	return cfg, nil
}

// connect opens a connection and applies the session settings.
func (cfg *dbConfig) connect(ctx context.Context, conn *pgx.ConnConfig) (*pgx.Conn, error) {
	c, err := pgx.ConnectConfig(ctx, conn)
	if err != nil {
		return nil, cfg.scrub(err)
	}
	if cfg.setup != "" {
		if _, err := c.Exec(ctx, cfg.setup); err != nil {
			closeConn(c)
			return nil, cfg.scrub(fmt.Errorf("set up session: %w", err))
		}
	}
	return c, nil
}

// scrub makes sure err's message holds none of the secrets.
func (cfg *dbConfig) scrub(err error) error {
	if err == nil {
		return nil
	}
	var s *scrubbedError
	if errors.As(err, &s) {
		return err // its message is already scrubbed below it
	}
	for _, sec := range cfg.secrets {
		if sec != "" && strings.Contains(err.Error(), sec) {
			return &scrubbedError{err: err, secrets: cfg.secrets}
		}
	}
	return err
}

// scrubbedError is an error whose message had a password in it: the
// message shows xxxxx in its place; errors.Is and errors.As see the
// original.
type scrubbedError struct {
	err     error
	secrets []string
}

func (e *scrubbedError) Error() string {
	msg := e.err.Error()
	for _, s := range e.secrets {
		if s != "" {
			msg = strings.ReplaceAll(msg, s, "xxxxx")
		}
	}
	return msg
}

func (e *scrubbedError) Unwrap() error { return e.err }

// redactURL returns raw with the password of its user info and the values
// of its password and sslpassword parameters replaced by xxxxx. It works
// on the text rather than through url.Parse, which refuses some URLs
// libpq accepts (several hosts), and errs towards hiding too much.
func redactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "(a store setting that is not a URL)"
	}
	creds, rest := splitCredentials(rest)
	if user, _, hasPw := strings.Cut(creds, ":"); hasPw {
		creds = user + ":xxxxx"
	}
	if creds != "" {
		creds += "@"
	}
	// Every password parameter, wherever it stands (after '?', '&', or
	// even '#', which net/url would take for a fragment).
	var out strings.Builder
	for i, part := range splitParams(rest) {
		if k, _, ok := strings.Cut(part, "="); ok && i > 0 {
			if name, err := url.QueryUnescape(k[1:]); err != nil || isSecretParam(name) {
				part = k + "=xxxxx"
			}
		}
		out.WriteString(part)
	}
	return scheme + "://" + creds + out.String()
}

// splitParams cuts s before each '?', '&' and '#': the first piece is the
// host and path, each other starts with its separator.
func splitParams(s string) []string {
	var parts []string
	for {
		i := strings.IndexAny(s[min(1, len(s)):], "?&#")
		if i < 0 || len(s) == 0 {
			return append(parts, s)
		}
		i++
		parts = append(parts, s[:i])
		s = s[i:]
	}
}

// splitCredentials cuts the user info off the part of a URL after "://":
// everything before the last '@' that comes before the first '/'. libpq
// reads user info up to the first '@' or '/' whatever characters it holds
// ('#' and '?' included), net/url stops at them; taking the wider of the
// two hides a password either would see.
func splitCredentials(rest string) (creds, after string) {
	end := len(rest)
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		end = i
	}
	at := strings.LastIndexByte(rest[:end], '@')
	if at < 0 {
		return "", rest
	}
	return rest[:at], rest[at+1:]
}

func isSecretParam(name string) bool {
	return strings.EqualFold(name, "password") || strings.EqualFold(name, "sslpassword")
}

// urlSecrets returns the passwords written in raw, as written and
// unescaped.
func urlSecrets(raw string) []string {
	var out []string
	add := func(s string, unescape func(string) (string, error)) {
		if s != "" {
			out = append(out, s)
			if u, err := unescape(s); err == nil && u != s {
				out = append(out, u)
			}
		}
	}
	_, rest, _ := strings.Cut(raw, "://")
	creds, rest := splitCredentials(rest)
	if _, pw, ok := strings.Cut(creds, ":"); ok {
		add(pw, url.PathUnescape)
	}
	for _, part := range splitParams(rest)[1:] {
		k, v, _ := strings.Cut(part[1:], "=")
		if name, err := url.QueryUnescape(k); err == nil && isSecretParam(name) {
			add(v, url.QueryUnescape)
		}
	}
	return out
}

// call runs fn with a connection of the pool, within opTimeout. Errors
// that are not the store's own typed ones are named with the database.
func (s *Store) call(what string, fn func(ctx context.Context, c *pgx.Conn) error) error {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	c, err := s.pool.get(ctx, true)
	if err != nil {
		return s.dbError(what, err)
	}
	err = fn(ctx, c)
	s.pool.put(c, true)
	return err
}

// dbError names the operation and the database in an error of the
// database or of the connection.
func (s *Store) dbError(what string, err error) error {
	return fmt.Errorf("%s in %s: %w", what, s.where, err)
}

// inTx runs fn in a transaction on c: committed when fn returns nil,
// rolled back otherwise (fn's error is returned as it is). wait sets the
// transaction's lock_timeout and idle_in_transaction_session_timeout.
func inTx(ctx context.Context, c *pgx.Conn, wait bool, fn func(tx pgx.Tx) error) error {
	return pgx.BeginFunc(ctx, c, func(tx pgx.Tx) error {
		if wait {
			if _, err := tx.Exec(ctx, fmt.Sprintf("SET LOCAL lock_timeout = %d; SET LOCAL idle_in_transaction_session_timeout = %d",
				lockWait.Milliseconds(), idleInTx.Milliseconds())); err != nil {
				return err
			}
		}
		return fn(tx)
	})
}

// dbTx runs fn in a transaction on c (inTx, with the lock waits
// bounded). An error fn marks with own is returned as it is; any other is
// an error of the database and names it.
func (s *Store) dbTx(ctx context.Context, c *pgx.Conn, what string, fn func(tx pgx.Tx) error) error {
	err := inTx(ctx, c, true, fn)
	var o *ownError
	if errors.As(err, &o) {
		return o.err
	}
	if err != nil {
		return s.dbError(what, err)
	}
	return nil
}

// ownError marks an error of the store's own making (a refusal, an error
// of decide) inside a transaction, so that dbTx returns it unchanged.
type ownError struct{ err error }

func (e *ownError) Error() string { return e.err.Error() }

// own marks err as the store's own; nil stays nil.
func own(err error) error {
	if err == nil {
		return nil
	}
	return &ownError{err}
}

// SQLSTATE codes the store tells apart.
const (
	codeLockNotAvailable = "55P03" // lock_timeout expired
	codeDeadlock         = "40P01"
	codeSerialization    = "40001"
)

func sqlState(err error) string {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}
