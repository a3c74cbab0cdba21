// Package kafka builds Relay's franz-go clients and creates its topics. Every
// client option Relay sets is set here, each with the reason it is set, so the
// services agree on delivery semantics.
package kafka

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kversion"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
	"github.com/twmb/franz-go/plugin/kotel"
	"github.com/twmb/franz-go/plugin/kprom"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/tlsconf"
)

// Config says how to reach the Kafka (or Redpanda) cluster and how to shape
// the topics Relay creates.
type Config struct {
	// Brokers are the seed brokers (RELAY_KAFKA_BROKERS, default localhost:9092).
	Brokers []string
	// TLSConfig, when not nil, turns TLS to the brokers on
	// (RELAY_KAFKA_TLS): the system roots or a private CA
	// (RELAY_KAFKA_TLS_CA_FILE), and a client certificate for mutual TLS
	// (RELAY_KAFKA_TLS_CERT_FILE, RELAY_KAFKA_TLS_KEY_FILE).
	TLSConfig *tls.Config
	// SASLMechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (RELAY_KAFKA_SASL_MECHANISM);
	// empty disables SASL. User and password come from RELAY_KAFKA_SASL_USERNAME
	// and RELAY_KAFKA_SASL_PASSWORD.
	SASLMechanism string
	SASLUsername  string
	SASLPassword  string
	// Partitions is the partition count of topics Relay creates
	// (RELAY_KAFKA_PARTITIONS, default 6). It bounds how many consumers of one
	// group can share the work.
	Partitions int
	// ReplicationFactor of created topics (RELAY_KAFKA_REPLICATION_FACTOR);
	// -1, the default, takes the broker's default.replication.factor.
	ReplicationFactor int
	// EventsRetention is retention.ms of relay.events, relay.deliveries and the
	// retry tiers (RELAY_KAFKA_EVENTS_RETENTION, default 168h).
	EventsRetention time.Duration
	// DLQRetention is retention.ms of relay.dlq (RELAY_KAFKA_DLQ_RETENTION,
	// default 720h): parked deliveries must outlive an operator's holiday.
	DLQRetention time.Duration
	// DialTimeout bounds each connection attempt (RELAY_KAFKA_DIAL_TIMEOUT, default 10s).
	DialTimeout time.Duration
	// SessionTimeout is how long a consumer group member may go silent before
	// the group gives its partitions to others (RELAY_KAFKA_SESSION_TIMEOUT,
	// default 45s): lower means faster failover after a crash, higher means
	// fewer rebalances on a slow network. The broker bounds it
	// (group.min/max.session.timeout.ms).
	SessionTimeout time.Duration
	// TopicPrefix is put before every topic and consumer group name
	// (RELAY_KAFKA_TOPIC_PREFIX, default empty), so several deployments can
	// share one cluster.
	TopicPrefix string
	// Compression is the codec of produced batches (RELAY_KAFKA_COMPRESSION:
	// none, the default, lz4, snappy, zstd or gzip). See ProducerOptions.
	Compression string
	// Linger is how long a produced record waits for others to join its
	// batch (RELAY_KAFKA_LINGER, default 2ms; 0 sends at once). See
	// ProducerOptions and ProduceAndWait.
	Linger time.Duration
	// RetryTiers are the delays of the retry ladder (RELAY_RETRY_TIERS,
	// default 5s,30s,2m,10m,1h,6h). Every service must agree on them, since
	// each tier is its own topic.
	RetryTiers []time.Duration
	// MaxBodyBytes is the largest webhook body Relay accepts
	// (RELAY_MAX_BODY_BYTES, default 1 MiB, from 1 KiB to 64 MiB). Every
	// service reads it because every record carries a body: it sizes the
	// topics' max.message.bytes and the producers' batches (MaxMessageBytes).
	MaxBodyBytes int64
}

// DefaultMaxBodyBytes is RELAY_MAX_BODY_BYTES's default.
const DefaultMaxBodyBytes = 1 << 20

// MaxMessageBytes is the largest record batch Relay produces and the
// max.message.bytes of every topic it creates: one body of MaxBodyBytes
// with all its headers. Producer and topics must agree on it: a batch
// larger than its topic admits is refused by the broker with
// MESSAGE_TOO_LARGE, which no retry cures.
func (c Config) MaxMessageBytes() int {
	return int(c.MaxBodyBytes) + record.HeaderRoom
}

// Names returns the topic and group names of the deployment.
func (c Config) Names() (record.Topics, error) {
	t, err := record.NewTopics(c.TopicPrefix, c.RetryTiers)
	if err != nil {
		return record.Topics{}, fmt.Errorf("RELAY_RETRY_TIERS: %w", err)
	}
	return t, nil
}

// LoadConfig reads the RELAY_KAFKA_* variables.
func LoadConfig(r *envconfig.Reader) Config {
	tlsConfig := tlsconf.Load(r, tlsconf.Vars{
		On: "RELAY_KAFKA_TLS", CA: "RELAY_KAFKA_TLS_CA_FILE", Cert: "RELAY_KAFKA_TLS_CERT_FILE", Key: "RELAY_KAFKA_TLS_KEY_FILE",
	})
	return Config{
		Brokers:           r.List("RELAY_KAFKA_BROKERS", []string{"localhost:9092"}),
		TLSConfig:         tlsConfig,
		SASLMechanism:     strings.ToUpper(r.String("RELAY_KAFKA_SASL_MECHANISM", "")),
		SASLUsername:      r.String("RELAY_KAFKA_SASL_USERNAME", ""),
		SASLPassword:      r.String("RELAY_KAFKA_SASL_PASSWORD", ""),
		Partitions:        r.Int("RELAY_KAFKA_PARTITIONS", 6),
		ReplicationFactor: r.Int("RELAY_KAFKA_REPLICATION_FACTOR", -1),
		EventsRetention:   r.Duration("RELAY_KAFKA_EVENTS_RETENTION", 7*24*time.Hour),
		DLQRetention:      r.Duration("RELAY_KAFKA_DLQ_RETENTION", 30*24*time.Hour),
		DialTimeout:       r.Duration("RELAY_KAFKA_DIAL_TIMEOUT", 10*time.Second),
		SessionTimeout:    r.Duration("RELAY_KAFKA_SESSION_TIMEOUT", 45*time.Second),
		TopicPrefix:       r.String("RELAY_KAFKA_TOPIC_PREFIX", ""),
		Compression:       strings.ToLower(r.String("RELAY_KAFKA_COMPRESSION", "none")),
		Linger:            r.Duration("RELAY_KAFKA_LINGER", 2*time.Millisecond),
		RetryTiers:        r.Durations("RELAY_RETRY_TIERS", record.DefaultTierDelays),
		MaxBodyBytes:      r.Int64("RELAY_MAX_BODY_BYTES", DefaultMaxBodyBytes),
	}
}

// Validate reports every problem with c, each naming its variable.
func (c Config) Validate() error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("RELAY_KAFKA_BROKERS: at least one broker is required"))
	}
	switch c.SASLMechanism {
	case "", "PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512":
	default:
		errs = append(errs, fmt.Errorf("RELAY_KAFKA_SASL_MECHANISM: %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", c.SASLMechanism))
	}
	if c.SASLMechanism != "" && c.SASLUsername == "" {
		errs = append(errs, errors.New("RELAY_KAFKA_SASL_USERNAME: required when RELAY_KAFKA_SASL_MECHANISM is set"))
	}
	if c.Partitions < 1 {
		errs = append(errs, fmt.Errorf("RELAY_KAFKA_PARTITIONS: %d is below 1", c.Partitions))
	}
	if c.ReplicationFactor == 0 || c.ReplicationFactor < -1 {
		errs = append(errs, fmt.Errorf("RELAY_KAFKA_REPLICATION_FACTOR: %d is neither -1 nor positive", c.ReplicationFactor))
	}
	if c.EventsRetention < time.Hour {
		errs = append(errs, fmt.Errorf("RELAY_KAFKA_EVENTS_RETENTION: %v is below 1h", c.EventsRetention))
	}
	if c.DLQRetention < time.Hour {
		errs = append(errs, fmt.Errorf("RELAY_KAFKA_DLQ_RETENTION: %v is below 1h", c.DLQRetention))
	}
	if c.DialTimeout <= 0 {
		errs = append(errs, errors.New("RELAY_KAFKA_DIAL_TIMEOUT: must be positive"))
	}
	if c.SessionTimeout < time.Second {
		errs = append(errs, errors.New("RELAY_KAFKA_SESSION_TIMEOUT: must be at least 1s (brokers refuse under 6s by default)"))
	}
	if c.Linger < 0 || c.Linger > time.Second {
		errs = append(errs, fmt.Errorf("RELAY_KAFKA_LINGER: %v is not between 0 and 1s", c.Linger))
	}
	if _, ok := codecs[c.Compression]; !ok {
		errs = append(errs, fmt.Errorf("RELAY_KAFKA_COMPRESSION: %q is not none, lz4, snappy, zstd or gzip", c.Compression))
	}
	if c.MaxBodyBytes < 1<<10 || c.MaxBodyBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("RELAY_MAX_BODY_BYTES: %d is outside 1 KiB to 64 MiB", c.MaxBodyBytes))
	}
	if _, err := c.Names(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Instrumentation carries what every client is instrumented with. Zero values
// turn the corresponding instrumentation off.
type Instrumentation struct {
	Logger         *slog.Logger
	TracerProvider trace.TracerProvider
	Propagator     propagation.TextMapPropagator
	// Registerer receives franz-go's client metrics (kprom), labelled by client id.
	Registerer prometheus.Registerer
}

// Tracer returns the kotel tracer for a client, or nil without a TracerProvider.
// linkSpans makes consumed records start new traces linked to the producer's,
// which retry tiers use so that a delivery retried for hours is a chain of
// short traces rather than one trace hours long.
func (in Instrumentation) Tracer(clientID, group string, linkSpans bool) *kotel.Tracer {
	if in.TracerProvider == nil {
		return nil
	}
	opts := []kotel.TracerOpt{kotel.TracerProvider(in.TracerProvider), kotel.ClientID(clientID)}
	if in.Propagator != nil {
		opts = append(opts, kotel.TracerPropagator(in.Propagator))
	}
	if group != "" {
		opts = append(opts, kotel.ConsumerGroup(group))
	}
	if linkSpans {
		opts = append(opts, kotel.LinkSpans())
	}
	return kotel.NewTracer(opts...)
}

// BaseOptions are the options of every Relay client.
func BaseOptions(cfg Config, clientID string, in Instrumentation, tracer *kotel.Tracer) []kgo.Opt {
	opts := []kgo.Opt{
		kgo.SeedBrokers(cfg.Brokers...),
		// The client id names the service in broker logs, quotas and kprom labels.
		kgo.ClientID(clientID),
		// Fail a connection attempt in bounded time so readiness and produce
		// deadlines see a dead broker quickly.
		kgo.DialTimeout(cfg.DialTimeout),
		// Relay creates its topics with kadm at start-up; a typo must fail
		// loudly instead of auto-creating a topic nobody reads.
		kgo.UnknownTopicRetries(3),
	}
	if cfg.TLSConfig != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg.TLSConfig))
	}
	switch cfg.SASLMechanism {
	case "PLAIN":
		opts = append(opts, kgo.SASL(plain.Auth{User: cfg.SASLUsername, Pass: cfg.SASLPassword}.AsMechanism()))
	case "SCRAM-SHA-256":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.SASLUsername, Pass: cfg.SASLPassword}.AsSha256Mechanism()))
	case "SCRAM-SHA-512":
		opts = append(opts, kgo.SASL(scram.Auth{User: cfg.SASLUsername, Pass: cfg.SASLPassword}.AsSha512Mechanism()))
	}
	if in.Logger != nil {
		// Warnings and errors only: franz-go's info logs are per-connection chatter.
		opts = append(opts, kgo.WithLogger(slogLogger{in.Logger.With("component", "kafka", "client_id", clientID)}))
	}
	var hooks []kgo.Hook
	if tracer != nil {
		hooks = append(hooks, tracer)
	}
	if in.Registerer != nil {
		// One kprom instance per client, told apart by the client_id label, so
		// several clients of one service can share its registry.
		hooks = append(hooks, kprom.NewMetrics("relay_kafka", kprom.Registerer(in.Registerer), kprom.WithClientLabel()))
	}
	if len(hooks) > 0 {
		opts = append(opts, kgo.WithHooks(hooks...))
	}
	return opts
}

// codecs are the values of RELAY_KAFKA_COMPRESSION.
var codecs = map[string]kgo.CompressionCodec{
	"none": kgo.NoCompression(), "": kgo.NoCompression(),
	"lz4": kgo.Lz4Compression(), "snappy": kgo.SnappyCompression(),
	"zstd": kgo.ZstdCompression(), "gzip": kgo.GzipCompression(),
}

// ProducerOptions are the producer settings every Relay producer uses.
func ProducerOptions(cfg Config) []kgo.Opt {
	return []kgo.Opt{
		// A 2xx from ingest and a "done" mark in deliver both mean "on every
		// in-sync replica": acks=all is what makes an acknowledged event durable.
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// Records produced within the linger share one produce request.
		// Ingest answers senders only once the broker has acknowledged, so
		// the linger is latency every sender waits for; without one, each
		// request or two sends a produce request of its own, which the
		// broker and the producer pay for per request. A linger of a few
		// milliseconds trades that much latency for far fewer requests.
		// ProduceSync would defeat it by draining at once: Relay waits with
		// ProduceAndWait.
		kgo.ProducerLinger(cfg.Linger),
		// Uncompressed by default, as Kafka's own producer: a compressed batch
		// costs CPU three times over, in the producer, in the broker (which
		// decompresses every batch to validate it) and in each of the three
		// consumer groups, where a small machine is bound by CPU. Where the
		// network or the broker's disk is the
		// limit instead, JSON bodies compress well: lz4 or zstd. A codec the
		// broker refuses falls back to none.
		// (Validate refuses an unknown name; franz-go drops the repeated none.)
		kgo.ProducerBatchCompression(codecs[cfg.Compression], kgo.NoCompression()),
		// A batch is one message to the broker, refused for good when it is
		// larger than its topic's max.message.bytes: batches are exactly as
		// large as EnsureTopics makes every topic admit, which is one record
		// of the largest body with its headers (RELAY_MAX_BODY_BYTES).
		kgo.ProducerBatchMaxBytes(int32(cfg.MaxMessageBytes())),
	}
}

// ConsumerOptions are the settings of a group consumer over topics.
func ConsumerOptions(cfg Config, group string, topics ...string) []kgo.Opt {
	session := cfg.SessionTimeout
	if session == 0 {
		session = 45 * time.Second
	}
	return []kgo.Opt{
		kgo.ConsumerGroup(group),
		// How soon a crashed member's partitions move to the others.
		kgo.SessionTimeout(session),
		kgo.ConsumeTopics(topics...),
		// A new group starts at the beginning and an out-of-range offset resets
		// to the earliest record: Relay never skips an accepted event.
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Return a fetch after at most 500ms without data so that resumed
		// partitions (retry tiers pause and resume often) are fetched promptly.
		kgo.FetchMaxWait(500 * time.Millisecond),
		// Records are large-ish (webhook bodies); cap a partition's share of a fetch
		// so one hot partition cannot fill the client's buffer, but never
		// below the largest batch a topic admits.
		kgo.FetchMaxPartitionBytes(int32(max(4<<20, cfg.MaxMessageBytes()))),
		// A consumer that lags holds a fetch it works through and the next,
		// each this large at most: a few MiB keep a core busy, and memory
		// stays flat however far behind it is.
		kgo.FetchMaxBytes(int32(max(8<<20, cfg.MaxMessageBytes()))),
	}
}

// NewClient builds a client from cfg plus extra options.
func NewClient(cfg Config, clientID string, in Instrumentation, tracer *kotel.Tracer, extra ...kgo.Opt) (*kgo.Client, error) {
	opts := append(BaseOptions(cfg, clientID, in, tracer), extra...)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("kafka client %s: %w", clientID, err)
	}
	return cl, nil
}

// TopicSpec describes a topic Relay creates.
type TopicSpec struct {
	Name      string
	Retention time.Duration
}

// Topics returns every topic of a Relay deployment.
func Topics(cfg Config, names record.Topics) []TopicSpec {
	specs := []TopicSpec{
		{Name: names.Events, Retention: cfg.EventsRetention},
		{Name: names.Deliveries, Retention: cfg.EventsRetention},
		{Name: names.DLQ, Retention: cfg.DLQRetention},
	}
	for _, t := range names.Tiers {
		// A tier's records wait up to its delay before they are read; keep them
		// at least four delays so a consumer outage cannot expire a retry.
		ret := cfg.EventsRetention
		if min := 4 * t.Delay; ret < min {
			ret = min
		}
		specs = append(specs, TopicSpec{Name: t.Topic, Retention: ret})
	}
	return specs
}

// Config names EnsureTopics sets and checks.
const (
	configMaxMessageBytes = "max.message.bytes"
	// The largest request Apache Kafka and Redpanda read; a produce request
	// carries at least one whole batch.
	configKafkaRequestMax    = "socket.request.max.bytes"
	configRedpandaRequestMax = "kafka_request_max_bytes"
)

// EnsureTopics creates the topics that do not exist yet and makes every one
// admit Relay's largest record batch (Config.MaxMessageBytes), raising the
// max.message.bytes of a topic created smaller. It is idempotent and safe to
// run from every replica of every service at start-up; Relay never relies on
// broker auto-creation.
func EnsureTopics(ctx context.Context, cl *kgo.Client, cfg Config, specs []TopicSpec) error {
	adm := kadm.NewClient(cl)
	maxMessage := strconv.Itoa(cfg.MaxMessageBytes())
	var existing []string
	for _, s := range specs {
		ret := fmt.Sprint(s.Retention.Milliseconds())
		configs := map[string]*string{
			// Explicit retention: brokers differ in their defaults, and kfake only
			// enforces retention a topic sets.
			"retention.ms": &ret,
			// Deletion, never compaction: records are keyed by event or
			// subscription id, and compaction would drop deliveries.
			"cleanup.policy": kadm.StringPtr("delete"),
			// The producers' batch limit: brokers default to about 1 MiB,
			// which one webhook of RELAY_MAX_BODY_BYTES may exceed alone.
			configMaxMessageBytes: &maxMessage,
		}
		resp, err := adm.CreateTopics(ctx, int32(cfg.Partitions), int16(cfg.ReplicationFactor), configs, s.Name)
		if err != nil {
			return fmt.Errorf("create topic %s: %w", s.Name, err)
		}
		for _, r := range resp {
			switch {
			case errors.Is(r.Err, kerr.TopicAlreadyExists):
				existing = append(existing, s.Name)
			case r.Err != nil:
				return fmt.Errorf("create topic %s: %w", s.Name, r.Err)
			}
		}
	}
	if err := ensureMessageLimits(ctx, adm, cfg, existing); err != nil {
		return err
	}
	return checkBrokerLimit(ctx, adm, cfg)
}

// ensureMessageLimits raises the max.message.bytes of every topic of names
// (topics that existed already) that admits less than Relay's largest batch,
// as a topic created by an earlier version or by hand may; it fails, naming
// the topic and the setting, when a topic cannot be raised.
func ensureMessageLimits(ctx context.Context, adm *kadm.Client, cfg Config, names []string) error {
	if len(names) == 0 {
		return nil
	}
	current, err := describeMessageLimits(ctx, adm, names)
	if err != nil {
		return err
	}
	need := cfg.MaxMessageBytes()
	low := topicsBelow(current, need)
	if len(low) == 0 {
		return nil
	}
	value := strconv.Itoa(need)
	resp, err := adm.AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: configMaxMessageBytes, Value: &value}}, low...)
	if err == nil {
		for _, r := range resp {
			if r.Err != nil {
				err = errors.Join(err, fmt.Errorf("topic %s: %w %s", r.Name, r.Err, r.ErrMessage))
			}
		}
	}
	if err != nil {
		return fmt.Errorf("topics %s admit batches of at most %s bytes, less than the %d that RELAY_MAX_BODY_BYTES=%d needs "+
			"(the body and %d bytes of headers), and raising their max.message.bytes failed: %w; "+
			"raise it on the broker or lower RELAY_MAX_BODY_BYTES", strings.Join(low, ", "), limitsOf(current, low), need, cfg.MaxBodyBytes, record.HeaderRoom, err)
	}
	return nil
}

// topicsBelow returns, sorted, the topics whose max.message.bytes is below
// need. A topic whose limit the broker does not report is taken as is.
func topicsBelow(limits map[string]int, need int) []string {
	var low []string
	for name, v := range limits {
		if v < need {
			low = append(low, name)
		}
	}
	slices.Sort(low)
	return low
}

// describeMessageLimits returns the max.message.bytes of each topic that
// reports one. A topic another replica created a moment ago may not be
// known yet to the broker that answers: it is asked again, for a while.
func describeMessageLimits(ctx context.Context, adm *kadm.Client, names []string) (map[string]int, error) {
	for tries := 0; ; tries++ {
		described, err := adm.DescribeTopicConfigs(ctx, names...)
		if err != nil {
			return nil, fmt.Errorf("describe topic configs: %w", err)
		}
		limits := map[string]int{}
		var unknown error
		for _, rc := range described {
			switch {
			case errors.Is(rc.Err, kerr.UnknownTopicOrPartition):
				unknown = fmt.Errorf("describe topic %s: %w", rc.Name, rc.Err)
			case rc.Err != nil:
				return nil, fmt.Errorf("describe topic %s: %w", rc.Name, rc.Err)
			default:
				if v, ok := configInt(rc.Configs, configMaxMessageBytes); ok {
					limits[rc.Name] = v
				}
			}
		}
		if unknown == nil || tries == 20 {
			return limits, unknown
		}
		select {
		case <-ctx.Done():
			return nil, unknown
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func limitsOf(limits map[string]int, topics []string) string {
	seen := map[int]bool{}
	var vs []string
	for _, t := range topics {
		if v := limits[t]; !seen[v] {
			seen[v] = true
			vs = append(vs, strconv.Itoa(v))
		}
	}
	return strings.Join(vs, " or ")
}

// checkBrokerLimit fails when a broker would refuse a produce request that
// carries one batch of Relay's largest size. A broker that does not say
// what it reads (a restricted principal, a broker of another make) is
// trusted.
func checkBrokerLimit(ctx context.Context, adm *kadm.Client, cfg Config) error {
	brokers, err := adm.ListBrokers(ctx)
	if err != nil || len(brokers) == 0 {
		return nil
	}
	described, err := adm.DescribeBrokerConfigs(ctx, brokers.NodeIDs()...)
	if err != nil {
		return nil
	}
	for _, rc := range described {
		if rc.Err != nil {
			continue
		}
		if err := requestLimitError(rc.Name, rc.Configs, cfg); err != nil {
			return err
		}
	}
	return nil
}

// requestOverhead is room in a produce request for what surrounds its
// batches: the request header, the topic and partition framing.
const requestOverhead = 64 << 10

// requestLimitError reports a broker whose largest request (Apache Kafka's
// socket.request.max.bytes, Redpanda's kafka_request_max_bytes) cannot
// carry one batch of Relay's largest size, naming both settings.
func requestLimitError(broker string, configs []kadm.Config, cfg Config) error {
	for _, name := range []string{configKafkaRequestMax, configRedpandaRequestMax} {
		limit, ok := configInt(configs, name)
		if ok && limit < cfg.MaxMessageBytes()+requestOverhead {
			return fmt.Errorf("broker %s reads requests of at most %d bytes (%s), too few for a batch of %d bytes "+
				"that RELAY_MAX_BODY_BYTES=%d needs; lower RELAY_MAX_BODY_BYTES or raise %s", broker, limit, name, cfg.MaxMessageBytes(), cfg.MaxBodyBytes, name)
		}
	}
	return nil
}

// configInt returns the integer value of config name, if it is there.
func configInt(configs []kadm.Config, name string) (int, bool) {
	for _, c := range configs {
		if c.Key == name && c.Value != nil {
			v, err := strconv.Atoi(*c.Value)
			return v, err == nil
		}
	}
	return 0, false
}

// BrokerVersion guesses the version of the cluster behind cl from its API
// versions, such as "v4.1"; it is what test runs print to show which broker
// they ran against.
func BrokerVersion(ctx context.Context, cl *kgo.Client) (string, error) {
	vs, err := kadm.NewClient(cl).ApiVersions(ctx)
	if err != nil {
		return "", fmt.Errorf("api versions: %w", err)
	}
	for _, v := range vs.Sorted() {
		if v.Err != nil {
			return "", fmt.Errorf("api versions of broker %d: %w", v.NodeID, v.Err)
		}
		return kversion.FromApiVersionsResponse(v.Raw()).VersionGuess(), nil
	}
	return "", errors.New("no brokers in metadata")
}

// slogLogger adapts slog to kgo.Logger at warning level.
type slogLogger struct{ l *slog.Logger }

var _ kgo.Logger = slogLogger{}

func (s slogLogger) Level() kgo.LogLevel { return kgo.LogLevelWarn }

func (s slogLogger) Log(level kgo.LogLevel, msg string, keyvals ...any) {
	lvl := slog.LevelInfo
	switch level {
	case kgo.LogLevelError:
		lvl = slog.LevelError
	case kgo.LogLevelWarn:
		lvl = slog.LevelWarn
	case kgo.LogLevelDebug:
		lvl = slog.LevelDebug
	}
	s.l.Log(context.Background(), lvl, msg, keyvals...)
}

// WarmProducer loads the producer ID that idempotent produces need, before
// the first one: on a broker that has just started, allocating it waits on
// the controller, and the first webhooks would wait with it. A failure is
// only logged: the first produce tries again and reports it.
func WarmProducer(ctx context.Context, cl *kgo.Client, log *slog.Logger) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if _, _, err := cl.ProducerID(ctx); err != nil {
		log.Warn("could not load a producer ID ahead of the first produce", "error", err)
	}
}

// EnsureTopicsRetrying runs EnsureTopics until it succeeds or a minute has
// passed, so a service started alongside its broker waits for it.
func EnsureTopicsRetrying(ctx context.Context, cl *kgo.Client, cfg Config, names record.Topics, log *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	for {
		err := EnsureTopics(ctx, cl, cfg, Topics(cfg, names))
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("create topics (is the broker at %v up?): %w", cfg.Brokers, err)
		}
		log.Warn("creating topics failed, retrying", "error", err)
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// StickyFor partitions records of the given topics stickily, ignoring their
// keys: every record of a batch goes to one partition, the next batch to
// the partition with the fewest records buffered. relay.events keys are
// event ids, unique by construction, so hashing them orders nothing and only
// spreads each small batch over every partition, which costs the broker and
// the producer per batch. A partition that stops draining (its leader died
// and is not yet replaced: its batch stays open, taking records) is left once
// its batch has been open for stuckAfter, and skipped for a while after:
// with one broker of several down, only the records already on its
// partitions wait. Records of other topics keep the default: murmur2 of the
// key, as Java clients and kcat -X partitioner=murmur2_random do.
func StickyFor(linger time.Duration, topics ...string) kgo.Partitioner {
	stuck := 100*time.Millisecond + 4*linger
	return stickyFor{topics: topics, keyed: kgo.StickyKeyPartitioner(nil), stuckAfter: stuck, avoidFor: 10 * time.Second}
}

type stickyFor struct {
	topics               []string
	keyed                kgo.Partitioner
	stuckAfter, avoidFor time.Duration
}

func (p stickyFor) ForTopic(topic string) kgo.TopicPartitioner {
	if slices.Contains(p.topics, topic) {
		return &stickyTopic{cur: -1, stuckAfter: p.stuckAfter, avoidFor: p.avoidFor, now: time.Now, avoid: map[int]time.Time{}, keyed: p.keyed.ForTopic(topic)}
	}
	return p.keyed.ForTopic(topic)
}

// stickyTopic is StickyFor's partitioner of one topic. franz-go calls it
// under a lock of its own, per topic; mu guards it all the same.
type stickyTopic struct {
	mu                   sync.Mutex
	cur                  int       // index among the writable partitions; -1 before the first
	leave                bool      // cur's batch is full or sent: the next record chooses anew
	since                time.Time // when cur's batch began
	stuckAfter, avoidFor time.Duration
	avoid                map[int]time.Time // partitions found stuck, until when they are skipped
	now                  func() time.Time
	backups              []int64
	// keyed places an event with an ordering key: by the murmur2 hash of
	// its record key, among all the partitions, writable or not, so that
	// every event of a key is on one partition, in order.
	keyed kgo.TopicPartitioner
}

// ordered reports whether r is an event with an ordering key.
func ordered(r *kgo.Record) bool {
	for _, h := range r.Headers {
		if h.Key == record.HeaderOrderingKey {
			return true
		}
	}
	return false
}

func (p *stickyTopic) RequiresConsistency(r *kgo.Record) bool { return ordered(r) }

// Partition is not called: franz-go calls PartitionByBackup instead.
func (p *stickyTopic) Partition(r *kgo.Record, n int) int {
	if ordered(r) {
		return p.keyed.Partition(r, n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cap(p.backups) < n {
		p.backups = make([]int64, n)
	}
	p.backups = p.backups[:n]
	clear(p.backups)
	return p.chooseLocked(n)
}

// OnNewBatch: the current partition's batch is full or sent; the next
// record chooses anew.
func (p *stickyTopic) OnNewBatch() {
	p.mu.Lock()
	p.leave = true
	p.mu.Unlock()
}

func (p *stickyTopic) PartitionByBackup(r *kgo.Record, n int, it kgo.TopicBackupIter) int {
	if ordered(r) {
		return p.keyed.Partition(r, n)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if cap(p.backups) < n {
		p.backups = make([]int64, n)
	}
	p.backups = p.backups[:n]
	for it.Rem() > 0 {
		i, b := it.Next()
		p.backups[i] = b
	}
	return p.chooseLocked(n)
}

func (p *stickyTopic) chooseLocked(n int) int {
	now := p.now()
	stuck := p.cur >= 0 && !p.leave && now.Sub(p.since) >= p.stuckAfter
	if stuck {
		p.avoid[p.cur] = now.Add(p.avoidFor)
	}
	for i, until := range p.avoid {
		if !now.Before(until) {
			delete(p.avoid, i)
		}
	}
	next := stickyChoice(p.cur, n, p.leave || stuck, func(i int) (int64, bool) { _, bad := p.avoid[i]; return p.backups[i], bad })
	if p.leave || stuck || next != p.cur {
		p.cur, p.since, p.leave = next, now, false
	}
	return next
}

// stickyChoice is the partition (index among n writable ones) for the next
// record: cur while its batch is open; when leave says its batch is done or
// stuck, the one with the fewest records buffered among those not to be
// avoided (among all, when every one is), searching from the one after cur
// so that ties rotate.
func stickyChoice(cur, n int, leave bool, backup func(int) (int64, bool)) int {
	if cur >= 0 && cur < n && !leave {
		return cur
	}
	best, bestBackup, bestAvoided := -1, int64(0), false
	for k := 1; k <= n; k++ {
		i := (cur + k) % n // cur >= -1, so never negative
		b, avoided := backup(i)
		better := best < 0 || (bestAvoided && !avoided) || (avoided == bestAvoided && b < bestBackup)
		if better {
			best, bestBackup, bestAvoided = i, b, avoided
		}
	}
	return best
}
