package cli

import (
	"context"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/services/relay/internal/receiver"
)

func (a *app) receiverFlags(cmd *cobra.Command) runFunc {
	fs := cmd.Flags()
	addr := fs.String("addr", "127.0.0.1:8081", "listen address")
	secret := fs.String("secret", a.getenv("RELAY_RECEIVER_SECRET"), "whsec_ secret to verify deliveries with (RELAY_RECEIVER_SECRET); empty: no verification")
	return func(ctx context.Context, args []string) error {
		log := slog.New(slog.NewTextHandler(a.errOut, nil)).With("service", "receiver")
		var secrets []string
		if *secret != "" {
			secrets = append(secrets, *secret)
		}
		srv, err := lifecycle.NewHTTPServer("receiver", *addr, receiver.New(log, secrets...), lifecycle.DefaultHTTPTimeouts(), log)
		if err != nil {
			return err
		}
		fmt.Fprintf(a.out, "Receiver on http://%s/?mode=ok|fail|flaky (GET /_stats for what arrived)\n", srv.Addr())
		return srv.Run(ctx)
	}
}
