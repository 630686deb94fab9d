package postgres

import (
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// The kinds of the revocations table are the store's.
func TestRevocationKinds(t *testing.T) {
	if kindAgent != store.RevokedAgent || kindDispatcher != store.RevokedDispatcher {
		t.Errorf("kinds %q %q, store's %q %q", kindAgent, kindDispatcher, store.RevokedAgent, store.RevokedDispatcher)
	}
}

// Records go in and come out as they are: the registry record's bytes and
// its contact time, a revocation's serial as written and an entry without
// notes as one, a run's time of last write.
func TestTransferRecords(t *testing.T) {
	s, _ := newStore(t)
	record := []byte("{\n   \"hostname\" : \"web-01\",\n   \"serial_confirmed\" : null,\n   \"x\" : 2.50\n}\n")
	at := time.Date(2025, 6, 3, 4, 5, 6, 789_000, time.UTC)
	if err := s.PutAgentRecord(store.AgentRecord{Hostname: "web-01", Record: record, Contact: at}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAgentRecord(store.AgentRecord{Hostname: "web-02", Record: []byte(`{"ip":"10.0.0.6"}`)}); err != nil {
		t.Fatal(err)
	}
	var agents []store.AgentRecord
	if err := s.TransferAgents(func(r store.AgentRecord) error { agents = append(agents, r); return nil }); err != nil {
		t.Fatal(err)
	}
	want := []store.AgentRecord{{Hostname: "web-01", Record: record, Contact: at}, {Hostname: "web-02", Record: []byte(`{"ip":"10.0.0.6"}`)}}
	if d := cmp.Diff(want, agents); d != "" {
		t.Errorf("TransferAgents (-want +got):\n%s", d)
	}
	// Replacing a record replaces its contact time too.
	if err := s.PutAgentRecord(store.AgentRecord{Hostname: "web-01", Record: record}); err != nil {
		t.Fatal(err)
	}
	if a, err := s.GetAgent("web-01"); err != nil || !a.LastContact.IsZero() || a.ExtraString("x") != "" || string(a.Extra["x"]) != "2.50" {
		t.Errorf("web-01 replaced: %+v %v", a, err)
	}
	if err := s.PutAgentRecord(store.AgentRecord{Hostname: "web-03", Record: []byte("{\"ip\":\"\xff\"}")}); err == nil {
		t.Error("a record that is not UTF-8 was stored")
	}

	revs := []store.RevocationRecord{
		{Kind: store.RevokedAgent, Revocation: store.Revocation{Serial: "serial=0A1D"}},
		{Kind: store.RevokedAgent, Revocation: store.Revocation{Serial: "12"}},
		{Kind: store.RevokedDispatcher, Revocation: store.Revocation{Serial: "0xcafebabe", Host: "dispatcher", At: at.Truncate(time.Second), Reason: "rotated"}},
	}
	for _, r := range revs {
		if added, err := s.AddRevocationRecord(r); err != nil || !added {
			t.Fatalf("add %+v: %v %v", r, added, err)
		}
	}
	if added, err := s.AddRevocationRecord(revs[1]); err != nil || added {
		t.Errorf("add again: %v %v", added, err)
	}
	var got []store.RevocationRecord
	if err := s.TransferRevocations(func(r store.RevocationRecord) error { got = append(got, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(revs, got); d != "" {
		t.Errorf("TransferRevocations (-want +got):\n%s", d)
	}
	set, warnings, err := s.RevokedSerials()
	if err != nil || warnings != nil || set.Len() != 3 { // 0x0a1d, 0x12 and 12
		t.Errorf("RevokedSerials: %v %v %v", set.Values(), warnings, err)
	}

	updated := time.Date(2025, 6, 1, 12, 0, 3, 250_000_000, time.UTC)
	run := []byte(`{"reqid":"r1","status":"running","hosts":["a"],"results":[]}`)
	if err := s.PutRunRecord(store.RunRecord{ReqID: "r1", Record: run, Updated: updated}); err != nil {
		t.Fatal(err)
	}
	var runs []store.RunRecord
	if err := s.TransferRuns(func(r store.RunRecord) error { runs = append(runs, r); return nil }); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]store.RunRecord{{ReqID: "r1", Record: run, Updated: updated}}, runs); d != "" {
		t.Errorf("TransferRuns (-want +got):\n%s", d)
	}
	if rr, err := s.RunningRuns(); err != nil || len(rr) != 1 {
		t.Errorf("RunningRuns: %+v %v", rr, err)
	}
	if n, err := s.PruneRuns(updated.Add(time.Second)); n != 1 || err != nil {
		t.Errorf("PruneRuns after the run's time: %d %v", n, err)
	}

	// A decided request keeps its answer, and is purged by its decision
	// time as one decided here.
	pair := []byte(`{"reqid":"fedcba9876543210","hostname":"web-02","nonce":"n","status":"approved","cert":"C","created":"2025-06-01T11:00:00Z","expires":"2025-06-01T11:10:00Z","decided":"2025-06-01T11:02:03.123456789Z"}`)
	if err := s.PutPairRecord(store.PairRecord{ReqID: "fedcba9876543210", Record: pair}); err != nil {
		t.Fatal(err)
	}
	if p, err := s.GetPairRequest("fedcba9876543210"); err != nil || p.Status != store.PairApproved || p.Cert != "C" {
		t.Errorf("GetPairRequest: %+v %v", p, err)
	}
	decided := time.Date(2025, 6, 1, 11, 2, 3, 123456789, time.UTC)
	if _, err := s.ExpirePairRequests(decided.Add(time.Hour), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPairRequest("fedcba9876543210"); err != nil {
		t.Errorf("purged exactly keep after the decision: %v", err)
	}
	if _, err := s.ExpirePairRequests(decided.Add(time.Hour+time.Nanosecond), time.Hour); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetPairRequest("fedcba9876543210"); err == nil {
		t.Error("not purged after keep")
	}
}
