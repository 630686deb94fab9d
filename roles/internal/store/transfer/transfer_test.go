package transfer_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"go.uber.org/zap/zaptest"

	"github.com/dispatcher-dev/dispatcher/internal/pgtest"
	"github.com/dispatcher-dev/dispatcher/pki"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/postgres"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/transfer"
)

// perlState is a state directory shaped as the Perl dispatcher (and this
// one) leave it: registry records in the Perl dispatcher's layout with its
// serial-rotation fields and fields no version knows, a revoked-serials
// file in the forms it accepts, its rotation.json, pairing requests
// pending and decided, stored runs, a lock file, and one pairing request,
// one run and one revocation line that do not parse.
const perlState = "testdata/perl-state"

// The records of perlState that decode.
var (
	perlPairs = []string{"0123456789abcdef", "fedcba9876543210"}
	perlRuns  = []string{"1111222233334444", "aaaabbbbccccdddd"}
)

// contactAt and runAt are set on the copy of perlState the tests use (git
// keeps no modification times).
var (
	contactAt = time.Date(2025, 6, 3, 4, 5, 6, 789_000_000, time.UTC)
	runAt     = time.Date(2025, 6, 1, 12, 0, 3, 250_000_000, time.UTC)
)

// perlDir copies perlState to a new directory, with a contact time for
// web-01.example.com and runAt as the time of the runs.
func perlDir(t *testing.T) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "state")
	err := filepath.WalkDir(perlState, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(perlState, path)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o750)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), data, 0o640)
	})
	if err != nil {
		t.Fatal(err)
	}
	f := store.NewFiles(dst)
	if err := f.RecordContact("web-01.example.com", contactAt); err != nil {
		t.Fatal(err)
	}
	for _, id := range append(perlRuns, "ffffeeeeddddcccc") {
		if err := os.Chtimes(filepath.Join(dst, "runs", id+".json"), runAt, runAt); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func openPG(t *testing.T, url string) *postgres.Store {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	st, err := postgres.Open(ctx, url, zaptest.NewLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// state is every concern of a store as its methods return it.
type state struct {
	Agents            []store.Agent
	Pairs             []store.PairRequest // GetPairRequest of each
	Pending           []store.PairRequest // ListPairRequests
	Runs              []store.Run         // GetRun of each
	Running           []store.Run
	Revocations       []store.Revocation
	Revoked           []string
	RevokedDispatcher []string
	Records           []store.RevocationRecord // both lists with their notes
	Rotation          store.Rotation
}

type fullStore interface {
	store.Store
	transfer.Reader
}

func stateOf(t *testing.T, st fullStore, pairs, runs []string) state {
	t.Helper()
	var s state
	var err error
	check := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	s.Agents, err = st.ListAgents()
	check(err)
	for _, a := range s.Agents {
		one, err := st.GetAgent(a.Hostname)
		check(err)
		if d := cmp.Diff(a, one); d != "" {
			t.Errorf("GetAgent(%s) differs from ListAgents (-list +get):\n%s", a.Hostname, d)
		}
	}
	for _, id := range pairs {
		p, err := st.GetPairRequest(id)
		check(err)
		s.Pairs = append(s.Pairs, p)
	}
	s.Pending, err = st.ListPairRequests(time.Now())
	check(err)
	for _, id := range runs {
		r, err := st.GetRun(id)
		check(err)
		s.Runs = append(s.Runs, r)
	}
	s.Running, err = st.RunningRuns()
	check(err)
	sort.Slice(s.Running, func(i, j int) bool { return s.Running[i].ReqID < s.Running[j].ReqID })
	s.Revocations, err = st.ListRevocations()
	check(err)
	set, _, err := st.RevokedSerials()
	check(err)
	for _, n := range set.Values() {
		s.Revoked = append(s.Revoked, pki.FormatSerial(n))
	}
	set, _, err = st.RevokedDispatcherSerials()
	check(err)
	for _, n := range set.Values() {
		s.RevokedDispatcher = append(s.RevokedDispatcher, pki.FormatSerial(n))
	}
	check(st.TransferRevocations(func(r store.RevocationRecord) error { s.Records = append(s.Records, r); return nil }))
	s.Rotation, err = st.GetRotation()
	check(err)
	return s
}

// TestPerlStateRoundTrip imports a Perl-shaped state directory into
// PostgreSQL and exports it into a new directory: every concern reads
// the same from all three, and the records are the same bytes.
func TestPerlStateRoundTrip(t *testing.T) {
	src := perlDir(t)
	files := store.NewFiles(src)
	pg := openPG(t, pgtest.Start(t).NewDB(t))
	var warnings []string
	warn := func(err error) { warnings = append(warnings, err.Error()) }

	n, err := transfer.Copy(context.Background(), files, pg, transfer.Options{Warn: warn})
	if err != nil {
		t.Fatal(err)
	}
	want := transfer.Counts{Agents: 2, ContactTimes: 1, PairRequests: 2, Runs: 2, AgentRevocations: 7, DispatcherRevocations: 1, Rotation: 1, Skipped: 3}
	if d := cmp.Diff(want, n); d != "" {
		t.Errorf("import counts (-want +got):\n%s", d)
	}
	for _, w := range []string{"00000000deadbeef", "ffffeeeeddddcccc", "not-a-serial!"} {
		if !strings.Contains(strings.Join(warnings, "\n"), w) {
			t.Errorf("no warning names %s: %q", w, warnings)
		}
	}

	orig := stateOf(t, files, perlPairs, perlRuns)
	if len(orig.Agents) != 2 || orig.Agents[0].ExtraString(store.FieldSerialStatus) != "pending" || orig.Agents[1].Port != 7450 ||
		len(orig.Pending) != 1 || len(orig.Running) != 1 || len(orig.Revocations) != 8 || orig.Rotation.CurrentSerial != "deadbeef" {
		t.Fatalf("the fixture does not read as meant: %+v", orig)
	}
	if got := orig.Agents[0].LastContact; !got.Equal(contactAt.Truncate(time.Second)) {
		t.Fatalf("fixture contact time %v", got)
	}
	// What a copy carries: the entries of revoked-serials that are serials.
	orig = withoutBadLines(orig)
	if d := cmp.Diff(orig, stateOf(t, pg, perlPairs, perlRuns)); d != "" {
		t.Errorf("PostgreSQL after import (-files +postgres):\n%s", d)
	}
	// The PostgreSQL store keeps the record bytes as the file has them.
	err = pg.TransferAgents(func(r store.AgentRecord) error {
		if file := read(t, src, "agents", r.Hostname+".json"); !bytes.Equal(file, r.Record) {
			t.Errorf("record of %s in PostgreSQL:\n%s\nthe file:\n%s", r.Hostname, r.Record, file)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	dst := filepath.Join(t.TempDir(), "exported")
	out := store.NewFiles(dst)
	warnings = nil
	n, err = transfer.Copy(context.Background(), pg, out, transfer.Options{Warn: warn})
	if err != nil {
		t.Fatal(err)
	}
	want.Skipped = 0
	if d := cmp.Diff(want, n); d != "" || warnings != nil {
		t.Errorf("export counts (-want +got):\n%s\nwarnings %q", d, warnings)
	}
	if d := cmp.Diff(orig, stateOf(t, out, perlPairs, perlRuns)); d != "" {
		t.Errorf("exported directory (-original +exported):\n%s", d)
	}

	// Byte for byte: every record, and the revocation lists but for the
	// line that is no serial.
	for _, rel := range []string{
		"agents/web-01.example.com.json", "agents/web-02.json",
		"pairing/0123456789abcdef.json", "pairing/fedcba9876543210.json",
		"runs/1111222233334444.json", "runs/aaaabbbbccccdddd.json",
		"revoked-dispatcher-serials",
	} {
		if a, b := read(t, src, rel), read(t, dst, rel); !bytes.Equal(a, b) {
			t.Errorf("%s:\n%s\nexported:\n%s", rel, a, b)
		}
	}
	wantRevoked := strings.Replace(string(read(t, src, "revoked-serials")), "not-a-serial!\n", "", 1)
	if d := cmp.Diff(wantRevoked, string(read(t, dst, "revoked-serials"))); d != "" {
		t.Errorf("revoked-serials (-want +got):\n%s", d)
	}
	// The times that are no record's content: the contact time, and the
	// runs' last writes, which run_retention goes by.
	if fi, err := os.Stat(filepath.Join(dst, "contact", "web-01.example.com")); err != nil || !fi.ModTime().Equal(contactAt.Truncate(time.Microsecond)) {
		t.Errorf("contact time: %v %v", fi, err)
	}
	for _, id := range perlRuns {
		if fi, err := os.Stat(filepath.Join(dst, "runs", id+".json")); err != nil || !fi.ModTime().Equal(runAt) {
			t.Errorf("run %s: modification time %v (%v), want %v", id, fi.ModTime(), err, runAt)
		}
	}
	if pruned, err := out.PruneRuns(runAt.Add(time.Second)); err != nil || pruned != 2 {
		t.Errorf("PruneRuns a second after the runs' time: %d %v, want both", pruned, err)
	}
	// Locks are not copied; nothing else is written either.
	for _, rel := range []string{"locks", "pairing/00000000deadbeef.json", "runs/ffffeeeeddddcccc.json"} {
		if _, err := os.Lstat(filepath.Join(dst, rel)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s exported: %v", rel, err)
		}
	}
}

// withoutBadLines leaves out of s the revocation entries that are not
// serials, which a copy skips.
func withoutBadLines(s state) state {
	var revs []store.Revocation
	for _, r := range s.Revocations {
		if _, err := pki.ParseSerial(r.Serial); err == nil {
			revs = append(revs, r)
		}
	}
	var recs []store.RevocationRecord
	for _, r := range s.Records {
		if r.Check() == nil {
			recs = append(recs, r)
		}
	}
	s.Revocations, s.Records = revs, recs
	return s
}

func read(t *testing.T, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(elem...))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// A target that holds state is refused unless merging, and nothing is
// written; merging replaces the records of the same key and keeps the
// others.
func TestCopyIntoStateRefusedUnlessMerge(t *testing.T) {
	src := store.NewFiles(perlDir(t))
	pg := openPG(t, pgtest.Start(t).NewDB(t))
	mine := store.Agent{Hostname: "web-02", IP: "192.0.2.1", Tags: map[string]string{"keep": "no"}}
	other := store.Agent{Hostname: "zz-only-here", IP: "192.0.2.2"}
	for _, a := range []store.Agent{mine, other} {
		if err := pg.PutAgent(a); err != nil {
			t.Fatal(err)
		}
	}
	n, err := transfer.Copy(context.Background(), src, pg, transfer.Options{})
	var ne *transfer.NotEmptyError
	if !errors.As(err, &ne) || ne.First != "agent web-02" || n.Copied() != 0 {
		t.Fatalf("copy into a store holding agents: %v (%+v), want a NotEmptyError naming agent web-02", err, n)
	}
	if _, err := pg.GetRotation(); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("the refused copy wrote the rotation: %v", err)
	}
	if set, _, _ := pg.RevokedSerials(); set.Len() != 0 {
		t.Errorf("the refused copy wrote revocations: %v", set.Values())
	}

	if _, err := transfer.Copy(context.Background(), src, pg, transfer.Options{Merge: true}); err != nil {
		t.Fatal(err)
	}
	got, err := pg.GetAgent("web-02")
	if err != nil || got.IP != "10.0.0.6" || got.Tags != nil {
		t.Errorf("web-02 after the merge: %+v %v, want the imported record", got, err)
	}
	if _, err := pg.GetAgent("zz-only-here"); err != nil {
		t.Errorf("a record only the target had: %v", err)
	}

	// Export: a directory holding state is refused the same way.
	dir := t.TempDir()
	if err := store.NewFiles(dir).RevokeDispatcherSerial(pkiSerial(t, "abcdef"), "old", time.Now()); err != nil {
		t.Fatal(err)
	}
	_, err = transfer.Copy(context.Background(), pg, store.NewFiles(dir), transfer.Options{})
	if !errors.As(err, &ne) || ne.First != "revoked dispatcher serial abcdef" {
		t.Errorf("export into a directory with a revocation: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "agents")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the refused export wrote agents: %v", err)
	}
	// Lock files and an empty state directory hold no state.
	empty := t.TempDir()
	if err := os.MkdirAll(filepath.Join(empty, "locks"), 0o750); err != nil {
		t.Fatal(err)
	}
	if _, err := transfer.Copy(context.Background(), pg, store.NewFiles(empty), transfer.Options{}); err != nil {
		t.Errorf("export into a directory with only locks/: %v", err)
	}
}

func pkiSerial(t *testing.T, s string) *big.Int {
	t.Helper()
	ns, err := pki.ParseSerial(s)
	if err != nil {
		t.Fatal(err)
	}
	return ns[0]
}

// failingTarget is a target whose disk fills up after a number of
// registry records (a failure at the edge, injected).
type failingTarget struct {
	transfer.Target
	left int
}

func (f *failingTarget) PutAgentRecord(r store.AgentRecord) error {
	if f.left == 0 {
		return errors.New("no space left on device")
	}
	f.left--
	return f.Target.PutAgentRecord(r)
}

// A copy that stops half-way leaves whole records, and running it again
// with Merge completes it: the result is the state a copy in one go
// leaves.
func TestCopyStoppedHalfWayCompletesWithMerge(t *testing.T) {
	src := store.NewFiles(perlDir(t))
	srv := pgtest.Start(t)
	pg := openPG(t, srv.NewDB(t))
	n, err := transfer.Copy(context.Background(), src, &failingTarget{Target: pg, left: 1}, transfer.Options{})
	if err == nil || !strings.Contains(err.Error(), "copy agent web-02: no space left on device") {
		t.Fatalf("copy with a failing target: %v", err)
	}
	if n.Agents != 1 || n.AgentRevocations != 7 || n.Rotation != 1 || n.Runs != 0 || n.Copied() == 0 {
		t.Errorf("counts of the stopped copy: %+v", n)
	}
	if _, err := pg.GetAgent("web-01.example.com"); err != nil {
		t.Errorf("the agent copied before the failure: %v", err)
	}
	if _, err := transfer.Copy(context.Background(), src, pg, transfer.Options{}); !errors.As(err, new(*transfer.NotEmptyError)) {
		t.Errorf("copy again without merge: %v", err)
	}
	n, err = transfer.Copy(context.Background(), src, pg, transfer.Options{Merge: true})
	if err != nil {
		t.Fatal(err)
	}
	if n.Agents != 2 || n.AgentRevocations != 0 || n.DispatcherRevocations != 0 || n.Runs != 2 {
		t.Errorf("counts of the completing copy: %+v (revocations already listed are not counted)", n)
	}
	oneGo := openPG(t, srv.NewDB(t))
	if _, err := transfer.Copy(context.Background(), src, oneGo, transfer.Options{}); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(stateOf(t, oneGo, perlPairs, perlRuns), stateOf(t, pg, perlPairs, perlRuns)); d != "" {
		t.Errorf("stopped and completed (-in one go +completed):\n%s", d)
	}

	// A cancelled context stops the copy between records.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := transfer.Copy(ctx, src, openPG(t, srv.NewDB(t)), transfer.Options{}); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled copy: %v", err)
	}
}

// A registry record that does not decode stops the copy with an error
// naming it; a lock held in the source is warned about.
func TestCopyBadAgentAndHeldLock(t *testing.T) {
	dir := perlDir(t)
	src := store.NewFiles(dir)
	release, err := src.Acquire(store.LockHolder{PID: os.Getpid(), ReqID: "r1"}, []store.LockKey{{Host: "web-02", Script: "deploy"}})
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := os.WriteFile(filepath.Join(dir, "agents", "web-02.json"), []byte(`{"hostname": "web-02", "port": "high"}`), 0o640); err != nil {
		t.Fatal(err)
	}
	var warnings []string
	_, err = transfer.Copy(context.Background(), src, store.NewFiles(t.TempDir()), transfer.Options{Warn: func(err error) { warnings = append(warnings, err.Error()) }})
	if err == nil || !strings.Contains(err.Error(), "copy agent web-02") || !strings.Contains(err.Error(), `"port"`) {
		t.Errorf("copy of a bad record: %v", err)
	}
	if len(warnings) == 0 || !strings.Contains(warnings[0], "web-02:deploy") {
		t.Errorf("warnings %q, want one about the held lock", warnings)
	}
}

// Files to files needs no database: the records arrive byte for byte.
func TestCopyFilesToFiles(t *testing.T) {
	src := perlDir(t)
	dst := t.TempDir()
	if _, err := transfer.Copy(context.Background(), store.NewFiles(src), store.NewFiles(dst), transfer.Options{}); err != nil {
		t.Fatal(err)
	}
	for _, rel := range []string{"agents/web-02.json", "pairing/fedcba9876543210.json", "runs/aaaabbbbccccdddd.json", "revoked-dispatcher-serials"} {
		if !bytes.Equal(read(t, src, rel), read(t, dst, rel)) {
			t.Errorf("%s differs", rel)
		}
	}
	if d := cmp.Diff(withoutBadLines(stateOf(t, store.NewFiles(src), perlPairs, perlRuns)), stateOf(t, store.NewFiles(dst), perlPairs, perlRuns)); d != "" {
		t.Errorf("(-source +copy):\n%s", d)
	}
}
