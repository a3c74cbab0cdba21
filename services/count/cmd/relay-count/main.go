// Command relay-count runs one count replica. Configuration comes from
// RELAY_* and OTEL_* variables; see docs/configuration.md.
package main

import (
	"context"

	"github.com/relayhq/relay/pkg/boot"
	"github.com/relayhq/relay/services/count"
)

func main() {
	boot.Main("relay-count", boot.Probe{AddrVar: "RELAY_ADMIN_ADDR", DefaultAddr: ":9091"}, func(ctx context.Context, env boot.Env) error {
		cfg, err := count.LoadConfig(env.Config)
		if err != nil {
			return err
		}
		svc, err := count.New(ctx, cfg, env.Deps)
		if err != nil {
			return err
		}
		env.Logger.Info("count running", "admin_addr", svc.AdminAddr())
		return svc.Run(ctx)
	})
}
