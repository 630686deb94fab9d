package dispatcher

import (
	"bytes"
	"context"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/internal/pgtest"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
	"github.com/dispatcher-dev/dispatcher/roles/internal/store/backend"
)

// perlAgent is agents/web-01.json as the Perl dispatcher writes it.
const perlAgent = "{\n   \"dispatcher_serial\" : \"4F3E2D\",\n   \"expiry\" : \"Jun  7 16:28:00 2027 GMT\",\n" +
	"   \"hostname\" : \"web-01\",\n   \"ip\" : \"10.0.0.5\",\n   \"paired\" : \"2025-03-01T10:00:00Z\",\n" +
	"   \"reqid\" : \"a1b2c3d4\",\n   \"serial_broadcast\" : \"2025-06-01T00:00:00Z\",\n" +
	"   \"serial_confirmed\" : null,\n   \"serial_status\" : \"pending\"\n}\n"

// fillState writes one record of every concern into the world's
// state_dir, and a run record that does not parse.
func fillState(t *testing.T, w *world) (pairID, runID string) {
	t.Helper()
	st := w.st
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(os.MkdirAll(filepath.Join(st.Dir(), "agents"), 0o750))
	must(os.WriteFile(filepath.Join(st.Dir(), "agents", "web-01.json"), []byte(perlAgent), 0o640))
	must(st.PutAgent(store.Agent{Hostname: "db-02", IP: "10.0.0.9", Port: 7450, Tags: map[string]string{"role": "db"}}))
	now := time.Now().UTC().Truncate(time.Second)
	must(st.RecordContact("db-02", now.Add(-time.Minute)))
	p, err := st.AddPairRequest(store.PairRequest{Hostname: "web-03", IP: "10.0.0.7", Port: 7443, CSR: "csr", Nonce: "secret-nonce", Code: "123456", Created: now, Expires: now.Add(time.Hour)}, 10)
	must(err)
	runID = "0123456789abcdef"
	must(st.SaveRun(store.Run{ReqID: runID, Script: "deploy", Hosts: []string{"db-02"}, Username: "alice", Status: store.RunDone, Started: now,
		Results: []store.Result{{Host: "db-02", Exit: 0, Stdout: "ok\n", RTT: "3ms", ReqID: runID}}}))
	must(os.WriteFile(filepath.Join(st.Dir(), "runs", "badbadbadbadbad0.json"), []byte("{"), 0o640))
	must(st.RevokeSerial(big.NewInt(0xabcdef), "old-01", "unpaired", now))
	must(st.RevokeDispatcherSerial(big.NewInt(0x1234), "rotated", now))
	must(st.PutRotation(store.Rotation{CurrentSerial: "beef", PreviousSerial: "1234", RotatedAt: now, OverlapExpires: now.Add(24 * time.Hour), OverlapDays: 1}))
	return p.ReqID, runID
}

func setStore(t *testing.T, w *world, url string) {
	t.Helper()
	f, err := os.OpenFile(w.conf, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("store = \"" + url + "\"\n"); err != nil {
		t.Fatal(err)
	}
}

// storeView is what the commands see of a state.
type storeView struct {
	Agents      []store.Agent
	Pair        store.PairRequest
	Run         store.Run
	Revocations []store.Revocation
	Rotation    store.Rotation
	Dispatcher  int
}

func viewOf(t *testing.T, st store.Store, pairID, runID string) storeView {
	t.Helper()
	var v storeView
	var err error
	if v.Agents, err = st.ListAgents(); err != nil {
		t.Fatal(err)
	}
	if v.Pair, err = st.GetPairRequest(pairID); err != nil {
		t.Fatal(err)
	}
	if v.Run, err = st.GetRun(runID); err != nil {
		t.Fatal(err)
	}
	if v.Revocations, err = st.ListRevocations(); err != nil {
		t.Fatal(err)
	}
	if v.Rotation, err = st.GetRotation(); err != nil {
		t.Fatal(err)
	}
	set, _, err := st.RevokedDispatcherSerials()
	if err != nil {
		t.Fatal(err)
	}
	v.Dispatcher = set.Len()
	return v
}

const wantCopied = "  agents                  2\n" +
	"  contact times           1\n" +
	"  pairing requests        1\n" +
	"  runs                    1\n" +
	"  agent revocations       1\n" +
	"  dispatcher revocations  1\n" +
	"  rotation                1\n"

const locksLine = "locks are not copied: they end with the processes that hold them\n"

// store import copies state_dir into PostgreSQL, once; store export
// copies it back into a new directory, once; both say what they copied.
func TestStoreImportExport(t *testing.T) {
	url := pgtest.Start(t).NewDB(t)
	w := newWorld(t, false)
	pairID, runID := fillState(t, w)
	stateDir := w.st.Dir()

	_, stderr, code := w.cli(t, "store", "import")
	if code != 1 || !strings.Contains(stderr, "store is not a postgres:// URL") {
		t.Errorf("import without store set: exit %d %q", code, stderr)
	}
	setStore(t, w, url)
	if _, stderr, code := w.cli(t, "store", "import", stateDir); code != 2 || !strings.Contains(stderr, "--from") {
		t.Errorf("import with an argument: exit %d %q", code, stderr)
	}
	if _, stderr, code := w.cli(t, "store", "import", "--from", filepath.Join(w.dir, "nowhere")); code != 1 || !strings.Contains(stderr, "nowhere") {
		t.Errorf("import from a missing directory: exit %d %q", code, stderr)
	}

	stdout, stderr, code := w.cli(t, "store", "import")
	want := "imported " + stateDir + " into the PostgreSQL store:\n" + wantCopied +
		"  skipped                 1 (see the warnings)\n" + locksLine
	if d := cmp.Diff(want, stdout); code != 0 || d != "" {
		t.Fatalf("store import: exit %d, stderr %q, stdout (-want +got):\n%s", code, stderr, d)
	}
	if !strings.Contains(stderr, "warning: skipped: run badbadbadbadbad0") {
		t.Errorf("import stderr %q, want a warning about the run that does not parse", stderr)
	}

	ctx := context.Background()
	pg, err := backend.Open(ctx, url, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer pg.Close()
	orig := viewOf(t, w.st, pairID, runID)
	if d := cmp.Diff(orig, viewOf(t, pg, pairID, runID)); d != "" {
		t.Errorf("PostgreSQL after import (-state_dir +postgres):\n%s", d)
	}
	if orig.Pair.Nonce != "secret-nonce" || orig.Agents[0].LastContact.IsZero() {
		t.Fatalf("the state is not what the test meant: %+v", orig)
	}

	// Again: refused, the database holds state; --merge copies again.
	_, stderr, code = w.cli(t, "store", "import")
	if code != 1 || !strings.Contains(stderr, "already holds state (agent db-02)") || !strings.Contains(stderr, "--merge") {
		t.Errorf("second import: exit %d %q", code, stderr)
	}
	stdout, _, code = w.cli(t, "store", "import", "--json")
	var refused map[string]any
	if err := json.Unmarshal([]byte(stdout), &refused); code != 1 || err != nil || refused["ok"] != false || !strings.Contains(refused["error"].(string), "--merge") {
		t.Errorf("second import --json: exit %d %q", code, stdout)
	}
	stdout, _, code = w.cli(t, "store", "import", "--merge", "--json")
	var got map[string]any
	if err := json.Unmarshal([]byte(stdout), &got); code != 0 || err != nil {
		t.Fatalf("import --merge --json: exit %d %v %q", code, err, stdout)
	}
	wantJSON := map[string]any{"ok": true, "agents": 2.0, "contact_times": 1.0, "pairing_requests": 1.0, "runs": 1.0,
		"agent_revocations": 0.0, "dispatcher_revocations": 0.0, "rotation": 1.0, "skipped": 1.0}
	if d := cmp.Diff(wantJSON, got); d != "" {
		t.Errorf("import --merge --json (-want +got):\n%s", d)
	}

	// Export: --to is required, so state_dir is never written by default.
	before := tree(t, stateDir)
	if _, stderr, code := w.cli(t, "store", "export"); code != 2 || !strings.Contains(stderr, "--to") {
		t.Errorf("export without --to: exit %d %q", code, stderr)
	}
	out := filepath.Join(w.dir, "exported")
	stdout, stderr, code = w.cli(t, "store", "export", "--to", out)
	want = "exported the PostgreSQL store to " + out + ":\n" + wantCopied + locksLine
	if d := cmp.Diff(want, stdout); code != 0 || d != "" {
		t.Fatalf("store export: exit %d, stderr %q, stdout (-want +got):\n%s", code, stderr, d)
	}
	if d := cmp.Diff(orig, viewOf(t, store.NewFiles(out), pairID, runID)); d != "" {
		t.Errorf("exported (-state_dir +exported):\n%s", d)
	}
	for _, rel := range []string{"agents/web-01.json", "agents/db-02.json", "pairing/" + pairID + ".json", "runs/" + runID + ".json", "revoked-serials", "revoked-dispatcher-serials"} {
		a, _ := os.ReadFile(filepath.Join(stateDir, rel))
		b, err := os.ReadFile(filepath.Join(out, rel))
		if err != nil || !bytes.Equal(a, b) {
			t.Errorf("%s exported: %v\n%s\nwant:\n%s", rel, err, b, a)
		}
	}
	if d := cmp.Diff(before, tree(t, stateDir)); d != "" {
		t.Errorf("state_dir changed by import or export (-before +after):\n%s", d)
	}

	_, stderr, code = w.cli(t, "store", "export", "--to", out)
	if code != 1 || !strings.Contains(stderr, out+" already holds state (agent db-02)") || !strings.Contains(stderr, "--force") {
		t.Errorf("export into a directory with state: exit %d %q", code, stderr)
	}
	stdout, stderr, code = w.cli(t, "store", "export", "--to", out, "--force")
	if code != 0 || !strings.HasPrefix(stdout, "exported the PostgreSQL store to "+out+":\n  agents                  2\n") {
		t.Errorf("export --force: exit %d %q %q", code, stdout, stderr)
	}
}

// Export needs the PostgreSQL store.
func TestStoreExportFiles(t *testing.T) {
	w := newWorld(t, false)
	_, stderr, code := w.cli(t, "store", "export", "--to", filepath.Join(w.dir, "x"))
	if code != 1 || !strings.Contains(stderr, "store is not a postgres:// URL") {
		t.Errorf("export with the files store: exit %d %q", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(w.dir, "x")); !os.IsNotExist(err) {
		t.Errorf("the refused export wrote: %v", err)
	}
}

// tree lists the files under dir with their sizes and times.
func tree(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	err := filepath.Walk(dir, func(path string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		out = append(out, path+" "+fi.ModTime().String()+" "+fi.Mode().String())
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}
