package main

// stopProfile ends a CPU profile started by a binary built with
// -tags benchprofile (profile_bench.go); in the shipped binary it does
// nothing.
var stopProfile = func() {}
