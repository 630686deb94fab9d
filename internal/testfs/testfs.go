// Package testfs lays down and compares file trees for tests: the
// fixtures a test writes (WriteFiles) and the proof that a command changed
// nothing (Snapshot before and after, compared with cmp.Diff).
package testfs

import (
	"os"
	"path/filepath"
	"testing"
)

// WriteFiles writes each name → content of files under dir with mode,
// creating the directories (0750) it needs.
func WriteFiles(t testing.TB, dir string, files map[string]string, mode os.FileMode) {
	t.Helper()
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), mode); err != nil {
			t.Fatal(err)
		}
	}
}

// Snapshot records every file and directory under dirs: its mode and
// modification time, and a file's content.
func Snapshot(t testing.TB, dirs ...string) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, d := range dirs {
		err := filepath.Walk(d, func(path string, fi os.FileInfo, err error) error {
			if err != nil {
				return err
			}
			v := fi.Mode().String() + " " + fi.ModTime().String()
			if fi.Mode().IsRegular() {
				data, err := os.ReadFile(path)
				if err != nil {
					return err
				}
				v += " " + string(data)
			}
			out[path] = v
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}
