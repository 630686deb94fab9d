package pki

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// permBits are the mode bits WriteFileAtomic sets; type bits are ignored.
const permBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// WriteFileAtomic replaces the file at path with data so that a reader (or a
// crash) sees either the old content or the new, never a mix. It writes a
// temporary file in the same directory (created exclusively), sets its mode
// to exactly mode whatever the umask, gives it the owner and group of the
// file it replaces when the process may, syncs it, renames it over path and
// syncs the directory. The temporary file is removed on any failure.
//
// It refuses to write when path is a symbolic link (or anything but a regular
// file): the link is neither followed nor replaced.
func WriteFileAtomic(path string, data []byte, mode os.FileMode) error {
	if path == "" {
		return errors.New("write file: empty path")
	}
	fi, err := os.Lstat(path)
	switch {
	case err == nil:
		if fi.Mode()&fs.ModeSymlink != 0 {
			return fmt.Errorf("refusing to write %s: it is a symbolic link; replace it with the real file or point the configuration at the target", path)
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("refusing to write %s: it is not a regular file", path)
		}
	case errors.Is(err, fs.ErrNotExist):
		fi = nil
	default:
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp, err := writeTemp(path, data, mode, fi)
	if err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("write %s: sync directory: %w", path, err)
	}
	return nil
}

// WriteNewFileAtomic is WriteFileAtomic for a file that must not exist yet.
// The complete temporary file is hard-linked to path, which fails if
// anything (even a dangling symbolic link) is there already, so of several
// writers racing for the same path exactly one wins; the others get an
// error wrapping fs.ErrExist and the file keeps the winner's content.
func WriteNewFileAtomic(path string, data []byte, mode os.FileMode) error {
	if path == "" {
		return errors.New("create file: empty path")
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("create %s: %w", path, fs.ErrExist)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("create %s: %w", path, err)
	}
	tmp, err := writeTemp(path, data, mode, nil)
	if err != nil {
		return err
	}
	linkErr := os.Link(tmp, path)
	rmErr := os.Remove(tmp)
	if linkErr != nil {
		if errors.Is(linkErr, fs.ErrExist) {
			return fmt.Errorf("create %s: %w", path, fs.ErrExist)
		}
		return fmt.Errorf("create %s: %w", path, linkErr)
	}
	if rmErr != nil && !errors.Is(rmErr, fs.ErrNotExist) {
		return fmt.Errorf("create %s: remove temporary file: %w", path, rmErr)
	}
	if err := syncDir(filepath.Dir(path)); err != nil {
		return fmt.Errorf("create %s: sync directory: %w", path, err)
	}
	return nil
}

// writeData writes the content of a temporary file; tests replace it to
// fail like a full disk.
var writeData = func(f *os.File, data []byte) (int, error) { return f.Write(data) }

// writeTemp writes data to a new file beside path and returns its name.
// When like is not nil the file gets like's owner and group if possible.
func writeTemp(path string, data []byte, mode os.FileMode, like fs.FileInfo) (name string, err error) {
	dir, base := filepath.Split(path)
	if len(base) > 100 {
		base = base[:100]
	}
	var f *os.File
	for range 10 {
		var rnd [8]byte
		_, _ = rand.Read(rnd[:])
		name = filepath.Join(dir, "."+base+".tmp-"+hex.EncodeToString(rnd[:]))
		f, err = os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if !errors.Is(err, fs.ErrExist) {
			break
		}
	}
	if err != nil {
		return "", fmt.Errorf("write %s: create temporary file: %w", path, err)
	}
	tmp := name // the returns below set name to ""
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(tmp)
		}
	}()
	if like != nil {
		if err := chownLike(f, like); err != nil {
			return "", fmt.Errorf("write %s: keep owner: %w", path, err)
		}
	}
	// Chmod after chown: chown may clear the set-id bits.
	if err := f.Chmod(mode & permBits); err != nil {
		return "", fmt.Errorf("write %s: set mode: %w", path, err)
	}
	if _, err := writeData(f, data); err != nil {
		return "", fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return "", fmt.Errorf("write %s: sync: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("write %s: close: %w", path, err)
	}
	return name, nil
}
