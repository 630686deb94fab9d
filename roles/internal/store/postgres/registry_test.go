package postgres

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/roles/internal/store"
)

// perlRecord is shaped like a record the Perl dispatcher writes, with its
// serial-rotation fields, a null and a field no version knows, whose
// number 2.50 must keep its spelling.
const perlRecord = `{"hostname":"web-01","ip":"10.0.0.5","paired":"2025-03-01T10:00:00Z",` +
	`"expiry":"Mar  1 10:00:00 2027 GMT","reqid":"a1b2c3d4",` +
	`"dispatcher_serial":"4f3e2d","serial_status":"pending","serial_broadcast":"2025-06-01T00:00:00Z",` +
	`"serial_confirmed":null,"future":{"nested":[1,2.50,"x"],"flag":true,"html":"<&>"}}`

// The registry record is stored as the bytes the files store writes for
// the same agent, unknown fields included, and reads back the same.
func TestRegistryRecordLikeFiles(t *testing.T) {
	s, url := newStore(t)
	files := store.NewFiles(t.TempDir())
	var perl store.Agent
	if err := json.Unmarshal([]byte(perlRecord), &perl); err != nil {
		t.Fatal(err)
	}
	tagged := perl
	tagged.Hostname, tagged.Port, tagged.KeyFingerprint, tagged.Serial = "db-01.example.com", 7443, "sha256:00", "0a1b"
	tagged.Tags = map[string]string{"role": "db", "zone": "ü"}
	tagged.LastContact = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	tagged.SetExtraTime(store.FieldLastRenewal, time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC))

	for _, a := range []store.Agent{perl, tagged, {Hostname: "bare"}} {
		if err := s.PutAgent(a); err != nil {
			t.Fatal(err)
		}
		if err := files.PutAgent(a); err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(filepath.Join(files.Dir(), "agents", a.Hostname+".json"))
		if err != nil {
			t.Fatal(err)
		}
		var record string
		if err := sqlConn(t, url).QueryRow(context.Background(), "SELECT record FROM agents WHERE hostname = $1", a.Hostname).Scan(&record); err != nil {
			t.Fatal(err)
		}
		if record != string(want) {
			t.Errorf("%s: record\n%s\nthe files store writes\n%s", a.Hostname, record, want)
		}
		fromFiles, err := files.GetAgent(a.Hostname)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.GetAgent(a.Hostname)
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff(fromFiles, got); d != "" {
			t.Errorf("%s: GetAgent (-files +postgres):\n%s", a.Hostname, d)
		}
	}

	// Read, changed and written again, the Perl fields stay as they were.
	a, err := s.GetAgent("web-01")
	if err != nil {
		t.Fatal(err)
	}
	a.Port = 7450
	if err := s.PutAgent(a); err != nil {
		t.Fatal(err)
	}
	back, err := s.GetAgent("web-01")
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(a, back); d != "" {
		t.Errorf("rewritten record (-written +read):\n%s", d)
	}
	// (As the files store, through json.Marshal, which escapes <, & and >.)
	if got := string(back.Extra["future"]); got != `{"nested":[1,2.50,"x"],"flag":true,"html":"\u003c\u0026\u003e"}` {
		t.Errorf("unknown field read back as %s", got)
	}

	fromFiles, err := files.ListAgents()
	if err != nil {
		t.Fatal(err)
	}
	fromFiles[len(fromFiles)-1].Port = 7450 // the change above
	list, err := s.ListAgents()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(fromFiles, list); d != "" {
		t.Errorf("ListAgents (-files +postgres):\n%s", d)
	}
}

func TestRegistry(t *testing.T) {
	s, _ := newStore(t)
	if l, err := s.ListAgents(); err != nil || l == nil || len(l) != 0 {
		t.Fatalf("empty registry: ListAgents = %#v, %v; want an empty list", l, err)
	}
	if n, err := s.AgentNames(); err != nil || n != nil {
		t.Fatalf("empty registry: AgentNames = %#v, %v; want nil", n, err)
	}
	// Byte order, as the files store sorts, whatever the collation.
	for _, h := range []string{"web-02", "Web-03", "db-01", "web01", "web-01"} {
		if err := s.PutAgent(store.Agent{Hostname: h, IP: "10.0.0.1", Port: 7443}); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"Web-03", "db-01", "web-01", "web-02", "web01"}
	names, err := s.AgentNames()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, names); d != "" {
		t.Errorf("AgentNames (-want +got):\n%s", d)
	}
	list, err := s.ListAgents()
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, a := range list {
		listed = append(listed, a.Hostname)
	}
	if d := cmp.Diff(want, listed); d != "" {
		t.Errorf("ListAgents (-want +got):\n%s", d)
	}

	for name, err := range map[string]error{
		"GetAgent":    func() error { _, err := s.GetAgent("web-09"); return err }(),
		"DeleteAgent": s.DeleteAgent("web-09"),
	} {
		if !errors.Is(err, store.ErrNotFound) || err.Error() != "agent web-09 is not registered: not found" {
			t.Errorf("%s(web-09) = %v, want ErrNotFound", name, err)
		}
	}
	files := store.NewFiles(t.TempDir())
	for _, bad := range []string{"../etc/passwd", "a/b", "", ".hidden", "web-01.json/..", "web-01."} {
		_, want := files.GetAgent(bad)
		_, err := s.GetAgent(bad)
		if err == nil || errors.Is(err, store.ErrNotFound) || err.Error() != want.Error() {
			t.Errorf("GetAgent(%q) = %v, want the files store's %v", bad, err, want)
		}
		for name, err := range map[string]error{
			"PutAgent":      s.PutAgent(store.Agent{Hostname: bad}),
			"DeleteAgent":   s.DeleteAgent(bad),
			"RecordContact": s.RecordContact(bad, time.Now()),
		} {
			if err == nil || err.Error() != want.Error() {
				t.Errorf("%s(%q) = %v, want %v", name, bad, err, want)
			}
		}
	}

	if err := s.DeleteAgent("web-01"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetAgent("web-01"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("after DeleteAgent: %v", err)
	}
}

// A contact is kept beside the record, never in it: GetAgent and
// ListAgents report the later of the two times (whole seconds), a
// rewritten record keeps it, and unpairing forgets it.
func TestRecordContact(t *testing.T) {
	s, url := newStore(t)
	old := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.PutAgent(store.Agent{Hostname: "web-01", IP: "10.0.0.1", LastContact: old}); err != nil {
		t.Fatal(err)
	}
	c := sqlConn(t, url)
	record := func() string {
		t.Helper()
		var r string
		if err := c.QueryRow(context.Background(), "SELECT record FROM agents WHERE hostname = 'web-01'").Scan(&r); err != nil {
			t.Fatal(err)
		}
		return r
	}
	before := record()
	at := time.Date(2026, 11, 26, 12, 0, 0, 999_999_999, time.UTC)
	if err := s.RecordContact("web-01", at); err != nil {
		t.Fatal(err)
	}
	if after := record(); after != before {
		t.Errorf("the registry record changed:\n%s\nwas\n%s", after, before)
	}
	want := at.Truncate(time.Second)
	if a, err := s.GetAgent("web-01"); err != nil || !a.LastContact.Equal(want) || a.LastContact.Location() != time.UTC {
		t.Errorf("GetAgent: last contact %v, %v; want %v", a.LastContact, err, want)
	}
	if as, err := s.ListAgents(); err != nil || len(as) != 1 || !as[0].LastContact.Equal(want) {
		t.Errorf("ListAgents: %+v, %v; want last contact %v", as, err, want)
	}
	// A record written later keeps the contact time; its own later time
	// wins over it.
	later := at.Add(time.Hour).Truncate(time.Second)
	if err := s.PutAgent(store.Agent{Hostname: "web-01", LastContact: later}); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.GetAgent("web-01"); !a.LastContact.Equal(later) {
		t.Errorf("last contact %v, want the record's %v", a.LastContact, later)
	}
	if err := s.PutAgent(store.Agent{Hostname: "web-01"}); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.GetAgent("web-01"); !a.LastContact.Equal(want) {
		t.Errorf("after a rewrite without a contact time: %v, want %v", a.LastContact, want)
	}
	// Unpaired and paired again: no contact.
	if err := s.DeleteAgent("web-01"); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAgent(store.Agent{Hostname: "web-01"}); err != nil {
		t.Fatal(err)
	}
	if a, _ := s.GetAgent("web-01"); !a.LastContact.IsZero() {
		t.Errorf("contact time survived unpairing: %v", a.LastContact)
	}
	// A host not registered: no error, nothing noted.
	if err := s.RecordContact("web-99", at); err != nil {
		t.Errorf("RecordContact of an unregistered host: %v", err)
	}
	if _, err := s.GetAgent("web-99"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("RecordContact registered a host: %v", err)
	}
}
