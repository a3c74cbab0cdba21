package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/secretbox"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/testenv"
	"github.com/relayhq/relay/services/relay/internal/stack"
)

const adminToken = "e2e-admin-token-0123456789"

// env is a running stack on the test broker and Redis.
type env struct {
	t      *testing.T
	api    string
	names  record.Topics
	kcfg   kafka.Config
	vars   map[string]string
	stack  *stack.Stack
	opts   stack.Options
	cancel context.CancelFunc
	done   chan error
}

// services says which services a test runs besides ingest.
type services struct{ deliver, archive, count bool }

// startStack runs ingest and deliver in-process against the test services,
// with a topic prefix of its own.
func startStack(t *testing.T, extra map[string]string) *env {
	return startServices(t, services{deliver: true}, extra)
}

// startServices runs ingest and the chosen services.
func startServices(t *testing.T, which services, extra map[string]string) *env {
	return startServicesTraced(t, which, extra, nil)
}

// startServicesTraced is startServices with every service tracing to tp.
func startServicesTraced(t *testing.T, which services, extra map[string]string, tp trace.TracerProvider) *env {
	t.Helper()
	kcfg := testenv.KafkaConfig(t)
	vars := map[string]string{
		"RELAY_KAFKA_BROKERS":              strings.Join(kcfg.Brokers, ","),
		"RELAY_KAFKA_TOPIC_PREFIX":         kcfg.TopicPrefix,
		"RELAY_KAFKA_PARTITIONS":           "3",
		"RELAY_REDIS_ADDRS":                testenv.RedisAddr(t),
		"RELAY_ADMIN_TOKEN":                adminToken,
		"RELAY_SECRET_KEY":                 secretbox.GenerateKey(),
		"RELAY_HTTP_ADDR":                  "127.0.0.1:0",
		"RELAY_ADMIN_ADDR":                 "127.0.0.1:0",
		"RELAY_ALLOW_PRIVATE_DESTINATIONS": "true",
		"RELAY_RETRY_TIERS":                "1s,2s,3s",
		"RELAY_DELIVERY_TIMEOUT":           "10s",
		"RELAY_REVOKE_WAIT":                "2s",
	}
	for k, v := range extra {
		vars[k] = v
	}
	kcfg.RetryTiers = nil
	for _, d := range strings.Split(vars["RELAY_RETRY_TIERS"], ",") {
		dd, _ := time.ParseDuration(d)
		kcfg.RetryTiers = append(kcfg.RetryTiers, dd)
	}
	names := testenv.Names(t, kcfg)
	level := slog.LevelWarn
	if os.Getenv("RELAY_TEST_VERBOSE") != "" {
		level = slog.LevelDebug
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	ctx, cancel := context.WithCancel(context.Background())
	opts := stack.Options{
		Env: func(string) envconfig.LookupFunc {
			return func(k string) (string, bool) { v, ok := vars[k]; return v, ok }
		},
		Logger:         log,
		TracerProvider: tp,
		Deliver:        which.deliver, Archive: which.archive, Count: which.count,
	}
	s, err := stack.New(ctx, opts)
	if err != nil {
		cancel()
		t.Fatalf("start stack: %v", err)
	}
	e := &env{t: t, api: "http://" + s.Ingest.Addr(), names: names, kcfg: kcfg, vars: vars, stack: s, opts: opts, cancel: cancel, done: make(chan error, 1)}
	go func() { e.done <- s.Run(ctx) }()
	t.Cleanup(e.stop)
	return e
}

func (e *env) stop() {
	if e.cancel == nil {
		return
	}
	e.cancel()
	e.cancel = nil
	select {
	case err := <-e.done:
		if err != nil {
			e.t.Errorf("stack stopped with: %v", err)
		}
	case <-time.After(60 * time.Second):
		e.t.Error("stack did not stop within 60s")
	}
}

// call makes an authenticated API call and decodes the JSON answer into out.
func (e *env) call(method, path string, body any, out any) int {
	e.t.Helper()
	return e.callAs(adminToken, method, path, body, out)
}

// callAs is call with token as the bearer token.
func (e *env) callAs(token, method, path string, body any, out any) int {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, e.api+path, rd)
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			e.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, raw, err)
		}
	}
	return resp.StatusCode
}

type source struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

type subscription struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

func (e *env) createSource(scheme string) source {
	e.t.Helper()
	var s source
	if code := e.call("POST", "/sources", map[string]any{"name": "e2e", "verification": map[string]any{"scheme": scheme}}, &s); code != 201 {
		e.t.Fatalf("create source: %d", code)
	}
	return s
}

func (e *env) subscribe(src, url string, events any) subscription {
	e.t.Helper()
	var s subscription
	if code := e.call("POST", "/sources/"+src+"/subscriptions", map[string]any{"url": url, "events": events}, &s); code != 201 {
		e.t.Fatalf("create subscription: %d", code)
	}
	return s
}

type ingestReply struct {
	EventID   string `json:"event_id"`
	Duplicate bool   `json:"duplicate"`
	Error     *struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

// send posts body to the source signed with secret under scheme.
func (e *env) send(src source, scheme string, body []byte, headers map[string]string) (int, ingestReply) {
	e.t.Helper()
	req, _ := http.NewRequest("POST", e.api+"/in/"+src.ID, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if src.Secret != "" {
		s, _ := signature.Lookup(scheme)
		if err := s.Sign(req.Header, body, src.Secret, time.Now()); err != nil {
			e.t.Fatal(err)
		}
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatalf("POST /in: %v", err)
	}
	defer resp.Body.Close()
	var r ingestReply
	_ = json.NewDecoder(resp.Body).Decode(&r)
	return resp.StatusCode, r
}

type deliveryView struct {
	SubscriptionID string `json:"subscription_id"`
	Status         string `json:"status"`
	Attempts       int    `json:"attempts"`
	LastStatusCode int    `json:"last_status_code"`
	LastError      string `json:"last_error"`
	NextAttemptAt  string `json:"next_attempt_at"`
	OrderingKey    string `json:"ordering_key"`
	Behind         string `json:"behind"`
	History        []struct {
		Attempt    int `json:"attempt"`
		StatusCode int `json:"status_code"`
	} `json:"history"`
}

func (e *env) deliveries(src, evt string) map[string]deliveryView {
	e.t.Helper()
	var out struct {
		Data []deliveryView `json:"data"`
	}
	if code := e.call("GET", "/sources/"+src+"/events/"+evt+"/deliveries", nil, &out); code != 200 {
		e.t.Fatalf("deliveries: %d", code)
	}
	m := map[string]deliveryView{}
	for _, d := range out.Data {
		m[d.SubscriptionID] = d
	}
	return m
}

// waitStatus waits until the delivery of evt to sub has the given status.
func (e *env) waitStatus(src, evt, sub, status string, within time.Duration) deliveryView {
	e.t.Helper()
	var last deliveryView
	testenv.Eventually(e.t, within, fmt.Sprintf("delivery %s/%s to be %s", evt, sub, status), func() bool {
		last = e.deliveries(src, evt)[sub]
		return last.Status == status
	})
	return last
}

// endOffsets sums the end offsets of a topic: how many records it ever held.
func (e *env) endOffsets(topic string) int64 {
	e.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(e.kcfg.Brokers...))
	if err != nil {
		e.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
	if err != nil {
		e.t.Fatal(err)
	}
	var n int64
	ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
	return n
}

// receiver records every request it gets and answers with what mode says.
type receiver struct {
	*httptest.Server
	mu    sync.Mutex
	got   []received
	reply func(r *http.Request, n int) (int, http.Header)
}

type received struct {
	Header http.Header
	Body   []byte
	At     time.Time
}

func newReceiver(t *testing.T, reply func(r *http.Request, n int) (int, http.Header)) *receiver {
	rc := &receiver{reply: reply}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, received{Header: r.Header.Clone(), Body: body, At: time.Now()})
		n := len(rc.got)
		rc.mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body)) // for reply, as the endpoint would read it
		status, h := 200, http.Header(nil)
		if rc.reply != nil {
			status, h = rc.reply(r, n)
		}
		for k, v := range h {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// byWebhookID counts requests per webhook-id.
func (rc *receiver) byWebhookID() map[string]int {
	m := map[string]int{}
	for _, r := range rc.requests() {
		m[r.Header.Get("Webhook-Id")]++
	}
	return m
}

func ok200(*http.Request, int) (int, http.Header) { return 200, nil }

// extraDeliver runs one more deliver replica until the returned stop is
// called (a graceful stop: in-flight deliveries finish, offsets commit).
func (e *env) extraDeliver() (stop func()) {
	e.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d, err := stack.NewDeliver(ctx, e.opts)
	if err != nil {
		cancel()
		e.t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- d.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				e.t.Errorf("deliver stopped with: %v", err)
			}
		})
	}
	e.t.Cleanup(stop)
	return stop
}

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
