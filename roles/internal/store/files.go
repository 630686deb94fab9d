package store

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// Files is the state kept as files under a state directory (SPEC §2). It
// implements Registry, PairingQueue, Revocations, Runs and Locks, and is safe for concurrent use by
// goroutines and by processes sharing the directory.
type Files struct{ dir string }

var (
	_ Registry     = (*Files)(nil)
	_ PairingQueue = (*Files)(nil)
	_ Revocations  = (*Files)(nil)
	_ Runs         = (*Files)(nil)
	_ Locks        = (*Files)(nil)
)

// NewFiles returns the files store rooted at stateDir. Nothing is created
// until the first write.
func NewFiles(stateDir string) *Files { return &Files{dir: stateDir} }

// Dir returns the state directory.
func (f *Files) Dir() string { return f.dir }

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

// writeRecord creates the directory of path (ModeDir) when needed and
// replaces path atomically with data (ModeRecord). A symbolic link at path
// is refused (pki.WriteFileAtomic); on a full disk the old record stays as
// it was and the error says so.
func writeRecord(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, ModeDir); err != nil {
		return fmt.Errorf("create %s: %w", dir, diskHint(err))
	}
	return diskHint(pki.WriteFileAtomic(path, data, ModeRecord))
}

// diskHint adds what to do to an error of a full file system.
func diskHint(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: the file system of the state directory is full; the stored state is unchanged, free some space and try again", err)
	}
	return err
}

// readRecord reads a state file without following a symbolic link:
// dispatcher only ever writes regular files there, so a link is something
// planted and is refused with an error saying so.
func readRecord(path string) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|oNoFollow, 0)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("%s is a symbolic link, which dispatcher never writes there: refusing to follow it; remove it and check who planted it", path)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file: remove it", path)
	}
	return io.ReadAll(f)
}
