package ingest

import (
	"strings"
	"testing"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/secretbox"
)

// The settings that bound memory and replays are checked against each
// other at start-up, each error naming its variable.
func TestConfigBounds(t *testing.T) {
	base := func() map[string]string {
		return map[string]string{"RELAY_ADMIN_TOKEN": token, "RELAY_SECRET_KEY": secretbox.GenerateKey()}
	}
	if _, err := LoadConfig(envconfig.FromMap(base())); err != nil {
		t.Fatalf("defaults: %v", err)
	}
	for _, tc := range []struct {
		set  map[string]string
		name string
	}{
		// Sources that keep the default window and tolerance would take a
		// replay within the tolerance for a new event.
		{map[string]string{"RELAY_DEDUP_WINDOW": "2m"}, "RELAY_DEDUP_WINDOW"},
		{map[string]string{"RELAY_INGEST_MAX_INFLIGHT_BYTES": "1000"}, "RELAY_INGEST_MAX_INFLIGHT_BYTES"},
		{map[string]string{"RELAY_MAX_BODY_BYTES": "100"}, "RELAY_MAX_BODY_BYTES"},
	} {
		vars := base()
		for k, v := range tc.set {
			vars[k] = v
		}
		if _, err := LoadConfig(envconfig.FromMap(vars)); err == nil || !strings.Contains(err.Error(), tc.name) {
			t.Errorf("%v: %v, want an error naming %s", tc.set, err, tc.name)
		}
	}
}
