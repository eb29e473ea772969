// Command admin-api is deltaplane's Kong-compatible Admin API: it stores
// entities in Postgres and relays every committed change to cp.changes.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "admin-api:", err)
		os.Exit(1)
	}
}
