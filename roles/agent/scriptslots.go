package agent

import (
	"fmt"
	"sync"
)

// scriptSlots counts the runs in flight per script name, for the
// per-script max_concurrent of scripts.conf. Every run is counted, limited
// or not, so a limit that a reload sets or lowers sees the runs already in
// flight; the limit itself is read from the snapshot of each new run. The
// zero value is ready to use.
type scriptSlots struct {
	mu      sync.Mutex
	running map[string]int // name → runs in flight; no entry when none
}

// acquire takes a slot for a run of name unless limit (> 0) runs of it are
// already in flight; limit 0 means no limit of its own. It returns whether
// the slot was taken and how many runs were in flight before. A taken slot
// is given back with release.
func (s *scriptSlots) acquire(name string, limit int) (ok bool, inFlight int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := s.running[name]
	if limit > 0 && n >= limit {
		return false, n
	}
	if s.running == nil {
		s.running = map[string]int{}
	}
	s.running[name] = n + 1
	return true, n
}

// release gives back a slot that acquire took for name.
func (s *scriptSlots) release(name string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n := s.running[name] - 1; n > 0 {
		s.running[name] = n
	} else {
		delete(s.running, name)
	}
}

// scriptBusy is the refusal of a run over a script's max_concurrent, sent
// to the dispatcher (which shows it as the host's error) as it is.
func scriptBusy(name string, inFlight, limit int) string {
	runs, when := "runs", "one finishes"
	if inFlight == 1 {
		runs, when = "run", "it finishes"
	}
	return fmt.Sprintf("busy: script %s already has %d %s in progress (max_concurrent = %d in scripts.conf); try again when %s",
		name, inFlight, runs, limit, when)
}
