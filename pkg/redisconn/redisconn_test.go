package redisconn

import (
	"strings"
	"testing"

	"github.com/relayhq/relay/pkg/envconfig"
)

func TestPipelinesSetting(t *testing.T) {
	if c := LoadConfig(envconfig.FromMap(nil)); c.Pipelines != 1 || c.Validate() != nil {
		t.Fatalf("default: %d pipelines, %v", c.Pipelines, c.Validate())
	}
	if c := LoadConfig(envconfig.FromMap(map[string]string{"RELAY_REDIS_PIPELINES": "4"})); c.Pipelines != 4 || c.Validate() != nil {
		t.Fatalf("4: %d pipelines, %v", c.Pipelines, c.Validate())
	}
	for _, env := range []map[string]string{
		{"RELAY_REDIS_PIPELINES": "0"},
		{"RELAY_REDIS_PIPELINES": "33"},
		{"RELAY_REDIS_PIPELINES": "8", "RELAY_REDIS_POOL_SIZE": "4"},
	} {
		err := LoadConfig(envconfig.FromMap(env)).Validate()
		if err == nil || !strings.Contains(err.Error(), "RELAY_REDIS_PIPELINES") {
			t.Errorf("%v: %v, want an error naming RELAY_REDIS_PIPELINES", env, err)
		}
	}
}
