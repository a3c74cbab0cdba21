package console

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/relayhq/relay/pkg/counters"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/services/ingest/internal/dlq"
)

// The management API's answers, as far as the pages show them.
type (
	source struct {
		ID           string `json:"id"`
		Name         string `json:"name"`
		Verification struct {
			Scheme string `json:"scheme"`
		} `json:"verification"`
		DedupWindow string    `json:"dedup_window"`
		IngestURL   string    `json:"ingest_url"`
		CreatedAt   time.Time `json:"created_at"`
		OrderingKey *struct {
			Header   string `json:"header"`
			JSONPath string `json:"json_path"`
		} `json:"ordering_key"`
		Secret string `json:"secret"`
	}
	rateLimit struct {
		PerSecond int `json:"per_second,omitempty"`
		PerMinute int `json:"per_minute,omitempty"`
		Burst     int `json:"burst,omitempty"`
	}
	subscription struct {
		ID             string     `json:"id"`
		SourceID       string     `json:"source_id"`
		URL            string     `json:"url"`
		Events         []string   `json:"events"`
		Enabled        bool       `json:"enabled"`
		DisabledReason string     `json:"disabled_reason"`
		CreatedAt      time.Time  `json:"created_at"`
		UpdatedAt      time.Time  `json:"updated_at"`
		Filter         string     `json:"filter"`
		RateLimit      *rateLimit `json:"rate_limit"`
		Retry          *struct {
			MaxAttempts int `json:"max_attempts"`
		} `json:"retry"`
		Ordered   bool   `json:"ordered"`
		OnFailure string `json:"on_failure"`
		Secret    string `json:"secret"`
	}
	event struct {
		ID               string            `json:"id"`
		SourceID         string            `json:"source_id"`
		Type             string            `json:"type"`
		ContentType      string            `json:"content_type"`
		ReceivedAt       time.Time         `json:"received_at"`
		Size             int               `json:"size"`
		OrderingKey      string            `json:"ordering_key"`
		ForwardedHeaders map[string]string `json:"forwarded_headers"`
		Payload          json.RawMessage   `json:"payload"`
		PayloadBase64    string            `json:"payload_base64"`
		PayloadExpired   bool              `json:"payload_expired"`
	}
	deliveryView struct {
		SubscriptionID string             `json:"subscription_id"`
		URL            string             `json:"url"`
		Status         string             `json:"status"`
		Attempts       int                `json:"attempts"`
		LastStatusCode int                `json:"last_status_code"`
		LastError      string             `json:"last_error"`
		NextAttemptAt  *time.Time         `json:"next_attempt_at"`
		DeliveredAt    *time.Time         `json:"delivered_at"`
		OrderingKey    string             `json:"ordering_key"`
		Behind         string             `json:"behind"`
		History        []delivery.Attempt `json:"history"`
	}
	list[T any] struct {
		Data       []T    `json:"data"`
		NextCursor string `json:"next_cursor"`
	}
)

func apiPath(format string, a ...any) string {
	for i, v := range a {
		if s, ok := v.(string); ok {
			a[i] = url.PathEscape(s)
		}
	}
	return fmt.Sprintf(format, a...)
}

// pageQuery is the API query of a listing page: its filters, its cursor
// and its size.
func pageQuery(r *req, names ...string) url.Values {
	q := url.Values{"limit": {"25"}}
	for _, n := range append(names, "cursor") {
		if v := strings.TrimSpace(r.URL.Query().Get(n)); v != "" {
			q.Set(n, v)
		}
	}
	return q
}

// nextLink is the console link to a listing's next page.
func nextLink(r *req, cursor string) string {
	if cursor == "" {
		return ""
	}
	q := r.URL.Query()
	q.Set("cursor", cursor)
	return r.URL.Path + "?" + q.Encode()
}

func (c *Console) sourcesPage(w http.ResponseWriter, r *req) {
	var out list[source]
	if err := c.call(r, "GET", "/sources?"+pageQuery(r).Encode(), nil, &out); err != nil {
		c.failed(w, r, err)
		return
	}
	c.show(w, r, http.StatusOK, "sources", "Sources", "sources", map[string]any{
		"Sources": out.Data, "Next": nextLink(r, out.NextCursor), "Schemes": signature.Names(), "First": r.URL.Query().Get("cursor") == "",
	})
}

func (c *Console) createSource(w http.ResponseWriter, r *req) {
	body := map[string]any{"name": strings.TrimSpace(r.PostForm.Get("name")), "verification": map[string]any{"scheme": r.PostForm.Get("scheme")}}
	var src source
	if err := c.call(r, "POST", "/sources", body, &src); err != nil {
		c.failed(w, r, err)
		return
	}
	// The secret is shown on this answer alone.
	c.show(w, r, http.StatusCreated, "secret", "Source created", "sources", map[string]any{
		"What": "source " + src.Name, "ID": src.ID, "Secret": src.Secret, "IngestURL": src.IngestURL, "Next": Path + "/sources/" + src.ID,
	})
}

func (c *Console) sourcePage(w http.ResponseWriter, r *req) {
	id := r.PathValue("src")
	var src source
	var subs list[subscription]
	if err := c.call(r, "GET", apiPath("/sources/%s", id), nil, &src); err != nil {
		c.failed(w, r, err)
		return
	}
	q := pageQuery(r)
	if err := c.call(r, "GET", apiPath("/sources/%s/subscriptions", id)+"?"+q.Encode(), nil, &subs); err != nil {
		c.failed(w, r, err)
		return
	}
	c.show(w, r, http.StatusOK, "source", src.Name, "sources", map[string]any{
		"Source": src, "Subscriptions": subs.Data, "Next": nextLink(r, subs.NextCursor),
	})
}

func (c *Console) rotateSource(w http.ResponseWriter, r *req) {
	id := r.PathValue("src")
	var src source
	if err := c.call(r, "POST", apiPath("/sources/%s/rotate-secret", id), map[string]any{}, &src); err != nil {
		c.failed(w, r, err)
		return
	}
	c.show(w, r, http.StatusOK, "secret", "Secret rotated", "sources", map[string]any{
		"What": "source " + src.Name, "ID": src.ID, "Secret": src.Secret, "IngestURL": src.IngestURL, "Rotated": true, "Next": Path + "/sources/" + src.ID,
	})
}

// subscriptionForm reads the subscription form into an API body. create
// adds the fields fixed at creation.
func subscriptionForm(r *req, create bool) (map[string]any, string) {
	f := r.PostForm
	body := map[string]any{"url": strings.TrimSpace(f.Get("url")), "filter": strings.TrimSpace(f.Get("filter"))}
	var events []string
	for _, g := range strings.FieldsFunc(f.Get("events"), func(r rune) bool { return r == ',' || r == '\n' || r == ' ' }) {
		events = append(events, g)
	}
	if len(events) == 0 {
		events = []string{"*"}
	}
	body["events"] = events
	rl := map[string]any{}
	for _, n := range []string{"per_second", "per_minute", "burst"} {
		if v := strings.TrimSpace(f.Get(n)); v != "" {
			i, err := strconv.Atoi(v)
			if err != nil {
				return nil, n + " must be a whole number"
			}
			rl[n] = i
		}
	}
	if len(rl) > 0 || !create {
		body["rate_limit"] = rl // {} removes a limit
	}
	if v := strings.TrimSpace(f.Get("max_attempts")); v != "" {
		i, err := strconv.Atoi(v)
		if err != nil {
			return nil, "max attempts must be a whole number"
		}
		body["retry"] = map[string]any{"max_attempts": i}
	} else if !create {
		body["retry"] = map[string]any{}
	}
	ordered := f.Get("ordered") == "on"
	if create {
		body["ordered"] = ordered
	}
	if v := f.Get("on_failure"); v != "" && (ordered || !create) {
		body["on_failure"] = v
	}
	return body, ""
}

func (c *Console) createSubscription(w http.ResponseWriter, r *req) {
	id := r.PathValue("src")
	body, bad := subscriptionForm(r, true)
	if bad != "" {
		c.failed(w, r, &apiError{Status: http.StatusBadRequest, Message: bad})
		return
	}
	var sub subscription
	if err := c.call(r, "POST", apiPath("/sources/%s/subscriptions", id), body, &sub); err != nil {
		c.failed(w, r, err)
		return
	}
	c.show(w, r, http.StatusCreated, "secret", "Subscription created", "sources", map[string]any{
		"What": "subscription to " + sub.URL, "ID": sub.ID, "Secret": sub.Secret, "Next": Path + "/sources/" + id + "/subscriptions/" + sub.ID,
	})
}

func (c *Console) subscriptionPage(w http.ResponseWriter, r *req) {
	src, id := r.PathValue("src"), r.PathValue("sub")
	var sub subscription
	if err := c.call(r, "GET", apiPath("/sources/%s/subscriptions/%s", src, id), nil, &sub); err != nil {
		c.failed(w, r, err)
		return
	}
	c.show(w, r, http.StatusOK, "subscription", "Subscription "+sub.ID, "sources", map[string]any{"Sub": sub})
}

func (c *Console) updateSubscription(w http.ResponseWriter, r *req) {
	src, id := r.PathValue("src"), r.PathValue("sub")
	body, bad := subscriptionForm(r, false)
	if bad != "" {
		c.failed(w, r, &apiError{Status: http.StatusBadRequest, Message: bad})
		return
	}
	if err := c.call(r, "PATCH", apiPath("/sources/%s/subscriptions/%s", src, id), body, nil); err != nil {
		c.failed(w, r, err)
		return
	}
	c.done(w, r, "Subscription saved.", Path+"/sources/"+src+"/subscriptions/"+id)
}

func (c *Console) toggleSubscription(w http.ResponseWriter, r *req) {
	src, id := r.PathValue("src"), r.PathValue("sub")
	enabled := r.PostForm.Get("enabled") == "true"
	if err := c.call(r, "PATCH", apiPath("/sources/%s/subscriptions/%s", src, id), map[string]any{"enabled": enabled}, nil); err != nil {
		c.failed(w, r, err)
		return
	}
	msg := "Subscription disabled: its pending deliveries go to the DLQ."
	if enabled {
		msg = "Subscription enabled."
	}
	c.done(w, r, msg, Path+"/sources/"+src+"/subscriptions/"+id)
}

func (c *Console) rotateSubscription(w http.ResponseWriter, r *req) {
	src, id := r.PathValue("src"), r.PathValue("sub")
	var sub subscription
	if err := c.call(r, "POST", apiPath("/sources/%s/subscriptions/%s/rotate-secret", src, id), map[string]any{}, &sub); err != nil {
		c.failed(w, r, err)
		return
	}
	c.show(w, r, http.StatusOK, "secret", "Secret rotated", "sources", map[string]any{
		"What": "subscription to " + sub.URL, "ID": sub.ID, "Secret": sub.Secret, "Rotated": true, "Next": Path + "/sources/" + src + "/subscriptions/" + id,
	})
}

// localTime reads a datetime-local field (taken as UTC) as RFC 3339.
func localTime(v string) (string, bool) {
	if v == "" {
		return "", true
	}
	for _, layout := range []string{"2006-01-02T15:04", "2006-01-02T15:04:05", time.RFC3339} {
		if t, err := time.Parse(layout, v); err == nil {
			return t.UTC().Format(time.RFC3339), true
		}
	}
	return "", false
}

func (c *Console) eventsPage(w http.ResponseWriter, r *req) {
	id := r.PathValue("src")
	q := pageQuery(r, "type")
	for _, n := range []string{"from", "to"} {
		v, ok := localTime(r.URL.Query().Get(n))
		if !ok {
			c.failed(w, r, &apiError{Status: http.StatusBadRequest, Message: n + " is not a time"})
			return
		}
		if v != "" {
			q.Set(n, v)
		}
	}
	var src source
	var evs list[event]
	if err := c.call(r, "GET", apiPath("/sources/%s", id), nil, &src); err != nil {
		c.failed(w, r, err)
		return
	}
	if err := c.call(r, "GET", apiPath("/sources/%s/events", id)+"?"+q.Encode(), nil, &evs); err != nil {
		c.failed(w, r, err)
		return
	}
	c.show(w, r, http.StatusOK, "events", "Events of "+src.Name, "sources", map[string]any{
		"Source": src, "Events": evs.Data, "Next": nextLink(r, evs.NextCursor),
		"Type": r.URL.Query().Get("type"), "From": r.URL.Query().Get("from"), "To": r.URL.Query().Get("to"),
	})
}

// prettyBody is an event's body as the page shows it: indented JSON, text,
// or base64 for bytes.
func prettyBody(e event) string {
	switch {
	case e.PayloadExpired:
		return ""
	case len(e.Payload) > 0:
		var buf bytes.Buffer
		if json.Indent(&buf, e.Payload, "", "  ") == nil {
			return buf.String()
		}
		return string(e.Payload)
	case e.PayloadBase64 != "":
		if b, err := base64.StdEncoding.DecodeString(e.PayloadBase64); err == nil && utf8.Valid(b) {
			return string(b)
		}
		return e.PayloadBase64
	}
	return ""
}

func (c *Console) eventPage(w http.ResponseWriter, r *req) {
	src, id := r.PathValue("src"), r.PathValue("evt")
	var e event
	var ds list[deliveryView]
	if err := c.call(r, "GET", apiPath("/sources/%s/events/%s", src, id), nil, &e); err != nil {
		c.failed(w, r, err)
		return
	}
	if err := c.call(r, "GET", apiPath("/sources/%s/events/%s/deliveries", src, id), nil, &ds); err != nil {
		c.failed(w, r, err)
		return
	}
	c.show(w, r, http.StatusOK, "event", "Event "+e.ID, "sources", map[string]any{
		"Event": e, "Body": prettyBody(e), "Deliveries": ds.Data,
	})
}

func (c *Console) replayEvent(w http.ResponseWriter, r *req) {
	src, id := r.PathValue("src"), r.PathValue("evt")
	q := url.Values{}
	if r.PostForm.Get("force") == "true" {
		q.Set("force", "true")
	}
	if sub := r.PostForm.Get("subscription_id"); sub != "" {
		q.Set("subscription_id", sub)
	}
	var out struct {
		Queued  []string `json:"queued"`
		Skipped []struct {
			SubscriptionID string `json:"subscription_id"`
			Reason         string `json:"reason"`
		} `json:"skipped"`
	}
	path := apiPath("/sources/%s/events/%s/replay", src, id)
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	if err := c.call(r, "POST", path, nil, &out); err != nil {
		c.failed(w, r, err)
		return
	}
	msg := fmt.Sprintf("Queued for %d subscription(s).", len(out.Queued))
	for _, s := range out.Skipped {
		msg += fmt.Sprintf(" Skipped %s: %s.", s.SubscriptionID, strings.ReplaceAll(s.Reason, "_", " "))
	}
	c.done(w, r, msg, Path+"/sources/"+src+"/events/"+id)
}

func (c *Console) metricsPage(w http.ResponseWriter, r *req) {
	id := r.PathValue("src")
	days := 14
	now := time.Now().UTC()
	q := url.Values{"from": {now.AddDate(0, 0, -(days - 1)).Format(time.DateOnly)}, "to": {now.Format(time.DateOnly)}}
	var src source
	var out struct {
		Data []counters.DayCount `json:"data"`
	}
	if err := c.call(r, "GET", apiPath("/sources/%s", id), nil, &src); err != nil {
		c.failed(w, r, err)
		return
	}
	if err := c.call(r, "GET", apiPath("/sources/%s/metrics", id)+"?"+q.Encode(), nil, &out); err != nil {
		c.failed(w, r, err)
		return
	}
	c.show(w, r, http.StatusOK, "metrics", "Metrics of "+src.Name, "sources", map[string]any{
		"Source": src, "Chart": buildChart(out.Data, now, days),
	})
}

func (c *Console) dlqPage(w http.ResponseWriter, r *req) {
	q := pageQuery(r, "subscription_id", "source_id", "reason")
	var out list[dlq.Parked]
	if err := c.call(r, "GET", "/dlq?"+q.Encode(), nil, &out); err != nil {
		c.failed(w, r, err)
		return
	}
	c.show(w, r, http.StatusOK, "dlq", "Dead-letter queue", "dlq", map[string]any{
		"Parked": out.Data, "Next": nextLink(r, out.NextCursor), "Reasons": record.DeadReasons,
		"SubscriptionID": q.Get("subscription_id"), "SourceID": q.Get("source_id"), "Reason": q.Get("reason"),
	})
}

func (c *Console) redrive(w http.ResponseWriter, r *req) {
	q := url.Values{}
	for _, n := range []string{"subscription_id", "source_id", "reason"} {
		if v := strings.TrimSpace(r.PostForm.Get(n)); v != "" {
			q.Set(n, v)
		}
	}
	var out struct {
		Redriven         int  `json:"redriven"`
		AlreadyDelivered int  `json:"already_delivered"`
		Filtered         int  `json:"filtered"`
		Complete         bool `json:"complete"`
	}
	if err := c.call(r, "POST", "/replay/dlq?"+q.Encode(), nil, &out); err != nil {
		c.failed(w, r, err)
		return
	}
	msg := fmt.Sprintf("Redriven %d; %d were delivered meanwhile, %d no longer match their filter.", out.Redriven, out.AlreadyDelivered, out.Filtered)
	if !out.Complete {
		msg += " The redrive ran out of time: redrive again to go on."
	}
	c.done(w, r, msg, Path+"/dlq?"+q.Encode())
}

func (c *Console) healthPage(w http.ResponseWriter, r *req) {
	var out struct {
		Status string            `json:"status"`
		Checks map[string]string `json:"checks"`
		kafka.LagSnapshot
		LagError string `json:"lag_error"`
	}
	if err := c.call(r, "GET", "/status", nil, &out); err != nil {
		c.failed(w, r, err)
		return
	}
	c.show(w, r, http.StatusOK, "health", "Health", "health", out)
}
