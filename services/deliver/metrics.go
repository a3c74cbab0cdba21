package deliver

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayhq/relay/services/deliver/internal/dispatch"
)

// dispatchGauge reports the deliveries queued in memory, waiting for a worker.
func dispatchGauge(d *dispatch.Dispatcher) prometheus.Collector {
	return prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "relay_deliver_queued", Help: "Deliveries queued in memory waiting for a worker (bounded per subscription).",
	}, func() float64 { return float64(d.Queued()) })
}
