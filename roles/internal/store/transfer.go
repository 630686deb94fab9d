package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// This file holds the records as a store keeps them, for copying a whole
// state from one store to another (dispatcher store import and export,
// roles/internal/store/transfer). The methods of the concern interfaces
// cannot do it: AddPairRequest makes a new request id, SaveRun stamps the
// time of the write, PutAgent re-encodes a record and RevokeSerial
// re-spells a serial. The Transfer methods read what is stored as it is
// stored, and the Put…Record methods write it back so, each replacing the
// record of the same key (idempotent: writing a record twice leaves what
// writing it once leaves).

// AgentRecord is a registry record as stored: the bytes of
// agents/HOST.json (the PostgreSQL store keeps the same bytes) and the
// contact time kept beside it (contact/HOST's modification time; the
// agents.last_contact column).
type AgentRecord struct {
	Hostname string
	Record   []byte    // the JSON as stored, byte for byte
	Contact  time.Time // RecordContact's last time; zero = none
}

// Decode reads the record as GetAgent would (without the contact time),
// after checking that both stores can keep it: the host name can name a
// file and the record is UTF-8 JSON of an Agent.
func (r AgentRecord) Decode() (Agent, error) {
	if err := pki.ValidHostname(r.Hostname); err != nil {
		return Agent{}, fmt.Errorf("registry: %w", err)
	}
	if !utf8.Valid(r.Record) {
		return Agent{}, fmt.Errorf("registry record %s is not UTF-8 text", r.Hostname)
	}
	var a Agent
	if err := json.Unmarshal(r.Record, &a); err != nil {
		return Agent{}, fmt.Errorf("registry record %s: %w", r.Hostname, err)
	}
	if a.Hostname == "" {
		a.Hostname = r.Hostname
	}
	return a, nil
}

// PairRecord is a pairing request, decided or not, as stored: the bytes of
// pairing/REQID.json (the pair_requests.record column).
type PairRecord struct {
	ReqID  string
	Record []byte
}

// Decode reads the request as GetPairRequest would.
func (r PairRecord) Decode() (PairRequest, error) {
	if err := ValidReqID(r.ReqID); err != nil {
		return PairRequest{}, err
	}
	if !utf8.Valid(r.Record) {
		return PairRequest{}, fmt.Errorf("pairing request %s is not UTF-8 text", r.ReqID)
	}
	var p PairRequest
	if err := json.Unmarshal(r.Record, &p); err != nil {
		return PairRequest{}, fmt.Errorf("pairing request %s: %w", r.ReqID, err)
	}
	if p.ReqID == "" {
		p.ReqID = r.ReqID
	}
	return p, nil
}

// RunRecord is a stored run as stored: the bytes of runs/REQID.json (the
// runs.record column) and the time of its last write, which PruneRuns goes
// by (the file's modification time; runs.updated).
type RunRecord struct {
	ReqID   string
	Record  []byte
	Updated time.Time // zero = the time it is written
}

// Decode reads the run as GetRun would.
func (r RunRecord) Decode() (Run, error) {
	if err := ValidReqID(r.ReqID); err != nil {
		return Run{}, err
	}
	if !utf8.Valid(r.Record) {
		return Run{}, fmt.Errorf("run %s is not UTF-8 text", r.ReqID)
	}
	var run Run
	if err := json.Unmarshal(r.Record, &run); err != nil {
		return Run{}, fmt.Errorf("run %s: %w", r.ReqID, err)
	}
	return run, nil
}

// The kinds of revocation list.
const (
	RevokedAgent      = "agent"      // revoked-serials: agent certificates the dispatcher refuses
	RevokedDispatcher = "dispatcher" // revoked-dispatcher-serials: pushed to agents
)

// RevocationRecord is one entry of a revocation list as stored: the serial
// as written (a Perl spelling such as "serial=0A1D" stays one), and the
// host, time and reason noted with it, if any.
type RevocationRecord struct {
	Kind string // RevokedAgent or RevokedDispatcher
	Revocation
}

// Check reports whether both stores can keep r: a known kind, a serial
// pki.ParseSerial reads, and notes on one line.
func (r RevocationRecord) Check() error {
	if r.Kind != RevokedAgent && r.Kind != RevokedDispatcher {
		return fmt.Errorf("revocation of serial %q: unknown kind %q", r.Serial, r.Kind)
	}
	if _, err := pki.ParseSerial(r.Serial); err != nil || strings.ContainsAny(r.Serial, "#\n\r") {
		return fmt.Errorf("revoked %s serial %q does not parse as a serial number", r.Kind, r.Serial)
	}
	if r.Host != OneLine(r.Host) || strings.Contains(r.Host, " ") || r.Reason != OneLine(r.Reason) {
		return fmt.Errorf("revocation of serial %s: host and reason must be on one line", r.Serial)
	}
	return nil
}

// TransferAgents calls fn with every registry record, sorted by host
// name, as stored: the file's bytes, and contact/HOST's modification time
// when that file exists. It stops at fn's first error and returns it.
func (f *Files) TransferAgents(fn func(AgentRecord) error) error {
	names, err := f.AgentNames()
	if err != nil {
		return err
	}
	for _, n := range names {
		path := filepath.Join(f.dir, "agents", n+".json")
		data, err := readRecord(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue // unpaired meanwhile
		}
		if err != nil {
			return fmt.Errorf("read registry record %s: %w", path, err)
		}
		r := AgentRecord{Hostname: n, Record: data}
		if fi, err := os.Lstat(filepath.Join(f.dir, "contact", n)); err == nil && fi.Mode().IsRegular() {
			r.Contact = fi.ModTime().UTC()
		}
		if err := fn(r); err != nil {
			return err
		}
	}
	return nil
}

// PutAgentRecord writes r.Record to agents/HOST.json as it is (after
// r.Decode accepts it) and sets the contact time: contact/HOST's
// modification time, or no contact/HOST when r.Contact is zero.
func (f *Files) PutAgentRecord(r AgentRecord) error {
	if _, err := r.Decode(); err != nil {
		return err
	}
	path, err := f.agentPath(r.Hostname)
	if err != nil {
		return err
	}
	if err := writeRecord(path, r.Record); err != nil {
		return err
	}
	if !r.Contact.IsZero() {
		return f.RecordContact(r.Hostname, r.Contact)
	}
	c, _ := f.contactPath(r.Hostname)
	if err := os.Remove(c); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove contact time of %s: %w", r.Hostname, err)
	}
	return nil
}

// TransferPairRequests calls fn with every pairing request file, pending
// or decided, parsed or not, sorted by request id. It stops at fn's first
// error and returns it.
func (f *Files) TransferPairRequests(fn func(PairRecord) error) error {
	return f.eachRecord(f.pairingDir(), func(id string, data []byte, _ os.FileInfo) error {
		return fn(PairRecord{ReqID: id, Record: data})
	})
}

// PutPairRecord writes r.Record to pairing/REQID.json as it is (after
// r.Decode accepts it), under the queue lock.
func (f *Files) PutPairRecord(r PairRecord) error {
	if _, err := r.Decode(); err != nil {
		return err
	}
	path, err := f.pairPath(r.ReqID)
	if err != nil {
		return err
	}
	return withStateLock(f.queueLock(), func() error { return writeRecord(path, r.Record) })
}

// TransferRuns calls fn with every stored run file, parsed or not, sorted
// by request id, with its modification time. It stops at fn's first error
// and returns it.
func (f *Files) TransferRuns(fn func(RunRecord) error) error {
	return f.eachRecord(filepath.Join(f.dir, "runs"), func(id string, data []byte, fi os.FileInfo) error {
		return fn(RunRecord{ReqID: id, Record: data, Updated: fi.ModTime().UTC()})
	})
}

// PutRunRecord writes r.Record to runs/REQID.json as it is (after r.Decode
// accepts it), with r.Updated as its modification time, so that PruneRuns
// removes it when it would have removed the original.
func (f *Files) PutRunRecord(r RunRecord) error {
	if _, err := r.Decode(); err != nil {
		return err
	}
	path, err := f.runPath(r.ReqID)
	if err != nil {
		return err
	}
	if err := writeRecord(path, r.Record); err != nil {
		return err
	}
	if !r.Updated.IsZero() {
		if err := os.Chtimes(path, r.Updated, r.Updated); err != nil {
			return fmt.Errorf("set the time of run %s: %w", r.ReqID, err)
		}
	}
	return nil
}

// eachRecord calls fn with the id, bytes and file information of every
// REQID.json in dir whose name is a valid request id, sorted by id. A
// missing dir holds none; a file removed meanwhile is passed over.
func (f *Files) eachRecord(dir string, fn func(id string, data []byte, fi os.FileInfo) error) error {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read %s: %w", dir, err)
	}
	var ids []string
	for _, e := range entries {
		if id, ok := strings.CutSuffix(e.Name(), ".json"); ok && e.Type().IsRegular() && ValidReqID(id) == nil {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		path := filepath.Join(dir, id+".json")
		data, err := readRecord(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", path, err)
		}
		fi, err := os.Lstat(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		if err := fn(id, data, fi); err != nil {
			return err
		}
	}
	return nil
}

// TransferRevocations calls fn with the entries of revoked-serials, then
// those of revoked-dispatcher-serials, each in file order with the notes
// ListRevocations reads. Lines that do not parse as serials are passed
// too (Check refuses them). It stops at fn's first error and returns it.
func (f *Files) TransferRevocations(fn func(RevocationRecord) error) error {
	for _, l := range []struct{ kind, path string }{
		{RevokedAgent, f.revokedPath()},
		{RevokedDispatcher, f.revokedDispatcherPath()},
	} {
		list, err := listRevocationsIn(l.path)
		if err != nil {
			return err
		}
		for _, r := range list {
			if err := fn(RevocationRecord{Kind: l.kind, Revocation: r}); err != nil {
				return err
			}
		}
	}
	return nil
}

// AddRevocationRecord appends r to its list (after r.Check accepts it):
// the serial as written, below a "# revoked HOST TIME: REASON" line when r
// has a note, alone when it has none (as the Perl dispatcher writes it).
// An entry of the same serial, as written, already listed is left as it
// is and added reports false.
func (f *Files) AddRevocationRecord(r RevocationRecord) (added bool, err error) {
	if err := r.Check(); err != nil {
		return false, err
	}
	path := f.revokedPath()
	if r.Kind == RevokedDispatcher {
		path = f.revokedDispatcherPath()
	}
	err = withStateLock(path+".lock", func() error {
		list, err := listRevocationsIn(path)
		if err != nil {
			return err
		}
		for _, e := range list {
			if e.Serial == r.Serial {
				return nil
			}
		}
		data, err := readRecord(path)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("read %s: %w", path, err)
		}
		b := append([]byte(nil), data...)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			b = append(b, '\n')
		}
		if r.Host != "" || r.Reason != "" || !r.At.IsZero() {
			b = fmt.Appendf(b, "%s%s %s: %s\n", revocationTag, r.Host, r.At.UTC().Format(time.RFC3339), r.Reason)
		}
		b = append(append(b, r.Serial...), '\n')
		if err := writeRecord(path, b); err != nil {
			return err
		}
		added = true
		return nil
	})
	return added, err
}

// listRevocationsIn reads the serial list at path as ListRevocations reads
// revoked-serials; a missing file lists nothing.
func listRevocationsIn(path string) ([]Revocation, error) {
	data, err := readRecord(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	var out []Revocation
	var note Revocation
	for line := range strings.SplitSeq(string(data), "\n") {
		line = strings.TrimSpace(line)
		if rest, ok := strings.CutPrefix(line, revocationTag); ok {
			note = parseRevocationNote(rest)
			continue
		}
		text, _, _ := strings.Cut(line, "#")
		text = strings.TrimSpace(text)
		if text == "" {
			note = Revocation{}
			continue
		}
		r := note
		r.Serial = text
		out = append(out, r)
		note = Revocation{}
	}
	return out, nil
}
