package manage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"reflect"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"
	"golang.org/x/net/http/httpguts"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/filter"
	"github.com/relayhq/relay/pkg/glob"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/ssrf"
	"github.com/relayhq/relay/pkg/throttle"
	"github.com/relayhq/relay/services/ingest/internal/rest"
)

type subscriptionJSON struct {
	ID                      string     `json:"id"`
	SourceID                string     `json:"source_id"`
	URL                     string     `json:"url"`
	Events                  []string   `json:"events"`
	Enabled                 bool       `json:"enabled"`
	DisabledReason          string     `json:"disabled_reason,omitempty"`
	CreatedAt               time.Time  `json:"created_at"`
	UpdatedAt               time.Time  `json:"updated_at"`
	PreviousSecretExpiresAt *time.Time `json:"previous_secret_expires_at,omitempty"`
	// HeaderNames name the custom headers; their values are never shown.
	HeaderNames []string `json:"header_names"`
	// Filter is the CEL expression an event must match; absent for none.
	Filter string `json:"filter,omitempty"`
	// Retry is the subscription's own retry policy; absent for the ladder's.
	Retry *retryJSON `json:"retry,omitempty"`
	// RateLimit is the subscription's pace; absent for none.
	RateLimit *rateLimitJSON `json:"rate_limit,omitempty"`
	// Ordered and OnFailure: deliveries of one ordering key one at a time.
	Ordered   bool   `json:"ordered"`
	OnFailure string `json:"on_failure,omitempty"`
	// Health is what holds its deliveries back now (single-subscription
	// answers only).
	Health *healthJSON `json:"health,omitempty"`
	// Secret is set only in the responses that create or rotate it.
	Secret string `json:"secret,omitempty"`
}

func (a *API) subOut(s catalog.Subscription) subscriptionJSON {
	out := subscriptionJSON{
		ID: s.ID, SourceID: s.SourceID, URL: s.URL, Events: s.Events, Enabled: s.Enabled,
		DisabledReason: s.DisabledReason, CreatedAt: s.CreatedAt.UTC(), UpdatedAt: s.UpdatedAt.UTC(),
		HeaderNames: append([]string{}, s.HeaderNames...), Filter: s.Filter,
		Ordered: s.Ordered, OnFailure: s.OnFailure,
	}
	if s.MaxAttempts > 0 {
		out.Retry = &retryJSON{MaxAttempts: s.MaxAttempts}
	}
	if r := s.RateLimit; r != nil {
		out.RateLimit = &rateLimitJSON{Burst: r.Burst}
		if r.Period == time.Minute {
			out.RateLimit.PerMinute = r.Rate
		} else {
			out.RateLimit.PerSecond = r.Rate
		}
	}
	if !s.PreviousSecretExpiresAt.IsZero() && a.now().Before(s.PreviousSecretExpiresAt) {
		t := s.PreviousSecretExpiresAt.UTC()
		out.PreviousSecretExpiresAt = &t
	}
	return out
}

// patterns is a subscription's `events`: one glob or a list of them.
type patterns []string

func (p *patterns) UnmarshalJSON(b []byte) error {
	if string(bytes.TrimSpace(b)) == "null" {
		return nil // as absent, the convention of encoding/json
	}
	var one string
	if json.Unmarshal(b, &one) == nil {
		*p = patterns{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		// A type error, so that the decoder fills in the field's name.
		return &json.UnmarshalTypeError{Value: jsonValueKind(b), Type: reflect.TypeFor[patterns]()}
	}
	*p = many
	return nil
}

func (patterns) Expects() string { return `a glob string such as "payment.*" or a list of them` }

// jsonValueKind names the kind of the JSON value b, as encoding/json's
// type errors do.
func jsonValueKind(b []byte) string {
	switch b = bytes.TrimSpace(b); {
	case len(b) == 0:
		return "value"
	case b[0] == '[':
		return "array"
	case b[0] == '{':
		return "object"
	case b[0] == 't', b[0] == 'f':
		return "bool"
	}
	return "number"
}

func checkPatterns(c *gin.Context, p patterns) ([]string, bool) {
	if len(p) == 0 {
		rest.Invalid(c, "events", "needs at least one pattern (\"*\" for every event)")
		return nil, false
	}
	if len(p) > 50 {
		rest.Invalid(c, "events", "has more than 50 patterns")
		return nil, false
	}
	for _, pat := range p {
		if err := glob.Validate(pat); err != nil {
			rest.Invalid(c, "events", err.Error())
			return nil, false
		}
	}
	return p, true
}

// retryJSON is a subscription's retry policy.
type retryJSON struct {
	// MaxAttempts caps each delivery's attempts: the first one and
	// MaxAttempts-1 retries, on the first tiers of the ladder. 0 (or
	// absent) is the whole ladder.
	MaxAttempts int `json:"max_attempts"`
}

// checkRetry validates a retry policy against the ladder and returns its
// attempt cap (0: the whole ladder).
func (a *API) checkRetry(c *gin.Context, r *retryJSON) (int, bool) {
	if r == nil {
		return 0, true
	}
	most := len(a.cfg.Names.Tiers) + 1
	if r.MaxAttempts < 0 || r.MaxAttempts > most {
		rest.Invalid(c, "retry.max_attempts", fmt.Sprintf("must be from 1 to %d (the first attempt and one per tier of RELAY_RETRY_TIERS), or 0 for the whole ladder", most))
		return 0, false
	}
	return r.MaxAttempts, true
}

// healthJSON is what holds a subscription's deliveries back: a pause its
// endpoint asked for or the rate limit's schedule, and its circuit.
type healthJSON struct {
	Circuit        string     `json:"circuit"`
	FailuresInARow int        `json:"failures_in_a_row"`
	OpenSince      *time.Time `json:"open_since,omitempty"`
	NextProbeAt    *time.Time `json:"next_probe_at,omitempty"`
	PausedUntil    *time.Time `json:"paused_until,omitempty"`
}

func healthOut(st throttle.State) *healthJSON {
	h := &healthJSON{Circuit: "closed", FailuresInARow: st.Breaker.Fails, PausedUntil: optTime(st.PausedUntil)}
	if !st.Breaker.OpenUntil.IsZero() {
		h.Circuit, h.OpenSince, h.NextProbeAt = "open", optTime(st.Breaker.OpenedAt), optTime(st.Breaker.OpenUntil)
	}
	return h
}

// rateLimitJSON is a subscription's pace: per_second or per_minute, and
// how many at once (burst, default 1).
type rateLimitJSON struct {
	PerSecond int `json:"per_second,omitempty"`
	PerMinute int `json:"per_minute,omitempty"`
	Burst     int `json:"burst,omitempty"`
}

// Bounds of a rate limit.
const (
	maxPerSecond = 100_000
	maxBurst     = 10_000
)

// checkRateLimit validates a rate limit; an empty one ({}) is none, which
// a patch uses to remove it.
func checkRateLimit(c *gin.Context, r *rateLimitJSON) (*catalog.RateLimit, bool) {
	if r == nil || *r == (rateLimitJSON{}) {
		return nil, true
	}
	out := catalog.RateLimit{Rate: r.PerSecond, Period: time.Second, Burst: max(r.Burst, 1)}
	switch {
	case (r.PerSecond != 0) == (r.PerMinute != 0):
		rest.Invalid(c, "rate_limit", "needs per_second or per_minute (one of them)")
		return nil, false
	case r.PerSecond < 0 || r.PerSecond > maxPerSecond:
		rest.Invalid(c, "rate_limit.per_second", fmt.Sprintf("must be from 1 to %d", maxPerSecond))
		return nil, false
	case r.PerMinute < 0 || r.PerMinute > maxPerSecond*60:
		rest.Invalid(c, "rate_limit.per_minute", fmt.Sprintf("must be from 1 to %d", maxPerSecond*60))
		return nil, false
	case r.Burst < 0 || r.Burst > maxBurst:
		rest.Invalid(c, "rate_limit.burst", fmt.Sprintf("must be from 1 to %d (default 1)", maxBurst))
		return nil, false
	}
	if r.PerMinute != 0 {
		out.Rate, out.Period = r.PerMinute, time.Minute
	}
	return &out, true
}

// checkFilter answers 400, naming the position and the error, unless expr
// is empty or a CEL filter that compiles.
func checkFilter(c *gin.Context, expr string) bool {
	if expr == "" {
		return true
	}
	if _, err := filter.Compile(expr); err != nil {
		rest.Invalid(c, "filter", err.Error())
		return false
	}
	return true
}

// checkURL answers 400 unless raw is a URL Relay may deliver to: see
// ssrf.CheckURL, and with RELAY_REQUIRE_HTTPS an https one.
func (a *API) checkURL(c *gin.Context, raw string) bool {
	if err := ssrf.CheckURL(raw, a.cfg.AllowPrivateDestinations); err != nil {
		rest.Invalid(c, "url", err.Error())
		return false
	}
	if a.cfg.RequireHTTPS && !ssrf.IsHTTPS(raw) {
		rest.Invalid(c, "url", "must be https:// (RELAY_REQUIRE_HTTPS=true): deliveries carry event payloads")
		return false
	}
	return true
}

// Limits of a subscription's custom headers.
const (
	maxHeaders          = 20
	maxHeaderValueBytes = 4 << 10
	maxHeadersBytes     = 16 << 10
)

// reservedHeaders are the headers Relay writes itself or HTTP's framing
// owns: a subscription's own value would forge or break them.
var reservedHeaders = map[string]bool{
	"Host": true, "Content-Length": true, "Transfer-Encoding": true, "Connection": true, "Keep-Alive": true,
	"Proxy-Connection": true, "Proxy-Authorization": true, "Te": true, "Trailer": true, "Upgrade": true, "Expect": true,
	"Content-Type": true, "Content-Encoding": true, "User-Agent": true, "Traceparent": true, "Tracestate": true,
	http.CanonicalHeaderKey(signature.HeaderWebhookID):        true,
	http.CanonicalHeaderKey(signature.HeaderWebhookTimestamp): true,
	http.CanonicalHeaderKey(signature.HeaderWebhookSignature): true,
}

// headerName checks the name of a header that a subscription sets or a
// source forwards, and returns it canonical.
func headerName(c *gin.Context, field, name string) (string, bool) {
	canon := http.CanonicalHeaderKey(name)
	switch {
	case !httpguts.ValidHeaderFieldName(name) || len(name) > record.MaxHeaderName:
		rest.Invalid(c, field, fmt.Sprintf("%s is not a header name", rest.QuoteID(name)))
		return "", false
	case reservedHeaders[canon] || strings.HasPrefix(canon, "X-Relay-"):
		rest.Invalid(c, field, fmt.Sprintf("%s is set by Relay or by HTTP itself", canon))
		return "", false
	}
	return canon, true
}

// checkHeaders validates the custom headers of a subscription and returns
// them by canonical name. Values are never quoted back: they are secrets.
func checkHeaders(c *gin.Context, h map[string]string) (map[string]string, bool) {
	if len(h) > maxHeaders {
		rest.Invalid(c, "headers", fmt.Sprintf("has %d headers; at most %d", len(h), maxHeaders))
		return nil, false
	}
	out := make(map[string]string, len(h))
	total := 0
	for name, value := range h {
		canon, ok := headerName(c, "headers", name)
		switch {
		case !ok:
			return nil, false
		case out[canon] != "":
			rest.Invalid(c, "headers", fmt.Sprintf("%s is given twice", canon))
			return nil, false
		case value == "" || len(value) > maxHeaderValueBytes || !httpguts.ValidHeaderFieldValue(value) || !utf8.ValidString(value):
			rest.Invalid(c, "headers", fmt.Sprintf("the value of %s must be 1 to %d bytes of text without line breaks", canon, maxHeaderValueBytes))
			return nil, false
		}
		total += len(canon) + len(value)
		out[canon] = value
	}
	if total > maxHeadersBytes {
		rest.Invalid(c, "headers", fmt.Sprintf("are %d bytes together; at most %d", total, maxHeadersBytes))
		return nil, false
	}
	return out, true
}

type createSubscriptionRequest struct {
	URL       string            `json:"url"`
	Events    patterns          `json:"events"`
	Enabled   *bool             `json:"enabled"`
	Secret    string            `json:"secret"`
	Headers   map[string]string `json:"headers"`
	Filter    string            `json:"filter"`
	Retry     *retryJSON        `json:"retry"`
	RateLimit *rateLimitJSON    `json:"rate_limit"`
	Ordered   bool              `json:"ordered"`
	OnFailure *string           `json:"on_failure"`
}

// checkOnFailure reads on_failure: given only with ordered, and "skip" or
// "block".
func checkOnFailure(c *gin.Context, v *string, ordered bool) (string, bool) {
	switch {
	case v == nil:
		if ordered {
			return catalog.OnFailureSkip, true
		}
		return "", true
	case !ordered:
		rest.Invalid(c, "on_failure", "applies only to an ordered subscription (\"ordered\": true, set at creation)")
		return "", false
	case *v != catalog.OnFailureSkip && *v != catalog.OnFailureBlock:
		rest.Invalid(c, "on_failure", fmt.Sprintf("is %s; want \"skip\" (the key's next event proceeds when one goes to the DLQ) or \"block\" (it waits until the entry is redriven or discarded)", rest.QuoteID(*v)))
		return "", false
	}
	return *v, true
}

func (a *API) createSubscription(c *gin.Context) {
	src, ok := a.loadSource(c)
	if !ok {
		return
	}
	var req createSubscriptionRequest
	if !rest.BindJSON(c, &req, false) {
		return
	}
	if !a.checkURL(c, req.URL) {
		return
	}
	if req.Events == nil {
		req.Events = patterns{"*"}
	}
	events, ok := checkPatterns(c, req.Events)
	if !ok {
		return
	}
	secret, ok := secretFor(c, signature.StandardWebhooks{}, req.Secret, "secret")
	if !ok {
		return
	}
	headers, ok := checkHeaders(c, req.Headers)
	if !ok {
		return
	}
	if !checkFilter(c, req.Filter) {
		return
	}
	maxAttempts, ok := a.checkRetry(c, req.Retry)
	if !ok {
		return
	}
	limit, ok := checkRateLimit(c, req.RateLimit)
	if !ok {
		return
	}
	onFailure, ok := checkOnFailure(c, req.OnFailure, req.Ordered)
	if !ok {
		return
	}
	sub := catalog.Subscription{
		ID: ids.New(ids.Subscription), SourceID: src.ID, URL: req.URL, Events: events,
		Enabled: req.Enabled == nil || *req.Enabled, CreatedAt: a.now().Truncate(time.Millisecond),
		Filter: req.Filter, MaxAttempts: maxAttempts, RateLimit: limit,
		Ordered: req.Ordered, OnFailure: onFailure,
	}
	sub.UpdatedAt = sub.CreatedAt
	for name := range headers {
		sub.HeaderNames = append(sub.HeaderNames, name)
	}
	sort.Strings(sub.HeaderNames)
	if err := a.catalog.CreateSubscription(c.Request.Context(), sub, secret, headers); err != nil {
		a.storeError(c, "creating the subscription", err)
		return
	}
	out := a.subOut(sub)
	out.Secret = secret
	c.JSON(http.StatusCreated, out)
}

func (a *API) listSubscriptions(c *gin.Context) {
	src, ok := a.loadSource(c)
	if !ok {
		return
	}
	limit, cursor, ok := rest.IDPageParams(c, ids.Subscription)
	if !ok {
		return
	}
	page, err := a.catalog.ListSubscriptions(c.Request.Context(), src.ID, cursor, limit)
	if err != nil {
		a.storeError(c, "listing subscriptions", err)
		return
	}
	out := rest.List[subscriptionJSON]{Data: []subscriptionJSON{}, NextCursor: page.Next}
	for _, s := range page.Items {
		out.Data = append(out.Data, a.subOut(s))
	}
	c.JSON(http.StatusOK, out)
}

// loadSubscription finds a subscription of the source in the path, or
// answers 404.
func (a *API) loadSubscription(c *gin.Context) (catalog.Subscription, bool) {
	sub, _, ok := a.findSubscription(c, false)
	return sub, ok
}

// loadSubscriptionToRepair is loadSubscription for PATCH and DELETE, which
// also take a subscription whose stored record is corrupt: they are how it
// is repaired or removed. damaged says what is wrong with it, nil if nothing.
func (a *API) loadSubscriptionToRepair(c *gin.Context) (sub catalog.Subscription, damaged *catalog.CorruptError, ok bool) {
	return a.findSubscription(c, true)
}

func (a *API) findSubscription(c *gin.Context, corruptOK bool) (catalog.Subscription, *catalog.CorruptError, bool) {
	src, ok := a.loadSource(c)
	if !ok {
		return catalog.Subscription{}, nil, false
	}
	return a.subscriptionOf(c, src, c.Param("sub_id"), corruptOK)
}

// subscriptionOf reads subscription id of src, answering 404 when there is
// none (or it belongs to another source) and 5xx when it cannot be read.
// With corruptOK a corrupt record is returned with what is wrong with it.
func (a *API) subscriptionOf(c *gin.Context, src catalog.Source, id string, corruptOK bool) (catalog.Subscription, *catalog.CorruptError, bool) {
	sub, err := a.catalog.GetSubscription(c.Request.Context(), id)
	// A corrupt record still names its source, which is checked first.
	var damaged *catalog.CorruptError
	corrupt := errors.As(err, &damaged)
	if corrupt && corruptOK {
		err = nil
	}
	if errors.Is(err, catalog.ErrNotFound) || ((err == nil || corrupt) && sub.SourceID != src.ID) || !ids.Valid(ids.Subscription, id) {
		rest.Fail(c, http.StatusNotFound, "subscription_not_found", "no subscription "+rest.QuoteID(id)+" on source "+src.ID)
		return sub, nil, false
	}
	if err != nil {
		a.storeError(c, "reading the subscription", err)
		return sub, nil, false
	}
	return sub, damaged, true
}

func (a *API) getSubscription(c *gin.Context) {
	sub, ok := a.loadSubscription(c)
	if !ok {
		return
	}
	st, err := a.throttle.Read(c.Request.Context(), sub.ID, a.now())
	if err != nil {
		a.storeError(c, "reading the subscription's circuit", err)
		return
	}
	out := a.subOut(sub)
	out.Health = healthOut(st)
	c.JSON(http.StatusOK, out)
}

type updateSubscriptionRequest struct {
	URL     *string  `json:"url"`
	Events  patterns `json:"events"`
	Enabled *bool    `json:"enabled"`
	// Headers replace the custom headers ({} removes them); null or absent
	// leaves them.
	Headers *map[string]string `json:"headers"`
	// Filter replaces the filter ("" removes it); null or absent leaves it.
	Filter *string `json:"filter"`
	// Retry replaces the retry policy ({} restores the ladder's); null or
	// absent leaves it.
	Retry *retryJSON `json:"retry"`
	// RateLimit replaces the rate limit ({} removes it); null or absent
	// leaves it.
	RateLimit *rateLimitJSON `json:"rate_limit"`
	// Ordered is fixed at creation: given, it must say what it is.
	Ordered *bool `json:"ordered"`
	// OnFailure replaces an ordered subscription's on_failure.
	OnFailure *string `json:"on_failure"`
}

func (a *API) updateSubscription(c *gin.Context) {
	sub, damaged, ok := a.loadSubscriptionToRepair(c)
	if !ok {
		return
	}
	var req updateSubscriptionRequest
	if !rest.BindJSON(c, &req, false) {
		return
	}
	patch := catalog.SubscriptionPatch{URL: req.URL, Enabled: req.Enabled}
	if req.URL != nil && !a.checkURL(c, *req.URL) {
		return
	}
	if req.Events != nil {
		if patch.Events, ok = checkPatterns(c, req.Events); !ok {
			return
		}
	}
	if req.Enabled != nil && !*req.Enabled {
		patch.DisabledReason = "disabled through the API"
	}
	if req.Headers != nil {
		h, ok := checkHeaders(c, *req.Headers)
		if !ok {
			return
		}
		patch.Headers = &h
	}
	if req.Filter != nil {
		if !checkFilter(c, *req.Filter) {
			return
		}
		patch.Filter = req.Filter
	}
	if req.Retry != nil {
		n, ok := a.checkRetry(c, req.Retry)
		if !ok {
			return
		}
		patch.MaxAttempts = &n
	}
	if req.RateLimit != nil {
		limit, ok := checkRateLimit(c, req.RateLimit)
		if !ok {
			return
		}
		patch.RateLimit = &catalog.RateLimit{}
		if limit != nil {
			patch.RateLimit = limit
		}
	}
	if req.Ordered != nil && *req.Ordered != sub.Ordered {
		rest.Invalid(c, "ordered", "is fixed at creation: the queues of a key's events must drain the way they filled; create a new subscription")
		return
	}
	if req.OnFailure != nil {
		// A damaged on_failure is an ordered subscription's.
		v, ok := checkOnFailure(c, req.OnFailure, sub.Ordered || (damaged != nil && damaged.Field == "ordered"))
		if !ok {
			return
		}
		patch.OnFailure = &v
	}
	if damaged != nil && !repairs(damaged.Field, req) {
		// A patch that leaves the damaged field as it is would not make the
		// record readable: refuse it, applying nothing, and say what would.
		a.storeError(c, "updating the subscription", damaged)
		return
	}
	updated, err := a.catalog.UpdateSubscription(c.Request.Context(), sub.ID, patch)
	if errors.Is(err, catalog.ErrNotFound) {
		rest.Fail(c, http.StatusNotFound, "subscription_not_found", "no subscription "+rest.QuoteID(sub.ID))
		return
	}
	if err != nil {
		a.storeError(c, "updating the subscription", err)
		return
	}
	c.JSON(http.StatusOK, a.subOut(updated))
}

// repairs reports whether a patch sets the damaged field of a stored
// subscription, which is what makes it readable again.
func repairs(field string, req updateSubscriptionRequest) bool {
	switch field {
	case "events":
		return req.Events != nil
	case "enabled":
		return req.Enabled != nil
	case "header_names":
		return req.Headers != nil
	case "filter":
		return req.Filter != nil
	case "max_attempts":
		return req.Retry != nil
	case "rate_limit":
		return req.RateLimit != nil
	case "ordered":
		return req.OnFailure != nil
	}
	return false
}

func (a *API) deleteSubscription(c *gin.Context) {
	sub, _, ok := a.loadSubscriptionToRepair(c)
	if !ok {
		return
	}
	if err := a.catalog.DeleteSubscription(c.Request.Context(), sub.SourceID, sub.ID); err != nil && !errors.Is(err, catalog.ErrNotFound) {
		a.storeError(c, "deleting the subscription", err)
		return
	}
	c.Status(http.StatusNoContent)
}

func (a *API) rotateSubscriptionSecret(c *gin.Context) {
	sub, ok := a.loadSubscription(c)
	if !ok {
		return
	}
	var req rotateRequest
	if !rest.BindJSON(c, &req, true) {
		return
	}
	secret, ok := secretFor(c, signature.StandardWebhooks{}, req.Secret, "secret")
	if !ok {
		return
	}
	grace, ok := a.grace(c, req.Grace)
	if !ok {
		return
	}
	if err := a.catalog.RotateSubscriptionSecret(c.Request.Context(), sub.ID, secret, grace); err != nil {
		a.storeError(c, "rotating the secret", err)
		return
	}
	// Read back: the answer shows the stored grace period and updated_at.
	id := sub.ID
	sub, err := a.catalog.GetSubscription(c.Request.Context(), id)
	if errors.Is(err, catalog.ErrNotFound) { // deleted meanwhile
		rest.Fail(c, http.StatusNotFound, "subscription_not_found", "no subscription "+rest.QuoteID(id))
		return
	}
	if err != nil {
		a.storeError(c, "reading the rotated subscription", err)
		return
	}
	out := a.subOut(sub)
	out.Secret = secret
	c.JSON(http.StatusOK, out)
}
