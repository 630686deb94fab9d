//go:build benchprofile

package main

import (
	"os"
	"runtime"
	"runtime/pprof"
)

// A binary built with -tags benchprofile (make bench builds one for the
// rows that miss their target) writes a CPU profile of the whole process to
// $DISPATCHER_CPUPROFILE and a heap profile at exit to
// $DISPATCHER_MEMPROFILE, when they are set. The shipped binary has no such
// code.
func init() {
	var stops []func()
	if path := os.Getenv("DISPATCHER_CPUPROFILE"); path != "" {
		if f, err := os.Create(path); err == nil {
			if err := pprof.StartCPUProfile(f); err != nil {
				f.Close()
			} else {
				stops = append(stops, func() { pprof.StopCPUProfile(); f.Close() })
			}
		}
	}
	if path := os.Getenv("DISPATCHER_MEMPROFILE"); path != "" {
		stops = append(stops, func() {
			if f, err := os.Create(path); err == nil {
				runtime.GC()
				_ = pprof.Lookup("heap").WriteTo(f, 0)
				f.Close()
			}
		})
	}
	stopProfile = func() {
		for _, stop := range stops {
			stop()
		}
	}
}
