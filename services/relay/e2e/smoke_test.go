package e2e

import (
	"bytes"
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/archivefile"
	"github.com/relayhq/relay/pkg/logging"
	demo "github.com/relayhq/relay/services/relay/internal/receiver"
	"github.com/relayhq/relay/services/relay/internal/smoke"
)

// TestSmoke runs `relay smoke` (make smoke) against all four services on the
// real broker, Redis and S3, with the demo receiver.
func TestSmoke(t *testing.T) {
	vars := s3vars(t)
	vars["RELAY_RETRY_TIERS"] = "1s,2s,3s"
	e := startServices(t, services{deliver: true, archive: true, count: true}, vars)
	recv := httptest.NewServer(demo.New(logging.Discard()))
	defer recv.Close()
	reader, err := smoke.ArchiveReader(context.Background(), archivefile.Config{
		Endpoint: vars["RELAY_S3_ENDPOINT"], Bucket: vars["RELAY_S3_BUCKET"], Region: "us-east-1", PathStyle: true, Anonymous: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	res, err := smoke.Run(context.Background(), smoke.Config{
		API: e.api, Token: adminToken, Receiver: recv.URL, Archive: reader, Timeout: 60 * time.Second, Out: &out,
	})
	t.Logf("relay smoke:\n%s", out.String())
	if err != nil {
		t.Fatal(err)
	}
	if res.Steps < 13 {
		t.Fatalf("%d checks ran, want at least the seed's 13", res.Steps)
	}
}
