package store

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"strings"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// File and directory modes of SPEC §2.
const (
	ModeDir    fs.FileMode = 0o750
	ModeRecord fs.FileMode = 0o640
)

// ErrNotFound is returned (wrapped) for an agent, run or pairing request
// that is not stored.
var ErrNotFound = errors.New("not found")

// Registry is the agent registry. (Method names carry their concern so
// that one type can implement every interface.)
type Registry interface {
	// GetAgent returns the record of host, or an error wrapping
	// ErrNotFound.
	GetAgent(host string) (Agent, error)
	// ListAgents returns every record, sorted by host name.
	ListAgents() ([]Agent, error)
	// PutAgent creates or replaces the record of a.Hostname.
	PutAgent(a Agent) error
	// DeleteAgent removes the record of host, or returns an error
	// wrapping ErrNotFound.
	DeleteAgent(host string) error
}

// PairingQueue holds pairing requests from their arrival until an
// operator approves or denies them (or they expire), and their answers
// until the agent has fetched them.
type PairingQueue interface {
	// AddPairRequest queues a new pending request and returns it with
	// its new request id; a *PendingExistsError or *QueueFullError
	// refuses it.
	AddPairRequest(r PairRequest, maxPending int) (PairRequest, error)
	// GetPairRequest returns a request, decided or not, or an error
	// wrapping ErrNotFound.
	GetPairRequest(reqid string) (PairRequest, error)
	// ListPairRequests returns the requests pending at now, oldest first.
	ListPairRequests(now time.Time) ([]PairRequest, error)
	// DecidePairRequest calls decide and records its decision exactly
	// once per request, however many deciders race; a *DecidedError says
	// the request was already decided.
	DecidePairRequest(reqid string, now time.Time, decide func(PairRequest) (Decision, error)) (PairRequest, error)
	// ExpirePairRequests denies expired requests and purges answers
	// older than keep; it returns the requests it denied.
	ExpirePairRequests(now time.Time, keep time.Duration) ([]PairRequest, error)
}

// Revocations is the list of revoked agent certificate serials the
// dispatcher refuses to talk to.
type Revocations interface {
	// RevokeSerial adds serial, noting host, reason and time.
	RevokeSerial(serial *big.Int, host, reason string, at time.Time) error
	// RevokedSerials returns the revoked serials, and the lines that did
	// not parse as warnings.
	RevokedSerials() (pki.SerialSet, []error, error)
	// ListRevocations returns the entries with their notes.
	ListRevocations() ([]Revocation, error)
}

// Runs stores the results of runs under their reqid.
type Runs interface {
	// SaveRun creates or replaces the record of r.ReqID.
	SaveRun(r Run) error
	// GetRun returns the run reqid, or an error wrapping ErrNotFound.
	GetRun(reqid string) (Run, error)
}

// Locks are the host:script locks that keep two runs of one script on one
// host apart.
type Locks interface {
	// Acquire takes every lock in keys at once, or none: when any is held
	// elsewhere it returns a *LockConflictError naming each held pair.
	// release gives the locks back; it is safe to call more than once.
	Acquire(h LockHolder, keys []LockKey) (release func(), err error)
	// ListLocks returns the locks held right now, by anyone on this host.
	ListLocks() ([]LockInfo, error)
}

// Run is a stored run: what was asked, by whom, and each host's result.
// The token is never stored.
type Run struct {
	ReqID    string    `json:"reqid"`
	Script   string    `json:"script"`
	Args     []string  `json:"args"`
	Hosts    []string  `json:"hosts"`
	Username string    `json:"username"`
	Status   string    `json:"status"` // RunRunning, RunDone, RunCancelled or RunLost
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished,omitzero"`
	Results  []Result  `json:"results"` // in the order of Hosts once over
	// Owner is the process running the run, recorded while it runs so
	// that a run whose process died can be marked lost.
	Owner *RunOwner `json:"owner,omitempty"`
	// Batches is the progress of a run rolled out in batches (or with
	// fail-fast); nil for a run of every host at once.
	Batches *Batches `json:"batches,omitempty"`
	// RetryOf is the run whose failed hosts this run retries.
	RetryOf string `json:"retry_of,omitempty"`
}

// Batches is a rollout's progress: batches of Size hosts, in the order of
// the run's hosts, one after the other.
type Batches struct {
	Size     int `json:"size"`     // hosts per batch (the last may have fewer)
	Count    int `json:"count"`    // batches in all
	Current  int `json:"current"`  // the batch started last, from 1; 0 before the first
	Failures int `json:"failures"` // hosts that failed so far
	// MaxFailures is how many failed hosts the rollout tolerates before
	// it starts no further batch; nil: no limit.
	MaxFailures *int `json:"max_failures,omitempty"`
	FailFast    bool `json:"fail_fast,omitempty"`
	// Stopped says why the rollout started no further hosts; "" while it
	// goes on, and when every batch ran.
	Stopped string `json:"stopped,omitempty"`
}

// Values of Run.Status. A running record holds the results of the hosts
// done so far, in the order of Hosts; a cancelled run's hosts that were
// still in flight have the error "cancelled"; a lost run is one whose
// process ended (killed, crashed) before it stored the final record: its
// hosts without a stored result have exit -1 and an error saying so. A lost
// run is never run again.
const (
	RunRunning   = "running"
	RunDone      = "done"
	RunCancelled = "cancelled"
	RunLost      = "lost"
)

// OK reports whether the run is done and every host exited 0.
func (r Run) OK() bool {
	if r.Status != RunDone || len(r.Results) != len(r.Hosts) {
		return false
	}
	for _, res := range r.Results {
		if res.Exit != 0 {
			return false
		}
	}
	return true
}

// Result is one host's result of a run, in the JSON shape of the CLI's
// run --json (SPEC §6). Stdout and Stderr are text; when the script wrote
// bytes that are not valid UTF-8, StdoutB64 and StderrB64 carry the exact
// bytes in standard base64 (as on the wire) and Stdout and Stderr hold them
// with U+FFFD replacements.
type Result struct {
	Host      string `json:"host"`
	Exit      int    `json:"exit"`
	Stdout    string `json:"stdout"`
	Stderr    string `json:"stderr"`
	StdoutB64 string `json:"stdout_b64,omitempty"`
	StderrB64 string `json:"stderr_b64,omitempty"`
	RTT       string `json:"rtt"`
	ReqID     string `json:"reqid"`
	Error     string `json:"error,omitempty"`
	Truncated bool   `json:"truncated,omitempty"`
	Signal    string `json:"signal,omitempty"`
	// Attempted is false for a host a rollout never started (its batch
	// was not run, or fail-fast stopped it); nil for every other host.
	Attempted *bool `json:"attempted,omitempty"`
}

// WasAttempted reports whether the host was contacted at all.
func (r Result) WasAttempted() bool { return r.Attempted == nil || *r.Attempted }

// Output returns the exact bytes of stdout and stderr: the base64 fields
// when set, else the text.
func (r Result) Output() (stdout, stderr []byte) {
	return decodeOutput(r.Stdout, r.StdoutB64), decodeOutput(r.Stderr, r.StderrB64)
}

func decodeOutput(text, b64 string) []byte {
	if b64 != "" {
		if b, err := base64.StdEncoding.DecodeString(b64); err == nil {
			return b
		}
	}
	return []byte(text)
}

// LockKey names one host:script lock. Host is the agent's name (without a
// port).
type LockKey struct {
	Host   string
	Script string
}

func (k LockKey) String() string { return k.Host + ":" + k.Script }

// LockHolder says who holds a lock; it is written into the lock file.
type LockHolder struct {
	PID     int       `json:"pid"`
	ReqID   string    `json:"reqid"`
	User    string    `json:"user"`
	Started time.Time `json:"started"`
}

// LockInfo is a held lock as List reports it. The holder fields are empty
// for a lock held by a Perl dispatcher, which writes nothing into the file.
type LockInfo struct {
	LockKey
	LockHolder
	Path string
}

// LockConflictError says some host:script pairs are locked by another run.
type LockConflictError struct {
	Conflicts []LockKey
}

func (e *LockConflictError) Error() string {
	pairs := make([]string, len(e.Conflicts))
	for i, k := range e.Conflicts {
		pairs[i] = k.String()
	}
	return fmt.Sprintf("locked by another run: %s (see dispatcher list-locks); nothing was dispatched", strings.Join(pairs, ", "))
}

// Pairs returns the conflicts as "host:script" strings.
func (e *LockConflictError) Pairs() []string {
	out := make([]string, len(e.Conflicts))
	for i, k := range e.Conflicts {
		out[i] = k.String()
	}
	return out
}

// maxReqID is the longest request id accepted.
const maxReqID = 64

// ValidReqID checks that id can name a run file: 1 to 64 characters from
// [A-Za-z0-9_-].
func ValidReqID(id string) error {
	if id == "" {
		return errors.New("request id is empty")
	}
	if len(id) > maxReqID {
		return fmt.Errorf("request id is %d characters long; the limit is %d", len(id), maxReqID)
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return fmt.Errorf("request id %q contains %q; only letters, digits, '-' and '_' are allowed", id, c)
		}
	}
	return nil
}
