package store

import (
	"os"
	"strconv"
	"sync"
)

// RunOwner names the process that stores a run while it runs, so that a
// run whose process died (kill -9, a crash, a power cut) can be told from
// one that is still running.
type RunOwner struct {
	Node string `json:"node"` // the host name of the process's host
	PID  int    `json:"pid"`
	// Start tells this process from a later one with the same pid: the
	// boot id and the process's start time, where the system tells them
	// (Linux); empty elsewhere.
	Start string `json:"start,omitempty"`
	// Session names the store session that holds the run's host:script
	// locks, as the store that took them names it ([SessionLocks]), so
	// that a process on another host can ask the store whether the owner
	// still holds them. Empty with the files store, whose owners are
	// checked on their own host only, and for a run that holds no locks.
	Session string `json:"session,omitempty"`
}

// SessionLocks is implemented by a store whose host:script locks are held
// by a session that every process sharing the store can see (PostgreSQL:
// a database session), so that the owner of a run can be checked from any
// host: alive while its session holds the run's locks.
type SessionLocks interface {
	// AcquireSession is Locks.Acquire that also names the session holding
	// the locks, for RunOwner.Session; "" when keys is empty.
	AcquireSession(h LockHolder, keys []LockKey) (release func(), session string, err error)
	// SessionAlive reports whether session, named by AcquireSession in
	// any process sharing the store, still holds its locks: false once
	// they were released or the session ended (the process killed, its
	// connection cut). A session this store cannot have named is an
	// error.
	SessionAlive(session string) (bool, error)
}

var (
	selfOnce sync.Once
	self     RunOwner
)

// CurrentOwner returns the RunOwner of this process.
func CurrentOwner() RunOwner {
	selfOnce.Do(func() {
		node, _ := os.Hostname()
		pid := os.Getpid()
		start, _ := processStart(pid)
		self = RunOwner{Node: node, PID: pid, Start: start}
	})
	return self
}

// Local reports whether the owner ran on this host (by its host name).
func (o RunOwner) Local() bool { return o.Node == CurrentOwner().Node }

// Gone reports whether the owner has certainly ended: it ran on this host
// and no process with its pid (and, where recorded, its start time) exists
// any more. An owner on another host, or one this system cannot check, is
// never gone: a run is only declared lost on evidence (for an owner on
// another host, the store may have some: see SessionLocks).
func (o RunOwner) Gone() bool {
	cur := CurrentOwner()
	if o.PID <= 0 || o.Node != cur.Node {
		return false
	}
	if o.PID == cur.PID && (o.Start == "" || o.Start == cur.Start) {
		return false
	}
	start, exists := processStart(o.PID)
	if !exists {
		return true
	}
	return o.Start != "" && start != "" && start != o.Start
}

func (o RunOwner) String() string {
	return "pid " + strconv.Itoa(o.PID) + " on " + o.Node
}
