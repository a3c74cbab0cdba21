// Command relay is Relay's single binary for people: `relay dev` runs the
// whole system in one process, `relay receiver` is the demo endpoint, and the
// other commands operate a running Relay through its API and Kafka.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/relayhq/relay/services/relay/internal/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Main(ctx, os.Args[1:])
	stop()
	os.Exit(code)
}
