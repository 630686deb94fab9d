package mantest

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// CheckRenders renders page, a man page in roff, with groff and with man,
// where they are installed, and fails t on any warning.
func CheckRenders(t testing.TB, page string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "page.1")
	if err := os.WriteFile(file, []byte(page), 0o644); err != nil {
		t.Fatal(err)
	}
	if groff, err := exec.LookPath("groff"); err == nil {
		var stderr bytes.Buffer
		cmd := exec.Command(groff, "-man", "-Tutf8", "-ww", "-z", file)
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 {
			t.Errorf("groff -man -ww: %v\n%s", err, stderr.String())
		}
	}
	if man, err := exec.LookPath("man"); err == nil {
		var stdout, stderr bytes.Buffer
		cmd := exec.Command(man, "-l", file)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "MANPAGER=cat", "PAGER=cat", "LC_ALL=C.UTF-8")
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil || stderr.Len() > 0 || !strings.Contains(stdout.String(), "NAME") {
			t.Errorf("man -l: %v\n%s", err, stderr.String())
		}
	}
}
