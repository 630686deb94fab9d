//go:build unix

package agent

import (
	"fmt"
	"os"
	"syscall"
)

// lockDir takes an exclusive flock on dir, waiting for it. Pairing holds it
// while it replaces or concludes the pending material in dir, so that a
// newer request and an older waiting process never remove each other's
// files.
func lockDir(dir string) (unlock func(), err error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return func() {
		_ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}
