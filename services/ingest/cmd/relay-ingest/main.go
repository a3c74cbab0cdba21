// Command relay-ingest runs one ingest replica. Configuration comes from
// RELAY_* and OTEL_* variables; see docs/configuration.md.
package main

import (
	"context"

	"github.com/relayhq/relay/pkg/boot"
	"github.com/relayhq/relay/services/ingest"
)

func main() {
	boot.Main("relay-ingest", boot.Probe{AddrVar: "RELAY_HTTP_ADDR", DefaultAddr: ":8080"}, func(ctx context.Context, env boot.Env) error {
		cfg, err := ingest.LoadConfig(env.Config)
		if err != nil {
			return err
		}
		svc, err := ingest.New(ctx, cfg, env.Deps)
		if err != nil {
			return err
		}
		env.Logger.Info("ingest listening", "addr", svc.Addr())
		return svc.Run(ctx)
	})
}
