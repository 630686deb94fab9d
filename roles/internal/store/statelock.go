package store

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// stateLockWait bounds how long a read-modify-write of shared state waits
// for another process to finish its own.
const stateLockWait = 10 * time.Second

// withStateLock runs fn while holding flock(LOCK_EX) on the lock file at
// path (created 0640 with its directory 0750; never removed, so every
// process locks the same file). flock locks belong to the open file, so
// two goroutines of one process exclude each other as two processes do,
// and the kernel drops the lock of a process that dies. A lock that stays
// held longer than stateLockWait is an error naming the file.
func withStateLock(path string, fn func() error) error {
	if err := os.MkdirAll(filepath.Dir(path), ModeDir); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	file, err := openLockFile(path)
	if err != nil {
		return err
	}
	defer file.Close()
	deadline := time.Now().Add(stateLockWait)
	pause := time.Millisecond
	for {
		ok, err := tryLock(file, true)
		if err != nil {
			return fmt.Errorf("lock %s: %w", path, err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("lock %s: still held by another process after %s; try again, or look for a hung dispatcher process", path, stateLockWait)
		}
		time.Sleep(pause)
		pause = min(2*pause, 50*time.Millisecond)
	}
	defer func() { _ = unlockFile(file) }()
	return fn()
}
