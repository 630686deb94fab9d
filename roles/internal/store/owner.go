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

// Gone reports whether the owner has certainly ended: it ran on this host
// and no process with its pid (and, where recorded, its start time) exists
// any more. An owner on another host, or one this system cannot check, is
// never gone: a run is only declared lost on evidence.
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
