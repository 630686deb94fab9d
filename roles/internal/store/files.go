package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Files is the state kept as files under a state directory.
type Files struct{ dir string }

// NewFiles returns the files store rooted at stateDir.
func NewFiles(stateDir string) *Files { return &Files{dir: stateDir} }

// AgentNames lists the host names of registered agents (agents/HOST.json),
// sorted. A state directory that does not exist yet holds no agents.
func (f *Files) AgentNames() ([]string, error) {
	dir := filepath.Join(f.dir, "agents")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read registry %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		n := e.Name()
		if e.Type().IsRegular() && strings.HasSuffix(n, ".json") && !strings.HasPrefix(n, ".") {
			names = append(names, strings.TrimSuffix(n, ".json"))
		}
	}
	sort.Strings(names)
	return names, nil
}
