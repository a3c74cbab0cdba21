package cli

import (
	"bytes"
	"strings"
	"testing"
)

// relay dev reads RELAY_LOG_LEVEL and RELAY_LOG_FORMAT like the services do,
// and refuses a value it does not understand before starting anything.
func TestDevRefusesBadLogSettings(t *testing.T) {
	for name, value := range map[string]string{"RELAY_LOG_LEVEL": "loud", "RELAY_LOG_FORMAT": "xml"} {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			a := &app{out: &out, errOut: &errOut, getenv: func(k string) string {
				if k == name {
					return value
				}
				return ""
			}}
			err := a.run("dev")
			if err == nil || !strings.Contains(err.Error(), name) || !strings.Contains(err.Error(), value) {
				t.Fatalf("relay dev with %s=%s: %v, want an error naming both", name, value, err)
			}
		})
	}
}
