package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
)

// LockPath returns the lock file of k under stateDir: locks/HOST--SCRIPT.lock,
// with every character outside [A-Za-z0-9_.-] replaced by '_' exactly as the
// Perl dispatcher does, so both name the same file.
func LockPath(stateDir string, k LockKey) string {
	return filepath.Join(stateDir, "locks", lockFileName(k))
}

func lockFileName(k LockKey) string {
	return sanitize(k.Host) + "--" + sanitize(k.Script) + ".lock"
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '.' || r == '-' {
			return r
		}
		return '_'
	}, s)
}

// lockContent is what a holder writes into its lock file.
type lockContent struct {
	Host   string `json:"host"`
	Script string `json:"script"`
	LockHolder
}

// maxLockContent bounds what ListLocks reads from a lock file.
const maxLockContent = 4 << 10

// Acquire takes the locks of keys (duplicates count once) without waiting.
// If any is held by another process — or by another Acquire in this one —
// it gives back those it took and returns a *LockConflictError listing
// every conflicting pair, in the order of keys. Once all are held it writes
// h into each lock file (best effort: the lock itself is what counts). The
// locks are released by release, or by the kernel when the process exits.
func (f *Files) Acquire(h LockHolder, keys []LockKey) (release func(), err error) {
	dir := filepath.Join(f.dir, "locks")
	if err := os.MkdirAll(dir, ModeDir); err != nil {
		return nil, fmt.Errorf("create lock directory: %w", err)
	}
	type held struct {
		key  LockKey
		file *os.File
	}
	var (
		taken     []held
		conflicts []LockKey
		seen      = make(map[string]bool, len(keys))
	)
	unlockAll := func() {
		for _, t := range taken {
			_ = t.file.Truncate(0)
			_ = unlockFile(t.file)
			_ = t.file.Close()
		}
	}
	for _, k := range keys {
		if k.Host == "" || k.Script == "" {
			unlockAll()
			return nil, fmt.Errorf("lock %q: empty host or script", k.String())
		}
		name := lockFileName(k)
		if seen[name] {
			continue
		}
		seen[name] = true
		file, err := openLockFile(filepath.Join(dir, name))
		if err != nil {
			unlockAll()
			return nil, err
		}
		ok, err := tryLock(file, true)
		if err != nil {
			file.Close()
			unlockAll()
			return nil, fmt.Errorf("lock %s: %w", file.Name(), err)
		}
		if !ok {
			file.Close()
			conflicts = append(conflicts, k)
			continue
		}
		taken = append(taken, held{k, file})
	}
	if len(conflicts) > 0 {
		unlockAll()
		return nil, &LockConflictError{Conflicts: conflicts}
	}
	for _, t := range taken {
		data, err := json.Marshal(lockContent{Host: t.key.Host, Script: t.key.Script, LockHolder: h})
		if err == nil && t.file.Truncate(0) == nil {
			_, _ = t.file.WriteAt(append(data, '\n'), 0)
		}
	}
	var once sync.Once
	return func() { once.Do(unlockAll) }, nil
}

// ListLocks returns the locks held right now, sorted by host and script.
// Each lock file is probed with a non-blocking shared flock: one that can
// be taken is free and left out. (The probe holds the file for an instant,
// so an Acquire at that very moment may see a conflict, as with the Perl
// dispatcher's own check.) Holder details come from the file; a lock held
// by a Perl dispatcher has none, and its host and script are read from the
// file name.
func (f *Files) ListLocks() ([]LockInfo, error) {
	dir := filepath.Join(f.dir, "locks")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read lock directory: %w", err)
	}
	var locks []LockInfo
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".lock") || strings.HasPrefix(name, ".") {
			continue
		}
		info, held, err := probeLock(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		if held {
			locks = append(locks, info)
		}
	}
	sort.Slice(locks, func(i, j int) bool {
		if locks[i].Host != locks[j].Host {
			return locks[i].Host < locks[j].Host
		}
		return locks[i].Script < locks[j].Script
	})
	return locks, nil
}

func probeLock(path string) (LockInfo, bool, error) {
	file, err := openLockFileRead(path)
	if errors.Is(err, fs.ErrNotExist) {
		return LockInfo{}, false, nil
	}
	if err != nil {
		return LockInfo{}, false, err
	}
	defer file.Close()
	free, err := tryLock(file, false)
	if err != nil {
		return LockInfo{}, false, fmt.Errorf("probe lock %s: %w", path, err)
	}
	if free {
		_ = unlockFile(file)
		return LockInfo{}, false, nil
	}
	info := LockInfo{Path: path}
	data, _ := io.ReadAll(io.LimitReader(file, maxLockContent))
	var c lockContent
	if json.Unmarshal(data, &c) == nil && c.Host != "" && c.Script != "" {
		info.LockKey = LockKey{Host: c.Host, Script: c.Script}
		info.LockHolder = c.LockHolder
		return info, true, nil
	}
	// Written by the Perl dispatcher, or not yet by the holder: the name
	// says which pair. Host names may contain "--" (punycode), script names
	// rarely do, so the last "--" splits them.
	base := strings.TrimSuffix(filepath.Base(path), ".lock")
	if i := strings.LastIndex(base, "--"); i > 0 {
		info.LockKey = LockKey{Host: base[:i], Script: base[i+2:]}
	} else {
		info.LockKey = LockKey{Host: base}
	}
	return info, true, nil
}
