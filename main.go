package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/dispatcher-dev/dispatcher/roles"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := roles.Main(ctx, os.Args, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
