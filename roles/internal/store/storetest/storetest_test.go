//go:build unix

package storetest_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/storetest"
)

// The suite must be able to fail: TestSuiteCatchesBrokenStores runs it, in
// a child process (TestBrokenStore), against files stores with one
// behaviour broken each, and expects the subtest named here to fail.

const envBroken = "STORETEST_BROKEN"

var broken = map[string]struct {
	wrap func(*store.Files) store.Store
	fail string // a line of the child's output
}{
	"unsorted list": {
		func(f *store.Files) store.Store { return unsorted{f} },
		"--- FAIL: TestBrokenStore/Registry/ListSorted",
	},
	"not found unwrapped": {
		func(f *store.Files) store.Store { return notFoundUnwrapped{f} },
		"--- FAIL: TestBrokenStore/Runs/NotFound",
	},
	"locks taken in part": {
		func(f *store.Files) store.Store { return partialLocks{f} },
		"--- FAIL: TestBrokenStore/Locks/Conflict/other_handle",
	},
	"decided twice": {
		func(f *store.Files) store.Store { return decidedTwice{f} },
		"--- FAIL: TestBrokenStore/Pairing/DecideConcurrent",
	},
	"stale cache per handle": {
		func(f *store.Files) store.Store { return &cached{Files: f, agents: map[string]store.Agent{}} },
		"--- FAIL: TestBrokenStore/SharedState",
	},
	"cancel requests per handle": {
		func(f *store.Files) store.Store { return &localCancels{Files: f, asked: map[string]bool{}} },
		"--- FAIL: TestBrokenStore/Cancels/RequestAcrossHandles",
	},
	"one handle twice": {
		nil, // open returns a single store as a and b
		"open returned one handle twice",
	},
}

func TestSuiteCatchesBrokenStores(t *testing.T) {
	if os.Getenv(envBroken) != "" {
		t.Skip("in a child process")
	}
	for name, tc := range broken {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			cmd := exec.Command(os.Args[0], "-test.run=^TestBrokenStore$")
			cmd.Env = append(os.Environ(), envBroken+"="+name)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if !errors.As(err, &ee) {
				t.Fatalf("the suite passed a store with %s (%v):\n%s", name, err, out)
			}
			if !strings.Contains(string(out), tc.fail) {
				t.Errorf("the suite on a store with %s: output lacks %q:\n%s", name, tc.fail, out)
			}
		})
	}
}

func TestBrokenStore(t *testing.T) {
	name := os.Getenv(envBroken)
	if name == "" {
		t.Skip("runs in a child process of TestSuiteCatchesBrokenStores")
	}
	tc, ok := broken[name]
	if !ok {
		t.Fatalf("%s=%q names no broken store", envBroken, name)
	}
	storetest.Run(t, func(t *testing.T) (a, b store.Store) {
		dir := t.TempDir()
		if tc.wrap == nil {
			s := store.NewFiles(dir)
			return s, s
		}
		return tc.wrap(store.NewFiles(dir)), tc.wrap(store.NewFiles(dir))
	})
}

// unsorted lists the agents in reverse order.
type unsorted struct{ *store.Files }

func (u unsorted) ListAgents() ([]store.Agent, error) {
	l, err := u.Files.ListAgents()
	slices.Reverse(l)
	return l, err
}

// notFoundUnwrapped says a run is missing without wrapping ErrNotFound.
type notFoundUnwrapped struct{ *store.Files }

func (n notFoundUnwrapped) GetRun(reqid string) (store.Run, error) {
	r, err := n.Files.GetRun(reqid)
	if errors.Is(err, store.ErrNotFound) {
		return r, errors.New("no such run")
	}
	return r, err
}

// partialLocks takes the pairs one by one and keeps those it got when
// another is held.
type partialLocks struct{ *store.Files }

func (p partialLocks) Acquire(h store.LockHolder, keys []store.LockKey) (func(), error) {
	var releases []func()
	var conflicts []store.LockKey
	for _, k := range keys {
		rel, err := p.Files.Acquire(h, []store.LockKey{k})
		var lc *store.LockConflictError
		if errors.As(err, &lc) {
			conflicts = append(conflicts, lc.Conflicts...)
			continue
		}
		if err != nil {
			return nil, err
		}
		releases = append(releases, rel)
	}
	if len(conflicts) > 0 {
		return nil, &store.LockConflictError{Conflicts: conflicts}
	}
	return func() {
		for _, r := range releases {
			r()
		}
	}, nil
}

// decidedTwice reports success to every decider.
type decidedTwice struct{ *store.Files }

func (d decidedTwice) DecidePairRequest(reqid string, now time.Time, decide func(store.PairRequest) (store.Decision, error)) (store.PairRequest, error) {
	r, err := d.Files.DecidePairRequest(reqid, now, decide)
	var de *store.DecidedError
	if errors.As(err, &de) {
		return d.Files.GetPairRequest(reqid)
	}
	return r, err
}

// cached keeps the records it has read and never looks again.
type cached struct {
	*store.Files
	mu     sync.Mutex
	agents map[string]store.Agent
}

func (c *cached) GetAgent(host string) (store.Agent, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if a, ok := c.agents[host]; ok {
		return a, nil
	}
	a, err := c.Files.GetAgent(host)
	if err == nil {
		c.agents[host] = a
	}
	return a, err
}

// localCancels keeps cancel requests in the handle, where the process
// running the run never sees them.
type localCancels struct {
	*store.Files
	mu    sync.Mutex
	asked map[string]bool
}

func (l *localCancels) RequestCancel(reqid string, at time.Time) error {
	if _, err := l.Files.GetRun(reqid); err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.asked[reqid] = true
	return nil
}

func (l *localCancels) CancelRequests(reqids []string) ([]string, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, id := range reqids {
		if err := store.ValidReqID(id); err != nil {
			return nil, err
		}
		if l.asked[id] {
			out = append(out, id)
		}
	}
	return out, nil
}

// TestEqualForms: the suite asks for what a caller relies on, not for one
// store's encoding. A store that answers with equal values in other forms
// — times in another zone, JSON of Extra with other white space and key
// order, empty maps and slices for absent ones — passes.
func TestEqualForms(t *testing.T) {
	if os.Getenv(envBroken) != "" {
		t.Skip("in a child process")
	}
	storetest.Run(t, func(t *testing.T) (a, b store.Store) {
		dir := t.TempDir()
		return otherForms{store.NewFiles(dir)}, otherForms{store.NewFiles(dir)}
	})
}

// otherForms answers with other but equal forms of what the files store
// returns.
type otherForms struct{ *store.Files }

var zone = time.FixedZone("UTC+2", 2*60*60)

func reform(a store.Agent) store.Agent {
	a.LastContact = a.LastContact.In(zone)
	if a.Tags == nil {
		a.Tags = map[string]string{}
	}
	extra := make(map[string]json.RawMessage, len(a.Extra))
	for k, v := range a.Extra {
		var b bytes.Buffer
		if err := json.Indent(&b, v, " ", "\t"); err != nil {
			panic(err)
		}
		extra[k] = b.Bytes()
	}
	a.Extra = extra
	return a
}

func (o otherForms) GetAgent(host string) (store.Agent, error) {
	a, err := o.Files.GetAgent(host)
	return reform(a), err
}

func (o otherForms) ListAgents() ([]store.Agent, error) {
	l, err := o.Files.ListAgents()
	for i := range l {
		l[i] = reform(l[i])
	}
	return l, err
}

func (o otherForms) GetRun(reqid string) (store.Run, error) {
	r, err := o.Files.GetRun(reqid)
	r.Started, r.Finished = r.Started.In(zone), r.Finished.In(zone)
	if r.Results == nil {
		r.Results = []store.Result{}
	}
	return r, err
}

func (o otherForms) GetPairRequest(reqid string) (store.PairRequest, error) {
	r, err := o.Files.GetPairRequest(reqid)
	r.Created, r.Expires, r.Decided = r.Created.In(zone), r.Expires.In(zone), r.Decided.In(zone)
	return r, err
}
