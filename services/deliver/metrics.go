package deliver

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayhq/relay/services/deliver/internal/consumer"
	"github.com/relayhq/relay/services/deliver/internal/dispatch"
)

// budgetGauge reports the payload bytes the consumers hold.
func budgetGauge(b *consumer.Budget) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_deliver_inflight_bytes", Help: "Payload bytes of the records being worked on, both consumer groups (bounded by RELAY_DELIVER_MAX_INFLIGHT_BYTES).",
	}, func() float64 { return float64(b.Held()) })
}

// dispatchGauges report the deliveries queued in memory, waiting for a
// worker, and those waiting for room in a full queue.
func dispatchGauges(d *dispatch.Dispatcher) []prometheus.Collector {
	return []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "relay_deliver_queued", Help: "Deliveries queued in memory waiting for a worker (bounded per subscription).",
		}, func() float64 { return float64(d.Queued()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "relay_deliver_backlog_waiting",
			Help: "Deliveries waiting for room in their subscription's full queue instead of being deferred: deliver is behind, and fetches less.",
		}, func() float64 { return float64(d.Waiting()) }),
	}
}
