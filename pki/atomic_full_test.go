package pki

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// TestWriteFileAtomicKilledMidWrite kills a real process (SIGKILL) half way
// through writing the new content, before the rename: the file holds the
// old content, whole; what is left is a hidden temporary file that no
// reader of the directory's records looks at, and the next write succeeds.
func TestWriteFileAtomicKilledMidWrite(t *testing.T) {
	const env = "PKI_TEST_KILL_MID_WRITE"
	if path := os.Getenv(env); path != "" {
		writeData = func(f *os.File, data []byte) (int, error) {
			_, _ = f.Write(data[:len(data)/2])
			_ = f.Sync()
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
		_ = WriteFileAtomic(path, []byte(`{"hostname":"web-01","serial":"new"}`), 0o640)
		t.Fatal("not killed")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "web-01.json")
	const old = `{"hostname":"web-01","serial":"old"}`
	if err := WriteFileAtomic(path, []byte(old), 0o640); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWriteFileAtomicKilledMidWrite$", "-test.count=1")
	cmd.Env = append(os.Environ(), env+"="+path)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child not killed: %v\n%s", err, out)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != old {
		t.Fatalf("after a kill mid-write: %q, %v; want the old content", got, err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if e.Name() != "web-01.json" && !strings.HasPrefix(e.Name(), ".web-01.json.tmp-") {
			t.Errorf("unexpected file %s", e.Name())
		}
	}
	if err := WriteFileAtomic(path, []byte(`{"hostname":"web-01","serial":"next"}`), 0o640); err != nil {
		t.Fatalf("write after the crash: %v", err)
	}
}
