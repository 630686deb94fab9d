package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/dispatcher-dev/dispatcher/roles"
)

func main() { os.Exit(run()) }

// run is main without the exit, shared with the end-to-end tests, which
// start the test binary under each role name.
func run() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer stopProfile()
	return roles.Main(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
}
