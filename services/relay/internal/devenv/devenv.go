// Package devenv runs the embedded stand-ins of `relay dev`: franz-go's kfake
// as the Kafka broker, miniredis (or a redis-server child process when state
// must persist) and gofakes3. They serve local development and fast tests;
// CI never uses them in place of the real services.
package devenv

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/johannesboyne/gofakes3"
	"github.com/johannesboyne/gofakes3/backend/s3bolt"
	"github.com/johannesboyne/gofakes3/backend/s3mem"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	bolt "go.etcd.io/bbolt"

	"github.com/relayhq/relay/pkg/lifecycle"
)

// Kafka is an embedded Kafka-protocol broker.
type Kafka struct {
	cluster *kfake.Cluster
	// Addr is the broker's host:port.
	Addr string
}

// StartKafka runs a one-broker kfake cluster on 127.0.0.1:port (0 picks a
// free port). With dataDir it persists its log and group offsets there.
func StartKafka(port int, dataDir string) (*Kafka, error) {
	opts := []kfake.Opt{kfake.NumBrokers(1), kfake.Ports(port), kfake.ClusterID("relay-dev")}
	if dataDir != "" {
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return nil, fmt.Errorf("kafka data dir: %w", err)
		}
		opts = append(opts, kfake.DataDir(dataDir))
	}
	c, err := kfake.NewCluster(opts...)
	if err != nil {
		return nil, fmt.Errorf("embedded kafka on port %d: %w", port, err)
	}
	return &Kafka{cluster: c, Addr: c.ListenAddrs()[0]}, nil
}

// Close stops the broker (flushing its data directory).
func (k *Kafka) Close() { k.cluster.Close() }

// Redis is an embedded or child-process Redis.
type Redis struct {
	// Addr is the server's host:port.
	Addr string
	// Persistent is true when state survives a restart (redis-server with AOF).
	Persistent bool
	stop       func()
}

// StartRedis runs redis-server with AOF in dataDir when dataDir is set and
// redis-server is on the PATH, else an in-memory miniredis.
func StartRedis(ctx context.Context, dataDir string, log *slog.Logger) (*Redis, error) {
	if dataDir != "" {
		if bin, err := exec.LookPath("redis-server"); err == nil {
			return startRedisServer(ctx, bin, dataDir, log)
		}
	}
	m := miniredis.NewMiniRedis()
	if err := m.StartAddr("127.0.0.1:0"); err != nil {
		return nil, fmt.Errorf("embedded redis: %w", err)
	}
	return &Redis{Addr: m.Addr(), stop: m.Close}, nil
}

func startRedisServer(ctx context.Context, bin, dataDir string, log *slog.Logger) (*Redis, error) {
	dir := filepath.Join(dataDir, "redis")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("redis data dir: %w", err)
	}
	port, err := lifecycle.FreePort()
	if err != nil {
		return nil, err
	}
	addr := net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--dir", dir,
		"--appendonly", "yes", "--maxmemory-policy", "noeviction", "--save", "", "--rdbcompression", "no", "--protected-mode", "yes")
	cmd.Stdout, cmd.Stderr = nil, nil
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start redis-server: %w", err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	stop := func() {
		_ = cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	}
	c := redis.NewClient(&redis.Options{Addr: addr})
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if err := c.Ping(ctx).Err(); err == nil {
			break
		} else if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return nil, fmt.Errorf("redis-server did not answer on %s: %w", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	log.Info("redis-server started", "addr", addr, "dir", dir)
	return &Redis{Addr: addr, Persistent: true, stop: stop}, nil
}

// Close stops the server.
func (r *Redis) Close() { r.stop() }

// S3 is an embedded S3-compatible server.
type S3 struct {
	// Endpoint is its base URL.
	Endpoint string
	srv      *http.Server
	ln       net.Listener
	closeDB  func() error
}

// StartS3 serves gofakes3 on addr, in memory or, with dataDir, in a bolt
// file there.
func StartS3(addr, dataDir string) (*S3, error) {
	var backend gofakes3.Backend
	closeDB := func() error { return nil }
	if dataDir != "" {
		if err := os.MkdirAll(dataDir, 0o755); err != nil {
			return nil, fmt.Errorf("s3 data dir: %w", err)
		}
		db, err := bolt.Open(filepath.Join(dataDir, "s3.bolt"), 0o600, &bolt.Options{Timeout: 5 * time.Second})
		if err != nil {
			return nil, fmt.Errorf("embedded s3 store (is another relay dev using %s?): %w", dataDir, err)
		}
		backend, closeDB = s3bolt.New(db), db.Close
	} else {
		backend = s3mem.New()
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		_ = closeDB()
		return nil, fmt.Errorf("embedded s3 on %s: %w", addr, err)
	}
	faker := gofakes3.New(backend, gofakes3.WithAutoBucket(false))
	s := &S3{
		Endpoint: "http://" + ln.Addr().String(),
		ln:       ln,
		srv:      &http.Server{Handler: faker.Server(), ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 90 * time.Second},
		closeDB:  closeDB,
	}
	go func() { _ = s.srv.Serve(ln) }()
	return s, nil
}

// Close stops the server.
func (s *S3) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := s.srv.Shutdown(ctx)
	return errors.Join(err, s.closeDB())
}
