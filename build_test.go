package main

import (
	"debug/elf"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"testing"
)

// maxBinarySize is the ceiling for the shipped binary.
const maxBinarySize = 25 << 20

// TestShippedBinary builds the binary as `make build` does and checks what
// an operator relies on after a plain scp: it is static, small, and picks
// its role from the name it is started under, symlinks included.
func TestShippedBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "dispatcher")
	build := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", bin, ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	fi, err := os.Stat(bin)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() >= maxBinarySize {
		t.Errorf("binary is %d bytes, want under %d", fi.Size(), maxBinarySize)
	}

	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP || p.Type == elf.PT_DYNAMIC {
			t.Errorf("binary has a %v program header: it is dynamically linked", p.Type)
		}
	}
	if libs, _ := f.ImportedLibraries(); len(libs) > 0 {
		t.Errorf("binary needs shared libraries %v", libs)
	}

	if err := os.Symlink("dispatcher", filepath.Join(dir, "dispatcher-agent")); err != nil {
		t.Fatal(err)
	}
	agentLine := regexp.MustCompile(`^dispatcher-agent \S+ \(commit \S+, go1\.\d+`)
	for _, argv := range [][]string{
		{filepath.Join(dir, "dispatcher-agent"), "--version"},
		{bin, "agent", "--version"},
		{bin, "agent", "version"},
	} {
		out, err := exec.Command(argv[0], argv[1:]...).Output()
		if err != nil {
			t.Fatalf("%v: %v", argv, err)
		}
		if !agentLine.Match(out) {
			t.Errorf("%v printed %q, want the agent role's version line", argv, out)
		}
	}
}
