package kafka

import (
	"cmp"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/record"
)

// LagCollector reports, at scrape time, each Relay consumer group's lag per
// topic (which for the retry group is the backlog of each delay tier), and the
// DLQ depth (records past the redrive group's committed offset), computed
// with kadm.
type LagCollector struct {
	adm    *kadm.Client
	names  record.Topics
	groups []string
	lag    *prometheus.Desc
	depth  *prometheus.Desc
	up     *prometheus.Desc
}

var _ prometheus.Collector = (*LagCollector)(nil)

// NewLagCollector returns a collector querying through cl.
func NewLagCollector(cl *kgo.Client, names record.Topics) *LagCollector {
	return &LagCollector{
		adm:   kadm.NewClient(cl),
		names: names,
		groups: []string{
			names.Group(record.GroupDeliver), names.Group(record.GroupDeliverRetry),
			names.Group(record.GroupArchive), names.Group(record.GroupCount),
		},
		lag:   prometheus.NewDesc("relay_consumer_lag", "Records not yet consumed, by consumer group and topic.", []string{"group", "topic"}, nil),
		depth: prometheus.NewDesc("relay_dlq_depth", "Records in relay.dlq not yet redriven (past the relay-dlq-redrive committed offset).", nil, nil),
		up:    prometheus.NewDesc("relay_lag_scrape_success", "1 when the last lag computation reached the broker.", nil, nil),
	}
}

// Describe implements prometheus.Collector.
func (c *LagCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.lag
	ch <- c.depth
	ch <- c.up
}

// Collect implements prometheus.Collector.
func (c *LagCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	snap, err := c.Snapshot(ctx)
	if err != nil {
		ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 0)
		return
	}
	for _, l := range snap.Lag {
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(l.Lag), l.Group, l.Topic)
	}
	ch <- prometheus.MustNewConstMetric(c.depth, prometheus.GaugeValue, float64(snap.DLQDepth))
	ch <- prometheus.MustNewConstMetric(c.up, prometheus.GaugeValue, 1)
}

// Lag is one consumer group's lag on one topic.
type Lag struct {
	Group string `json:"group"`
	Topic string `json:"topic"`
	Lag   int64  `json:"lag"`
}

// LagSnapshot is each Relay consumer group's lag per topic, in group and
// topic order, and the DLQ's depth.
type LagSnapshot struct {
	Lag      []Lag `json:"consumer_lag"`
	DLQDepth int64 `json:"dlq_depth"`
}

// Snapshot computes the lag of every Relay consumer group and the DLQ's
// depth now.
func (c *LagCollector) Snapshot(ctx context.Context) (LagSnapshot, error) {
	var snap LagSnapshot
	lags, err := c.adm.Lag(ctx, c.groups...)
	if err != nil {
		return snap, err
	}
	for _, g := range c.groups {
		dl, ok := lags[g]
		if !ok {
			continue
		}
		for topic, total := range dl.Lag.TotalByTopic() {
			snap.Lag = append(snap.Lag, Lag{Group: g, Topic: topic, Lag: total.Lag})
		}
	}
	slices.SortFunc(snap.Lag, func(a, b Lag) int { return cmp.Or(cmp.Compare(a.Group, b.Group), cmp.Compare(a.Topic, b.Topic)) })
	ends, err := c.adm.ListEndOffsets(ctx, c.names.DLQ)
	if err != nil {
		return snap, err
	}
	starts, err := c.adm.ListStartOffsets(ctx, c.names.DLQ)
	if err != nil {
		return snap, err
	}
	// No redrive yet means no committed offset: every record is parked.
	committed, err := c.adm.FetchOffsets(ctx, c.names.Group(record.GroupRedrive))
	if err != nil && !errors.Is(err, kerr.GroupIDNotFound) {
		return snap, err
	}
	ends.Each(func(o kadm.ListedOffset) {
		from := int64(0)
		if s, ok := starts.Lookup(o.Topic, o.Partition); ok && s.Err == nil {
			from = s.Offset
		}
		if cm, ok := committed.Lookup(o.Topic, o.Partition); ok && cm.Err == nil && cm.At > from {
			from = cm.At
		}
		if o.Err == nil && o.Offset > from {
			snap.DLQDepth += o.Offset - from
		}
	})
	return snap, nil
}
