package cmdutil

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version and Commit are stamped by the Makefile with
// -ldflags "-X github.com/dispatcher-dev/dispatcher/roles/internal/cmdutil.Version=…".
// When they are empty (go install, go run) the module build information
// fills them in.
var (
	Version string
	Commit  string
)

// BuildInfo says what binary this is.
type BuildInfo struct {
	Version   string
	Commit    string
	GoVersion string
}

// Build returns the version, commit and Go version of the running binary.
func Build() BuildInfo {
	b := BuildInfo{Version: Version, Commit: Commit, GoVersion: runtime.Version()}
	if info, ok := debug.ReadBuildInfo(); ok {
		if b.Version == "" && info.Main.Version != "" && info.Main.Version != "(devel)" {
			b.Version = info.Main.Version
		}
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && b.Commit == "" {
				b.Commit = s.Value
			}
		}
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	if len(b.Commit) > 12 {
		b.Commit = b.Commit[:12]
	}
	return b
}

// VersionLine is what --version prints for the program called name, e.g.
// "dispatcher-agent 1.2.0 (commit 3f2a9c1d0b7e, go1.26.8)".
func VersionLine(name string) string {
	b := Build()
	return fmt.Sprintf("%s %s (commit %s, %s)", name, b.Version, b.Commit, b.GoVersion)
}
