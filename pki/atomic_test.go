package pki_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/dispatcher-dev/dispatcher/pki"
)

// dirNames lists dir, to show that no temporary file is left behind.
func dirNames(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

func TestWriteFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "agent.crt")
	if err := pki.WriteFileAtomic(path, []byte("one"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteFileAtomic(path, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	type result struct {
		Content string
		Mode    fs.FileMode
		Files   []string
	}
	want := result{"two", 0o600, []string{"agent.crt"}}
	if d := cmp.Diff(want, result{string(got), fi.Mode(), dirNames(t, dir)}); d != "" {
		t.Fatalf("after two writes (-want +got):\n%s", d)
	}
}

func TestWriteFileAtomicRefusesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "shadow")
	if err := os.WriteFile(target, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "agent.key")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	err := pki.WriteFileAtomic(link, []byte("attacker"), 0o644)
	wantErrContains(t, err, "refusing to write "+link+": it is a symbolic link")
	if got, _ := os.ReadFile(target); string(got) != "secret" {
		t.Fatalf("symlink target changed to %q", got)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("symlink replaced: %v %v", fi, err)
	}
	if d := cmp.Diff([]string{"agent.key", "shadow"}, dirNames(t, dir)); d != "" {
		t.Fatalf("files (-want +got):\n%s", d)
	}

	// A dangling symlink is refused too and its target not created.
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), dangling); err != nil {
		t.Fatal(err)
	}
	wantErrContains(t, pki.WriteFileAtomic(dangling, []byte("x"), 0o644), "symbolic link")
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("dangling symlink was followed: %v", err)
	}

	// A directory is not a file.
	sub := filepath.Join(dir, "sub")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	wantErrContains(t, pki.WriteFileAtomic(sub, []byte("x"), 0o644), "not a regular file")
}

func TestWriteFileAtomicMissingDir(t *testing.T) {
	err := pki.WriteFileAtomic(filepath.Join(t.TempDir(), "no", "such", "file"), []byte("x"), 0o644)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("error %v, want one wrapping fs.ErrNotExist", err)
	}
}

func TestWriteNewFileAtomic(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "HOST.json")
	if err := pki.WriteNewFileAtomic(path, []byte(`{"a":1}`), 0o640); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o640 {
		t.Fatalf("mode %v, want 0640", fi.Mode())
	}
	before, _ := os.ReadFile(path)

	err = pki.WriteNewFileAtomic(path, []byte(`{"b":2}`), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second write: %v, want an error wrapping fs.ErrExist", err)
	}
	after, _ := os.ReadFile(path)
	fi2, _ := os.Stat(path)
	if !bytes.Equal(before, after) || fi2.Mode() != 0o640 {
		t.Fatalf("existing file changed to %q mode %v", after, fi2.Mode())
	}
	if d := cmp.Diff([]string{"HOST.json"}, dirNames(t, dir)); d != "" {
		t.Fatalf("files (-want +got):\n%s", d)
	}

	// A symlink, even dangling, counts as existing and is not followed.
	link := filepath.Join(dir, "link")
	if err := os.Symlink(filepath.Join(dir, "nowhere"), link); err != nil {
		t.Fatal(err)
	}
	if err := pki.WriteNewFileAtomic(link, []byte("x"), 0o644); !errors.Is(err, fs.ErrExist) {
		t.Fatalf("write over symlink: %v, want fs.ErrExist", err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nowhere")); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("symlink was followed")
	}
}

func TestWriteNewFileAtomicRace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pairing-request")
	const writers = 16
	errs := make([]error, writers)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range writers {
		wg.Go(func() {
			<-start
			errs[i] = pki.WriteNewFileAtomic(path, []byte(fmt.Sprintf("writer %d", i)), 0o640)
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, err := range errs {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("writers %d and %d both won", winner, i)
		case err == nil:
			winner = i
		case !errors.Is(err, fs.ErrExist):
			t.Fatalf("writer %d: %v, want fs.ErrExist", i, err)
		}
	}
	if winner < 0 {
		t.Fatal("no writer won")
	}
	got, _ := os.ReadFile(path)
	if want := fmt.Sprintf("writer %d", winner); string(got) != want {
		t.Fatalf("file holds %q, want the winner's %q", got, want)
	}
	if d := cmp.Diff([]string{"pairing-request"}, dirNames(t, dir)); d != "" {
		t.Fatalf("files (-want +got):\n%s", d)
	}
}
