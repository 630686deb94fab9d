package store

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestAgentNames(t *testing.T) {
	dir := t.TempDir()
	s := NewFiles(dir)
	names, err := s.AgentNames()
	if err != nil || len(names) != 0 {
		t.Fatalf("empty state dir: got %v, %v; want no agents", names, err)
	}
	agents := filepath.Join(dir, "agents")
	if err := os.MkdirAll(agents, 0o750); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"web-02.json", "web-01.json", ".web-03.json.tmp", "notes.txt"} {
		if err := os.WriteFile(filepath.Join(agents, n), []byte("{}"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(agents, "dir.json"), 0o750); err != nil {
		t.Fatal(err)
	}
	names, err = s.AgentNames()
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"web-01", "web-02"}, names); d != "" {
		t.Errorf("AgentNames (-want +got):\n%s", d)
	}
}
