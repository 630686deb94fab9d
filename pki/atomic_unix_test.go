//go:build unix

package pki_test

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// TestWriteFileAtomicModeIgnoresUmask changes the process umask, so it must
// not run in parallel with anything.
func TestWriteFileAtomicModeIgnoresUmask(t *testing.T) {
	modes := []fs.FileMode{0o600, 0o640, 0o644, 0o750, 0o755, 0o666}
	for _, umask := range []int{0o077, 0o022, 0o000} {
		for _, mode := range modes {
			t.Run(fmt.Sprintf("umask %03o mode %v", umask, mode), func(t *testing.T) {
				old := syscall.Umask(umask)
				defer syscall.Umask(old)
				dir := t.TempDir()
				for _, w := range []struct {
					name  string
					write func(string, []byte, os.FileMode) error
				}{
					{"WriteFileAtomic", pki.WriteFileAtomic},
					{"WriteNewFileAtomic", pki.WriteNewFileAtomic},
				} {
					path := filepath.Join(dir, w.name)
					if err := w.write(path, []byte("x"), mode); err != nil {
						t.Fatal(err)
					}
					fi, err := os.Stat(path)
					if err != nil {
						t.Fatal(err)
					}
					if fi.Mode() != mode {
						t.Errorf("%s: mode %v, want %v", w.name, fi.Mode(), mode)
					}
				}
				// Replacing a file of another mode gives the mode asked.
				path := filepath.Join(dir, "WriteFileAtomic")
				if err := os.Chmod(path, 0o777); err != nil {
					t.Fatal(err)
				}
				if err := pki.WriteFileAtomic(path, []byte("y"), mode); err != nil {
					t.Fatal(err)
				}
				if fi, _ := os.Stat(path); fi.Mode() != mode {
					t.Errorf("replace: mode %v, want %v", fi.Mode(), mode)
				}
			})
		}
	}
}

// TestWriteFileAtomicKeepsOwner checks that a file rewritten by root keeps
// its owner and group (agent.key is root:dispatcher 0640, say).
func TestWriteFileAtomicKeepsOwner(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to chown")
	}
	path := filepath.Join(t.TempDir(), "agent.key")
	if err := os.WriteFile(path, []byte("old"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(path, 12345, 23456); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFileAtomic(path, []byte("new"), 0o640); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	st := fi.Sys().(*syscall.Stat_t)
	if st.Uid != 12345 || st.Gid != 23456 || fi.Mode() != 0o640 {
		t.Fatalf("owner %d:%d mode %v, want 12345:23456 0640", st.Uid, st.Gid, fi.Mode())
	}
}
