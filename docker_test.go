package main

import (
	"os"
	"path/filepath"
	"strconv"

	"github.com/rogpeppe/go-internal/testscript"
)

func init() {
	scriptCmds["repofile"] = cmdRepoFile
}

// repofile SRC DST [MODE]: copy SRC, a file of this repository named
// relative to its root (packaging/docker/entrypoint-agent.sh), to DST in
// the script's work directory, with MODE (octal; default 0644). Scripts
// test shipped files this way instead of a copy that could drift.
func cmdRepoFile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 || len(args) > 3 {
		ts.Fatalf("usage: repofile SRC DST [MODE]")
	}
	if !filepath.IsLocal(args[0]) {
		ts.Fatalf("repofile: %q is not a path inside the repository", args[0])
	}
	mode := uint64(0o644)
	if len(args) == 3 {
		var err error
		if mode, err = strconv.ParseUint(args[2], 8, 32); err != nil {
			ts.Fatalf("bad mode %q: %v", args[2], err)
		}
	}
	// The test runs in the module root, the directory of this file.
	data, err := os.ReadFile(filepath.FromSlash(args[0]))
	ts.Check(err)
	dst := ts.MkAbs(args[1])
	ts.Check(os.MkdirAll(filepath.Dir(dst), 0o755))
	ts.Check(os.WriteFile(dst, data, os.FileMode(mode)))
	ts.Check(os.Chmod(dst, os.FileMode(mode)))
}
