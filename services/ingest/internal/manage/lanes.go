package manage

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/ordering"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/services/ingest/internal/rest"
)

// Lanes reads and moves the per-key queues of ordered subscriptions
// (lanes.Advancer).
type Lanes interface {
	Head(ctx context.Context, sub, key string) (evt string, since time.Time, ok bool, err error)
	Waiting(ctx context.Context, sub, key string) (int64, error)
	Advance(ctx context.Context, sub, key, evt string) error
}

type laneJSON struct {
	OrderingKey string `json:"ordering_key"`
	// Head is the event being delivered (or parked, holding the key), and
	// HeadStatus its delivery's status; both absent for an idle key.
	Head       string     `json:"head,omitempty"`
	HeadSince  *time.Time `json:"head_since,omitempty"`
	HeadStatus string     `json:"head_status,omitempty"`
	Waiting    int64      `json:"waiting"`
}

// laneOf reads the ordered subscription and the ordering key a lane route
// names (?ordering_key=, since a key may hold any character), answering
// 400 when the subscription is not ordered or the key is missing.
func (a *API) laneOf(c *gin.Context) (catalog.Subscription, string, bool) {
	sub, ok := a.loadSubscription(c)
	if !ok {
		return sub, "", false
	}
	if !sub.Ordered {
		rest.Fail(c, http.StatusBadRequest, "not_ordered", "subscription "+rest.QuoteID(sub.ID)+" is not ordered: its deliveries have no per-key queues")
		return sub, "", false
	}
	switch key := c.Query("ordering_key"); {
	case key == "":
		rest.Invalid(c, "ordering_key", "is required: the key whose queue to read, as the deliveries API shows it")
	case len(key) > ordering.MaxKey:
		rest.Invalid(c, "ordering_key", fmt.Sprintf("is %d bytes; no key is longer than %d (a longer one is kept as its sha256: digest)", len(key), ordering.MaxKey))
	default:
		return sub, key, true
	}
	return sub, "", false
}

// lane answers what the lane of (sub, key) holds now.
func (a *API) lane(c *gin.Context, sub, key string) (laneJSON, bool) {
	ctx := c.Request.Context()
	out := laneJSON{OrderingKey: key}
	head, since, ok, err := a.lanes.Head(ctx, sub, key)
	if err == nil {
		out.Waiting, err = a.lanes.Waiting(ctx, sub, key)
	}
	if err != nil {
		a.storeError(c, "reading the key's queue", err)
		return out, false
	}
	if !ok {
		return out, true
	}
	st, _, err := a.deliveries.Get(ctx, head, sub)
	if err != nil {
		a.storeError(c, "reading the head's delivery", err)
		return out, false
	}
	out.Head, out.HeadSince, out.HeadStatus = head, optTime(since), st.Status
	if out.HeadStatus == "" {
		out.HeadStatus = delivery.StatusPending
	}
	return out, true
}

// getLane is GET /sources/{id}/subscriptions/{id}/lane?ordering_key=…: the
// key's head, since when, its delivery's status, and how many wait.
func (a *API) getLane(c *gin.Context) {
	sub, key, ok := a.laneOf(c)
	if !ok {
		return
	}
	if out, ok := a.lane(c, sub.ID, key); ok {
		c.JSON(http.StatusOK, out)
	}
}

// skipLane is POST …/lane/skip?ordering_key=…: a key whose head is parked
// in the DLQ (under on_failure "block") moves on to its next event without
// the head's redrive, as a discard of that entry would. A head still being
// delivered or retried is refused: skipping it would let the next event
// overtake it. The DLQ entry stays, and a later redrive of it joins the
// key's queue behind what waits.
func (a *API) skipLane(c *gin.Context) {
	sub, key, ok := a.laneOf(c)
	if !ok {
		return
	}
	before, ok := a.lane(c, sub.ID, key)
	if !ok {
		return
	}
	switch {
	case before.Head == "":
		rest.Fail(c, http.StatusConflict, "key_idle", "no event of this key is being delivered or waiting: nothing to skip")
		return
	case before.HeadStatus != delivery.StatusDead:
		rest.Fail(c, http.StatusConflict, "head_not_parked", "the key's head "+rest.QuoteID(before.Head)+" is "+before.HeadStatus+", not parked in the DLQ: only a parked head can be skipped")
		return
	}
	if err := a.lanes.Advance(c.Request.Context(), sub.ID, key, before.Head); err != nil {
		if redisconn.IsUnavailable(err) || redisconn.IsWriteRefused(err) {
			a.storeError(c, "moving the key on", err)
			return
		}
		// Reading the next event back from Kafka, or producing its record:
		// nothing moved, and asking again does it.
		a.log.WarnContext(c.Request.Context(), "moving an ordered key on failed", "subscription_id", sub.ID, "error", err)
		rest.Unavailable(c, "broker_unavailable", "the key's next event could not be read back from Kafka or queued; nothing moved, retry", 5*time.Second)
		return
	}
	a.log.InfoContext(c.Request.Context(), "ordered key moved past its parked head", "subscription_id", sub.ID, "event_id", before.Head)
	if out, ok := a.lane(c, sub.ID, key); ok {
		c.JSON(http.StatusOK, out)
	}
}
