package api

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/counters"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/glob"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/services/ingest/internal/eventstore"
)

type eventJSON struct {
	ID          string    `json:"id"`
	SourceID    string    `json:"source_id"`
	Type        string    `json:"type"`
	ContentType string    `json:"content_type,omitempty"`
	ReceivedAt  time.Time `json:"received_at"`
	Size        int       `json:"size"`
	// ForwardedHeaders are the request headers its source forwards.
	ForwardedHeaders map[string]string `json:"forwarded_headers,omitempty"`
	Payload          json.RawMessage   `json:"payload,omitempty"`
	// PayloadBase64 carries a body that is not JSON.
	PayloadBase64 string `json:"payload_base64,omitempty"`
}

func eventOut(e eventstore.Event) eventJSON {
	out := eventJSON{ID: e.ID, SourceID: e.SourceID, Type: e.Type, ContentType: e.ContentType, ReceivedAt: e.ReceivedAt.UTC(), Size: e.Size}
	if len(e.Forwarded) > 0 {
		out.ForwardedHeaders = make(map[string]string, len(e.Forwarded))
		for _, f := range e.Forwarded {
			out.ForwardedHeaders[f.Name] = f.Value
		}
	}
	if e.Body != nil {
		if json.Valid(e.Body) {
			out.Payload = e.Body
		} else {
			out.PayloadBase64 = base64.StdEncoding.EncodeToString(e.Body)
		}
	}
	return out
}

func (a *API) listEvents(c *gin.Context) {
	src, ok := a.loadSource(c)
	if !ok {
		return
	}
	limit, cursor, ok := pageParams(c)
	if !ok {
		return
	}
	evs, next, err := a.events.List(c.Request.Context(), src.ID, cursor, limit)
	if errors.Is(err, eventstore.ErrBadCursor) {
		invalid(c, "cursor", "is not a cursor returned by this listing")
		return
	}
	if err != nil {
		a.storeError(c, "listing events", err)
		return
	}
	out := list[eventJSON]{Data: []eventJSON{}, NextCursor: next}
	for _, e := range evs {
		out.Data = append(out.Data, eventOut(e))
	}
	c.JSON(http.StatusOK, out)
}

// loadEvent finds an event of the source in the path, or answers 404.
func (a *API) loadEvent(c *gin.Context) (catalog.Source, eventstore.Event, bool) {
	src, ok := a.loadSource(c)
	if !ok {
		return src, eventstore.Event{}, false
	}
	id := c.Param("event_id")
	e, err := a.events.Get(c.Request.Context(), id)
	if errors.Is(err, eventstore.ErrNotFound) || (err == nil && e.SourceID != src.ID) || !ids.Valid(ids.Event, id) {
		fail(c, http.StatusNotFound, "event_not_found", "no event "+quoteID(id)+" on source "+src.ID+" (events are kept for RELAY_EVENT_RETENTION)")
		return src, e, false
	}
	if err != nil {
		a.storeError(c, "reading the event", err)
		return src, e, false
	}
	return src, e, true
}

func (a *API) getEvent(c *gin.Context) {
	_, e, ok := a.loadEvent(c)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, eventOut(e))
}

type deliveryJSON struct {
	SubscriptionID string             `json:"subscription_id"`
	URL            string             `json:"url"`
	Status         string             `json:"status"`
	Attempts       int                `json:"attempts"`
	LastStatusCode int                `json:"last_status_code,omitempty"`
	LastError      string             `json:"last_error,omitempty"`
	LastResponse   string             `json:"last_response,omitempty"`
	NextAttemptAt  *time.Time         `json:"next_attempt_at,omitempty"`
	DeliveredAt    *time.Time         `json:"delivered_at,omitempty"`
	History        []delivery.Attempt `json:"history"`
}

func optTime(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}

// allSubscriptions pages through every subscription of a source.
func (a *API) allSubscriptions(c *gin.Context, src string) ([]catalog.Subscription, bool) {
	var out []catalog.Subscription
	cursor := ""
	for {
		page, err := a.catalog.ListSubscriptions(c.Request.Context(), src, cursor, 500)
		if err != nil {
			a.storeError(c, "listing subscriptions", err)
			return nil, false
		}
		out = append(out, page.Items...)
		if page.Next == "" {
			return out, true
		}
		cursor = page.Next
	}
}

func (a *API) listDeliveries(c *gin.Context) {
	src, e, ok := a.loadEvent(c)
	if !ok {
		return
	}
	subs, ok := a.allSubscriptions(c, src.ID)
	if !ok {
		return
	}
	states, err := a.deliveries.ForEvent(c.Request.Context(), e.ID)
	if err != nil {
		a.storeError(c, "reading deliveries", err)
		return
	}
	out := list[deliveryJSON]{Data: []deliveryJSON{}}
	seen := map[string]bool{}
	add := func(subID, url string, st delivery.State) {
		seen[subID] = true
		d := deliveryJSON{
			SubscriptionID: subID, URL: url, Status: st.Status, Attempts: st.Attempts,
			LastStatusCode: st.LastStatusCode, LastError: st.LastError, LastResponse: st.LastResponse,
			NextAttemptAt: optTime(st.NextAttemptAt), DeliveredAt: optTime(st.DeliveredAt), History: st.History,
		}
		if d.Status == delivery.StatusDelivered {
			d.NextAttemptAt = nil
		}
		if d.History == nil {
			d.History = []delivery.Attempt{}
		}
		out.Data = append(out.Data, d)
	}
	for _, s := range subs {
		if st, ok := states[s.ID]; ok {
			add(s.ID, s.URL, st)
		} else if s.Enabled && glob.MatchAny(s.Events, e.Type) && !s.CreatedAt.After(e.ReceivedAt) {
			add(s.ID, s.URL, delivery.State{Status: delivery.StatusPending})
		}
	}
	// Deliveries to subscriptions deleted since.
	var gone []string
	for id := range states {
		if !seen[id] {
			gone = append(gone, id)
		}
	}
	sort.Strings(gone)
	for _, id := range gone {
		add(id, "", states[id])
	}
	c.JSON(http.StatusOK, out)
}

type skipped struct {
	SubscriptionID string `json:"subscription_id"`
	Reason         string `json:"reason"`
}

type replayResponse struct {
	EventID string    `json:"event_id"`
	Queued  []string  `json:"queued"`
	Skipped []skipped `json:"skipped"`
}

// replay is POST /sources/{id}/events/{event_id}/replay: one record on
// relay.deliveries per enabled, matching subscription not yet delivered (or
// for the one ?subscription_id= names). With ?force=true the delivered ones
// are sent again too: an operator's resend, after an endpoint acknowledged
// what it then lost. Archive and count never see it.
func (a *API) replay(c *gin.Context) {
	var force bool
	switch v := c.Query("force"); v {
	case "", "false":
	case "true":
		force = true
	default:
		invalid(c, "force", fmt.Sprintf("must be true or false, not %s", quoteID(v)))
		return
	}
	src, e, ok := a.loadEvent(c)
	if !ok {
		return
	}
	var subs []catalog.Subscription
	one := c.Query("subscription_id")
	if one != "" {
		sub, _, ok := a.subscriptionOf(c, src, one, false)
		if !ok {
			return
		}
		subs = []catalog.Subscription{sub}
	} else if subs, ok = a.allSubscriptions(c, src.ID); !ok {
		return
	}
	ctx := c.Request.Context()
	resp := replayResponse{EventID: e.ID, Queued: []string{}, Skipped: []skipped{}}
	var targets []catalog.Subscription
	var pairs [][2]string
	for _, s := range subs {
		switch {
		case !glob.MatchAny(s.Events, e.Type):
			// Not one of the event's subscriptions; said only when asked for.
			if one != "" {
				resp.Skipped = append(resp.Skipped, skipped{SubscriptionID: s.ID, Reason: "not_subscribed"})
			}
		case !s.Enabled:
			resp.Skipped = append(resp.Skipped, skipped{SubscriptionID: s.ID, Reason: "disabled"})
		default:
			targets = append(targets, s)
			pairs = append(pairs, [2]string{e.ID, s.ID})
		}
	}
	states, err := a.deliveries.Statuses(ctx, pairs)
	if err != nil {
		a.storeError(c, "reading deliveries", err)
		return
	}
	now := a.now()
	var recs []*kgo.Record
	var reopen [][2]string
	for i, s := range targets {
		if states[i].Status == delivery.StatusDelivered {
			if !force {
				resp.Skipped = append(resp.Skipped, skipped{SubscriptionID: s.ID, Reason: "already_delivered"})
				continue
			}
			reopen = append(reopen, [2]string{e.ID, s.ID})
		}
		d := record.Delivery{
			Event: record.Event{
				ID: e.ID, SourceID: e.SourceID, Type: e.Type, ReceivedAt: e.ReceivedAt, ContentType: e.ContentType,
				Forwarded: e.Forwarded, Body: e.Body,
			},
			SubscriptionID: s.ID, Attempt: states[i].Attempts + 1, NotBefore: now, Origin: record.OriginReplay,
		}
		r := d.Record(a.cfg.Names.Deliveries)
		r.Context = ctx
		recs = append(recs, r)
		resp.Queued = append(resp.Queued, s.ID)
	}
	if len(reopen) > 0 {
		// Before the records exist: deliver drops a record of a pair it finds delivered.
		if failed, err := a.deliveries.Reopen(ctx, reopen, now, now); failed > 0 {
			a.storeError(c, "reopening delivered deliveries for a resend (nothing was queued)", err)
			return
		}
		a.log.InfoContext(ctx, "resending delivered deliveries", "event_id", e.ID, "subscriptions", len(reopen))
	}
	if len(recs) > 0 {
		if err := a.producer.ProduceSync(ctx, recs...).FirstErr(); err != nil {
			a.log.ErrorContext(ctx, "replay produce failed", "event_id", e.ID, "error", err)
			// Some records may be on the topic: a retry queues them again, and
			// each delivery's attempt number lets only one of the two run.
			unavailable(c, "broker_unavailable", "the replay could not be queued in full; retry", 5*time.Second)
			return
		}
		queued := make([][2]string, len(resp.Queued))
		for i, id := range resp.Queued {
			queued[i] = [2]string{e.ID, id}
		}
		// The records are on the topic; a failure here only leaves the
		// deliveries API showing their old status until the attempt settles.
		if failed, err := a.deliveries.ScheduleAll(ctx, queued, now, now); failed > 0 {
			a.log.WarnContext(ctx, "recording replay schedule failed", "event_id", e.ID, "failed", failed, "queued", len(queued), "error", err)
		}
	}
	c.JSON(http.StatusAccepted, resp)
}

type metricsResponse struct {
	Data []counters.DayCount `json:"data"`
}

func (a *API) sourceMetrics(c *gin.Context) {
	src, ok := a.loadSource(c)
	if !ok {
		return
	}
	from, to := c.Query("from"), c.Query("to")
	for name, v := range map[string]string{"from": from, "to": to} {
		if v != "" && !counters.ValidDay(v) {
			invalid(c, name, "must be a day written YYYY-MM-DD")
			return
		}
	}
	if from != "" && to != "" && from > to {
		invalid(c, "from", "is after to")
		return
	}
	data, err := a.counters.Read(c.Request.Context(), src.ID, from, to)
	if err != nil {
		a.storeError(c, "reading counts", err)
		return
	}
	c.JSON(http.StatusOK, metricsResponse{Data: data})
}
