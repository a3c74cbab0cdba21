package deliver

import (
	"bytes"
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
