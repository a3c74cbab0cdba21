package deliver

import (
	"bytes"
	"strings"
	"testing"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/secretbox"
)

// Deliver opens subscription secrets with the previous key during a
// RELAY_SECRET_KEY rotation, as ingest does.
func TestLoadConfigReadsThePreviousSecretKey(t *testing.T) {
	current, previous := secretbox.GenerateKey(), secretbox.GenerateKey()
	c, err := LoadConfig(envconfig.FromMap(map[string]string{"RELAY_SECRET_KEY": current, "RELAY_SECRET_KEY_PREVIOUS": previous}))
	if err != nil {
		t.Fatal(err)
	}
	want, _ := secretbox.ParseKey(previous)
	if !bytes.Equal(c.PreviousSecretKey, want) {
		t.Fatal("RELAY_SECRET_KEY_PREVIOUS was not read")
	}
	if _, err := LoadConfig(envconfig.FromMap(map[string]string{"RELAY_SECRET_KEY": current, "RELAY_SECRET_KEY_PREVIOUS": "nope"})); err == nil {
		t.Fatal("a bad RELAY_SECRET_KEY_PREVIOUS was accepted")
	}
}

// RELAY_DELIVERY_PROXY is read as a URL, and a bad one is refused without
// showing it (it may carry the proxy's credentials).
func TestLoadConfigReadsTheDeliveryProxy(t *testing.T) {
	key := secretbox.GenerateKey()
	c, err := LoadConfig(envconfig.FromMap(map[string]string{"RELAY_SECRET_KEY": key, "RELAY_DELIVERY_PROXY": "http://relay:s3cret@egress.internal:4750"}))
	if err != nil || c.DeliveryProxy == nil || c.DeliveryProxy.Host != "egress.internal:4750" {
		t.Fatalf("proxy %v (%v)", c.DeliveryProxy, err)
	}
	for _, bad := range []string{"ftp://user:s3cret@proxy", "s3cret", "http://:s3cret@/"} {
		_, err := LoadConfig(envconfig.FromMap(map[string]string{"RELAY_SECRET_KEY": key, "RELAY_DELIVERY_PROXY": bad}))
		if err == nil || !strings.Contains(err.Error(), "RELAY_DELIVERY_PROXY") || strings.Contains(err.Error(), "s3cret") {
			t.Errorf("RELAY_DELIVERY_PROXY=%q: %v", bad, err)
		}
	}
}

// With the defaults, several slow subscriptions at once, each holding its
// full backlog and concurrency of records, leave room in the records
// deliver works on for every other subscription.
func TestDefaultsLeaveRoomBesideSlowSubscriptions(t *testing.T) {
	c, err := LoadConfig(envconfig.FromMap(map[string]string{"RELAY_SECRET_KEY": secretbox.GenerateKey()}))
	if err != nil {
		t.Fatal(err)
	}
	held := c.SubscriptionBacklog + c.PerSubscription
	if slow := c.MaxInFlightRecords / held; slow < 4 {
		t.Fatalf("RELAY_DELIVER_MAX_INFLIGHT_RECORDS %d leaves room for %d slow subscriptions (backlog %d + concurrency %d each), want at least 4",
			c.MaxInFlightRecords, slow, c.SubscriptionBacklog, c.PerSubscription)
	}
}
