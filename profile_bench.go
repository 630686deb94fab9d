//go:build benchprofile

package main

import (
	"os"
	"runtime/pprof"
)

// A binary built with -tags benchprofile (make bench builds one for the
// rows that miss their target) writes a CPU profile of the whole process to
// $DISPATCHER_CPUPROFILE when that is set. The shipped binary has no such
// code.
func init() {
	path := os.Getenv("DISPATCHER_CPUPROFILE")
	if path == "" {
		return
	}
	f, err := os.Create(path)
	if err != nil {
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return
	}
	stopProfile = func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
