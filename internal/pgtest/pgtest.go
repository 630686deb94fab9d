package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// SkipEnv names the variable that lets a machine without PostgreSQL skip
// these tests instead of failing them.
const SkipEnv = "DISPATCHER_SKIP_POSTGRES"

// Server is a running throw-away PostgreSQL server.
type Server struct {
	dir  string // data directory and socket directory live below it
	port int
	cmd  *exec.Cmd
	done chan struct{}
	n    atomic.Int64
}

// Start starts a server for t, stopped when t's test and subtests are
// over.
func Start(t testing.TB) *Server {
	t.Helper()
	s, err := New()
	if err != nil {
		if errors.Is(err, ErrMissing) {
			if os.Getenv(SkipEnv) == "1" {
				t.Skipf("%v (%s=1)", err, SkipEnv)
			}
			t.Fatalf("%v: install it (apt-get install postgresql) or set %s=1 to skip the PostgreSQL tests", err, SkipEnv)
		}
		t.Fatal(err)
	}
	t.Cleanup(s.Stop)
	return s
}

// ErrMissing is New's error when the PostgreSQL binaries are not there.
var ErrMissing = errors.New("pgtest: PostgreSQL server binaries (initdb, postgres) not found")

// New starts a server outside a Go test (the end-to-end scripts); the
// caller stops it with Stop. Without the binaries the error wraps
// ErrMissing: fail on it unless SkipEnv is set to 1.
func New() (*Server, error) { return start() }

// binDir finds initdb and postgres.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if _, err := exec.LookPath("postgres"); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool { return version(dirs[i]) > version(dirs[j]) })
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", ErrMissing
}

func version(binDir string) int {
	v, _ := strconv.Atoi(filepath.Base(filepath.Dir(binDir)))
	return v
}

func start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "pgtest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, done: make(chan struct{})}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: running as root needs the user postgres to run the server as: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		if err := os.Chown(dir, uid, gid); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
	}
	data := filepath.Join(dir, "data")
	initdb := exec.Command(filepath.Join(bin, "initdb"), "-D", data, "-U", "dispatcher", "--auth=trust", "-E", "UTF8", "--no-sync", "--no-instructions")
	initdb.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	initdb.Env = append(os.Environ(), "LC_ALL=C")
	if out, err := initdb.CombinedOutput(); err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("pgtest: initdb: %v\n%s", err, out)
	}
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err != nil {
			os.RemoveAll(dir)
			return nil, err
		}
		log, _ := os.Create(filepath.Join(dir, "server.log"))
		if cred != nil && log != nil {
			_ = log.Chown(int(cred.Uid), int(cred.Gid))
		}
		s.cmd = exec.Command(filepath.Join(bin, "postgres"), "-D", data, "-p", strconv.Itoa(s.port), "-k", dir,
			"-c", "listen_addresses=127.0.0.1", "-c", "fsync=off", "-c", "synchronous_commit=off",
			"-c", "full_page_writes=off", "-c", "max_connections=200")
		s.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Setpgid: true}
		s.cmd.Stdout, s.cmd.Stderr = log, log
		if err := s.cmd.Start(); err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("pgtest: start postgres: %w", err)
		}
		exited := make(chan struct{})
		go func() { _ = s.cmd.Wait(); close(exited); close(s.done) }()
		err = s.wait(exited)
		if err == nil {
			return s, nil
		}
		s.Stop()
		if attempt == 2 {
			os.RemoveAll(dir)
			return nil, err
		}
		s.done = make(chan struct{}) // the port was taken meanwhile: another one
	}
}

// wait waits until the server accepts connections.
func (s *Server) wait(exited chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := pgx.Connect(ctx, s.url("postgres"))
		cancel()
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(filepath.Join(s.dir, "server.log"))
			return fmt.Errorf("pgtest: postgres exited at start:\n%s", b)
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("pgtest: postgres does not accept connections after 30 s: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *Server) url(db string) string {
	u := url.URL{Scheme: "postgres", User: url.User("dispatcher"), Host: net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)), Path: "/" + db}
	u.RawQuery = "sslmode=disable"
	return u.String()
}

// Addr is the server's 127.0.0.1:port.
func (s *Server) Addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(s.port)) }

// NewDB creates an empty database for t and returns its URL
// (postgres://dispatcher@127.0.0.1:PORT/NAME?sslmode=disable). The
// database is left for the server's removal.
func (s *Server) NewDB(t testing.TB) string {
	t.Helper()
	url, err := s.CreateDB(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	return url
}

// CreateDB creates an empty database named after name (made unique) and
// returns its URL.
func (s *Server) CreateDB(name string) (string, error) {
	name = fmt.Sprintf("t%d_%s", s.n.Add(1), sanitize(name))
	if len(name) > 60 {
		name = name[:60]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgx.Connect(ctx, s.url("postgres"))
	if err != nil {
		return "", fmt.Errorf("pgtest: %w", err)
	}
	defer c.Close(ctx)
	if _, err := c.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("pgtest: create database %s: %w", name, err)
	}
	return s.url(name), nil
}

func sanitize(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

var stopOnce sync.Map

// Stop stops the server (SIGINT: fast shutdown) and removes its files.
func (s *Server) Stop() {
	if _, loaded := stopOnce.LoadOrStore(s, true); loaded {
		return
	}
	if s.cmd != nil && s.cmd.Process != nil {
		_ = s.cmd.Process.Signal(syscall.SIGINT)
		select {
		case <-s.done:
		case <-time.After(20 * time.Second):
			_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
			<-s.done
		}
	}
	_ = os.RemoveAll(s.dir)
}

// Kill stops the server abruptly (SIGKILL), as a crash would; its files
// stay for Stop to remove.
func (s *Server) Kill() {
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
