package store

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// States of a pairing request (the values of the pairing protocol, WIRE.md).
const (
	PairPending  = "pending"
	PairApproved = "approved"
	PairDenied   = "denied"
)

// ReasonExpired is the denial reason of a request nobody decided within
// pairing_timeout.
const ReasonExpired = "expired"

// PairRequest is a pairing request, pairing/REQID.json: what the agent
// sent, where from, the code the dispatcher computed, and, once decided,
// the answer. Nonce is the agent's secret for polling: show it to no one.
type PairRequest struct {
	ReqID    string    `json:"reqid"`
	Hostname string    `json:"hostname"`
	IP       string    `json:"ip"`    // source IP of the pairing connection
	Port     int       `json:"port"`  // serving port the agent sent
	CSR      string    `json:"csr"`   // PEM
	Nonce    string    `json:"nonce"` // echoed in the approval; polls must present it
	Code     string    `json:"code"`  // the 6-digit code as the dispatcher computed it
	Created  time.Time `json:"created"`
	Expires  time.Time `json:"expires"`
	// Tags are the agent's [tags] as it sent them, checked; the registry
	// record gets them on approval. Empty: none sent.
	Tags map[string]string `json:"tags,omitempty"`

	Status  string    `json:"status"`           // PairPending, PairApproved or PairDenied
	Reason  string    `json:"reason,omitempty"` // why it was denied
	Cert    string    `json:"cert,omitempty"`   // the issued certificate (PEM), once approved
	CA      string    `json:"ca,omitempty"`     // the CA certificate (PEM), once approved
	Decided time.Time `json:"decided,omitzero"`
}

// Pending reports whether r waits for a decision at now: pending and not
// expired.
func (r PairRequest) Pending(now time.Time) bool {
	return r.Status == PairPending && now.Before(r.Expires)
}

// Decision is the answer to a pairing request: approved with the
// certificate and the CA, or denied with a reason.
type Decision struct {
	Status string // PairApproved or PairDenied
	Reason string
	Cert   string
	CA     string
}

// QueueFullError refuses a pairing request because pairing_max_queue
// requests are pending.
type QueueFullError struct{ Pending, Max int }

func (e *QueueFullError) Error() string {
	return fmt.Sprintf("queue full: %d requests pending; approve or deny some, or raise pairing_max_queue", e.Pending)
}

// PendingExistsError refuses a pairing request for a host name that already
// has one pending. ReqID is the pending request's, for the operator: the
// message leaves it out because it goes back to an unauthenticated peer.
type PendingExistsError struct {
	Hostname string
	ReqID    string
}

func (e *PendingExistsError) Error() string {
	return fmt.Sprintf("a pairing request for %s is already pending; wait until it is approved, denied or expired", e.Hostname)
}

// DecidedError refuses to decide a pairing request that is already
// decided (or has expired, which denies it).
type DecidedError struct {
	ReqID    string
	Hostname string
	Status   string
	Reason   string
}

func (e *DecidedError) Error() string {
	if e.Status == PairDenied && e.Reason == ReasonExpired {
		return fmt.Sprintf("pairing request %s (%s) has expired; the agent must request pairing again", e.ReqID, e.Hostname)
	}
	if e.Reason != "" {
		return fmt.Sprintf("pairing request %s (%s) was already %s (%s)", e.ReqID, e.Hostname, e.Status, e.Reason)
	}
	return fmt.Sprintf("pairing request %s (%s) was already %s", e.ReqID, e.Hostname, e.Status)
}

func (f *Files) pairingDir() string { return filepath.Join(f.dir, "pairing") }

// queueLock guards every change of the pairing queue.
func (f *Files) queueLock() string { return filepath.Join(f.pairingDir(), "queue.lock") }

func (f *Files) pairPath(reqid string) (string, error) {
	if err := ValidReqID(reqid); err != nil {
		return "", err
	}
	return filepath.Join(f.pairingDir(), reqid+".json"), nil
}

// AddPairRequest queues r as a new pending request under a new random
// request id (16 hex digits) and returns it as stored. r.Created is taken
// as the current time. Under the queue lock, so that concurrent listeners
// agree, it first marks expired requests denied, then refuses with a
// *PendingExistsError when a request for the same host name (ignoring
// case) is pending, and with a *QueueFullError when maxPending requests are
// (maxPending < 1: no limit).
func (f *Files) AddPairRequest(r PairRequest, maxPending int) (PairRequest, error) {
	if err := pki.ValidHostname(r.Hostname); err != nil {
		return PairRequest{}, fmt.Errorf("pairing request: %w", err)
	}
	now := r.Created
	err := withStateLock(f.queueLock(), func() error {
		all, err := f.readPairRequests()
		if err != nil {
			return err
		}
		pending := 0
		for _, q := range all {
			if q.Status != PairPending {
				continue
			}
			if !q.Pending(now) {
				if err := f.writeDecision(q, Decision{Status: PairDenied, Reason: ReasonExpired}, now); err != nil {
					return err
				}
				continue
			}
			if strings.EqualFold(q.Hostname, r.Hostname) {
				return &PendingExistsError{Hostname: r.Hostname, ReqID: q.ReqID}
			}
			pending++
		}
		if maxPending > 0 && pending >= maxPending {
			return &QueueFullError{Pending: pending, Max: maxPending}
		}
		r.Status, r.Reason, r.Cert, r.CA, r.Decided = PairPending, "", "", "", time.Time{}
		for range 8 {
			r.ReqID = newPairReqID()
			path, _ := f.pairPath(r.ReqID)
			data, err := encodePairRequest(r)
			if err != nil {
				return err
			}
			err = pki.WriteNewFileAtomic(path, data, ModeRecord)
			if !errors.Is(err, fs.ErrExist) {
				return err
			}
		}
		return errors.New("pairing request: no free request id after 8 tries")
	})
	if err != nil {
		return PairRequest{}, err
	}
	return r, nil
}

// GetPairRequest returns the request reqid as stored, decided or not. An
// unknown id gives an error wrapping ErrNotFound; an id that could not name
// a request (see ValidReqID) is an error before any file is touched.
func (f *Files) GetPairRequest(reqid string) (PairRequest, error) {
	path, err := f.pairPath(reqid)
	if err != nil {
		return PairRequest{}, err
	}
	return readPairRequest(path, reqid)
}

// ListPairRequests returns the requests pending at now (not decided, not
// expired), oldest first.
func (f *Files) ListPairRequests(now time.Time) ([]PairRequest, error) {
	all, err := f.readPairRequests()
	if err != nil {
		return nil, err
	}
	var out []PairRequest
	for _, r := range all {
		if r.Pending(now) {
			out = append(out, r)
		}
	}
	return out, nil
}

// DecidePairRequest decides the pending request reqid exactly once, even
// with several processes deciding at the same moment. Under the queue lock
// it reads the request; if it is no longer pending it returns a
// *DecidedError without calling decide, and if it has expired it records
// the denial "expired" and returns a *DecidedError. Otherwise it calls
// decide with the request — the place to sign a certificate and write the
// registry, so that happens once — and records the decision decide
// returns. An error from decide is returned as it is and nothing is
// recorded: the request stays pending. It returns the request as recorded.
func (f *Files) DecidePairRequest(reqid string, now time.Time, decide func(PairRequest) (Decision, error)) (PairRequest, error) {
	path, err := f.pairPath(reqid)
	if err != nil {
		return PairRequest{}, err
	}
	var out PairRequest
	err = withStateLock(f.queueLock(), func() error {
		r, err := readPairRequest(path, reqid)
		if err != nil {
			return err
		}
		if r.Status == PairPending && !r.Pending(now) {
			if err := f.writeDecision(r, Decision{Status: PairDenied, Reason: ReasonExpired}, now); err != nil {
				return err
			}
			r.Status, r.Reason = PairDenied, ReasonExpired
		}
		if r.Status != PairPending {
			return &DecidedError{ReqID: r.ReqID, Hostname: r.Hostname, Status: r.Status, Reason: r.Reason}
		}
		d, err := decide(r)
		if err != nil {
			return err
		}
		if d.Status != PairApproved && d.Status != PairDenied {
			return fmt.Errorf("pairing request %s: decision %q is neither approved nor denied", reqid, d.Status)
		}
		if err := f.writeDecision(r, d, now); err != nil {
			return err
		}
		out, err = readPairRequest(path, reqid)
		return err
	})
	if err != nil {
		return PairRequest{}, err
	}
	return out, nil
}

// ExpirePairRequests denies (reason "expired") every request still pending
// after its expiry and removes decided requests decided before now-keep,
// so an agent still polling gets its answer for keep after the decision.
// It returns the requests it has just denied.
func (f *Files) ExpirePairRequests(now time.Time, keep time.Duration) ([]PairRequest, error) {
	var expired []PairRequest
	err := withStateLock(f.queueLock(), func() error {
		all, err := f.readPairRequests()
		if err != nil {
			return err
		}
		for _, r := range all {
			switch {
			case r.Status == PairPending && !r.Pending(now):
				if err := f.writeDecision(r, Decision{Status: PairDenied, Reason: ReasonExpired}, now); err != nil {
					return err
				}
				r.Status, r.Reason, r.Decided = PairDenied, ReasonExpired, now.UTC()
				expired = append(expired, r)
			case r.Status != PairPending && r.Decided.Add(keep).Before(now):
				path, _ := f.pairPath(r.ReqID)
				if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
					return fmt.Errorf("purge pairing request %s: %w", r.ReqID, err)
				}
			}
		}
		return nil
	})
	return expired, err
}

// writeDecision records d on r (atomically replacing its file).
func (f *Files) writeDecision(r PairRequest, d Decision, now time.Time) error {
	r.Status, r.Reason, r.Decided = d.Status, d.Reason, now.UTC()
	if d.Status == PairApproved {
		r.Cert, r.CA = d.Cert, d.CA
	}
	path, err := f.pairPath(r.ReqID)
	if err != nil {
		return err
	}
	data, err := encodePairRequest(r)
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(path, data, ModeRecord)
}

// readPairRequests reads every request file, oldest first. Files that do
// not parse are skipped: they cannot be decided or answered.
func (f *Files) readPairRequests() ([]PairRequest, error) {
	dir := f.pairingDir()
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read pairing queue %s: %w", dir, err)
	}
	var out []PairRequest
	for _, e := range entries {
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() || ValidReqID(id) != nil {
			continue
		}
		r, err := readPairRequest(filepath.Join(dir, e.Name()), id)
		if errors.Is(err, ErrNotFound) {
			continue // purged meanwhile
		}
		if err != nil {
			var se *json.SyntaxError
			var te *json.UnmarshalTypeError
			if errors.As(err, &se) || errors.As(err, &te) {
				continue
			}
			return nil, err
		}
		out = append(out, r)
	}
	SortPairRequests(out)
	return out, nil
}

// SortPairRequests orders requests oldest first (then by request id), the
// order ListPairRequests returns them in, whichever store holds them.
func SortPairRequests(rs []PairRequest) {
	sort.Slice(rs, func(i, j int) bool {
		if !rs[i].Created.Equal(rs[j].Created) {
			return rs[i].Created.Before(rs[j].Created)
		}
		return rs[i].ReqID < rs[j].ReqID
	})
}

func readPairRequest(path, reqid string) (PairRequest, error) {
	data, err := readRecord(path)
	if errors.Is(err, fs.ErrNotExist) {
		return PairRequest{}, fmt.Errorf("pairing request %s: %w (requests are kept until pairing_timeout after they are decided)", reqid, ErrNotFound)
	}
	if err != nil {
		return PairRequest{}, fmt.Errorf("read pairing request %s: %w", path, err)
	}
	var r PairRequest
	if err := json.Unmarshal(data, &r); err != nil {
		return PairRequest{}, fmt.Errorf("read pairing request %s: %w", path, err)
	}
	if r.ReqID == "" {
		r.ReqID = reqid
	}
	return r, nil
}

func encodePairRequest(r PairRequest) ([]byte, error) {
	r.Created, r.Expires = r.Created.UTC(), r.Expires.UTC()
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode pairing request %s: %w", r.ReqID, err)
	}
	return append(data, '\n'), nil
}

// newPairReqID returns 16 lowercase hex digits (64 bits from crypto/rand).
func newPairReqID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
