//go:build race

package main

// raceBuild: the test binary, and so every role the scripts start, runs
// under the race detector, which multiplies memory use; peak-rss checks
// are made by `make test`'s second pass, built without it.
const raceBuild = true
