//go:build unix

package store

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// openLockFile opens (creating) a lock file for locking and writing the
// holder. A symbolic link is refused rather than followed.
func openLockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW, ModeRecord)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return f, nil
}

// openLockFileRead opens an existing lock file to probe it.
func openLockFileRead(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NOFOLLOW, 0)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w", err)
	}
	return f, nil
}

// tryLock takes flock(LOCK_EX) (or LOCK_SH when exclusive is false)
// without waiting. It reports false when another open file holds a
// conflicting lock.
func tryLock(f *os.File, exclusive bool) (bool, error) {
	how := syscall.LOCK_SH
	if exclusive {
		how = syscall.LOCK_EX
	}
	for {
		err := syscall.Flock(int(f.Fd()), how|syscall.LOCK_NB)
		switch {
		case err == nil:
			return true, nil
		case errors.Is(err, syscall.EWOULDBLOCK):
			return false, nil
		case errors.Is(err, syscall.EINTR):
			continue
		}
		return false, err
	}
}

func unlockFile(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
}

// oNoFollow makes open refuse a symbolic link (ELOOP).
const oNoFollow = syscall.O_NOFOLLOW
