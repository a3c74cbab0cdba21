// Command relay-archive runs one archive replica. Configuration comes from
// RELAY_*, AWS_* and OTEL_* variables; see docs/configuration.md.
package main

import (
	"context"

	"github.com/relayhq/relay/pkg/boot"
	"github.com/relayhq/relay/services/archive"
)

func main() {
	boot.Main("relay-archive", boot.Probe{AddrVar: "RELAY_ADMIN_ADDR", DefaultAddr: ":9091"}, func(ctx context.Context, env boot.Env) error {
		cfg, err := archive.LoadConfig(env.Config)
		if err != nil {
			return err
		}
		svc, err := archive.New(ctx, cfg, env.Deps)
		if err != nil {
			return err
		}
		env.Logger.Info("archive running", "admin_addr", svc.AdminAddr(), "bucket", cfg.S3.Bucket)
		return svc.Run(ctx)
	})
}
