package pki

import (
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// TestWriteFileAtomicDiskFull: a disk that fills up half way through the
// write leaves the old file as it was and no temporary file behind.
func TestWriteFileAtomicDiskFull(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "web-01.json")
	if err := WriteFileAtomic(path, []byte(`{"hostname":"web-01"}`), 0o640); err != nil {
		t.Fatal(err)
	}
	orig := writeData
	t.Cleanup(func() { writeData = orig })
	writeData = func(f *os.File, data []byte) (int, error) {
		n, _ := f.Write(data[:len(data)/2])
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	err := WriteFileAtomic(path, []byte(`{"hostname":"web-01","ip":"10.0.0.1","port":7443}`), 0o640)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("replace on a full disk: %v, want ENOSPC", err)
	}
	err = WriteNewFileAtomic(filepath.Join(dir, "web-02.json"), []byte("{}"), 0o640)
	if !errors.Is(err, syscall.ENOSPC) {
		t.Errorf("new file on a full disk: %v, want ENOSPC", err)
	}
	got, err := os.ReadFile(path)
	if err != nil || string(got) != `{"hostname":"web-01"}` {
		t.Errorf("old file after a failed write: %q, %v", got, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want only web-01.json", names)
	}
}
