// Package alert tells an operator when a delivery goes dead or a
// subscription is disabled for a long outage: Relay POSTs a signed
// `relay.delivery.dead` or `relay.subscription.disabled` event to
// RELAY_ALERT_WEBHOOK_URL (a chat or pager webhook), so nobody has to watch
// the DLQ.
package alert

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/telemetry"
)

// Types of alert events.
const (
	EventType         = "relay.delivery.dead"
	DisabledEventType = "relay.subscription.disabled"
)

// Dead describes a delivery that went dead.
type Dead struct {
	EventID        string `json:"event_id"`
	SourceID       string `json:"source_id"`
	SubscriptionID string `json:"subscription_id"`
	EventType      string `json:"event_type"`
	Reason         string `json:"reason"`
	Attempts       int    `json:"attempts"`
	LastStatusCode int    `json:"last_status_code,omitempty"`
	LastError      string `json:"last_error,omitempty"`
}

// Disabled describes a subscription Relay disabled: its circuit stayed
// open for RELAY_BREAKER_DISABLE_AFTER.
type Disabled struct {
	SubscriptionID string    `json:"subscription_id"`
	SourceID       string    `json:"source_id"`
	Reason         string    `json:"reason"`
	OpenSince      time.Time `json:"open_since"`
}

type payload struct {
	ID        string    `json:"id"`
	Type      string    `json:"type"`
	CreatedAt time.Time `json:"created_at"`
	Data      any       `json:"data"`
}

// Notifier posts alerts from a bounded queue on its own goroutine, so a slow
// alert endpoint never slows deliveries. It is a lifecycle.Worker.
type Notifier struct {
	url    string
	secret string
	client *http.Client
	queue  chan payload
	log    *slog.Logger
	sent   *prometheus.CounterVec
}

// New returns a Notifier posting to target, signed with secret (a whsec_
// Standard Webhooks secret) when one is given, through proxy when it is not
// nil (else through the proxy the environment names, HTTPS_PROXY and such:
// the alert endpoint is the operator's own, not a subscriber's).
func New(target, secret string, proxy *url.URL, log *slog.Logger, reg prometheus.Registerer) *Notifier {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	if proxy != nil {
		transport.Proxy = http.ProxyURL(proxy)
	}
	n := &Notifier{
		url: target, secret: secret, log: log,
		client: &http.Client{Timeout: 10 * time.Second, Transport: transport},
		queue:  make(chan payload, 1000),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "relay_alerts_total", Help: "Alerts (relay.delivery.dead, relay.subscription.disabled) by result: sent, failed, dropped (queue full).",
		}, []string{"result"}),
	}
	reg.MustRegister(n.sent)
	return n
}

// Name implements lifecycle.Worker.
func (n *Notifier) Name() string { return "alert-notifier" }

// Notify queues a dead delivery's alert; when the queue is full the alert
// is dropped and counted.
func (n *Notifier) Notify(d Dead) { n.enqueue(EventType, d) }

// NotifyDisabled queues a disabled subscription's alert.
func (n *Notifier) NotifyDisabled(d Disabled) { n.enqueue(DisabledEventType, d) }

func (n *Notifier) enqueue(typ string, data any) {
	select {
	case n.queue <- payload{ID: ids.New("alrt"), Type: typ, CreatedAt: time.Now().UTC(), Data: data}:
	default:
		n.sent.WithLabelValues("dropped").Inc()
	}
}

// Run posts queued alerts until ctx is cancelled.
func (n *Notifier) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case p := <-n.queue:
			n.post(ctx, p)
		}
	}
}

func (n *Notifier) post(ctx context.Context, p payload) {
	body, err := json.Marshal(p)
	if err != nil {
		n.log.Error("alert encode", "error", err)
		return
	}
	for attempt := 1; attempt <= 3; attempt++ {
		if err = n.send(ctx, p.ID, body); err == nil {
			n.sent.WithLabelValues("sent").Inc()
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(attempt) * time.Second):
		}
	}
	n.sent.WithLabelValues("failed").Inc()
	n.log.Warn("alert webhook failed", "alert_id", p.ID, "type", p.Type, "error", err)
}

func (n *Notifier) send(ctx context.Context, id string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("alert request: %w", err)
	}
	now := time.Now()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "Relay/"+telemetry.Version)
	req.Header.Set(signature.HeaderWebhookID, id)
	req.Header.Set(signature.HeaderWebhookTimestamp, strconv.FormatInt(now.Unix(), 10))
	if n.secret != "" {
		sig, err := signature.StandardSign(id, now, body, n.secret)
		if err != nil {
			return fmt.Errorf("alert signature: %w", err)
		}
		req.Header.Set(signature.HeaderWebhookSignature, sig)
	}
	resp, err := n.client.Do(req)
	if err != nil {
		// The URL may hold a token (chat webhooks do): keep it out of the error.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("alert post: %w", err)
	}
	// Read what little the endpoint answers, so that the connection goes back
	// to the pool rather than being closed: a burst of dead deliveries then
	// costs one connection, not one TCP (and TLS) handshake per alert.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("alert post: HTTP %d", resp.StatusCode)
	}
	return nil
}
