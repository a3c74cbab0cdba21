// Package redisconn builds Relay's Redis client. It returns a
// redis.UniversalClient so a single server, Redis Cluster and Sentinel all
// work; every key Relay writes is hash-tagged for Cluster.
package redisconn

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/tlsconf"
)

// Config says how to reach Redis.
type Config struct {
	// Addrs are host:port pairs (RELAY_REDIS_ADDRS, default localhost:6379).
	// Several addresses mean Redis Cluster, or Sentinel when MasterName is set.
	Addrs []string
	// MasterName selects Sentinel mode (RELAY_REDIS_SENTINEL_MASTER).
	MasterName string
	Username   string // RELAY_REDIS_USERNAME
	Password   string // RELAY_REDIS_PASSWORD
	DB         int    // RELAY_REDIS_DB (single server and Sentinel only)
	// TLSConfig, when not nil, turns TLS to Redis on (RELAY_REDIS_TLS): the
	// system roots or a private CA (RELAY_REDIS_TLS_CA_FILE), and a client
	// certificate for mutual TLS (RELAY_REDIS_TLS_CERT_FILE,
	// RELAY_REDIS_TLS_KEY_FILE).
	TLSConfig *tls.Config
	// DialTimeout, ReadTimeout and WriteTimeout bound every network call
	// (RELAY_REDIS_DIAL_TIMEOUT 3s, RELAY_REDIS_READ_TIMEOUT 2s,
	// RELAY_REDIS_WRITE_TIMEOUT 2s): a hung Redis must surface as an error the
	// services handle (fail open at ingest, pause in deliver), not a stall.
	DialTimeout  time.Duration
	ReadTimeout  time.Duration
	WriteTimeout time.Duration
	// PoolSize is the connection pool size per node (RELAY_REDIS_POOL_SIZE, default 64).
	PoolSize int
	// Pipelines is how many shared pipelines a service keeps in flight at
	// once (RELAY_REDIS_PIPELINES, default 1; see Batcher). One makes the
	// largest batches, so the fewest round trips and system calls; more
	// shorten the wait for a busy pipeline where Redis is far away.
	Pipelines int
}

// maxPipelines bounds RELAY_REDIS_PIPELINES.
const maxPipelines = 32

// LoadConfig reads the RELAY_REDIS_* variables.
func LoadConfig(r *envconfig.Reader) Config {
	tlsConfig := tlsconf.Load(r, tlsconf.Vars{
		On: "RELAY_REDIS_TLS", CA: "RELAY_REDIS_TLS_CA_FILE", Cert: "RELAY_REDIS_TLS_CERT_FILE", Key: "RELAY_REDIS_TLS_KEY_FILE",
	})
	return Config{
		Addrs:        r.List("RELAY_REDIS_ADDRS", []string{"localhost:6379"}),
		MasterName:   r.String("RELAY_REDIS_SENTINEL_MASTER", ""),
		Username:     r.String("RELAY_REDIS_USERNAME", ""),
		Password:     r.String("RELAY_REDIS_PASSWORD", ""),
		DB:           r.Int("RELAY_REDIS_DB", 0),
		TLSConfig:    tlsConfig,
		DialTimeout:  r.Duration("RELAY_REDIS_DIAL_TIMEOUT", 3*time.Second),
		ReadTimeout:  r.Duration("RELAY_REDIS_READ_TIMEOUT", 2*time.Second),
		WriteTimeout: r.Duration("RELAY_REDIS_WRITE_TIMEOUT", 2*time.Second),
		PoolSize:     r.Int("RELAY_REDIS_POOL_SIZE", 64),
		Pipelines:    r.Int("RELAY_REDIS_PIPELINES", 1),
	}
}

// Validate reports problems with c, naming their variables.
func (c Config) Validate() error {
	var errs []error
	if len(c.Addrs) == 0 {
		errs = append(errs, errors.New("RELAY_REDIS_ADDRS: at least one address is required"))
	}
	for _, a := range c.Addrs {
		if _, _, err := net.SplitHostPort(a); err != nil {
			errs = append(errs, fmt.Errorf("RELAY_REDIS_ADDRS: %q is not host:port", a))
		}
	}
	if c.DialTimeout <= 0 || c.ReadTimeout <= 0 || c.WriteTimeout <= 0 {
		errs = append(errs, errors.New("RELAY_REDIS_*_TIMEOUT: timeouts must be positive"))
	}
	if c.PoolSize < 1 {
		errs = append(errs, fmt.Errorf("RELAY_REDIS_POOL_SIZE: %d is below 1", c.PoolSize))
	}
	if c.Pipelines < 1 || c.Pipelines > maxPipelines {
		errs = append(errs, fmt.Errorf("RELAY_REDIS_PIPELINES: %d is not between 1 and %d", c.Pipelines, maxPipelines))
	} else if c.Pipelines > c.PoolSize {
		errs = append(errs, fmt.Errorf("RELAY_REDIS_PIPELINES: %d is more than the pool's %d connections (RELAY_REDIS_POOL_SIZE)", c.Pipelines, c.PoolSize))
	}
	return errors.Join(errs...)
}

// New returns a client for c. It does not connect; call Writable to check.
func New(c Config) redis.UniversalClient {
	opts := &redis.UniversalOptions{
		Addrs:        c.Addrs,
		MasterName:   c.MasterName,
		Username:     c.Username,
		Password:     c.Password,
		DB:           c.DB,
		DialTimeout:  c.DialTimeout,
		ReadTimeout:  c.ReadTimeout,
		WriteTimeout: c.WriteTimeout,
		PoolSize:     c.PoolSize,
		// Honour the context deadline of each call as well as the timeouts above.
		ContextTimeoutEnabled: true,
		// Retries are Relay's business (fail open, pause, back off); a client
		// that silently retries three times hides an outage for seconds.
		MaxRetries: 1,
		// RESP2: Relay uses no RESP3 feature (client-side caching, push
		// notifications), and with RESP3 go-redis checks every reply for
		// pending push notifications, a few percent of deliver's CPU.
		Protocol: 2,
	}
	opts.TLSConfig = c.TLSConfig
	return redis.NewUniversalClient(opts)
}

// healthKey is the key Writable writes; it expires by itself.
const healthKey = "relay:health"

// Writable checks that Redis answers within d and accepts a write: a
// PING also succeeds while Redis refuses writes (see IsWriteRefused), which
// to Relay is as good as down.
func Writable(ctx context.Context, c redis.UniversalClient, d time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := c.Set(ctx, healthKey, "ok", time.Minute).Err(); err != nil {
		return fmt.Errorf("redis write check: %w", err)
	}
	return nil
}

// IsUnavailable reports whether err means Redis could not be reached or did
// not answer in time, as opposed to a command error or a missing key. Callers
// fail open or pause on it.
func IsUnavailable(err error) bool {
	if err == nil || errors.Is(err, redis.Nil) {
		return false
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return true
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, redis.ErrClosed) || errors.Is(err, redis.ErrPoolTimeout) {
		return true
	}
	msg := strings.ToUpper(err.Error())
	for _, s := range []string{"CONNECTION REFUSED", "BROKEN PIPE", "CONNECTION RESET", "EOF", "LOADING", "I/O TIMEOUT", "NO SUCH HOST", "CLUSTERDOWN", "TRYAGAIN", "MASTERDOWN"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// IsWriteRefused reports whether Redis answered but refused to write: out of
// memory under noeviction (OOM), a replica after a failover (READONLY), or
// persistence failing (MISCONF). Reads still work; writes fail until an
// operator acts or the failover completes.
func IsWriteRefused(err error) bool {
	for _, prefix := range []string{"OOM", "READONLY", "MISCONF"} {
		if redis.HasErrorPrefix(err, prefix) {
			return true
		}
	}
	return false
}

// RouteLogs sends go-redis's own log lines (dial failures and the like,
// which it otherwise prints to stderr) to log at debug level: Relay reports
// Redis outages itself, once, through its health gates and metrics.
// go-redis keeps this logger process-wide.
func RouteLogs(log *slog.Logger) {
	redis.SetLogger(redisLogger{log.With("component", "go-redis")})
}

type redisLogger struct{ l *slog.Logger }

func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.l.DebugContext(ctx, fmt.Sprintf(format, v...))
}
