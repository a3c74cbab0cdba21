package cli

import (
	"context"
	"fmt"
	"net/url"
	"time"

	"github.com/spf13/cobra"

	"github.com/relayhq/relay/pkg/archivefile"
	"github.com/relayhq/relay/services/relay/internal/smoke"
)

// smokeFlags is relay smoke, which checks a running Relay end to end (make smoke).
func (a *app) smokeFlags(cmd *cobra.Command) runFunc {
	var f apiFlags
	fs := a.apiFlags(cmd, &f)
	recv := fs.String("receiver", envOr(a, "RELAY_RECEIVER_URL", "http://127.0.0.1:8081"), "the demo receiver's URL as Relay reaches it (RELAY_RECEIVER_URL)")
	stats := fs.String("receiver-stats", a.getenv("RELAY_RECEIVER_STATS_URL"), "the receiver's /_stats as this command reaches it (default: --receiver + /_stats)")
	endpoint := fs.String("s3-endpoint", envOr(a, "RELAY_S3_ENDPOINT", "http://127.0.0.1:9000"), "S3 endpoint of the archive (RELAY_S3_ENDPOINT)")
	bucket := fs.String("bucket", envOr(a, "RELAY_S3_BUCKET", "relay-archive"), "archive bucket (RELAY_S3_BUCKET)")
	timeout := fs.Duration("timeout", 90*time.Second, "how long each waiting step may take")
	return func(ctx context.Context, args []string) error {
		cfg := archivefile.Config{
			Endpoint: *endpoint, Bucket: *bucket, Region: envOr(a, "RELAY_S3_REGION", "us-east-1"), PathStyle: true,
			AccessKeyID: a.getenv("RELAY_S3_ACCESS_KEY_ID"), SecretAccessKey: a.getenv("RELAY_S3_SECRET_ACCESS_KEY"),
		}
		if u, err := url.Parse(cfg.Endpoint); err == nil && cfg.AccessKeyID == "" {
			h := u.Hostname()
			cfg.Anonymous = h == "127.0.0.1" || h == "localhost"
		}
		reader, err := smoke.ArchiveReader(ctx, cfg)
		if err != nil {
			return err
		}
		start := time.Now()
		res, err := smoke.Run(ctx, smoke.Config{
			API: f.api, Token: f.token, Receiver: *recv, ReceiverStats: *stats, Archive: reader, Timeout: *timeout, Out: a.out,
		})
		if err != nil {
			return err
		}
		fmt.Fprintf(a.out, "smoke: OK, %d checks passed in %s\n", res.Steps, time.Since(start).Round(time.Second))
		return nil
	}
}
