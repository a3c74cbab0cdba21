package inbound

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/secretbox"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/services/ingest/internal/classify"
	"github.com/relayhq/relay/services/ingest/internal/dedup"
	"github.com/relayhq/relay/services/ingest/internal/eventstore"
	"github.com/relayhq/relay/services/ingest/internal/rest"
)

type ingestResponse struct {
	EventID   string `json:"event_id"`
	Duplicate bool   `json:"duplicate"`
}

// answer writes an ingestResponse. Event ids are plain ASCII, so the body
// is spelled out rather than reflected by encoding/json on every webhook;
// anything else (it came from Redis) takes the encoder.
func answer(c *gin.Context, status int, r ingestResponse) {
	if !ids.Valid(ids.Event, r.EventID) {
		c.JSON(status, r)
		return
	}
	b := make([]byte, 0, 80)
	b = append(b, `{"event_id":"`...)
	b = append(b, r.EventID...)
	b = append(b, `","duplicate":`...)
	b = strconv.AppendBool(b, r.Duplicate)
	b = append(b, '}')
	c.Data(status, "application/json; charset=utf-8", b)
}

// ingest is POST /in/{source_id}: verify, dedup, produce with acks=all, and
// only then answer 202.
func (a *Handler) ingest(c *gin.Context) {
	ctx := c.Request.Context()
	span := trace.SpanFromContext(ctx)
	id := c.Param("source_id")
	if !ids.Valid(ids.Source, id) {
		rest.Fail(c, http.StatusNotFound, "source_not_found", "no source "+rest.QuoteID(id))
		return
	}
	src, secrets, err := a.source(ctx, id)
	if errors.Is(err, catalog.ErrNotFound) {
		rest.Fail(c, http.StatusNotFound, "source_not_found", "no source "+rest.QuoteID(id))
		return
	}
	if errors.Is(err, secretbox.ErrDecrypt) || errors.Is(err, catalog.ErrCorrupt) {
		// Stored, but unusable until an operator acts (a RELAY_SECRET_KEY
		// that does not open its secret, a damaged record): the sender's
		// retries outlast the fix, so 503, and an error in the log.
		a.log.ErrorContext(ctx, "source unreadable", "source_id", id, "error", err)
		rest.Unavailable(c, "source_unreadable", "this source's stored record cannot be read; the operator is told, retry later", 30*time.Second)
		return
	}
	if err != nil {
		// Without the source's secret nothing can be verified: ask the sender to retry.
		a.log.WarnContext(ctx, "source lookup failed", "source_id", id, "error", err)
		rest.Unavailable(c, "redis_unavailable", "cannot load the source right now; retry shortly", 5*time.Second)
		return
	}
	span.SetAttributes(attribute.String("relay.source_id", src.ID))
	if len(src.AllowedIPs) > 0 && !catalog.IPAllowed(c.ClientIP(), src.AllowedIPs) {
		// Before the body is read: nothing from elsewhere is worth reading.
		rest.Fail(c, http.StatusForbidden, "ip_not_allowed", "this source takes webhooks only from its allowed_ips")
		return
	}

	body, release, ok := a.readBody(c)
	// late: the produce outlived the request, and settleLate releases what
	// the request holds (its body's bytes, its in-flight slot) once it ends.
	late := false
	defer func() {
		if !late {
			release()
		}
	}()
	if !ok {
		return
	}
	done, ok := a.startWork(c)
	if !ok {
		return
	}
	defer func() {
		if !late {
			done()
		}
	}()
	scheme, err := signature.ForSource(src.Scheme, src.SchemeParams)
	if err != nil {
		rest.Internal(c, a.log, "verifying the request", fmt.Errorf("source %s: scheme %q: %w", src.ID, src.Scheme, err))
		return
	}
	now := a.now()
	req := signature.Request{Header: c.Request.Header, Body: body}
	if err := scheme.Verify(req, secrets.Active(now), now, src.Tolerance); err != nil {
		a.rejectSignature(c, scheme.Name(), err)
		return
	}
	if hs, ok := scheme.(signature.Handshaker); ok {
		if ans, ok := hs.Handshake(req); ok {
			// The provider checking the endpoint before it sends events
			// (Slack's url_verification): answer it; there is no event to keep.
			a.m.events.WithLabelValues("handshake").Inc()
			span.SetAttributes(attribute.Bool("relay.handshake", true))
			a.log.InfoContext(ctx, "answered the sender's endpoint verification", "source_id", src.ID, "scheme", scheme.Name())
			c.Data(http.StatusOK, ans.ContentType, ans.Body)
			return
		}
	}
	if ct := c.GetHeader("Content-Type"); len(ct) > record.MaxContentType {
		rest.Fail(c, http.StatusBadRequest, "invalid_content_type", fmt.Sprintf("Content-Type is longer than %d bytes", record.MaxContentType))
		return
	}
	if k := c.GetHeader(classify.HeaderIdempotencyKey); len(k) > classify.MaxIdempotencyKey {
		rest.Fail(c, http.StatusBadRequest, "invalid_idempotency_key", fmt.Sprintf("%s is longer than %d bytes", classify.HeaderIdempotencyKey, classify.MaxIdempotencyKey))
		return
	}

	ev := record.Event{
		ID: ids.NewAt(ids.Event, now), SourceID: src.ID,
		Type:        classify.EventType(c.Request.Header, body, scheme),
		ReceivedAt:  now,
		ContentType: c.GetHeader("Content-Type"),
		Body:        body,
	}
	if len(src.ForwardHeaders) > 0 {
		ev.Forwarded = a.forwarded(ctx, c.Request.Header, src)
	}
	if !src.OrderingKey.IsZero() {
		// Never refused for its key, which the sender would only retry:
		// without one the event is delivered unordered, and counted.
		if key, ok := src.OrderingKey.Key(c.Request.Header, body); ok {
			ev.OrderingKey = key
			span.SetAttributes(attribute.String("relay.ordering_key", key))
		} else {
			a.m.unkeyed.WithLabelValues(src.ID).Inc()
		}
	}
	span.SetAttributes(attribute.String("relay.event_type", ev.Type))

	// From here on the request is worked to completion even if the sender
	// hangs up: a produce cancelled half-way is exactly the ambiguity the
	// dedup protocol exists to avoid.
	work, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.cfg.ProduceTimeout+2*time.Second)
	defer cancel()

	claim, dupID, err := a.dedup.Acquire(work, dedup.Key(src.ID, classify.DedupKey(c.Request.Header, body, scheme)), ev.ID)
	switch {
	case errors.Is(err, dedup.ErrInFlight):
		rest.Unavailable(c, "duplicate_in_flight", "an identical request is being accepted right now; retry shortly", time.Second)
		return
	case err != nil && (redisconn.IsUnavailable(err) || redisconn.IsWriteRefused(err)):
		// An event lost is worse than a rare duplicate: accept without dedup.
		// Redis refusing writes (full, read-only, failing to persist) counts:
		// a 500 would lose the event of a sender that does not retry.
		a.m.dedupFailOpen.Inc()
		span.SetAttributes(attribute.Bool("relay.dedup.fail_open", true))
		a.log.WarnContext(ctx, "dedup unavailable, accepting without dedup", "source_id", src.ID, "error", err)
		claim = nil
	case err != nil:
		rest.Internal(c, a.log, "checking for duplicates", err)
		return
	case dupID != "":
		a.m.events.WithLabelValues("duplicate").Inc()
		span.SetAttributes(attribute.Bool("relay.duplicate", true), attribute.String("relay.event_id", dupID))
		answer(c, http.StatusOK, ingestResponse{EventID: dupID, Duplicate: true})
		return
	}
	span.SetAttributes(attribute.String("relay.event_id", ev.ID))

	rec := ev.Record(a.cfg.Names.Events)
	// The record's context is never the request's, nor has it a deadline:
	// franz-go fails a buffered record whose context ends, and with it
	// every record behind it on its partition, which other senders'
	// requests share; RecordDeliveryTimeout fails a record never sent, and
	// one sent is settled by the broker's answer, however late. It keeps the
	// request's values, so the kotel hook still parents the produce span on
	// the request's span.
	rec.Context = context.WithoutCancel(ctx)
	stored := eventstore.Event{
		ID: ev.ID, SourceID: ev.SourceID, Type: ev.Type, ContentType: ev.ContentType, ReceivedAt: ev.ReceivedAt,
		Size: len(body), OrderingKey: ev.OrderingKey, Located: true,
	}
	pctx, pcancel := context.WithTimeout(work, a.cfg.ProduceTimeout)
	defer pcancel()
	start := time.Now()
	// Lingers (RELAY_KAFKA_LINGER) while other records wait, so that concurrent
	// requests share a batch; alone, it is sent at once.
	outcome := kafka.ProduceAsync(pctx, a.producer, rec)
	var perr error
	select {
	case perr = <-outcome:
	case <-pctx.Done():
		// Neither taken nor refused in time, and the broker may yet take
		// it: the sender hears 503, and the dedup claim stays until the
		// outcome is known, so that its retry finds the event if it was
		// taken rather than becoming a second one.
		late = true
		a.m.produceFailures.Inc()
		a.log.WarnContext(ctx, "produce unanswered in time; answering 503 and settling it when the broker answers", "source_id", src.ID, "event_id", ev.ID)
		go a.settleLate(context.WithoutCancel(ctx), outcome, rec, claim, src.DedupWindow, stored, func() { done(); release() })
		rest.Unavailable(c, "broker_unavailable", "the event could not be stored durably in time; retry, and a retry finds it if the broker took it late", 5*time.Second)
		return
	}
	a.m.produceDuration.Observe(time.Since(start).Seconds())
	if perr != nil {
		a.m.produceFailures.Inc()
		a.produceFailed(work, claim, perr)
		if kafka.Refused(perr) {
			// Not an outage: the topic refuses this record until an operator
			// acts. The sender's retries may outlast the fix.
			a.log.ErrorContext(ctx, "the broker refused the event for good; check the topic's max.message.bytes against RELAY_MAX_BODY_BYTES, and the ACLs",
				"source_id", src.ID, "event_id", ev.ID, "body_bytes", len(body), "error", perr)
			rest.Unavailable(c, "broker_refused", "the broker refused to store the event; nothing was accepted, the operator is told, retry later", 30*time.Second)
			return
		}
		a.log.ErrorContext(ctx, "produce failed", "source_id", src.ID, "event_id", ev.ID, "error", perr)
		rest.Unavailable(c, "broker_unavailable", "the event could not be stored durably; nothing was accepted, retry", 5*time.Second)
		return
	}

	// Accepted. What follows is bookkeeping, in one Redis round trip: its
	// failure must not fail the request.
	stored.Partition, stored.Offset = rec.Partition, rec.Offset
	a.bookkeep(work, claim, src.DedupWindow, stored)
	a.m.events.WithLabelValues("accepted").Inc()
	answer(c, http.StatusAccepted, ingestResponse{EventID: ev.ID})
}

// forwarded returns the request headers src forwards to its subscribers, in
// the order it names them; several values of one are joined by ", ". One
// longer than record.MaxForwardedValue is left out, with a warning: the event is
// accepted either way.
func (a *Handler) forwarded(ctx context.Context, h http.Header, src catalog.Source) []record.ForwardedHeader {
	var out []record.ForwardedHeader
	for _, name := range src.ForwardHeaders {
		vs := h[name]
		if len(vs) == 0 {
			continue
		}
		v := strings.Join(vs, ", ")
		if len(v) > record.MaxForwardedValue {
			a.log.WarnContext(ctx, "forwarded header too long, left out", "source_id", src.ID, "header", name, "bytes", len(v), "limit", record.MaxForwardedValue)
			continue
		}
		out = append(out, record.ForwardedHeader{Name: name, Value: v})
	}
	return out
}

func (a *Handler) rejectSignature(c *gin.Context, scheme string, err error) {
	code, reason := "invalid_signature", "mismatch"
	switch {
	case errors.Is(err, signature.ErrMissing):
		code, reason = "missing_signature", "missing"
	case errors.Is(err, signature.ErrMalformed):
		code, reason = "malformed_signature", "malformed"
	case errors.Is(err, signature.ErrTimestamp):
		code, reason = "timestamp_out_of_tolerance", "timestamp"
	}
	a.m.verifyFailures.WithLabelValues(scheme, reason).Inc()
	trace.SpanFromContext(c.Request.Context()).SetAttributes(attribute.String("relay.verification_failure", reason))
	rest.Fail(c, http.StatusUnauthorized, code, err.Error())
}

// bookkeep records an accepted event: the dedup key now names it (when a
// claim was made), and the events API can list it.
// produceFailed releases the dedup claim of a record the broker did not
// take, so that the sender's retry can be accepted. A client closed under
// it (ingest shutting down) does not say whether the broker took it: the
// claim then stays until its PendingTTL.
func (a *Handler) produceFailed(ctx context.Context, claim *dedup.Claim, perr error) {
	if claim == nil || errors.Is(perr, kgo.ErrClientClosed) {
		return
	}
	if err := a.dedup.Release(ctx, claim); err != nil {
		// The marker expires after its TTL; until then a retry waits and gets 503.
		a.log.WarnContext(ctx, "dedup release failed", "error", err)
	}
}

// settleLate waits for the outcome of a produce that its request answered
// 503 before the broker did, holding the dedup claim meanwhile, and then
// settles it as the request would have: bookkeeping and the claim's commit
// if the broker took the event, the claim's release if not. free releases
// what the request held.
func (a *Handler) settleLate(ctx context.Context, outcome <-chan error, rec *kgo.Record, claim *dedup.Claim, window time.Duration, e eventstore.Event, free func()) {
	defer free()
	hold := time.NewTicker(a.dedup.PendingTTL / 3)
	defer hold.Stop()
	for {
		select {
		case perr := <-outcome:
			ctx, cancel := context.WithTimeout(ctx, a.cfg.ProduceTimeout)
			defer cancel()
			if perr != nil {
				a.m.produceLate.WithLabelValues("failed").Inc()
				a.produceFailed(ctx, claim, perr)
				a.log.WarnContext(ctx, "late produce failed; the sender's retry will be accepted", "source_id", e.SourceID, "event_id", e.ID, "error", perr)
				return
			}
			a.m.produceLate.WithLabelValues("accepted").Inc()
			e.Partition, e.Offset = rec.Partition, rec.Offset
			a.bookkeep(ctx, claim, window, e)
			a.m.events.WithLabelValues("accepted").Inc()
			a.log.InfoContext(ctx, "late produce taken by the broker; the sender's retry finds it as a duplicate", "source_id", e.SourceID, "event_id", e.ID)
			return
		case <-hold.C:
			if claim == nil {
				continue
			}
			hctx, cancel := context.WithTimeout(ctx, a.cfg.ProduceTimeout)
			if err := a.dedup.Extend(hctx, claim); err != nil {
				a.log.WarnContext(ctx, "holding the dedup claim of a late produce failed", "event_id", e.ID, "error", err)
			}
			cancel()
		}
	}
}

func (a *Handler) bookkeep(ctx context.Context, claim *dedup.Claim, window time.Duration, e eventstore.Event) {
	var commit *redis.StatusCmd
	var stored []redis.Cmder
	err := a.pipe.Do(ctx, func(p redis.Pipeliner) {
		if claim != nil {
			commit = a.dedup.QueueCommit(ctx, p, claim, window)
		}
		stored = a.events.Queue(ctx, p, e)
	})
	if err == nil {
		if commit != nil {
			stored = append(stored, commit)
		}
		for _, c := range stored {
			if err = c.Err(); err != nil {
				break
			}
		}
	}
	if err != nil {
		a.m.storeFailures.Inc()
		a.log.WarnContext(ctx, "bookkeeping after acceptance failed", "event_id", e.ID, "error", err)
	}
}
