// Package tlsconf builds the TLS client settings of Relay's connections to
// Kafka and Redis from PEM files named by environment variables: a CA
// bundle for a cluster whose certificates a private CA signed, and a client
// certificate and key for clusters that require mutual TLS.
package tlsconf

import (
	"crypto/tls"
	"crypto/x509"
	"os"

	"github.com/relayhq/relay/pkg/envconfig"
)

// Vars names the variables of one connection's TLS settings.
type Vars struct {
	// On turns TLS on (true or false).
	On string
	// CA names a PEM bundle of the CAs to verify the server with; without
	// it, the system roots.
	CA string
	// Cert and Key name a PEM client certificate and its key, for mutual TLS.
	Cert, Key string
}

// Load reads the variables v names and returns the client config to use,
// nil when TLS is off. Problems are reported on r,
// naming their variable: an unreadable or unparsable file, a certificate
// without its key (or the reverse), or files given while TLS is off.
func Load(r *envconfig.Reader, v Vars) *tls.Config {
	on := r.Bool(v.On, false)
	caVar, certVar, keyVar := v.CA, v.Cert, v.Key
	ca, cert, key := r.String(caVar, ""), r.String(certVar, ""), r.String(keyVar, "")
	if !on {
		for name, val := range map[string]string{caVar: ca, certVar: cert, keyVar: key} {
			if val != "" {
				r.Fail(name, "is set but %s is not true", v.On)
			}
		}
		return nil
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if ca != "" {
		pem, err := os.ReadFile(ca)
		if err != nil {
			r.Fail(caVar, "%v", err)
		} else {
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				r.Fail(caVar, "%s holds no PEM certificate", ca)
			}
			cfg.RootCAs = pool
		}
	}
	switch {
	case cert != "" && key != "":
		pair, err := tls.LoadX509KeyPair(cert, key)
		if err != nil {
			// The error names the files, never a key's bytes.
			r.Fail(certVar, "with %s: %v", keyVar, err)
		} else {
			cfg.Certificates = []tls.Certificate{pair}
		}
	case cert != "" || key != "":
		r.Fail(certVar, "and %s: set both for a client certificate, or neither", keyVar)
	}
	return cfg
}
