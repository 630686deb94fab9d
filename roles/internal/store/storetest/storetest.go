package storetest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// Run runs the conformance suite against stores made by open. Each subtest
// calls open(t) once and gets two handles, a and b, on one new, empty
// state: what two processes (or two dispatcher nodes) sharing that state
// see. a and b must be distinct values; open registers their Close with
// t.Cleanup when they hold anything open. See the package doc.
func Run(t *testing.T, open func(t *testing.T) (a, b store.Store)) {
	o := opener(open)
	for _, g := range []struct {
		name  string
		tests []test
	}{
		{"Registry", registryTests},
		{"Contact", contactTests},
		{"Runs", runTests},
		{"Cancels", cancelTests},
		{"Pairing", pairingTests},
		{"Revocations", revocationTests},
		{"Rotation", rotationTests},
		{"Locks", lockTests},
		{"SharedState", []test{{"", testSharedState}}},
	} {
		t.Run(g.name, func(t *testing.T) {
			for _, tc := range g.tests {
				if tc.name == "" {
					tc.fn(t, o)
					continue
				}
				t.Run(tc.name, func(t *testing.T) { tc.fn(t, o) })
			}
		})
	}
}

type test struct {
	name string
	fn   func(t *testing.T, open opener)
}

// opener is Run's open, checked.
type opener func(t *testing.T) (a, b store.Store)

// both returns the two handles on a new state.
func (o opener) both(t *testing.T) (a, b store.Store) {
	t.Helper()
	a, b = o(t)
	if a == nil || b == nil {
		t.Fatalf("open returned a nil store (%v, %v)", a, b)
	}
	if reflect.TypeOf(a) == reflect.TypeOf(b) && reflect.TypeOf(a).Comparable() && a == b {
		t.Fatal("open returned one handle twice; return two handles on one state (two NewFiles of one directory, two Opens of one database)")
	}
	return a, b
}

// one returns a handle on a new state.
func (o opener) one(t *testing.T) store.Store {
	t.Helper()
	a, _ := o.both(t)
	return a
}

// t0 is the base of the suite's times: whole seconds, UTC.
var t0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// wantNotFound fails t unless err wraps store.ErrNotFound.
func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: error %v, want one wrapping store.ErrNotFound", what, err)
	}
}

// wantRefused fails t unless err is an error that does not wrap
// store.ErrNotFound: an argument refused before anything is looked up.
func wantRefused(t *testing.T, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: no error, want it refused", what)
	} else if errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: %v wraps store.ErrNotFound; want the argument refused as invalid", what, err)
	}
}

// check fails t when want and got differ (see diff).
func check(t *testing.T, what string, want, got any) {
	t.Helper()
	if d := diff(want, got); d != "" {
		t.Errorf("%s (-want +got):\n%s", what, d)
	}
}

func must(t *testing.T, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

// invalidHosts are names that pki.ValidHostname refuses, several of them
// paths.
var invalidHosts = []string{"", "../etc/passwd", "a/b", ".hidden", "web-01.json/..", "web_01", "web 01", "web-01.", "-web", "web-", strings.Repeat("a", 64)}

// invalidReqIDs are ids that store.ValidReqID refuses.
var invalidReqIDs = []string{"", "..", "../agents/web-01", "a/b", "x.json", "a b", "ünï", strings.Repeat("a", 65)}

// ---- Registry ----

var registryTests = []test{
	{"Empty", testRegistryEmpty},
	{"PutGet", testRegistryPutGet},
	{"Replace", testRegistryReplace},
	{"ListSorted", testRegistryListSorted},
	{"Delete", testRegistryDelete},
	{"InvalidHostname", testRegistryInvalidHostname},
}

func testRegistryEmpty(t *testing.T, o opener) {
	s := o.one(t)
	agents, err := s.ListAgents()
	must(t, "ListAgents", err)
	check(t, "ListAgents of an empty store", []store.Agent(nil), agents)
	names, err := s.AgentNames()
	must(t, "AgentNames", err)
	check(t, "AgentNames of an empty store", []string(nil), names)
	_, err = s.GetAgent("web-01")
	wantNotFound(t, "GetAgent(web-01) of an empty store", err)
	wantNotFound(t, "DeleteAgent(web-01) of an empty store", s.DeleteAgent("web-01"))
}

// lifecycleAgent is a record with the certificate lifecycle's fields set
// through the Agent helpers.
func lifecycleAgent() store.Agent {
	a := store.Agent{Hostname: "web-04", IP: "10.0.0.4"}
	a.SetExtraTime(store.FieldLastRenewal, t0)
	a.SetExtraTime(store.FieldRenewalUnsupported, t0.Add(time.Hour))
	a.SetExtraString(store.FieldRevocationsPushed, "sha256:0011")
	a.SetExtraString(store.FieldSerialStatus, store.SerialPending)
	a.SetExtraString(store.FieldDispatcherSerial, "0b0670")
	a.SetExtraTime(store.FieldSerialBroadcast, t0.Add(-time.Hour))
	return a
}

func testRegistryPutGet(t *testing.T, o opener) {
	for _, tc := range []struct {
		name  string
		agent store.Agent
	}{
		{"minimal", store.Agent{Hostname: "web-01"}},
		{"every field", store.Agent{
			Hostname: "web-02.example.org", IP: "10.0.0.2", Port: 7450,
			Paired: "2025-03-01T10:00:00Z", Expiry: "Mar  1 10:00:00 2027 GMT", ReqID: "a1b2c3d4e5f60718",
			KeyFingerprint: "sha256:9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
			Serial:         "0a1b2c", Tags: map[string]string{"role": "web", "dc": "fra-1", "empty": ""},
			LastContact: t0,
		}},
		{"IPv6 address and the highest port", store.Agent{Hostname: "db-01", IP: "2001:db8::1", Port: 65535}},
		{"unknown fields in Extra", store.Agent{Hostname: "web-03", IP: "10.0.0.3", Extra: map[string]json.RawMessage{
			"future":           json.RawMessage(`{"nested":[1,2.50,"x",null],"flag":true}`),
			"serial_confirmed": json.RawMessage(`null`),
			"count":            json.RawMessage(`12`),
			"note":             json.RawMessage(`"keep \"me\" <as> written"`),
		}}},
		{"lifecycle fields", lifecycleAgent()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := o.one(t)
			must(t, "PutAgent", s.PutAgent(tc.agent))
			got, err := s.GetAgent(tc.agent.Hostname)
			must(t, "GetAgent", err)
			check(t, "GetAgent after PutAgent", tc.agent, got)
			list, err := s.ListAgents()
			must(t, "ListAgents", err)
			check(t, "ListAgents after PutAgent", []store.Agent{tc.agent}, list)
			names, err := s.AgentNames()
			must(t, "AgentNames", err)
			check(t, "AgentNames after PutAgent", []string{tc.agent.Hostname}, names)
		})
	}
	t.Run("lifecycle helpers read back", func(t *testing.T) {
		s := o.one(t)
		must(t, "PutAgent", s.PutAgent(lifecycleAgent()))
		got, err := s.GetAgent("web-04")
		must(t, "GetAgent", err)
		if at := got.ExtraTime(store.FieldLastRenewal); !at.Equal(t0) {
			t.Errorf("ExtraTime(%s) = %v, want %v", store.FieldLastRenewal, at, t0)
		}
		if v := got.ExtraString(store.FieldSerialStatus); v != store.SerialPending {
			t.Errorf("ExtraString(%s) = %q, want %q", store.FieldSerialStatus, v, store.SerialPending)
		}
	})
}

// A record put again is replaced as a whole: fields the new one lacks are
// gone, and the other records are untouched.
func testRegistryReplace(t *testing.T, o opener) {
	s := o.one(t)
	first := store.Agent{Hostname: "web-01", IP: "10.0.0.1", Port: 7443, Serial: "01",
		Tags: map[string]string{"role": "web"}, LastContact: t0,
		Extra: map[string]json.RawMessage{"serial_status": json.RawMessage(`"pending"`)}}
	other := store.Agent{Hostname: "web-02", IP: "10.0.0.2"}
	must(t, "PutAgent(web-01)", s.PutAgent(first))
	must(t, "PutAgent(web-02)", s.PutAgent(other))
	second := store.Agent{Hostname: "web-01", IP: "10.0.0.9", Serial: "02", Tags: map[string]string{"dc": "ber"}}
	must(t, "PutAgent(web-01) again", s.PutAgent(second))
	got, err := s.GetAgent("web-01")
	must(t, "GetAgent", err)
	check(t, "GetAgent after a replacement", second, got)
	list, err := s.ListAgents()
	must(t, "ListAgents", err)
	check(t, "ListAgents after a replacement", []store.Agent{second, other}, list)
}

// sortedHosts is in the byte order of sort.Strings. A collation that skips
// punctuation, as many database locales do, puts web10 before web-2.
var sortedHosts = []string{"a", "a.b", "a0", "db-01", "web-2", "web.1", "web10", "web2", "xn--bcher-kva"}

func testRegistryListSorted(t *testing.T, o opener) {
	s := o.one(t)
	if !sort.StringsAreSorted(sortedHosts) {
		t.Fatal("the suite's sortedHosts are not sorted")
	}
	var want []store.Agent
	for i, h := range sortedHosts {
		want = append(want, store.Agent{Hostname: h, IP: fmt.Sprintf("10.0.1.%d", i+1), Port: 7443 + i})
	}
	for _, i := range []int{5, 8, 0, 7, 2, 1, 6, 3, 4} {
		must(t, "PutAgent("+want[i].Hostname+")", s.PutAgent(want[i]))
	}
	list, err := s.ListAgents()
	must(t, "ListAgents", err)
	check(t, "ListAgents: every record, sorted by host name", want, list)
	names, err := s.AgentNames()
	must(t, "AgentNames", err)
	check(t, "AgentNames: sorted", sortedHosts, names)
}

func testRegistryDelete(t *testing.T, o opener) {
	s := o.one(t)
	for _, h := range []string{"web-01", "web-02", "web-03"} {
		must(t, "PutAgent("+h+")", s.PutAgent(store.Agent{Hostname: h, IP: "10.0.0.1"}))
	}
	must(t, "DeleteAgent(web-02)", s.DeleteAgent("web-02"))
	_, err := s.GetAgent("web-02")
	wantNotFound(t, "GetAgent after DeleteAgent", err)
	names, err := s.AgentNames()
	must(t, "AgentNames", err)
	check(t, "AgentNames after DeleteAgent", []string{"web-01", "web-03"}, names)
	list, err := s.ListAgents()
	must(t, "ListAgents", err)
	check(t, "ListAgents after DeleteAgent", []store.Agent{{Hostname: "web-01", IP: "10.0.0.1"}, {Hostname: "web-03", IP: "10.0.0.1"}}, list)
	wantNotFound(t, "DeleteAgent of a deleted host", s.DeleteAgent("web-02"))
	wantNotFound(t, "DeleteAgent of a host never registered", s.DeleteAgent("web-09"))

	// A host registered again starts afresh.
	must(t, "PutAgent(web-02) again", s.PutAgent(store.Agent{Hostname: "web-02", IP: "10.0.0.2"}))
	got, err := s.GetAgent("web-02")
	must(t, "GetAgent", err)
	check(t, "GetAgent of a host registered again", store.Agent{Hostname: "web-02", IP: "10.0.0.2"}, got)
}

// Host names that are not DNS names are refused before anything is stored
// or looked up, with an error that is not ErrNotFound.
func testRegistryInvalidHostname(t *testing.T, o opener) {
	s := o.one(t)
	for _, h := range invalidHosts {
		_, err := s.GetAgent(h)
		wantRefused(t, fmt.Sprintf("GetAgent(%q)", h), err)
		wantRefused(t, fmt.Sprintf("PutAgent(%q)", h), s.PutAgent(store.Agent{Hostname: h, IP: "10.0.0.1"}))
		wantRefused(t, fmt.Sprintf("DeleteAgent(%q)", h), s.DeleteAgent(h))
		if err := s.RecordContact(h, t0); err == nil {
			t.Errorf("RecordContact(%q): no error, want it refused", h)
		}
	}
	names, err := s.AgentNames()
	must(t, "AgentNames", err)
	check(t, "AgentNames after refused writes", []string(nil), names)
	list, err := s.ListAgents()
	must(t, "ListAgents", err)
	check(t, "ListAgents after refused writes", []store.Agent(nil), list)
}

// ---- Contact ----

var contactTests = []test{
	{"LaterWins", testContactLaterWins},
	{"UnregisteredHost", testContactUnregistered},
	{"DeleteForgetsContact", testContactDeleteForgets},
}

// GetAgent and ListAgents report the later of RecordContact's time and the
// record's last_contact.
func testContactLaterWins(t *testing.T, o opener) {
	for _, tc := range []struct {
		name            string
		record, contact time.Time // zero: none
		want            time.Time
	}{
		{"no contact", time.Time{}, time.Time{}, time.Time{}},
		{"record only", t0, time.Time{}, t0},
		{"contact only", time.Time{}, t0, t0},
		{"contact later than the record", t0, t0.Add(time.Hour), t0.Add(time.Hour)},
		{"record later than the contact", t0.Add(time.Hour), t0, t0.Add(time.Hour)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := o.one(t)
			must(t, "PutAgent", s.PutAgent(store.Agent{Hostname: "web-01", IP: "10.0.0.1", LastContact: tc.record}))
			must(t, "PutAgent(web-02)", s.PutAgent(store.Agent{Hostname: "web-02", IP: "10.0.0.2"}))
			if !tc.contact.IsZero() {
				must(t, "RecordContact", s.RecordContact("web-01", tc.contact))
			}
			want := []store.Agent{
				{Hostname: "web-01", IP: "10.0.0.1", LastContact: tc.want},
				{Hostname: "web-02", IP: "10.0.0.2"},
			}
			got, err := s.GetAgent("web-01")
			must(t, "GetAgent", err)
			check(t, "GetAgent", want[0], got)
			list, err := s.ListAgents()
			must(t, "ListAgents", err)
			check(t, "ListAgents", want, list)
		})
	}
	t.Run("a record written after a contact", func(t *testing.T) {
		s := o.one(t)
		must(t, "PutAgent", s.PutAgent(store.Agent{Hostname: "web-01", IP: "10.0.0.1"}))
		must(t, "RecordContact", s.RecordContact("web-01", t0))
		for _, tc := range []struct {
			record, want time.Time
		}{{time.Time{}, t0}, {t0.Add(-time.Hour), t0}, {t0.Add(time.Hour), t0.Add(time.Hour)}} {
			must(t, "PutAgent", s.PutAgent(store.Agent{Hostname: "web-01", IP: "10.0.0.9", LastContact: tc.record}))
			got, err := s.GetAgent("web-01")
			must(t, "GetAgent", err)
			check(t, fmt.Sprintf("GetAgent after PutAgent with last_contact %v", tc.record),
				store.Agent{Hostname: "web-01", IP: "10.0.0.9", LastContact: tc.want}, got)
		}
	})
}

// A contact with a host that is not registered registers nothing (whether
// it is an error is up to the store).
func testContactUnregistered(t *testing.T, o opener) {
	s := o.one(t)
	_ = s.RecordContact("web-09", t0)
	_, err := s.GetAgent("web-09")
	wantNotFound(t, "GetAgent of a host only contacted", err)
	names, err := s.AgentNames()
	must(t, "AgentNames", err)
	check(t, "AgentNames", []string(nil), names)
	list, err := s.ListAgents()
	must(t, "ListAgents", err)
	check(t, "ListAgents", []store.Agent(nil), list)
}

// DeleteAgent forgets the contact time: a host paired again starts without
// its predecessor's.
func testContactDeleteForgets(t *testing.T, o opener) {
	s := o.one(t)
	must(t, "PutAgent", s.PutAgent(store.Agent{Hostname: "web-01", IP: "10.0.0.1"}))
	must(t, "RecordContact", s.RecordContact("web-01", t0))
	must(t, "DeleteAgent", s.DeleteAgent("web-01"))
	must(t, "PutAgent again", s.PutAgent(store.Agent{Hostname: "web-01", IP: "10.0.0.2"}))
	got, err := s.GetAgent("web-01")
	must(t, "GetAgent", err)
	check(t, "GetAgent of a host paired again", store.Agent{Hostname: "web-01", IP: "10.0.0.2"}, got)
}

// ---- Runs ----

var runTests = []test{
	{"SaveGetReplace", testRunsSaveGetReplace},
	{"NotFound", testRunsNotFound},
	{"ReqIDs", testRunsReqIDs},
	{"RunningRuns", testRunsRunning},
	{"PruneRuns", testRunsPrune},
}

func runningRun(reqid string) store.Run {
	return store.Run{
		ReqID: reqid, Script: "deploy", Args: []string{"a b", "", "--flag=ü"},
		Hosts: []string{"web-01", "web-02:7450"}, Username: "alice",
		Status: store.RunRunning, Started: t0,
		Owner: &store.RunOwner{Node: "dispatcher-1", PID: 4242, Start: "boot-1:12345", Session: "pg:1234567:89"},
	}
}

func testRunsSaveGetReplace(t *testing.T, o opener) {
	s := o.one(t)
	r := runningRun("0123456789abcdef")
	r.Results = []store.Result{{Host: "web-01", Exit: 0, Stdout: "ok\n", RTT: "12ms", ReqID: r.ReqID}}
	must(t, "SaveRun", s.SaveRun(r))
	got, err := s.GetRun(r.ReqID)
	must(t, "GetRun", err)
	check(t, "GetRun of a running run", r, got)

	done := r
	done.Status, done.Finished, done.Owner = store.RunDone, t0.Add(2*time.Second), nil
	done.Results = []store.Result{
		{Host: "web-01", Exit: 0, Stdout: "ok\n", RTT: "12ms", ReqID: r.ReqID},
		{Host: "web-02:7450", Exit: 2, Stdout: "\ufffd\n", Stderr: "boom\n", StdoutB64: "/wo=", RTT: "3000ms",
			ReqID: r.ReqID, Error: "exit status 2", Truncated: true, Signal: "SIGKILL"},
	}
	must(t, "SaveRun of the finished run", s.SaveRun(done))
	got, err = s.GetRun(r.ReqID)
	must(t, "GetRun", err)
	check(t, "GetRun after the run was replaced", done, got)
}

func testRunsNotFound(t *testing.T, o opener) {
	s := o.one(t)
	_, err := s.GetRun("ffffffffffffffff")
	wantNotFound(t, "GetRun of an unknown run", err)
	must(t, "SaveRun", s.SaveRun(runningRun("0123456789abcdef")))
	_, err = s.GetRun("0123456789abcdee")
	wantNotFound(t, "GetRun of an unknown run beside a stored one", err)
}

// Request ids are 1 to 64 characters from [A-Za-z0-9_-]; others are
// refused before anything is stored or looked up.
func testRunsReqIDs(t *testing.T, o opener) {
	s := o.one(t)
	for _, id := range invalidReqIDs {
		_, err := s.GetRun(id)
		wantRefused(t, fmt.Sprintf("GetRun(%q)", id), err)
		r := runningRun(id)
		wantRefused(t, fmt.Sprintf("SaveRun(%q)", id), s.SaveRun(r))
	}
	running, err := s.RunningRuns()
	must(t, "RunningRuns", err)
	check(t, "RunningRuns after refused saves", []store.Run(nil), running)

	for _, id := range []string{"a", "A_b-9", strings.Repeat("Z", 64)} {
		r := runningRun(id)
		must(t, fmt.Sprintf("SaveRun(%q)", id), s.SaveRun(r))
		got, err := s.GetRun(id)
		must(t, fmt.Sprintf("GetRun(%q)", id), err)
		check(t, fmt.Sprintf("GetRun(%q)", id), r, got)
	}
}

func testRunsRunning(t *testing.T, o opener) {
	s := o.one(t)
	running, err := s.RunningRuns()
	must(t, "RunningRuns", err)
	check(t, "RunningRuns of an empty store", []store.Run(nil), running)

	var want []store.Run
	for i, status := range []string{store.RunRunning, store.RunDone, store.RunRunning, store.RunCancelled, store.RunLost, store.RunRunning} {
		r := runningRun(fmt.Sprintf("run-%d", i))
		r.Status = status
		if status != store.RunRunning {
			r.Finished, r.Owner = t0.Add(time.Minute), nil
		} else {
			want = append(want, r)
		}
		must(t, "SaveRun", s.SaveRun(r))
	}
	check(t, "RunningRuns", want, sortedRuns(t, s))

	// A run saved again as done is no longer running.
	fin := want[1]
	fin.Status, fin.Finished, fin.Owner = store.RunDone, t0.Add(time.Minute), nil
	must(t, "SaveRun", s.SaveRun(fin))
	check(t, "RunningRuns after one finished", []store.Run{want[0], want[2]}, sortedRuns(t, s))
}

// sortedRuns returns RunningRuns sorted by reqid (its order is unspecified).
func sortedRuns(t *testing.T, s store.Store) []store.Run {
	t.Helper()
	runs, err := s.RunningRuns()
	must(t, "RunningRuns", err)
	sort.Slice(runs, func(i, j int) bool { return runs[i].ReqID < runs[j].ReqID })
	return runs
}

// PruneRuns goes by the time of a run's last write, not its start: a run
// saved now survives a cutoff an hour ago, however old its Started, and
// goes with a cutoff an hour ahead.
func testRunsPrune(t *testing.T, o opener) {
	s := o.one(t)
	n, err := s.PruneRuns(time.Now().Add(time.Hour))
	must(t, "PruneRuns of an empty store", err)
	if n != 0 {
		t.Errorf("PruneRuns of an empty store = %d, want 0", n)
	}
	old := runningRun("old-start")
	old.Started = time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	done := runningRun("done")
	done.Status, done.Finished, done.Owner = store.RunDone, t0.Add(time.Second), nil
	for _, r := range []store.Run{old, done} {
		must(t, "SaveRun", s.SaveRun(r))
	}

	n, err = s.PruneRuns(time.Now().Add(-time.Hour))
	must(t, "PruneRuns", err)
	if n != 0 {
		t.Errorf("PruneRuns(an hour ago) after saving now = %d, want 0", n)
	}
	for _, r := range []store.Run{old, done} {
		got, err := s.GetRun(r.ReqID)
		if err != nil {
			t.Errorf("GetRun(%s) after PruneRuns(an hour ago): %v", r.ReqID, err)
			continue
		}
		check(t, "GetRun after PruneRuns(an hour ago)", r, got)
	}

	n, err = s.PruneRuns(time.Now().Add(time.Hour))
	must(t, "PruneRuns", err)
	if n != 2 {
		t.Errorf("PruneRuns(in an hour) = %d, want 2", n)
	}
	for _, r := range []store.Run{old, done} {
		_, err := s.GetRun(r.ReqID)
		wantNotFound(t, "GetRun("+r.ReqID+") after PruneRuns(in an hour)", err)
	}
	check(t, "RunningRuns after PruneRuns", []store.Run(nil), sortedRuns(t, s))
	n, err = s.PruneRuns(time.Now().Add(time.Hour))
	must(t, "PruneRuns", err)
	if n != 0 {
		t.Errorf("PruneRuns again = %d, want 0", n)
	}
}

// ---- Pairing ----

var pairingTests = []test{
	{"Add", testPairAdd},
	{"AddInvalidHostname", testPairAddInvalidHostname},
	{"PendingExists", testPairPendingExists},
	{"QueueFull", testPairQueueFull},
	{"PlacesFreed", testPairPlacesFreed},
	{"Get", testPairGet},
	{"ListOldestFirst", testPairList},
	{"Decide", testPairDecide},
	{"DecideError", testPairDecideError},
	{"DecideInvalidDecision", testPairDecideInvalid},
	{"DecideUnknown", testPairDecideUnknown},
	{"DecideExpired", testPairDecideExpired},
	{"DecideConcurrent", testPairDecideConcurrent},
	{"Expire", testPairExpire},
}

// request is a pairing request for host created at t0+offset, valid for
// ten minutes.
func request(host string, offset time.Duration) store.PairRequest {
	return store.PairRequest{
		Hostname: host, IP: "192.0.2.7", Port: 7443,
		CSR:   "-----BEGIN CERTIFICATE REQUEST-----\nMIIB…\n-----END CERTIFICATE REQUEST-----\n",
		Nonce: "00112233445566778899aabbccddeeff", Code: "012345",
		Created: t0.Add(offset), Expires: t0.Add(offset + 10*time.Minute),
	}
}

func add(t *testing.T, s store.Store, r store.PairRequest, maxPending int) store.PairRequest {
	t.Helper()
	got, err := s.AddPairRequest(r, maxPending)
	if err != nil {
		t.Fatalf("AddPairRequest(%s, %d): %v", r.Hostname, maxPending, err)
	}
	return got
}

// pending lists the reqids pending at now.
func pending(t *testing.T, s store.Store, now time.Time) []string {
	t.Helper()
	l, err := s.ListPairRequests(now)
	must(t, "ListPairRequests", err)
	var ids []string
	for _, r := range l {
		ids = append(ids, r.ReqID)
	}
	return ids
}

// decided is r as recorded with d at now.
func decided(r store.PairRequest, d store.Decision, now time.Time) store.PairRequest {
	r.Status, r.Reason, r.Decided = d.Status, d.Reason, now
	if d.Status == store.PairApproved {
		r.Cert, r.CA = d.Cert, d.CA
	}
	return r
}

func approve(cert string) func(store.PairRequest) (store.Decision, error) {
	return func(store.PairRequest) (store.Decision, error) {
		return store.Decision{Status: store.PairApproved, Cert: cert, CA: "ca-pem"}, nil
	}
}

// never is a decide function that must not be called.
func never(t *testing.T) func(store.PairRequest) (store.Decision, error) {
	return func(r store.PairRequest) (store.Decision, error) {
		t.Errorf("decide called for %s (%s), want it not called", r.ReqID, r.Hostname)
		return store.Decision{Status: store.PairApproved, Cert: "never", CA: "never"}, nil
	}
}

var pairReqID = regexp.MustCompile(`^[0-9a-f]{16}$`)

// A request is queued pending under a new id of 16 lowercase hex digits, as
// given otherwise; what the caller put in the answer fields is dropped.
func testPairAdd(t *testing.T, o opener) {
	s := o.one(t)
	pending0, err := s.ListPairRequests(t0)
	must(t, "ListPairRequests", err)
	check(t, "ListPairRequests of an empty store", []store.PairRequest(nil), pending0)

	in := request("web-01", 0)
	in.ReqID, in.Status, in.Reason, in.Cert, in.CA, in.Decided = "caller-id", store.PairApproved, "no", "cert", "ca", t0
	got, err := s.AddPairRequest(in, 10)
	must(t, "AddPairRequest", err)
	if !pairReqID.MatchString(got.ReqID) {
		t.Errorf("new request id %q, want 16 lowercase hex digits", got.ReqID)
	}
	want := request("web-01", 0)
	want.ReqID, want.Status = got.ReqID, store.PairPending
	check(t, "AddPairRequest's request", want, got)
	stored, err := s.GetPairRequest(got.ReqID)
	must(t, "GetPairRequest", err)
	check(t, "GetPairRequest of the new request", want, stored)

	ids := map[string]bool{got.ReqID: true}
	for i, h := range []string{"web-02", "web-03", "web-04"} {
		r := add(t, s, request(h, time.Duration(i+1)*time.Second), 10)
		if !pairReqID.MatchString(r.ReqID) || ids[r.ReqID] {
			t.Errorf("request id %q of %s: want 16 lowercase hex digits, new", r.ReqID, h)
		}
		ids[r.ReqID] = true
	}
}

func testPairAddInvalidHostname(t *testing.T, o opener) {
	s := o.one(t)
	for _, h := range invalidHosts {
		if _, err := s.AddPairRequest(request(h, 0), 10); err == nil {
			t.Errorf("AddPairRequest(%q): queued, want it refused", h)
		}
	}
	check(t, "pending after refused requests", []string(nil), pending(t, s, t0))
}

// One request per host name (ignoring case) may be pending, across handles;
// the refusal names the pending request's id for the operator but does not
// show it in its message, which goes back to the unauthenticated agent.
func testPairPendingExists(t *testing.T, o opener) {
	a, b := o.both(t)
	first := add(t, a, request("web-01", 0), 10)
	for _, tc := range []struct {
		name string
		s    store.Store
		host string
	}{
		{"same handle", a, "web-01"},
		{"other handle", b, "web-01"},
		{"other case", b, "WEB-01"},
	} {
		_, err := tc.s.AddPairRequest(request(tc.host, time.Second), 10)
		var pe *store.PendingExistsError
		if !errors.As(err, &pe) {
			t.Errorf("%s: second request for %s: %v, want a *store.PendingExistsError", tc.name, tc.host, err)
			continue
		}
		if pe.ReqID != first.ReqID || !strings.EqualFold(pe.Hostname, "web-01") {
			t.Errorf("%s: %+v, want ReqID %s and host web-01", tc.name, *pe, first.ReqID)
		}
		if strings.Contains(err.Error(), first.ReqID) {
			t.Errorf("%s: message %q shows the pending request id", tc.name, err)
		}
	}
	check(t, "pending after refusals", []string{first.ReqID}, pending(t, b, t0.Add(time.Minute)))
	// Another host is accepted.
	other := add(t, b, request("web-02", 2*time.Second), 10)
	check(t, "pending", []string{first.ReqID, other.ReqID}, pending(t, a, t0.Add(time.Minute)))
}

// At maxPending pending requests a new one is refused with a
// *QueueFullError and not queued; maxPending < 1 is no limit.
func testPairQueueFull(t *testing.T, o opener) {
	for _, tc := range []struct {
		max, add int
		full     bool // whether the last add is refused
	}{
		{max: 1, add: 2, full: true},
		{max: 2, add: 3, full: true},
		{max: 3, add: 3},
		{max: 0, add: 12},
		{max: -1, add: 12},
	} {
		t.Run(fmt.Sprintf("max %d, %d requests", tc.max, tc.add), func(t *testing.T) {
			a, b := o.both(t)
			var ids []string
			for i := range tc.add - 1 {
				s := []store.Store{a, b}[i%2]
				ids = append(ids, add(t, s, request(fmt.Sprintf("web-%02d", i), time.Duration(i)*time.Second), tc.max).ReqID)
			}
			last, err := b.AddPairRequest(request("last", time.Minute), tc.max)
			if !tc.full {
				must(t, "last AddPairRequest", err)
				ids = append(ids, last.ReqID)
			} else {
				var qf *store.QueueFullError
				if !errors.As(err, &qf) {
					t.Fatalf("AddPairRequest with %d pending, max %d: %v, want a *store.QueueFullError", tc.add-1, tc.max, err)
				}
				check(t, "QueueFullError", store.QueueFullError{Pending: tc.max, Max: tc.max}, *qf)
			}
			check(t, "pending", ids, pending(t, a, t0.Add(2*time.Minute)))
		})
	}
}

// A decided request frees its place and its host name; expired requests
// count no more, and the next AddPairRequest denies them ("expired").
func testPairPlacesFreed(t *testing.T, o opener) {
	a, b := o.both(t)
	first := add(t, a, request("web-01", 0), 2)
	second := add(t, b, request("web-02", time.Second), 2)
	_, err := a.DecidePairRequest(first.ReqID, t0.Add(2*time.Second), func(store.PairRequest) (store.Decision, error) {
		return store.Decision{Status: store.PairDenied, Reason: "no"}, nil
	})
	must(t, "DecidePairRequest", err)
	again := add(t, b, request("web-01", 3*time.Second), 2)
	check(t, "pending", []string{second.ReqID, again.ReqID}, pending(t, a, t0.Add(4*time.Second)))

	// Twenty minutes on, both have expired: the queue has room.
	lateAt := 20 * time.Minute
	late := add(t, a, request("web-09", lateAt), 2)
	check(t, "pending after expiry", []string{late.ReqID}, pending(t, b, t0.Add(lateAt)))
	for _, r := range []store.PairRequest{second, again} {
		got, err := b.GetPairRequest(r.ReqID)
		must(t, "GetPairRequest", err)
		check(t, "an expired request after AddPairRequest",
			decided(r, store.Decision{Status: store.PairDenied, Reason: store.ReasonExpired}, t0.Add(lateAt)), got)
	}
}

func testPairGet(t *testing.T, o opener) {
	s := o.one(t)
	_, err := s.GetPairRequest("ffffffffffffffff")
	wantNotFound(t, "GetPairRequest of an unknown request", err)
	r := add(t, s, request("web-01", 0), 10)
	got, err := s.GetPairRequest(r.ReqID)
	must(t, "GetPairRequest", err)
	check(t, "GetPairRequest", r, got)
	_, err = s.GetPairRequest("ffffffffffffffff")
	wantNotFound(t, "GetPairRequest of an unknown request beside a stored one", err)
	for _, id := range invalidReqIDs {
		_, err := s.GetPairRequest(id)
		wantRefused(t, fmt.Sprintf("GetPairRequest(%q)", id), err)
	}
}

// ListPairRequests lists the requests pending at now, oldest first: not
// decided ones, and not expired ones even before anything marked them.
func testPairList(t *testing.T, o opener) {
	a, b := o.both(t)
	r2 := add(t, a, request("web-02", 2*time.Second), 10)
	r1 := add(t, b, request("web-01", time.Second), 10)
	r3 := add(t, a, request("db-01", 3*time.Second), 10)
	r4 := add(t, b, request("web-04", 5*time.Minute), 10)
	list, err := a.ListPairRequests(t0.Add(time.Minute))
	must(t, "ListPairRequests", err)
	check(t, "ListPairRequests: oldest first", []store.PairRequest{r1, r2, r3, r4}, list)

	_, err = b.DecidePairRequest(r2.ReqID, t0.Add(time.Minute), approve("cert"))
	must(t, "DecidePairRequest", err)
	check(t, "pending after a decision", []string{r1.ReqID, r3.ReqID, r4.ReqID}, pending(t, a, t0.Add(time.Minute)))
	// r1 expires at t0+10m1s, r3 at t0+10m3s.
	check(t, "pending at t0+10m2s", []string{r3.ReqID, r4.ReqID}, pending(t, a, t0.Add(10*time.Minute+2*time.Second)))
	check(t, "pending an hour on", []string(nil), pending(t, b, t0.Add(time.Hour)))
}

// A pending request is decided once: decide sees it as stored, the
// decision is recorded at now, and a second decision through either handle
// is refused with a *DecidedError saying how it went, without calling
// decide. A denial keeps no certificate.
func testPairDecide(t *testing.T, o opener) {
	for _, tc := range []struct {
		name string
		d    store.Decision
	}{
		{"approve", store.Decision{Status: store.PairApproved, Cert: "-----BEGIN CERTIFICATE-----\ncert\n", CA: "-----BEGIN CERTIFICATE-----\nca\n"}},
		{"deny", store.Decision{Status: store.PairDenied, Reason: "operator said no", Cert: "ignored", CA: "ignored"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := o.both(t)
			r := add(t, a, request("web-01", 0), 10)
			other := add(t, a, request("web-02", time.Second), 10)
			now := t0.Add(time.Minute)
			calls := 0
			got, err := b.DecidePairRequest(r.ReqID, now, func(seen store.PairRequest) (store.Decision, error) {
				calls++
				check(t, "the request decide sees", r, seen)
				return tc.d, nil
			})
			must(t, "DecidePairRequest", err)
			if calls != 1 {
				t.Errorf("decide called %d times, want 1", calls)
			}
			want := decided(r, tc.d, now)
			check(t, "DecidePairRequest's request", want, got)
			stored, err := a.GetPairRequest(r.ReqID)
			must(t, "GetPairRequest", err)
			check(t, "GetPairRequest of the decided request", want, stored)
			check(t, "pending", []string{other.ReqID}, pending(t, a, now))

			for _, s := range []store.Store{a, b} {
				_, err := s.DecidePairRequest(r.ReqID, now.Add(time.Minute), never(t))
				var de *store.DecidedError
				if !errors.As(err, &de) {
					t.Errorf("second DecidePairRequest: %v, want a *store.DecidedError", err)
					continue
				}
				check(t, "DecidedError", store.DecidedError{ReqID: r.ReqID, Hostname: "web-01", Status: want.Status, Reason: want.Reason}, *de)
			}
			stored, err = b.GetPairRequest(r.ReqID)
			must(t, "GetPairRequest", err)
			check(t, "GetPairRequest after a refused second decision", want, stored)
		})
	}
}

// An error from decide is returned and nothing is recorded: the request
// stays pending and can be decided later.
func testPairDecideError(t *testing.T, o opener) {
	a, b := o.both(t)
	r := add(t, a, request("web-01", 0), 10)
	boom := errors.New("ca key unreadable")
	_, err := a.DecidePairRequest(r.ReqID, t0.Add(time.Minute), func(store.PairRequest) (store.Decision, error) {
		return store.Decision{Status: store.PairApproved, Cert: "half"}, boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("DecidePairRequest whose decide failed: %v, want the decide error", err)
	}
	got, err := b.GetPairRequest(r.ReqID)
	must(t, "GetPairRequest", err)
	check(t, "the request after a failed decision", r, got)
	check(t, "pending after a failed decision", []string{r.ReqID}, pending(t, b, t0.Add(time.Minute)))

	now := t0.Add(2 * time.Minute)
	got, err = b.DecidePairRequest(r.ReqID, now, approve("cert"))
	must(t, "DecidePairRequest after a failed one", err)
	check(t, "the request approved after a failed decision", decided(r, store.Decision{Status: store.PairApproved, Cert: "cert", CA: "ca-pem"}, now), got)
}

// A decision that is neither approved nor denied is an error and nothing
// is recorded.
func testPairDecideInvalid(t *testing.T, o opener) {
	s := o.one(t)
	r := add(t, s, request("web-01", 0), 10)
	for _, status := range []string{"", "maybe", store.PairPending, "APPROVED"} {
		_, err := s.DecidePairRequest(r.ReqID, t0.Add(time.Minute), func(store.PairRequest) (store.Decision, error) {
			return store.Decision{Status: status, Cert: "cert", CA: "ca"}, nil
		})
		if err == nil {
			t.Errorf("decision %q: recorded, want an error", status)
		}
		got, err := s.GetPairRequest(r.ReqID)
		must(t, "GetPairRequest", err)
		check(t, fmt.Sprintf("the request after decision %q", status), r, got)
	}
}

func testPairDecideUnknown(t *testing.T, o opener) {
	s := o.one(t)
	_, err := s.DecidePairRequest("0000000000000000", t0, never(t))
	wantNotFound(t, "DecidePairRequest of an unknown request", err)
	add(t, s, request("web-01", 0), 10)
	_, err = s.DecidePairRequest("0000000000000000", t0, never(t))
	wantNotFound(t, "DecidePairRequest of an unknown request beside a pending one", err)
	for _, id := range invalidReqIDs {
		_, err := s.DecidePairRequest(id, t0, never(t))
		wantRefused(t, fmt.Sprintf("DecidePairRequest(%q)", id), err)
	}
}

// Deciding an expired request denies it ("expired") instead, without
// calling decide.
func testPairDecideExpired(t *testing.T, o opener) {
	a, b := o.both(t)
	r := add(t, a, request("web-01", 0), 10)
	at := t0.Add(11 * time.Minute)
	_, err := b.DecidePairRequest(r.ReqID, at, never(t))
	var de *store.DecidedError
	if !errors.As(err, &de) {
		t.Fatalf("DecidePairRequest of an expired request: %v, want a *store.DecidedError", err)
	}
	check(t, "DecidedError", store.DecidedError{ReqID: r.ReqID, Hostname: "web-01", Status: store.PairDenied, Reason: store.ReasonExpired}, *de)
	got, err := a.GetPairRequest(r.ReqID)
	must(t, "GetPairRequest", err)
	check(t, "the expired request", decided(r, store.Decision{Status: store.PairDenied, Reason: store.ReasonExpired}, at), got)
}

// Deciders racing through both handles call decide once: one wins, every
// other gets a *DecidedError, and the winner's certificate is recorded.
func testPairDecideConcurrent(t *testing.T, o opener) {
	a, b := o.both(t)
	r := add(t, a, request("web-01", 0), 10)
	now := t0.Add(time.Minute)
	const racers = 8
	var (
		calls   atomic.Int64
		wg      sync.WaitGroup
		start   = make(chan struct{})
		results = make([]store.PairRequest, racers)
		errs    = make([]error, racers)
	)
	for i := range racers {
		s := []store.Store{a, b}[i%2]
		wg.Go(func() {
			<-start
			results[i], errs[i] = s.DecidePairRequest(r.ReqID, now, func(store.PairRequest) (store.Decision, error) {
				n := calls.Add(1) // a certificate would be signed here
				time.Sleep(10 * time.Millisecond)
				return store.Decision{Status: store.PairApproved, Cert: fmt.Sprintf("cert-%d-%d", i, n), CA: "ca"}, nil
			})
		})
	}
	close(start)
	wg.Wait()
	if n := calls.Load(); n != 1 {
		t.Errorf("decide called %d times for one request, want once", n)
	}
	var winners []store.PairRequest
	for i, err := range errs {
		var de *store.DecidedError
		switch {
		case err == nil:
			winners = append(winners, results[i])
		case errors.As(err, &de):
			if de.Status != store.PairApproved {
				t.Errorf("racer %d: %+v, want it already approved", i, *de)
			}
		default:
			t.Errorf("racer %d: %v, want nil or a *store.DecidedError", i, err)
		}
	}
	if len(winners) != 1 {
		t.Fatalf("%d deciders succeeded, want 1", len(winners))
	}
	if winners[0].Status != store.PairApproved || !strings.HasPrefix(winners[0].Cert, "cert-") {
		t.Errorf("the winner's request: %+v", winners[0])
	}
	got, err := b.GetPairRequest(r.ReqID)
	must(t, "GetPairRequest", err)
	check(t, "the recorded decision", winners[0], got)
}

// ExpirePairRequests denies the requests pending past their expiry and
// returns them; it purges answers decided more than keep before now.
func testPairExpire(t *testing.T, o opener) {
	a, b := o.both(t)
	expired, err := a.ExpirePairRequests(t0, time.Minute)
	must(t, "ExpirePairRequests of an empty store", err)
	check(t, "ExpirePairRequests of an empty store", []store.PairRequest(nil), expired)

	const keep = 20 * time.Minute
	old := add(t, a, request("web-01", 0), 10)               // expires t0+10m
	fresh := add(t, b, request("web-02", 9*time.Minute), 10) // expires t0+19m
	done := add(t, a, request("web-03", 0), 10)
	approved, err := b.DecidePairRequest(done.ReqID, t0.Add(time.Minute), approve("cert"))
	must(t, "DecidePairRequest", err)

	denied := func(r store.PairRequest, at time.Duration) store.PairRequest {
		return decided(r, store.Decision{Status: store.PairDenied, Reason: store.ReasonExpired}, t0.Add(at))
	}
	for _, step := range []struct {
		at      time.Duration
		s       store.Store
		expired []store.PairRequest
		kept    []store.PairRequest // as stored afterwards
		purged  []store.PairRequest
	}{
		{at: 5 * time.Minute, s: a, kept: []store.PairRequest{old, fresh, approved}},
		{at: 12 * time.Minute, s: b, expired: []store.PairRequest{denied(old, 12*time.Minute)},
			kept: []store.PairRequest{denied(old, 12*time.Minute), fresh, approved}},
		// done was decided at t0+1m: kept until t0+21m.
		{at: 20 * time.Minute, s: a, expired: []store.PairRequest{denied(fresh, 20*time.Minute)},
			kept: []store.PairRequest{denied(old, 12*time.Minute), denied(fresh, 20*time.Minute), approved}},
		{at: 25 * time.Minute, s: b,
			kept:   []store.PairRequest{denied(old, 12*time.Minute), denied(fresh, 20*time.Minute)},
			purged: []store.PairRequest{approved}},
		{at: 45 * time.Minute, s: a, purged: []store.PairRequest{old, fresh, approved}},
	} {
		now := t0.Add(step.at)
		expired, err := step.s.ExpirePairRequests(now, keep)
		must(t, "ExpirePairRequests", err)
		check(t, fmt.Sprintf("ExpirePairRequests at t0+%v", step.at), step.expired, expired)
		for _, r := range step.kept {
			got, err := a.GetPairRequest(r.ReqID)
			if err != nil {
				t.Errorf("after ExpirePairRequests at t0+%v: GetPairRequest(%s) of %s: %v", step.at, r.ReqID, r.Hostname, err)
				continue
			}
			check(t, fmt.Sprintf("%s after ExpirePairRequests at t0+%v", r.Hostname, step.at), r, got)
		}
		for _, r := range step.purged {
			_, err := b.GetPairRequest(r.ReqID)
			wantNotFound(t, fmt.Sprintf("GetPairRequest(%s) of %s after ExpirePairRequests at t0+%v", r.ReqID, r.Hostname, step.at), err)
		}
	}
}

// ---- Revocations ----

var revocationTests = []test{
	{"Empty", testRevocationsEmpty},
	{"RevokeSerial", testRevokeSerial},
	{"Duplicate", testRevokeDuplicate},
	{"InvalidSerial", testRevokeInvalid},
	{"Dispatcher", testRevokeDispatcher},
	{"Concurrent", testRevokeConcurrent},
}

func hexInt(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok {
		panic("storetest: bad hex " + s)
	}
	return n
}

// serials returns the values of a serial set in hex, sorted.
func serials(set interface{ Values() []*big.Int }) []string {
	var out []string
	for _, n := range set.Values() {
		out = append(out, n.Text(16))
	}
	return out
}

func testRevocationsEmpty(t *testing.T, o opener) {
	s := o.one(t)
	set, warns, err := s.RevokedSerials()
	must(t, "RevokedSerials", err)
	check(t, "RevokedSerials of an empty store", []string(nil), serials(set))
	check(t, "RevokedSerials' warnings", []error(nil), warns)
	list, err := s.ListRevocations()
	must(t, "ListRevocations", err)
	check(t, "ListRevocations of an empty store", []store.Revocation(nil), list)
	dset, warns, err := s.RevokedDispatcherSerials()
	must(t, "RevokedDispatcherSerials", err)
	check(t, "RevokedDispatcherSerials of an empty store", []string(nil), serials(dset))
	check(t, "RevokedDispatcherSerials' warnings", []error(nil), warns)
}

// Revoked serials are listed in the order revoked, with host, time and
// reason, the serial written as pki does: lowercase hex of even length,
// 0x-prefixed when it has no hex letter (so it is never read as decimal).
func testRevokeSerial(t *testing.T, o opener) {
	s := o.one(t)
	for _, tc := range []struct {
		serial *big.Int
		host   string
		reason string
		at     time.Time
	}{
		{hexInt("c0ffee00112233445566778899aabbcc"), "web-01", "unpaired", t0},
		{hexInt("1234"), "web-02", "replaced by pairing request 0123456789abcdef", t0.Add(time.Minute)},
		{hexInt("a1b"), "web-03", "key compromised: rotate", t0.Add(2 * time.Minute)},
		{hexInt("100"), "web-04", "test", t0.Add(3 * time.Minute)},
	} {
		must(t, "RevokeSerial", s.RevokeSerial(tc.serial, tc.host, tc.reason, tc.at))
	}
	list, err := s.ListRevocations()
	must(t, "ListRevocations", err)
	check(t, "ListRevocations", []store.Revocation{
		{Serial: "c0ffee00112233445566778899aabbcc", Host: "web-01", At: t0, Reason: "unpaired"},
		{Serial: "0x1234", Host: "web-02", At: t0.Add(time.Minute), Reason: "replaced by pairing request 0123456789abcdef"},
		{Serial: "0a1b", Host: "web-03", At: t0.Add(2 * time.Minute), Reason: "key compromised: rotate"},
		{Serial: "0x0100", Host: "web-04", At: t0.Add(3 * time.Minute), Reason: "test"},
	}, list)
	set, warns, err := s.RevokedSerials()
	must(t, "RevokedSerials", err)
	check(t, "RevokedSerials' warnings", []error(nil), warns)
	// Neither 0x1234 nor 0x0100 is also revoked as decimal 1234 or 100.
	check(t, "RevokedSerials", []string{"100", "a1b", "1234", "c0ffee00112233445566778899aabbcc"}, serials(set))
}

// A serial revoked again is listed once, with its first note.
func testRevokeDuplicate(t *testing.T, o opener) {
	a, b := o.both(t)
	n := hexInt("c0ffee")
	must(t, "RevokeSerial", a.RevokeSerial(n, "web-01", "unpaired", t0))
	must(t, "RevokeSerial again", b.RevokeSerial(n, "web-01", "again", t0.Add(time.Hour)))
	must(t, "RevokeSerial of another", a.RevokeSerial(hexInt("beef"), "web-02", "unpaired", t0))
	must(t, "RevokeSerial again", b.RevokeSerial(new(big.Int).Set(n), "web-09", "again", t0.Add(2*time.Hour)))
	list, err := b.ListRevocations()
	must(t, "ListRevocations", err)
	check(t, "ListRevocations", []store.Revocation{
		{Serial: "c0ffee", Host: "web-01", At: t0, Reason: "unpaired"},
		{Serial: "beef", Host: "web-02", At: t0, Reason: "unpaired"},
	}, list)
	set, _, err := a.RevokedSerials()
	must(t, "RevokedSerials", err)
	check(t, "RevokedSerials", []string{"beef", "c0ffee"}, serials(set))
}

func testRevokeInvalid(t *testing.T, o opener) {
	s := o.one(t)
	for _, n := range []*big.Int{nil, big.NewInt(0), big.NewInt(-5)} {
		if err := s.RevokeSerial(n, "web-01", "x", t0); err == nil {
			t.Errorf("RevokeSerial(%v): no error, want it refused", n)
		}
		if err := s.RevokeDispatcherSerial(n, "x", t0); err == nil {
			t.Errorf("RevokeDispatcherSerial(%v): no error, want it refused", n)
		}
	}
	list, err := s.ListRevocations()
	must(t, "ListRevocations", err)
	check(t, "ListRevocations after refused revocations", []store.Revocation(nil), list)
	dset, _, err := s.RevokedDispatcherSerials()
	must(t, "RevokedDispatcherSerials", err)
	check(t, "RevokedDispatcherSerials after refused revocations", []string(nil), serials(dset))
}

// The dispatcher's revoked serials are a list of their own.
func testRevokeDispatcher(t *testing.T, o opener) {
	a, b := o.both(t)
	for _, n := range []string{"1f2e", "1234", "1f2e"} {
		must(t, "RevokeDispatcherSerial", a.RevokeDispatcherSerial(hexInt(n), "retired node", t0))
	}
	must(t, "RevokeSerial", a.RevokeSerial(hexInt("abcd"), "web-01", "unpaired", t0))
	dset, warns, err := b.RevokedDispatcherSerials()
	must(t, "RevokedDispatcherSerials", err)
	check(t, "RevokedDispatcherSerials", []string{"1234", "1f2e"}, serials(dset))
	check(t, "RevokedDispatcherSerials' warnings", []error(nil), warns)
	set, _, err := b.RevokedSerials()
	must(t, "RevokedSerials", err)
	check(t, "RevokedSerials beside dispatcher revocations", []string{"abcd"}, serials(set))
	list, err := b.ListRevocations()
	must(t, "ListRevocations", err)
	check(t, "ListRevocations beside dispatcher revocations", []store.Revocation{{Serial: "abcd", Host: "web-01", At: t0, Reason: "unpaired"}}, list)
}

// Revocations racing through both handles are all kept.
func testRevokeConcurrent(t *testing.T, o opener) {
	a, b := o.both(t)
	const n = 20
	var wg sync.WaitGroup
	errs := make([]error, 2*n)
	for i := range n {
		s := []store.Store{a, b}[i%2]
		wg.Go(func() { errs[i] = s.RevokeSerial(big.NewInt(int64(0xa00+i)), fmt.Sprintf("web-%02d", i), "test", t0) })
		wg.Go(func() { errs[n+i] = s.RevokeDispatcherSerial(big.NewInt(int64(0xb00+i)), "test", t0) })
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("revocation %d: %v", i, err)
		}
	}
	var want, wantDisp []string
	for i := range n {
		want = append(want, fmt.Sprintf("%x", 0xa00+i))
		wantDisp = append(wantDisp, fmt.Sprintf("%x", 0xb00+i))
	}
	for _, s := range []store.Store{a, b} {
		set, _, err := s.RevokedSerials()
		must(t, "RevokedSerials", err)
		check(t, "RevokedSerials after concurrent revocations", want, serials(set))
		dset, _, err := s.RevokedDispatcherSerials()
		must(t, "RevokedDispatcherSerials", err)
		check(t, "RevokedDispatcherSerials after concurrent revocations", wantDisp, serials(dset))
		list, err := s.ListRevocations()
		must(t, "ListRevocations", err)
		if len(list) != n {
			t.Errorf("ListRevocations after %d concurrent revocations: %d entries", n, len(list))
		}
	}
}

// ---- Rotation ----

var rotationTests = []test{
	{"NotFound", testRotationNotFound},
	{"RoundTrip", testRotationRoundTrip},
}

func testRotationNotFound(t *testing.T, o opener) {
	_, err := o.one(t).GetRotation()
	wantNotFound(t, "GetRotation of an empty store", err)
}

func testRotationRoundTrip(t *testing.T, o opener) {
	a, b := o.both(t)
	for _, r := range []store.Rotation{
		{CurrentSerial: "abcd1234", RotatedAt: t0, OverlapExpires: t0.Add(30 * 24 * time.Hour), OverlapDays: 30},
		{CurrentSerial: "0b0670", PreviousSerial: "abcd1234", RotatedAt: t0.Add(time.Hour), OverlapExpires: t0.Add(time.Hour + 7*24*time.Hour), OverlapDays: 7},
		{CurrentSerial: "0c", PreviousSerial: "0b0670"},
	} {
		must(t, "PutRotation", a.PutRotation(r))
		got, err := b.GetRotation()
		must(t, "GetRotation", err)
		check(t, "GetRotation after PutRotation", r, got)
	}
}

// ---- Locks ----

var lockTests = []test{
	{"AcquireListRelease", testLocksAcquireListRelease},
	{"Conflict", testLocksConflict},
	{"NoConflict", testLocksNoConflict},
	{"DuplicateKeys", testLocksDuplicateKeys},
	{"EmptyKey", testLocksEmptyKey},
	{"StaleRelease", testLocksStaleRelease},
}

func holder(reqid string) store.LockHolder {
	return store.LockHolder{PID: 4242, ReqID: reqid, User: "alice", Started: t0}
}

func key(host, script string) store.LockKey { return store.LockKey{Host: host, Script: script} }

// locks returns ListLocks without the Path of each (the files store's).
func locks(t *testing.T, s store.Store) []store.LockInfo {
	t.Helper()
	l, err := s.ListLocks()
	must(t, "ListLocks", err)
	for i := range l {
		l[i].Path = ""
	}
	return l
}

func held(h store.LockHolder, keys ...store.LockKey) []store.LockInfo {
	var out []store.LockInfo
	for _, k := range keys {
		out = append(out, store.LockInfo{LockKey: k, LockHolder: h})
	}
	return out
}

func acquire(t *testing.T, s store.Store, h store.LockHolder, keys ...store.LockKey) func() {
	t.Helper()
	release, err := s.Acquire(h, keys)
	if err != nil {
		t.Fatalf("Acquire(%v): %v", keys, err)
	}
	return release
}

// Held locks are listed through both handles, sorted by host and script,
// with their holders; released ones are not, and can be taken again.
func testLocksAcquireListRelease(t *testing.T, o opener) {
	a, b := o.both(t)
	check(t, "ListLocks of an empty store", []store.LockInfo(nil), locks(t, a))
	h1, h2 := holder("r1"), store.LockHolder{PID: 77, ReqID: "r2", User: "bob", Started: t0.Add(time.Minute)}
	rel1 := acquire(t, a, h1, key("web-02", "deploy"), key("web-01", "deploy"))
	rel2 := acquire(t, b, h2, key("web-01", "backup"))
	want := append(held(h2, key("web-01", "backup")), held(h1, key("web-01", "deploy"), key("web-02", "deploy"))...)
	check(t, "ListLocks through a", want, locks(t, a))
	check(t, "ListLocks through b", want, locks(t, b))

	rel1()
	check(t, "ListLocks after one release", held(h2, key("web-01", "backup")), locks(t, b))
	rel1() // harmless
	rel2()
	check(t, "ListLocks after every release", []store.LockInfo(nil), locks(t, a))
	check(t, "ListLocks after every release", []store.LockInfo(nil), locks(t, b))

	h3 := holder("r3")
	rel3 := acquire(t, b, h3, key("web-01", "deploy"), key("web-02", "deploy"))
	check(t, "ListLocks after taking released locks", held(h3, key("web-01", "deploy"), key("web-02", "deploy")), locks(t, a))
	rel3()
}

// Acquire takes all or none: when any pair is held, through this handle or
// the other, a *LockConflictError names every held pair in the order asked
// and nothing is taken.
func testLocksConflict(t *testing.T, o opener) {
	for _, tc := range []struct {
		name  string
		other bool // second Acquire through b
	}{{"same handle", false}, {"other handle", true}} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := o.both(t)
			second := a
			if tc.other {
				second = b
			}
			h1 := holder("r1")
			rel1 := acquire(t, a, h1, key("web-01", "deploy"), key("web-02", "deploy"))
			_, err := second.Acquire(holder("r2"), []store.LockKey{key("web-03", "deploy"), key("web-02", "deploy"), key("web-04", "deploy"), key("web-01", "deploy")})
			var lc *store.LockConflictError
			if !errors.As(err, &lc) {
				t.Fatalf("Acquire of held pairs: %v, want a *store.LockConflictError", err)
			}
			check(t, "conflicts", []store.LockKey{key("web-02", "deploy"), key("web-01", "deploy")}, lc.Conflicts)
			check(t, "ListLocks after a refused Acquire", held(h1, key("web-01", "deploy"), key("web-02", "deploy")), locks(t, second))

			// Nothing of the refused call is held.
			rel3 := acquire(t, second, holder("r3"), key("web-03", "deploy"), key("web-04", "deploy"))
			rel3()

			// One held pair is enough to refuse.
			_, err = second.Acquire(holder("r4"), []store.LockKey{key("web-02", "deploy")})
			if !errors.As(err, &lc) {
				t.Fatalf("Acquire of one held pair: %v, want a *store.LockConflictError", err)
			}
			check(t, "conflicts", []store.LockKey{key("web-02", "deploy")}, lc.Conflicts)

			rel1()
			rel5 := acquire(t, second, holder("r5"), key("web-01", "deploy"), key("web-02", "deploy"), key("web-03", "deploy"))
			rel5()
		})
	}
}

// Another script on the same host, or the same script on another host, is
// another lock.
func testLocksNoConflict(t *testing.T, o opener) {
	for _, tc := range []struct {
		name string
		keys []store.LockKey
	}{
		{"other script, same host", []store.LockKey{key("web-01", "restart")}},
		{"same script, other host", []store.LockKey{key("web-09", "deploy")}},
		{"both", []store.LockKey{key("web-01", "restart"), key("web-09", "deploy")}},
		{"script named like the host", []store.LockKey{key("deploy", "web-01")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := o.both(t)
			h1, h2 := holder("r1"), holder("r2")
			rel1 := acquire(t, a, h1, key("web-01", "deploy"))
			defer rel1()
			rel2 := acquire(t, b, h2, tc.keys...)
			defer rel2()
			want := append(held(h1, key("web-01", "deploy")), held(h2, tc.keys...)...)
			sort.Slice(want, func(i, j int) bool {
				if want[i].Host != want[j].Host {
					return want[i].Host < want[j].Host
				}
				return want[i].Script < want[j].Script
			})
			check(t, "ListLocks", want, locks(t, a))
		})
	}
}

// A pair given twice in one call does not conflict with itself.
func testLocksDuplicateKeys(t *testing.T, o opener) {
	s := o.one(t)
	h := holder("r1")
	rel := acquire(t, s, h, key("web-01", "deploy"), key("web-01", "deploy"))
	check(t, "ListLocks", held(h, key("web-01", "deploy")), locks(t, s))
	rel()
	check(t, "ListLocks after release", []store.LockInfo(nil), locks(t, s))
}

// A key with an empty host or script is an error (not a conflict), and
// nothing is held afterwards.
func testLocksEmptyKey(t *testing.T, o opener) {
	s := o.one(t)
	for _, bad := range []store.LockKey{key("", "deploy"), key("web-01", ""), key("", "")} {
		_, err := s.Acquire(holder("r1"), []store.LockKey{key("web-01", "deploy"), bad})
		var lc *store.LockConflictError
		if err == nil || errors.As(err, &lc) {
			t.Errorf("Acquire with key %q: %v, want an error that is no conflict", bad.String(), err)
		}
		check(t, "ListLocks after a refused Acquire", []store.LockInfo(nil), locks(t, s))
	}
}

// Calling a release again after the pair was taken by someone else leaves
// the new holder's lock alone.
func testLocksStaleRelease(t *testing.T, o opener) {
	a, b := o.both(t)
	rel1 := acquire(t, a, holder("r1"), key("web-01", "deploy"))
	rel1()
	h2 := holder("r2")
	rel2 := acquire(t, b, h2, key("web-01", "deploy"))
	defer rel2()
	rel1()
	check(t, "ListLocks after a stale release", held(h2, key("web-01", "deploy")), locks(t, a))
	_, err := a.Acquire(holder("r3"), []store.LockKey{key("web-01", "deploy")})
	var lc *store.LockConflictError
	if !errors.As(err, &lc) {
		t.Errorf("Acquire after a stale release: %v, want a *store.LockConflictError", err)
	}
}

// ---- SharedState ----

// testSharedState: what is written through a is seen through b, for every
// concern (no handle keeps a stale copy).
func testSharedState(t *testing.T, o opener) {
	a, b := o.both(t)

	agent := store.Agent{Hostname: "web-01", IP: "10.0.0.1", Port: 7443, Tags: map[string]string{"role": "web"}}
	must(t, "PutAgent", a.PutAgent(agent))
	got, err := b.GetAgent("web-01")
	must(t, "GetAgent through b", err)
	check(t, "GetAgent through b", agent, got)
	must(t, "RecordContact", a.RecordContact("web-01", t0))
	agent.LastContact = t0
	got, err = b.GetAgent("web-01")
	must(t, "GetAgent through b", err)
	check(t, "GetAgent through b after RecordContact through a", agent, got)
	agent.IP = "10.0.0.9"
	must(t, "PutAgent through b", b.PutAgent(agent))
	got, err = a.GetAgent("web-01")
	must(t, "GetAgent through a", err)
	check(t, "GetAgent through a after PutAgent through b", agent, got)
	must(t, "DeleteAgent through b", b.DeleteAgent("web-01"))
	_, err = a.GetAgent("web-01")
	wantNotFound(t, "GetAgent through a after DeleteAgent through b", err)

	run := runningRun("shared")
	must(t, "SaveRun", a.SaveRun(run))
	gotRun, err := b.GetRun("shared")
	must(t, "GetRun through b", err)
	check(t, "GetRun through b", run, gotRun)
	check(t, "RunningRuns through b", []store.Run{run}, sortedRuns(t, b))
	run.Status, run.Finished, run.Owner = store.RunDone, t0.Add(time.Second), nil
	must(t, "SaveRun through b", b.SaveRun(run))
	gotRun, err = a.GetRun("shared")
	must(t, "GetRun through a", err)
	check(t, "GetRun through a after SaveRun through b", run, gotRun)

	r := add(t, a, request("web-02", 0), 10)
	check(t, "pending through b", []string{r.ReqID}, pending(t, b, t0))

	must(t, "RevokeSerial", a.RevokeSerial(hexInt("abcd"), "web-01", "unpaired", t0))
	set, _, err := b.RevokedSerials()
	must(t, "RevokedSerials through b", err)
	check(t, "RevokedSerials through b", []string{"abcd"}, serials(set))

	rot := store.Rotation{CurrentSerial: "0c", PreviousSerial: "0b", RotatedAt: t0, OverlapExpires: t0.Add(time.Hour), OverlapDays: 1}
	must(t, "PutRotation", b.PutRotation(rot))
	gotRot, err := a.GetRotation()
	must(t, "GetRotation through a", err)
	check(t, "GetRotation through a", rot, gotRot)
}
