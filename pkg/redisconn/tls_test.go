package redisconn_test

import (
	"context"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/testenv"
)

// TestMutualTLS: against a redis-server that speaks only TLS and requires a
// client certificate, RELAY_REDIS_TLS_CA_FILE and the client certificate
// variables are what connects, and leaving either out is refused.
func TestMutualTLS(t *testing.T) {
	f := testenv.WriteTLSFiles(t)
	rs := testenv.StartRedisTLS(t, f)
	base := map[string]string{"RELAY_REDIS_ADDRS": rs.Addr, "RELAY_REDIS_TLS": "true", "RELAY_REDIS_DIAL_TIMEOUT": "2s"}
	write := func(extra map[string]string) error {
		t.Helper()
		vars := maps.Clone(base)
		maps.Copy(vars, extra)
		r := envconfig.FromMap(vars)
		cfg := redisconn.LoadConfig(r)
		if err := r.Err(); err != nil {
			t.Fatal(err)
		}
		rdb := redisconn.New(cfg)
		defer rdb.Close()
		return redisconn.Writable(context.Background(), rdb, 5*time.Second)
	}
	ca := map[string]string{"RELAY_REDIS_TLS_CA_FILE": f.CA}
	client := map[string]string{"RELAY_REDIS_TLS_CERT_FILE": f.ClientCert, "RELAY_REDIS_TLS_KEY_FILE": f.ClientKey}
	both := maps.Clone(ca)
	maps.Copy(both, client)
	if err := write(both); err != nil {
		t.Fatalf("with the CA and a client certificate: %v", err)
	}
	if err := write(client); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("without the private CA: %v, want a certificate verification error", err)
	}
	if err := write(ca); err == nil {
		t.Fatal("without a client certificate the server must refuse")
	}
}
