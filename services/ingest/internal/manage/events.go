package manage

import (
	"context"
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
	"github.com/relayhq/relay/pkg/filter"
	"github.com/relayhq/relay/pkg/glob"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/payloads"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/services/ingest/internal/eventstore"
	"github.com/relayhq/relay/services/ingest/internal/rest"
)

type eventJSON struct {
	ID          string    `json:"id"`
	SourceID    string    `json:"source_id"`
	Type        string    `json:"type"`
	ContentType string    `json:"content_type,omitempty"`
	ReceivedAt  time.Time `json:"received_at"`
	Size        int       `json:"size"`
	OrderingKey string    `json:"ordering_key,omitempty"`
	// ForwardedHeaders are the request headers its source forwards.
	ForwardedHeaders map[string]string `json:"forwarded_headers,omitempty"`
	Payload          json.RawMessage   `json:"payload,omitempty"`
	// PayloadBase64 carries a body that is not JSON.
	PayloadBase64 string `json:"payload_base64,omitempty"`
	// PayloadExpired says the body is gone: past Kafka's retention and not
	// in the archive.
	PayloadExpired bool `json:"payload_expired,omitempty"`
}

// eventOut is an event's metadata, as a listing shows it.
func eventOut(e eventstore.Event) eventJSON {
	return eventJSON{ID: e.ID, SourceID: e.SourceID, Type: e.Type, ContentType: e.ContentType, ReceivedAt: e.ReceivedAt.UTC(), Size: e.Size, OrderingKey: e.OrderingKey}
}

// withPayload adds an event's body and forwarded headers; nil p says the
// body expired.
func (out eventJSON) withPayload(p *payloads.Payload) eventJSON {
	if p == nil {
		out.PayloadExpired = true
		return out
	}
	if len(p.Forwarded) > 0 {
		out.ForwardedHeaders = make(map[string]string, len(p.Forwarded))
		for _, f := range p.Forwarded {
			out.ForwardedHeaders[f.Name] = f.Value
		}
	}
	if json.Valid(p.Body) {
		out.Payload = p.Body
	} else {
		out.PayloadBase64 = base64.StdEncoding.EncodeToString(p.Body)
	}
	return out
}

// ref is where the payloads reader finds e.
func ref(e eventstore.Event) payloads.Ref {
	return payloads.Ref{ID: e.ID, SourceID: e.SourceID, ReceivedAt: e.ReceivedAt, Partition: e.Partition, Offset: e.Offset}
}

// payloadOf returns e's payload, nil when it expired; it answers 503 itself
// (ok false) when Kafka or the archive could not be asked. An event an
// earlier version stored carries its payload.
func (a *API) payloadOf(c *gin.Context, e eventstore.Event) (*payloads.Payload, bool) {
	if !e.Located {
		return &payloads.Payload{Body: e.Body, Forwarded: e.Forwarded}, true
	}
	p, err := a.payloads.Get(c.Request.Context(), ref(e))
	if errors.Is(err, payloads.ErrExpired) {
		return nil, true
	}
	if err != nil {
		a.payloadUnavailable(c, err)
		return nil, false
	}
	return &p, true
}

// payloadUnavailable answers 503 for a payload a store could not give.
func (a *API) payloadUnavailable(c *gin.Context, err error) {
	a.log.WarnContext(c.Request.Context(), "reading a payload failed", "error", err)
	if errors.Is(err, payloads.ErrArchiveUnavailable) {
		rest.Unavailable(c, "archive_unavailable", "the event's payload is only in the archive, which cannot be read right now; retry shortly", 5*time.Second)
		return
	}
	rest.Unavailable(c, "kafka_unavailable", "the event's payload cannot be read from Kafka right now; retry shortly", 5*time.Second)
}

func (a *API) listEvents(c *gin.Context) {
	src, ok := a.loadSource(c)
	if !ok {
		return
	}
	limit, cursor, ok := rest.PageParams(c)
	if !ok {
		return
	}
	f := eventstore.Filter{Type: c.Query("type")}
	if f.From, ok = timeQuery(c, "from", time.Time{}); !ok {
		return
	}
	if f.To, ok = timeQuery(c, "to", time.Time{}); !ok {
		return
	}
	if !f.From.IsZero() && !f.To.IsZero() && !f.From.Before(f.To) {
		rest.Invalid(c, "from", "is not before to")
		return
	}
	evs, next, err := a.events.List(c.Request.Context(), src.ID, f, cursor, limit)
	if errors.Is(err, eventstore.ErrBadCursor) {
		rest.Invalid(c, "cursor", "is not a cursor returned by this listing")
		return
	}
	if err != nil {
		a.storeError(c, "listing events", err)
		return
	}
	out := rest.List[eventJSON]{Data: []eventJSON{}, NextCursor: next}
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
	if !ids.Valid(ids.Event, id) {
		rest.Fail(c, http.StatusNotFound, "event_not_found", "no event "+rest.QuoteID(id)+" on source "+src.ID+" (events are kept for RELAY_EVENT_RETENTION)")
		return src, eventstore.Event{}, false
	}
	e, err := a.events.Get(c.Request.Context(), src.ID, id)
	if errors.Is(err, eventstore.ErrNotFound) {
		rest.Fail(c, http.StatusNotFound, "event_not_found", "no event "+rest.QuoteID(id)+" on source "+src.ID+" (events are kept for RELAY_EVENT_RETENTION)")
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
	p, ok := a.payloadOf(c, e)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, eventOut(e).withPayload(p))
}

type deliveryJSON struct {
	SubscriptionID string     `json:"subscription_id"`
	URL            string     `json:"url"`
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	LastStatusCode int        `json:"last_status_code,omitempty"`
	LastError      string     `json:"last_error,omitempty"`
	LastResponse   string     `json:"last_response,omitempty"`
	NextAttemptAt  *time.Time `json:"next_attempt_at,omitempty"`
	DeliveredAt    *time.Time `json:"delivered_at,omitempty"`
	// OrderingKey is set for a delivery of an ordered subscription, and
	// Behind, while it waits, names the event it waits behind.
	OrderingKey string             `json:"ordering_key,omitempty"`
	Behind      string             `json:"behind,omitempty"`
	History     []delivery.Attempt `json:"history"`
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
	out := rest.List[deliveryJSON]{Data: []deliveryJSON{}}
	seen := map[string]bool{}
	add := func(sub catalog.Subscription, st delivery.State) {
		seen[sub.ID] = true
		d := deliveryJSON{
			SubscriptionID: sub.ID, URL: sub.URL, Status: st.Status, Attempts: st.Attempts,
			LastStatusCode: st.LastStatusCode, LastError: st.LastError, LastResponse: st.LastResponse,
			NextAttemptAt: optTime(st.NextAttemptAt), DeliveredAt: optTime(st.DeliveredAt), History: st.History,
			Behind: st.Behind,
		}
		if sub.Ordered {
			d.OrderingKey = e.OrderingKey
		}
		if d.Status == delivery.StatusDelivered {
			d.NextAttemptAt = nil
		}
		if d.History == nil {
			d.History = []delivery.Attempt{}
		}
		out.Data = append(out.Data, d)
	}
	var in *filter.Input // the event as filters see it, once one needs it
	for _, s := range subs {
		if st, ok := states[s.ID]; ok {
			add(s, st)
			continue
		}
		if !s.Enabled || !glob.MatchAny(s.Events, e.Type) || s.CreatedAt.After(e.ReceivedAt) {
			continue
		}
		if s.Filter != "" && in == nil {
			p, ok := a.payloadOf(c, e)
			if !ok {
				return
			}
			if p == nil {
				// Past Kafka's retention and not archived: no filter can
				// say, and no delivery can be made.
				add(s, delivery.State{Status: delivery.StatusPending})
				continue
			}
			e.Body, e.Forwarded = p.Body, p.Forwarded
			in = filter.NewInput(eventRecord(&e))
		}
		if s.Filter != "" && !catalog.Matches(c.Request.Context(), s.Filter, in) {
			add(s, delivery.State{Status: statusFiltered})
			continue
		}
		add(s, delivery.State{Status: delivery.StatusPending})
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
		add(catalog.Subscription{ID: id}, states[id])
	}
	c.JSON(http.StatusOK, out)
}

// statusFiltered is the status the deliveries API shows for a subscription
// whose patterns match an event its filter does not: no delivery exists.
const statusFiltered = "filtered"

// eventRecord is e as a record carries it, payload included.
func eventRecord(e *eventstore.Event) record.Event {
	return record.Event{
		ID: e.ID, SourceID: e.SourceID, Type: e.Type, ReceivedAt: e.ReceivedAt, ContentType: e.ContentType,
		Forwarded: e.Forwarded, OrderingKey: e.OrderingKey, Body: e.Body,
	}
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

// replayForce reads the force parameter of the replay routes.
func replayForce(c *gin.Context) (bool, bool) {
	switch v := c.Query("force"); v {
	case "", "false":
		return false, true
	case "true":
		return true, true
	default:
		rest.Invalid(c, "force", fmt.Sprintf("must be true or false, not %s", rest.QuoteID(v)))
		return false, false
	}
}

// replayTargets returns the subscriptions a replay of src goes to: the one
// ?subscription_id= names (named is true), else all of them.
func (a *API) replayTargets(c *gin.Context, src catalog.Source) (subs []catalog.Subscription, named, ok bool) {
	if one := c.Query("subscription_id"); one != "" {
		sub, _, ok := a.subscriptionOf(c, src, one, false)
		return []catalog.Subscription{sub}, true, ok
	}
	subs, ok = a.allSubscriptions(c, src.ID)
	return subs, false, ok
}

// replayBatch is what a replay of some events decided: the records to put
// on relay.deliveries, which of their deliveries are delivered ones to
// reopen first (a forced replay), and what it skipped.
type replayBatch struct {
	recs    []*kgo.Record
	queued  [][2]string // (event, subscription) of each record
	reopen  [][2]string
	skipped []skipped
}

// planReplay decides the replay of events to subs: one record per enabled
// subscription whose patterns match an event's type, whose filter (if any)
// matches the event, and that is not yet delivered it (or, with force, is).
// A subscription whose patterns do not match is reported only when it was
// named; one whose filter does not, always (filtered).
func (a *API) planReplay(ctx context.Context, events []eventstore.Event, subs []catalog.Subscription, named, force bool, now time.Time) (replayBatch, error) {
	var b replayBatch
	type target struct {
		e *eventstore.Event
		s catalog.Subscription
	}
	var targets []target
	var pairs [][2]string
	for i := range events {
		e := &events[i]
		var in *filter.Input
		for _, s := range subs {
			if s.Filter != "" && in == nil {
				in = filter.NewInput(eventRecord(e))
			}
			switch {
			case !glob.MatchAny(s.Events, e.Type):
				if named {
					b.skipped = append(b.skipped, skipped{s.ID, "not_subscribed"})
				}
			case !s.Enabled:
				b.skipped = append(b.skipped, skipped{s.ID, "disabled"})
			case s.Filter != "" && !catalog.Matches(ctx, s.Filter, in):
				b.skipped = append(b.skipped, skipped{s.ID, "filtered"})
			default:
				targets = append(targets, target{e, s})
				pairs = append(pairs, [2]string{e.ID, s.ID})
			}
		}
	}
	states, err := a.deliveries.Statuses(ctx, pairs)
	if err != nil {
		return b, err
	}
	for i, t := range targets {
		if states[i].Status == delivery.StatusDelivered {
			if !force {
				b.skipped = append(b.skipped, skipped{t.s.ID, "already_delivered"})
				continue
			}
			b.reopen = append(b.reopen, pairs[i])
		}
		d := record.Delivery{
			Event:          eventRecord(t.e),
			SubscriptionID: t.s.ID, Attempt: states[i].Attempts + 1, NotBefore: now, Origin: record.OriginReplay,
		}
		r := d.Record(a.cfg.Names.Deliveries)
		r.Context = ctx
		b.recs = append(b.recs, r)
		b.queued = append(b.queued, pairs[i])
	}
	return b, nil
}

// errReplayProduce means the broker did not take every record of a replay.
var errReplayProduce = errors.New("replay produce failed")

// runReplay carries a planned replay out: delivered deliveries are reopened
// before any record exists (deliver drops a record of a pair it finds
// delivered), then the records are produced, then their schedule recorded.
// A failed reopen queues nothing; a failed produce may have queued part,
// which repeating the replay makes whole: each record carries its
// delivery's next attempt number, so only one of two copies is attempted.
func (a *API) runReplay(ctx context.Context, b replayBatch, now time.Time) error {
	if len(b.reopen) > 0 {
		if failed, err := a.deliveries.Reopen(ctx, b.reopen, now, now); failed > 0 {
			return fmt.Errorf("reopening delivered deliveries for a resend: %w", err)
		}
		a.log.InfoContext(ctx, "resending delivered deliveries", "deliveries", len(b.reopen))
	}
	if len(b.recs) == 0 {
		return nil
	}
	if err := a.producer.ProduceSync(ctx, b.recs...).FirstErr(); err != nil {
		return fmt.Errorf("%w: %w", errReplayProduce, err)
	}
	// The records are on the topic; a failure here only leaves the
	// deliveries API showing their old status until the attempt settles.
	if failed, err := a.deliveries.ScheduleAll(ctx, b.queued, now, now); failed > 0 {
		a.log.WarnContext(ctx, "recording replay schedule failed", "failed", failed, "queued", len(b.queued), "error", err)
	}
	return nil
}

// replayEvents plans and runs the replay of events to subs, answering a
// failure itself (ok false).
func (a *API) replayEvents(c *gin.Context, events []eventstore.Event, subs []catalog.Subscription, named, force bool, now time.Time) (replayBatch, bool) {
	ctx := c.Request.Context()
	b, err := a.planReplay(ctx, events, subs, named, force, now)
	if err != nil {
		a.storeError(c, "reading deliveries", err)
		return b, false
	}
	switch err := a.runReplay(ctx, b, now); {
	case errors.Is(err, errReplayProduce):
		a.log.ErrorContext(ctx, "replay produce failed", "error", err)
		rest.Unavailable(c, "broker_unavailable", "the replay could not be queued in full; retry", 5*time.Second)
		return b, false
	case err != nil:
		a.storeError(c, "queueing the replay (nothing was queued)", err)
		return b, false
	}
	return b, true
}

// replay is POST /sources/{id}/events/{event_id}/replay: one record on
// relay.deliveries per enabled, matching subscription not yet delivered (or
// for the one ?subscription_id= names). With ?force=true the delivered ones
// are sent again too: an operator's resend, after an endpoint acknowledged
// what it then lost. Archive and count never see it.
func (a *API) replay(c *gin.Context) {
	force, ok := replayForce(c)
	if !ok {
		return
	}
	src, e, ok := a.loadEvent(c)
	if !ok {
		return
	}
	subs, named, ok := a.replayTargets(c, src)
	if !ok {
		return
	}
	p, ok := a.payloadOf(c, e)
	if !ok {
		return
	}
	if p == nil {
		rest.Fail(c, http.StatusGone, "payload_expired", "event "+e.ID+"'s payload is past Kafka's retention and not in the archive: it cannot be sent again")
		return
	}
	e.Body, e.Forwarded = p.Body, p.Forwarded
	b, ok := a.replayEvents(c, []eventstore.Event{e}, subs, named, force, a.now())
	if !ok {
		return
	}
	resp := replayResponse{EventID: e.ID, Queued: []string{}, Skipped: []skipped{}}
	for _, q := range b.queued {
		resp.Queued = append(resp.Queued, q[1])
	}
	resp.Skipped = append(resp.Skipped, b.skipped...)
	c.JSON(http.StatusAccepted, resp)
}

type rangeReplayResponse struct {
	// Events is how many events of the range this call went through.
	Events int `json:"events"`
	// Queued counts the deliveries put on relay.deliveries.
	Queued int `json:"queued"`
	// Skipped counts the deliveries not queued, by reason.
	Skipped    map[string]int `json:"skipped"`
	Complete   bool           `json:"complete"`
	NextCursor string         `json:"next_cursor,omitempty"`
}

// A range replay reads and queues at most rangeReplayPage events at a time,
// and no more of them than fit in rangeReplayBytes as stored: a page's
// payloads are held in memory until the broker has them, and this replica
// serves webhooks meanwhile. With RELAY_MAX_BODY_BYTES at its 1 MiB default,
// 200 events could otherwise hold 200 MiB.
const (
	rangeReplayPage  = 200
	rangeReplayBytes = 16 << 20
)

// replayRange is POST /sources/{id}/replay?from=…[&to=…]: what replay does
// for one event, for every event of the source received in [from, to)
// (to: now), oldest first, as the events API still holds them
// (RELAY_EVENT_RETENTION). It catches up a subscription that was disabled
// or broken, or gives a new one the recent past. One call works for at
// most RELAY_REDRIVE_BUDGET, then answers next_cursor to continue from.
func (a *API) replayRange(c *gin.Context) {
	force, ok := replayForce(c)
	if !ok {
		return
	}
	now := a.now()
	from, ok := timeQuery(c, "from", time.Time{})
	if !ok {
		return
	}
	to, ok := timeQuery(c, "to", now)
	if !ok {
		return
	}
	switch {
	case from.IsZero():
		rest.Invalid(c, "from", "is required: when the events to replay start (RFC 3339)")
		return
	case !from.Before(to):
		rest.Invalid(c, "from", "is not before to")
		return
	}
	after := ""
	if cur := c.Query("cursor"); cur != "" {
		raw, err := base64.RawURLEncoding.DecodeString(cur)
		if err != nil || !ids.Valid(ids.Event, string(raw)) {
			rest.Invalid(c, "cursor", "is not a cursor this route answered")
			return
		}
		after = string(raw)
	}
	src, ok := a.loadSource(c)
	if !ok {
		return
	}
	subs, named, ok := a.replayTargets(c, src)
	if !ok {
		return
	}
	ctx := c.Request.Context()
	deadline := now.Add(a.cfg.WorkBudget)
	resp := rangeReplayResponse{Skipped: map[string]int{}}
	for {
		events, next, err := a.events.Range(ctx, src.ID, from, to, after, rangeReplayPage, rangeReplayBytes)
		if err != nil {
			a.storeError(c, "reading events", err)
			return
		}
		events, expired, err := a.withPayloads(ctx, events)
		if err != nil {
			a.payloadUnavailable(c, err)
			return
		}
		resp.Events += expired
		if expired > 0 {
			resp.Skipped["payload_expired"] += expired
		}
		// On a failure what earlier pages queued stays queued; no cursor is
		// answered, and repeating the call is safe (see runReplay).
		b, ok := a.replayEvents(c, events, subs, named, force, now)
		if !ok {
			return
		}
		resp.Events += len(events)
		resp.Queued += len(b.recs)
		for _, s := range b.skipped {
			resp.Skipped[s.Reason]++
		}
		if next == "" {
			resp.Complete = true
			break
		}
		after = next
		if a.now().After(deadline) {
			resp.NextCursor = base64.RawURLEncoding.EncodeToString([]byte(next))
			break
		}
	}
	a.log.InfoContext(ctx, "range replayed", "source_id", src.ID, "from", from, "to", to, "events", resp.Events,
		"queued", resp.Queued, "skipped", resp.Skipped, "complete", resp.Complete, "force", force)
	c.JSON(http.StatusAccepted, resp)
}

// withPayloads fills in the payloads of a page of events, read from Kafka
// partition by partition in order (from the archive once Kafka has deleted
// them), and leaves out those whose payload expired, counting them.
func (a *API) withPayloads(ctx context.Context, events []eventstore.Event) ([]eventstore.Event, int, error) {
	var refs []payloads.Ref
	for _, e := range events {
		if e.Located {
			refs = append(refs, ref(e))
		}
	}
	if len(refs) == 0 {
		return events, 0, nil
	}
	got, err := a.payloads.GetAll(ctx, refs)
	if err != nil {
		return nil, 0, err
	}
	out := events[:0]
	expired := 0
	for _, e := range events {
		if e.Located {
			p, ok := got[e.ID]
			if !ok {
				expired++
				continue
			}
			e.Body, e.Forwarded = p.Body, p.Forwarded
		}
		out = append(out, e)
	}
	return out, expired, nil
}

// timeQuery reads an RFC 3339 time from the query, def when absent.
func timeQuery(c *gin.Context, name string, def time.Time) (time.Time, bool) {
	v := c.Query(name)
	if v == "" {
		return def, true
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		rest.Invalid(c, name, fmt.Sprintf("%s is not an RFC 3339 time (example: 2026-12-04T10:00:00Z)", rest.QuoteID(v)))
		return time.Time{}, false
	}
	return t, true
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
			rest.Invalid(c, name, "must be a day written YYYY-MM-DD")
			return
		}
	}
	if from != "" && to != "" && from > to {
		rest.Invalid(c, "from", "is after to")
		return
	}
	data, err := a.counters.Read(c.Request.Context(), src.ID, from, to)
	if err != nil {
		a.storeError(c, "reading counts", err)
		return
	}
	c.JSON(http.StatusOK, metricsResponse{Data: data})
}
