package store

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// A contact is kept beside the record, never in it: the record's bytes
// stay as they were (the Perl dispatcher shares them), GetAgent and
// ListAgents report the later of the two times, and unpairing forgets it.
func TestRecordContact(t *testing.T) {
	f := NewFiles(t.TempDir())
	old := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := f.PutAgent(Agent{Hostname: "web-01", IP: "10.0.0.1", LastContact: old}); err != nil {
		t.Fatal(err)
	}
	record := filepath.Join(f.dir, "agents", "web-01.json")
	before, err := os.ReadFile(record)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	if err := f.RecordContact("web-01", at); err != nil {
		t.Fatal(err)
	}
	if after, _ := os.ReadFile(record); string(after) != string(before) {
		t.Errorf("the registry record changed:\n%s\nwas\n%s", after, before)
	}
	if a, err := f.GetAgent("web-01"); err != nil || !a.LastContact.Equal(at) {
		t.Errorf("GetAgent: last contact %v, %v; want %v", a.LastContact, err, at)
	}
	if as, err := f.ListAgents(); err != nil || len(as) != 1 || !as[0].LastContact.Equal(at) {
		t.Errorf("ListAgents: %+v, %v; want last contact %v", as, err, at)
	}
	// A record written later with a later time wins over an older file.
	later := at.Add(time.Hour)
	if err := f.PutAgent(Agent{Hostname: "web-01", LastContact: later}); err != nil {
		t.Fatal(err)
	}
	if a, _ := f.GetAgent("web-01"); !a.LastContact.Equal(later) {
		t.Errorf("last contact %v, want the record's %v", a.LastContact, later)
	}
	if err := f.DeleteAgent("web-01"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Lstat(filepath.Join(f.dir, "contact", "web-01")); !os.IsNotExist(err) {
		t.Errorf("contact file left after unpairing: %v", err)
	}
}

// A symlink planted at contact/HOST is not followed: the file it points
// at keeps its time, and the contact is an error (which the engine only
// logs at debug level: the run goes on).
func TestRecordContactRefusesSymlink(t *testing.T) {
	f := NewFiles(t.TempDir())
	victim := filepath.Join(t.TempDir(), "victim")
	if err := os.WriteFile(victim, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	past := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	if err := os.Chtimes(victim, past, past); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(f.dir, "contact"), ModeDir); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(f.dir, "contact", "web-01")); err != nil {
		t.Fatal(err)
	}
	if err := f.RecordContact("web-01", time.Now()); err == nil {
		t.Error("RecordContact followed a planted symlink without an error")
	}
	if fi, err := os.Stat(victim); err != nil || !fi.ModTime().Equal(past) {
		t.Errorf("the symlink's target was touched: %v, %v", fi.ModTime(), err)
	}
	if err := f.RecordContact("../etc", time.Now()); err == nil {
		t.Error("RecordContact accepted a host name that is a path")
	}
}
