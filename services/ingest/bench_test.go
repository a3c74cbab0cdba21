package ingest

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/relayhq/relay/pkg/signature"
)

// BenchmarkIngest measures POST /in on the real broker and Redis, closed
// loop with GOMAXPROCS×4 concurrent senders (for profiling the hot path:
// `go test -run '^$' -bench Ingest -cpuprofile cpu.out` under scripts/testenv.sh).
// make bench measures it open loop against a baseline.
func BenchmarkIngest(b *testing.B) {
	h := start(b, nil, "", nil)
	src := h.source("relay")
	pad := strings.Repeat("x", 960)
	var n atomic.Int64
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1024}}
	b.SetParallelism(4)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			body := []byte(fmt.Sprintf(`{"type":"bench","n":%d,"pad":"%s"}`, n.Add(1), pad))
			req, _ := http.NewRequest("POST", h.base+"/in/"+src.ID, bytes.NewReader(body))
			req.Header.Set(signature.HeaderRelaySignature, signature.HexHMAC(src.Secret, body))
			resp, err := client.Do(req)
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 202 {
				b.Errorf("status %d", resp.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
