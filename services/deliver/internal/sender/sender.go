// Package sender makes one outbound delivery: a POST of the original body,
// signed with Standard Webhooks and x-relay-signature, over pooled keep-alive
// connections through the SSRF-guarded dialer, with connect and total
// timeouts and at most 4 KiB of the response kept.
package sender

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/ssrf"
	"github.com/relayhq/relay/pkg/telemetry"
)

// Outbound headers besides the Standard Webhooks ones.
const (
	HeaderEventID   = "X-Relay-Event-Id"
	HeaderEventType = "X-Relay-Event-Type"
	HeaderAttempt   = "X-Relay-Attempt"
)

// MaxResponse is how much of a response body is kept.
const MaxResponse = 4 << 10

// Config shapes the HTTP client.
type Config struct {
	// Timeout bounds a whole attempt: connect, TLS, request, response headers and body.
	Timeout time.Duration
	// ConnectTimeout bounds the TCP connect.
	ConnectTimeout time.Duration
	// AllowPrivate lifts the SSRF guard (development and tests only).
	AllowPrivate bool
	// MaxIdlePerHost bounds the kept-alive connections per endpoint host.
	MaxIdlePerHost int
	// Proxy, when set, is the egress proxy every delivery goes through
	// (http, https or socks5). Relay then connects only to it, and refuses
	// an endpoint before the request when any address its host resolves to
	// is forbidden (unless AllowPrivate).
	Proxy *url.URL
	// RequireHTTPS refuses to deliver to an http:// endpoint
	// (RELAY_REQUIRE_HTTPS): a subscription made before it was set.
	RequireHTTPS bool
}

// Sender sends deliveries.
type Sender struct {
	client       *http.Client
	userAgent    string
	requireHTTPS bool
	// guardHost is set when deliveries go through a proxy: the SSRF check
	// made before each request, since the dialer sees only the proxy.
	guardHost func(ctx context.Context, host string) error
}

// New returns a Sender. tp traces each POST as a client span whose context
// travels in the request's traceparent header.
func New(c Config, tp trace.TracerProvider) *Sender {
	dialer := ssrf.Dialer(c.ConnectTimeout, c.AllowPrivate)
	resolver := net.DefaultResolver
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		return ssrf.DialContext(ctx, dialer, resolver, network, addr)
	}
	var proxy func(*http.Request) (*url.URL, error) // never one from the environment: it would bypass the guard
	var guardHost func(context.Context, string) error
	if c.Proxy != nil {
		// Every connection is to the proxy, often on a private address of
		// its own: dialled as it is, the endpoint checked before the request.
		proxy = http.ProxyURL(c.Proxy)
		dial = (&net.Dialer{Timeout: c.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext
		if !c.AllowPrivate {
			guardHost = func(ctx context.Context, host string) error { return ssrf.CheckHost(ctx, resolver, host) }
		}
	}
	transport := &http.Transport{
		Proxy:                 proxy,
		DialContext:           dial,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   c.MaxIdlePerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ResponseHeaderTimeout: c.Timeout,
		ExpectContinueTimeout: time.Second,
	}
	var rt http.RoundTripper = transport
	if tp != nil {
		rt = otelhttp.NewTransport(transport,
			otelhttp.WithTracerProvider(tp),
			// Delivery metrics are the engine's; otelhttp's would go to no exporter.
			otelhttp.WithMeterProvider(metricnoop.NewMeterProvider()),
			otelhttp.WithPropagators(propagation.TraceContext{}),
			otelhttp.WithSpanNameFormatter(func(string, *http.Request) string { return "POST webhook" }),
		)
	}
	return &Sender{
		client: &http.Client{
			Transport: rt,
			Timeout:   c.Timeout,
			// Redirects are not followed: the target was checked, the
			// redirect's would not be, and receivers must answer 2xx themselves.
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		},
		userAgent:    "Relay/" + telemetry.Version,
		guardHost:    guardHost,
		requireHTTPS: c.RequireHTTPS,
	}
}

// Request is one attempt to make.
type Request struct {
	URL         string
	Body        []byte
	ContentType string
	EventID     string
	EventType   string
	Attempt     int
	// Secrets sign the request: every one in webhook-signature (several while
	// a rotated secret is in its grace period), the first in x-relay-signature.
	Secrets []string
	// Forwarded are the sender's request headers the event's source
	// forwards; Header, the subscription's custom headers, which win over
	// them. Both have canonical names and none of Relay's own (the API
	// refuses those), and Relay's own are set after them anyway.
	Forwarded []record.ForwardedHeader
	Header    map[string]string
	Now       time.Time
}

// Response is what came back.
type Response struct {
	Status  int
	Header  http.Header
	Body    []byte
	Latency time.Duration
	// Err is a network error or timeout; Status is 0 then.
	Err error
}

// Send makes the attempt. It never returns a Go error: failures are in Response.Err.
func (s *Sender) Send(ctx context.Context, r Request) Response {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL, bytes.NewReader(r.Body))
	if err != nil {
		return Response{Err: fmt.Errorf("build request: %w", errors.Unwrap(err)), Latency: time.Since(start)}
	}
	if s.requireHTTPS && req.URL.Scheme != "https" {
		// Retried like a network error: the attempt that follows a PATCH of
		// the url to https:// is delivered.
		return Response{Err: errors.New("refused: the endpoint is not https:// and RELAY_REQUIRE_HTTPS=true; PATCH the subscription's url to https://"), Latency: time.Since(start)}
	}
	if s.guardHost != nil {
		if err := s.guardHost(ctx, req.URL.Hostname()); err != nil {
			return Response{Err: err, Latency: time.Since(start)}
		}
	}
	sig, err := signature.StandardSign(r.EventID, r.Now, r.Body, r.Secrets...)
	if err != nil {
		return Response{Err: fmt.Errorf("sign: %w", err), Latency: time.Since(start)}
	}
	h := req.Header
	for _, f := range r.Forwarded {
		h[f.Name] = []string{f.Value}
	}
	for k, v := range r.Header {
		h[k] = []string{v}
	}
	ct := r.ContentType
	if ct == "" {
		ct = "application/octet-stream"
		if json.Valid(r.Body) {
			ct = "application/json"
		}
	}
	h.Set("Content-Type", ct)
	h.Set("User-Agent", s.userAgent)
	h.Set(signature.HeaderWebhookID, r.EventID)
	h.Set(signature.HeaderWebhookTimestamp, strconv.FormatInt(r.Now.Unix(), 10))
	h.Set(signature.HeaderWebhookSignature, sig)
	if len(r.Secrets) > 0 {
		h.Set(signature.HeaderRelaySignature, signature.HexHMAC(r.Secrets[0], r.Body))
	}
	h.Set(HeaderEventID, r.EventID)
	h.Set(HeaderEventType, r.EventType)
	h.Set(HeaderAttempt, strconv.Itoa(r.Attempt))

	resp, err := s.client.Do(req)
	if err != nil {
		return Response{Err: scrub(err), Latency: time.Since(start)}
	}
	defer resp.Body.Close()
	// The status decides the outcome; a body cut short by an error is kept as read.
	body, _ := io.ReadAll(io.LimitReader(resp.Body, MaxResponse))
	// Drain a little more so the connection can be reused; give up on huge bodies.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return Response{Status: resp.StatusCode, Header: resp.Header, Body: body, Latency: time.Since(start)}
}

// scrub drops the URL from a client error: subscription URLs can carry
// tokens in their path or query, and errors end up in logs and the API.
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	switch {
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, http.ErrHandlerTimeout):
		return errors.New("timeout: no complete response within the delivery timeout")
	case errors.Is(err, ssrf.ErrForbidden):
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return errors.New("timeout: " + err.Error())
	}
	return err
}
