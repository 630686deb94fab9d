package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// The revocation lists: an entry with a note gets its comment line, one
// without is the serial alone, as the Perl dispatcher writes it; a serial
// listed already, as written, is not added again; the result lists as it
// was given.
func TestAddRevocationRecord(t *testing.T) {
	f := NewFiles(t.TempDir())
	at := time.Date(2025, 7, 1, 8, 30, 0, 0, time.UTC)
	recs := []RevocationRecord{
		{Kind: RevokedAgent, Revocation: Revocation{Serial: "0A1B"}},
		{Kind: RevokedAgent, Revocation: Revocation{Serial: "2587 (0xa1b)"}},
		{Kind: RevokedAgent, Revocation: Revocation{Serial: "4f3e2d1cab", Host: "db-02", At: at, Reason: "unpaired"}},
		{Kind: RevokedDispatcher, Revocation: Revocation{Serial: "0x1234", Host: "dispatcher", At: at, Reason: "rotated"}},
	}
	for _, r := range recs {
		if added, err := f.AddRevocationRecord(r); err != nil || !added {
			t.Fatalf("add %+v: %v %v", r, added, err)
		}
	}
	if added, err := f.AddRevocationRecord(RevocationRecord{Kind: RevokedAgent, Revocation: Revocation{Serial: "0A1B", Host: "x", Reason: "again"}}); err != nil || added {
		t.Errorf("add a serial listed already: %v %v", added, err)
	}
	want := "0A1B\n2587 (0xa1b)\n# revoked db-02 2025-07-01T08:30:00Z: unpaired\n4f3e2d1cab\n"
	if d := cmp.Diff(want, string(mustRead(t, filepath.Join(f.Dir(), "revoked-serials")))); d != "" {
		t.Errorf("revoked-serials (-want +got):\n%s", d)
	}
	assertMode(t, filepath.Join(f.Dir(), "revoked-serials"), ModeRecord)
	var got []RevocationRecord
	if err := f.TransferRevocations(func(r RevocationRecord) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(recs, got); d != "" {
		t.Errorf("TransferRevocations (-added +listed):\n%s", d)
	}

	for _, bad := range []RevocationRecord{
		{Kind: "agents", Revocation: Revocation{Serial: "0a1b"}},
		{Kind: RevokedAgent, Revocation: Revocation{Serial: "not-a-serial!"}},
		{Kind: RevokedAgent, Revocation: Revocation{Serial: "0a1b # comment"}},
		{Kind: RevokedAgent, Revocation: Revocation{Serial: "0a1b", Host: "web 01"}},
		{Kind: RevokedAgent, Revocation: Revocation{Serial: "0a1b", Reason: "two\nlines"}},
	} {
		if _, err := f.AddRevocationRecord(bad); err == nil {
			t.Errorf("%+v accepted", bad)
		}
	}
}

// Agent records are written as they are, with the contact time beside
// them; a record without one removes the old contact time.
func TestAgentRecords(t *testing.T) {
	f := NewFiles(t.TempDir())
	record := []byte("{\n   \"hostname\" : \"web-01\",\n   \"serial_confirmed\" : null,\n   \"x\" : 2.50\n}\n")
	at := time.Date(2025, 6, 3, 4, 5, 6, 789, time.UTC)
	if err := f.PutAgentRecord(AgentRecord{Hostname: "web-01", Record: record, Contact: at}); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(f.Dir(), "agents", "web-01.json")
	if got := mustRead(t, path); string(got) != string(record) {
		t.Errorf("agents/web-01.json:\n%s", got)
	}
	var got []AgentRecord
	if err := f.TransferAgents(func(r AgentRecord) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]AgentRecord{{Hostname: "web-01", Record: record, Contact: at}}, got); d != "" {
		t.Errorf("TransferAgents (-want +got):\n%s", d)
	}
	if err := f.PutAgentRecord(AgentRecord{Hostname: "web-01", Record: record}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(f.Dir(), "contact", "web-01")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("contact/web-01 after a record without a contact time: %v", err)
	}

	for name, bad := range map[string]AgentRecord{
		"host name":  {Hostname: "../etc", Record: []byte(`{}`)},
		"json":       {Hostname: "web-02", Record: []byte(`{"hostname":`)},
		"field type": {Hostname: "web-02", Record: []byte(`{"tags":"x"}`)},
		"utf-8":      {Hostname: "web-02", Record: []byte("{\"ip\":\"\xff\"}")},
	} {
		if err := f.PutAgentRecord(bad); err == nil {
			t.Errorf("%s: a bad record was written", name)
		}
	}
	if _, err := os.Lstat(filepath.Join(f.Dir(), "agents", "web-02.json")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a refused record left a file: %v", err)
	}

	// A planted symbolic link is not followed.
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte(`{"hostname":"evil"}`), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(secret, filepath.Join(f.Dir(), "agents", "evil.json")); err != nil {
		t.Fatal(err)
	}
	err := f.TransferAgents(func(r AgentRecord) error {
		if r.Hostname != "web-01" {
			t.Errorf("TransferAgents passed %s, a symbolic link", r.Hostname)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// Runs keep their time of last write, which PruneRuns goes by; pairing
// requests keep their ids and answers.
func TestRunAndPairRecords(t *testing.T) {
	f := NewFiles(t.TempDir())
	updated := time.Date(2025, 6, 1, 12, 0, 3, 250_000_000, time.UTC)
	run := []byte(`{"reqid":"r1","status":"done","hosts":["a"],"results":[{"host":"a","exit":0}]}`)
	if err := f.PutRunRecord(RunRecord{ReqID: "r1", Record: run, Updated: updated}); err != nil {
		t.Fatal(err)
	}
	var runs []RunRecord
	if err := f.TransferRuns(func(r RunRecord) error { runs = append(runs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]RunRecord{{ReqID: "r1", Record: run, Updated: updated}}, runs); d != "" {
		t.Errorf("TransferRuns (-want +got):\n%s", d)
	}
	if n, err := f.PruneRuns(updated.Add(time.Second)); n != 1 || err != nil {
		t.Errorf("PruneRuns after the run's time: %d %v", n, err)
	}

	pair := []byte(`{"reqid":"0123456789abcdef","hostname":"db-03","nonce":"n","status":"pending","created":"2025-06-01T12:00:00Z","expires":"2099-01-01T00:00:00Z"}`)
	if err := f.PutPairRecord(PairRecord{ReqID: "0123456789abcdef", Record: pair}); err != nil {
		t.Fatal(err)
	}
	pending, err := f.ListPairRequests(time.Now())
	if err != nil || len(pending) != 1 || pending[0].ReqID != "0123456789abcdef" || pending[0].Nonce != "n" {
		t.Errorf("ListPairRequests: %+v %v", pending, err)
	}
	for _, bad := range []error{
		f.PutPairRecord(PairRecord{ReqID: "../x", Record: pair}),
		f.PutPairRecord(PairRecord{ReqID: "x", Record: []byte(`{"created":"yesterday"}`)}),
		f.PutRunRecord(RunRecord{ReqID: "r2", Record: []byte(`[]`)}),
	} {
		if bad == nil {
			t.Errorf("a bad record was written")
		}
	}
}
