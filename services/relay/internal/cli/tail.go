package cli

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/spf13/cobra"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
)

// tailFlags is relay tail, which follows relay.events straight from Kafka,
// one readable line per event. It reads with a group-less consumer, so it
// never moves any service's offsets.
func (a *app) tailFlags(cmd *cobra.Command) runFunc {
	fs := cmd.Flags()
	brokers := fs.String("brokers", envOr(a, "RELAY_KAFKA_BROKERS", "127.0.0.1:9092"), "seed brokers (RELAY_KAFKA_BROKERS)")
	prefix := fs.String("topic-prefix", a.getenv("RELAY_KAFKA_TOPIC_PREFIX"), "topic prefix (RELAY_KAFKA_TOPIC_PREFIX)")
	fromStart := fs.Bool("from-start", false, "start at the oldest retained event instead of now")
	topic := fs.String("topic", record.TopicEvents, "topic to follow (before the prefix)")
	return func(ctx context.Context, args []string) error {
		start := kgo.NewOffset().AtEnd()
		if *fromStart {
			start = kgo.NewOffset().AtStart()
		}
		// The services' own Kafka settings (RELAY_KAFKA_TLS*, RELAY_KAFKA_SASL_*),
		// so that tail reaches any cluster they do.
		r := envconfig.New(func(k string) (string, bool) { v := a.getenv(k); return v, v != "" })
		cfg := kafka.LoadConfig(r)
		if err := r.Err(); err != nil {
			return err
		}
		cfg.Brokers = strings.Split(*brokers, ",")
		cl, err := kafka.NewClient(cfg, "relay-tail", kafka.Instrumentation{}, nil,
			kgo.ConsumeTopics(*prefix+*topic),
			kgo.ConsumeResetOffset(start),
		)
		if err != nil {
			return err
		}
		defer cl.Close()
		fmt.Fprintf(a.errOut, "following %s on %s (Ctrl-C to stop)\n", *prefix+*topic, *brokers)
		for {
			fetches := cl.PollFetches(ctx)
			if ctx.Err() != nil {
				return nil
			}
			var ferr error
			fetches.EachError(func(t string, p int32, err error) {
				if !errors.Is(err, context.Canceled) {
					ferr = fmt.Errorf("fetch %s/%d: %w", t, p, err)
				}
			})
			if ferr != nil {
				return ferr
			}
			fetches.EachRecord(func(r *kgo.Record) {
				fmt.Fprintln(a.out, tailLine(r))
			})
		}
	}
}

// tailLine renders a record: time, ids, type, and the body on one line.
func tailLine(r *kgo.Record) string {
	body := string(r.Value)
	if !utf8.Valid(r.Value) {
		body = fmt.Sprintf("<%d bytes, not UTF-8>", len(r.Value))
	}
	body = strings.Join(strings.Fields(body), " ")
	if len(body) > 300 {
		body = body[:300] + "…"
	}
	ts := r.Timestamp.Local().Format(time.TimeOnly + ".000")
	if sub := record.Header(r, record.HeaderSubscriptionID); sub != "" {
		return fmt.Sprintf("%s %s %s → %s attempt %s %s %s", ts, record.Header(r, record.HeaderEventID), record.Header(r, record.HeaderEventType), sub,
			record.Header(r, record.HeaderAttempt), record.Header(r, record.HeaderDeadReason), body)
	}
	return fmt.Sprintf("%s %s %s %s %s", ts, record.Header(r, record.HeaderSourceID), record.Header(r, record.HeaderEventID), record.Header(r, record.HeaderEventType), body)
}

func envOr(a *app, name, def string) string {
	if v := a.getenv(name); v != "" {
		return v
	}
	return def
}
