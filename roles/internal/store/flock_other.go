//go:build !unix

package store

import (
	"errors"
	"os"
)

var errNoFlock = errors.New("host:script locks need flock(2), which this system lacks")

func openLockFile(string) (*os.File, error)     { return nil, errNoFlock }
func openLockFileRead(string) (*os.File, error) { return nil, errNoFlock }
func tryLock(*os.File, bool) (bool, error)      { return false, errNoFlock }
func unlockFile(*os.File) error                 { return errNoFlock }

// oNoFollow: no such flag here; readRecord checks the file it opened.
const oNoFollow = 0
