package postgres

import (
	"strings"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// A run's lock session is alive, seen from another node, while it holds
// the run's locks: not once released, and not once its connection was
// terminated (a node killed or cut off).
func TestSessionAlive(t *testing.T) {
	url := newDB(t)
	a, b := openStore(t, url), openStore(t, url)
	alive := func(session string) bool {
		t.Helper()
		ok, err := b.SessionAlive(session)
		if err != nil {
			t.Fatalf("SessionAlive(%q): %v", session, err)
		}
		return ok
	}
	take := func(reqid, host string) (func(), string) {
		t.Helper()
		rel, session, err := a.AcquireSession(store.LockHolder{PID: 42, ReqID: reqid, User: "alice", Started: time.Now()},
			[]store.LockKey{{Host: host, Script: "deploy"}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(rel)
		if !strings.HasPrefix(session, "pg:") {
			t.Fatalf("AcquireSession named the session %q", session)
		}
		return rel, session
	}
	rel1, s1 := take("r1", "web-01")
	_, s2 := take("r2", "web-02")
	if s1 == s2 {
		t.Fatalf("two runs' locks have one session %q", s1)
	}
	if !alive(s1) || !alive(s2) {
		t.Fatalf("sessions holding locks are not alive: %v, %v", alive(s1), alive(s2))
	}

	// The node holding s2 is cut off: the server ends its session.
	_, pid, err := parseSession(s2)
	if err != nil {
		t.Fatal(err)
	}
	exec(t, sqlConn(t, url), "SELECT pg_terminate_backend($1)", int64(pid))
	deadline := time.Now().Add(10 * time.Second)
	for alive(s2) {
		if time.Now().After(deadline) {
			t.Fatal("a terminated session is still alive after 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !alive(s1) {
		t.Error("terminating another session ended s1")
	}
	// The same holder key on another backend is another session.
	holder, _, _ := parseSession(s1)
	if alive(sessionName(holder, pid)) {
		t.Error("s1's key with s2's backend pid is alive")
	}
	rel1()
	if alive(s1) {
		t.Error("a released session is alive")
	}

	// No keys, no session.
	rel, session, err := a.AcquireSession(store.LockHolder{ReqID: "r3"}, nil)
	if err != nil || session != "" {
		t.Errorf("AcquireSession of no keys = %q, %v; want no session", session, err)
	}
	rel()

	for _, bad := range []string{"", "pg:", "pg:1", "pg:x:1", "pg:1:x", "pg:0:5", "pg:5:0", "pg:-1:5", "files:1:2", "pg:1:2:3"} {
		if ok, err := b.SessionAlive(bad); err == nil {
			t.Errorf("SessionAlive(%q) = %v, nil; want an error", bad, ok)
		}
	}
}

// A store that does not answer is an error, not a dead session.
func TestSessionAliveClosed(t *testing.T) {
	s, _ := newStore(t)
	rel, session, err := s.AcquireSession(store.LockHolder{ReqID: "r1"}, []store.LockKey{{Host: "web-01", Script: "deploy"}})
	if err != nil {
		t.Fatal(err)
	}
	defer rel()
	_ = s.Close()
	if ok, err := s.SessionAlive(session); err == nil {
		t.Errorf("SessionAlive on a closed store = %v, nil; want an error", ok)
	}
}
