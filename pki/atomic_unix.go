//go:build unix

package pki

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

// chownLike gives f the owner and group of like. Lacking the privilege to do
// so is not an error: the file then belongs to the writer, as a new file
// would.
func chownLike(f *os.File, like fs.FileInfo) error {
	st, ok := like.Sys().(*syscall.Stat_t)
	if !ok {
		return nil
	}
	err := f.Chown(int(st.Uid), int(st.Gid))
	if errors.Is(err, fs.ErrPermission) {
		return nil
	}
	return err
}

// syncDir makes a rename or link in dir durable. File systems that cannot
// sync a directory (EINVAL) are tolerated.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, syscall.EINVAL) {
		return err
	}
	return nil
}
