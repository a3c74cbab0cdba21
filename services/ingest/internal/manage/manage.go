// Package manage is ingest's management API: sources, subscriptions, events
// and replay, the DLQ, secret rewrapping and API keys, behind the keys'
// scopes. The inbound hot path is package inbound; the two share only the
// catalog and the conventions of package rest.
package manage

import (
	"context"
	"log/slog"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/counters"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/payloads"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/throttle"
	"github.com/relayhq/relay/services/ingest/internal/dlq"
	"github.com/relayhq/relay/services/ingest/internal/eventstore"
	"github.com/relayhq/relay/services/ingest/internal/keys"
)

// Producer is what the management API needs of a Kafka client: replays
// and redrives produce many records at once, through ProduceSync, which
// sends them without lingering.
type Producer interface {
	kafka.Producer
	ProduceSync(ctx context.Context, rs ...*kgo.Record) kgo.ProduceResults
}

var _ Producer = (*kgo.Client)(nil)

// Sources is the hot path's cache of sources, told when one changes.
type Sources interface {
	Forget(sourceID string)
}

// Config is the management API's share of ingest's configuration.
type Config struct {
	DefaultDedupWindow time.Duration
	RotationGrace      time.Duration
	// WorkBudget bounds one call of a long walk (POST /secrets/rewrap), as
	// RELAY_REDRIVE_BUDGET bounds a redrive, within the write timeout.
	WorkBudget               time.Duration
	AllowPrivateDestinations bool
	// RequireHTTPS refuses subscription URLs that are not https.
	RequireHTTPS bool
	// PublicURL, when set, makes responses carry absolute ingest URLs.
	PublicURL string
	Names     record.Topics
}

// Deps are the stores and clients the management API works with.
type Deps struct {
	Catalog    *catalog.Store
	Sources    Sources
	Events     *eventstore.Store
	Payloads   *payloads.Reader
	Deliveries *delivery.Store
	Counters   *counters.Store
	DLQ        *dlq.Manager
	// Throttle reads each subscription's pause and circuit.
	Throttle *throttle.Store
	// Lanes are ordered subscriptions' per-key queues.
	Lanes Lanes
	// Keys are the scoped API keys.
	Keys     *keys.Store
	Producer Producer
	Logger   *slog.Logger
}

// API serves the management routes.
type API struct {
	cfg        Config
	log        *slog.Logger
	catalog    *catalog.Store
	sources    Sources
	events     *eventstore.Store
	payloads   *payloads.Reader
	deliveries *delivery.Store
	counters   *counters.Store
	dlq        *dlq.Manager
	throttle   *throttle.Store
	lanes      Lanes
	keys       *keys.Store
	producer   Producer
	now        func() time.Time
}

// New returns the management API.
func New(cfg Config, d Deps) *API {
	return &API{
		cfg: cfg, log: d.Logger, catalog: d.Catalog, sources: d.Sources, events: d.Events, payloads: d.Payloads,
		deliveries: d.Deliveries, counters: d.Counters, dlq: d.DLQ, throttle: d.Throttle, lanes: d.Lanes, keys: d.Keys, producer: d.Producer, now: time.Now,
	}
}

// Register adds the management routes to m, which the caller guards with
// the keys' scopes (keys.Decide).
func (a *API) Register(m gin.IRoutes) {
	m.POST("/sources", a.createSource)
	m.GET("/sources", a.listSources)
	m.GET("/sources/:source_id", a.getSource)
	m.PATCH("/sources/:source_id", a.updateSource)
	m.DELETE("/sources/:source_id", a.deleteSource)
	m.POST("/sources/:source_id/rotate-secret", a.rotateSourceSecret)
	m.GET("/sources/:source_id/events", a.listEvents)
	m.GET("/sources/:source_id/events/:event_id", a.getEvent)
	m.GET("/sources/:source_id/events/:event_id/deliveries", a.listDeliveries)
	m.POST("/sources/:source_id/events/:event_id/replay", a.replay)
	m.POST("/sources/:source_id/replay", a.replayRange)
	m.GET("/sources/:source_id/metrics", a.sourceMetrics)
	m.POST("/sources/:source_id/subscriptions", a.createSubscription)
	m.GET("/sources/:source_id/subscriptions", a.listSubscriptions)
	m.GET("/sources/:source_id/subscriptions/:sub_id", a.getSubscription)
	m.PATCH("/sources/:source_id/subscriptions/:sub_id", a.updateSubscription)
	m.DELETE("/sources/:source_id/subscriptions/:sub_id", a.deleteSubscription)
	m.POST("/sources/:source_id/subscriptions/:sub_id/rotate-secret", a.rotateSubscriptionSecret)
	m.GET("/sources/:source_id/subscriptions/:sub_id/lane", a.getLane)
	m.POST("/sources/:source_id/subscriptions/:sub_id/lane/skip", a.skipLane)
	m.GET("/dlq", a.listDLQ)
	m.POST("/replay/dlq", a.redriveDLQ)
	m.POST("/secrets/rewrap", a.rewrapSecrets)
	m.POST("/keys", a.createKey)
	m.GET("/keys", a.listKeys)
	m.GET("/keys/:key_id", a.getKey)
	m.DELETE("/keys/:key_id", a.revokeKey)
}
