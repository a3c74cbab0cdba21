package tlsconf_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/testenv"
	"github.com/relayhq/relay/pkg/tlsconf"
)

func TestLoad(t *testing.T) {
	f := testenv.WriteTLSFiles(t)
	junk := filepath.Join(t.TempDir(), "junk.pem")
	if err := os.WriteFile(junk, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]struct {
		vars             map[string]string
		on, ca, cert     bool
		err, notInErrors string
	}{
		"off":                 {vars: map[string]string{}},
		"system roots":        {vars: map[string]string{"X_TLS": "true"}, on: true},
		"private CA":          {vars: map[string]string{"X_TLS": "true", "X_TLS_CA_FILE": f.CA}, on: true, ca: true},
		"mutual TLS":          {vars: map[string]string{"X_TLS": "true", "X_TLS_CA_FILE": f.CA, "X_TLS_CERT_FILE": f.ClientCert, "X_TLS_KEY_FILE": f.ClientKey}, on: true, ca: true, cert: true},
		"files without TLS":   {vars: map[string]string{"X_TLS_CA_FILE": f.CA}, err: "X_TLS_CA_FILE: is set but X_TLS is not true"},
		"missing CA file":     {vars: map[string]string{"X_TLS": "true", "X_TLS_CA_FILE": "/nonexistent/ca.pem"}, err: "X_TLS_CA_FILE: open /nonexistent/ca.pem"},
		"CA file not PEM":     {vars: map[string]string{"X_TLS": "true", "X_TLS_CA_FILE": junk}, err: "X_TLS_CA_FILE: " + junk + " holds no PEM certificate"},
		"certificate alone":   {vars: map[string]string{"X_TLS": "true", "X_TLS_CERT_FILE": f.ClientCert}, err: "X_TLS_CERT_FILE: and X_TLS_KEY_FILE: set both"},
		"key of another cert": {vars: map[string]string{"X_TLS": "true", "X_TLS_CERT_FILE": f.ClientCert, "X_TLS_KEY_FILE": f.ServerKey}, err: "X_TLS_CERT_FILE: with X_TLS_KEY_FILE: tls: private key does not match public key"},
		// A key file's contents never reach an error.
		"key not PEM": {vars: map[string]string{"X_TLS": "true", "X_TLS_CERT_FILE": f.ClientCert, "X_TLS_KEY_FILE": f.ClientCert}, err: "X_TLS_CERT_FILE: with X_TLS_KEY_FILE", notInErrors: "BEGIN"},
	} {
		t.Run(name, func(t *testing.T) {
			r := envconfig.FromMap(c.vars)
			cfg := tlsconf.Load(r, tlsconf.Vars{On: "X_TLS", CA: "X_TLS_CA_FILE", Cert: "X_TLS_CERT_FILE", Key: "X_TLS_KEY_FILE"})
			err := r.Err()
			if c.err != "" {
				if err == nil || !strings.Contains(err.Error(), c.err) {
					t.Fatalf("error %v, want one containing %q", err, c.err)
				}
				if c.notInErrors != "" && strings.Contains(err.Error(), c.notInErrors) {
					t.Fatalf("error %v shows %q", err, c.notInErrors)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (cfg != nil) != c.on {
				t.Fatalf("config %v, want TLS on %v", cfg, c.on)
			}
			if cfg == nil {
				return
			}
			if (cfg.RootCAs != nil) != c.ca || (len(cfg.Certificates) > 0) != c.cert {
				t.Fatalf("private CA %v, client certificate %v; want %v, %v", cfg.RootCAs != nil, len(cfg.Certificates) > 0, c.ca, c.cert)
			}
		})
	}
}
