// Package bench holds the fleet benchmark (issue 10, "make bench"): a
// simulator of thousands of agents in one process (bench/fleetsim) and the
// driver that measures the real binary against it (bench/cmd/fleetbench),
// which writes bench/RESULTS.md.
//
// Nothing here is part of the shipped binary. The simulator runs the real
// agent server of roles/agent; the driver runs the real dispatcher, api and
// agent roles as child processes and measures them from the outside
// (wall time, CPU and peak RSS from the kernel's rusage, /proc for RSS).
package bench
