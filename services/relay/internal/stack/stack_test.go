package stack

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/secretbox"
	"github.com/relayhq/relay/pkg/testenv"
)

// A stack whose deliver cannot be built closes the ingest it built before:
// its listener is free again (real Kafka and Redis).
func TestNewClosesWhatItBuiltOnFailure(t *testing.T) {
	kcfg := testenv.KafkaConfig(t)
	addr, err := lifecycle.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{
		"RELAY_KAFKA_BROKERS": strings.Join(kcfg.Brokers, ","), "RELAY_KAFKA_TOPIC_PREFIX": kcfg.TopicPrefix,
		"RELAY_REDIS_ADDRS": testenv.RedisAddr(t), "RELAY_ADMIN_TOKEN": strings.Repeat("t", 32), "RELAY_SECRET_KEY": secretbox.GenerateKey(),
		"RELAY_HTTP_ADDR": addr, "RELAY_ADMIN_ADDR": "127.0.0.1:0",
	}
	_, err = New(context.Background(), Options{
		Env: func(service string) envconfig.LookupFunc {
			return func(k string) (string, bool) {
				if service == "deliver" && k == "RELAY_DELIVER_CONCURRENCY" {
					return "nonsense", true
				}
				v, ok := vars[k]
				return v, ok
			}
		},
		Logger:  slog.New(slog.DiscardHandler),
		Deliver: true,
	})
	if err == nil || !strings.Contains(err.Error(), "deliver configuration") {
		t.Fatalf("New = %v, want deliver's configuration refused", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("ingest's listener outlived the failed stack: %v", err)
	}
	ln.Close()
}
