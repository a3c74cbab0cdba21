package ingest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	goredis "github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/envconfig"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/secretbox"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/telemetry"
	"github.com/relayhq/relay/pkg/testenv"
	"github.com/relayhq/relay/services/ingest/internal/classify"
	"github.com/relayhq/relay/services/ingest/internal/dedup"
)

const token = "ingest-test-token-0123456789"

type harness struct {
	t       testing.TB
	base    string
	admin   string // the admin port's base URL
	brokers []string
	topic   string
	redis   string
	tel     *telemetry.Telemetry
	logs    *testenv.LogBuffer
	// stop begins the replica's shutdown (as SIGTERM does).
	stop context.CancelFunc
}

// start runs an ingest replica on the given broker and Redis (the shared
// test ones unless overridden).
func start(t testing.TB, brokers []string, redisAddr string, extra map[string]string) *harness {
	t.Helper()
	kcfg := testenv.KafkaConfig(t)
	if brokers == nil {
		brokers = kcfg.Brokers
	}
	if redisAddr == "" {
		redisAddr = testenv.RedisAddr(t)
	}
	vars := map[string]string{
		"RELAY_KAFKA_BROKERS":      strings.Join(brokers, ","),
		"RELAY_KAFKA_TOPIC_PREFIX": kcfg.TopicPrefix,
		"RELAY_KAFKA_PARTITIONS":   "3",
		"RELAY_REDIS_ADDRS":        redisAddr,
		"RELAY_ADMIN_TOKEN":        token,
		"RELAY_SECRET_KEY":         secretbox.GenerateKey(),
		"RELAY_HTTP_ADDR":          "127.0.0.1:0",
		"RELAY_MAX_BODY_BYTES":     "4096",
		"RELAY_ADMIN_ADDR":         "127.0.0.1:0",
	}
	for k, v := range extra {
		vars[k] = v
	}
	cfg, err := LoadConfig(envconfig.FromMap(vars))
	if err != nil {
		t.Fatal(err)
	}
	h := &harness{t: t, brokers: brokers, topic: kcfg.TopicPrefix + "relay.events", redis: redisAddr, logs: &testenv.LogBuffer{}}
	h.tel, err = telemetry.Setup(context.Background(), envconfig.FromMap(nil), "ingest-test", telemetry.Options{})
	if err != nil {
		t.Fatal(err)
	}
	log := logging.New(io.MultiWriter(h.logs), logging.Config{Level: slog.LevelDebug, Format: "json"}, "ingest")
	svc, err := New(context.Background(), cfg, lifecycle.Deps{Logger: log, Telemetry: h.tel})
	if err != nil {
		t.Fatal(err)
	}
	h.base = "http://" + svc.Addr()
	h.admin = "http://" + svc.AdminAddr()
	ctx, cancel := context.WithCancel(context.Background())
	h.stop = cancel
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ingest stopped with: %v", err)
		}
	})
	return h
}

func (h *harness) do(method, path string, body any, header http.Header) (int, http.Header, []byte) {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	case string:
		rd = strings.NewReader(b)
	case io.Reader: // of unknown length: sent chunked
		rd = b
	default:
		raw, _ := json.Marshal(b)
		rd = bytes.NewReader(raw)
	}
	url := h.base + path
	if strings.HasPrefix(path, "http://") {
		url = path // another port of the replica's
	}
	req, _ := http.NewRequest(method, url, rd)
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, raw
}

func admin() http.Header { return http.Header{"Authorization": {"Bearer " + token}} }

type created struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

func (h *harness) source(scheme string) created {
	h.t.Helper()
	code, _, raw := h.do("POST", "/sources", map[string]any{"name": "test", "verification": map[string]any{"scheme": scheme}}, admin())
	var c created
	if code != 201 || json.Unmarshal(raw, &c) != nil || c.Secret == "" {
		h.t.Fatalf("create source: %d %s", code, raw)
	}
	return c
}

// signed returns headers for body signed with scheme and secret at now.
func signed(t *testing.T, scheme, secret string, body []byte, now time.Time) http.Header {
	t.Helper()
	s, _ := signature.Lookup(scheme)
	h := http.Header{"Content-Type": {"application/json"}}
	if err := s.Sign(h, body, secret, now); err != nil {
		t.Fatal(err)
	}
	return h
}

type reply struct {
	EventID   string `json:"event_id"`
	Duplicate bool   `json:"duplicate"`
	Error     struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func decode(t *testing.T, raw []byte) reply {
	t.Helper()
	var r reply
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatalf("not JSON: %s", raw)
	}
	return r
}

// metric is the value of one line of ingest's /metrics, by its name and
// labels as exposed ("" when absent).
func (h *harness) metric(name string) string {
	_, _, raw := h.do("GET", "/metrics", nil, nil)
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return v
		}
	}
	return ""
}

// records counts the records ever written to the events topic.
func (h *harness) records() int64 {
	h.t.Helper()
	return h.recordsOn(h.topic)
}

// recordsOn counts the records ever written to topic. A partition whose
// leadership is moving (a broker that was frozen, or restarted, and is
// being fenced or let back in) is asked again until it answers.
func (h *harness) recordsOn(topic string) int64 {
	h.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		ends, err := kadm.NewClient(cl).ListEndOffsets(ctx, topic)
		cancel()
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			var n int64
			ends.Each(func(o kadm.ListedOffset) { n += o.Offset })
			return n
		}
		if time.Now().After(deadline) {
			h.t.Fatal(err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// bodies reads every record of the events topic and counts them by body.
func (h *harness) bodies() map[string]int {
	h.t.Helper()
	want := h.records()
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...), kgo.ConsumeTopics(h.topic), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		h.t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out := map[string]int{}
	for n := int64(0); n < want; {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			h.t.Fatalf("read %d of %d records: %v", n, want, err)
		}
		fs.EachRecord(func(r *kgo.Record) { out[string(r.Value)]++; n++ })
	}
	return out
}

// A sender hanging up must not fail other senders' events. Ingest lingers
// so that concurrent requests share a produce batch; with each record
// produced under its request's context, franz-go failed a batch whose first
// record's sender had gone, and, the producer being idempotent, every record
// buffered behind it on its partition: their senders got 503 and their
// dedup claims were released. Here a long linger keeps every record
// buffered; the first sender, whose record leads the batch, hangs up, and
// so do a few others.
func TestSenderHangingUpFailsNoOtherEvent(t *testing.T) {
	h := start(t, nil, "", map[string]string{"RELAY_KAFKA_LINGER": "1s"})
	src := h.source("relay")
	// A first event loads the topic's metadata, so the others are
	// partitioned, and linger, as soon as they are produced.
	warm := []byte(`{"type":"warm-up"}`)
	if code, _, raw := h.do("POST", "/in/"+src.ID, warm, signed(t, "relay", src.Secret, warm, time.Now())); code != 202 {
		t.Fatalf("warm-up: %d %s", code, raw)
	}
	type result struct {
		body      string
		cancelled bool
		code      int
		err       error
	}
	const n = 21
	results := make(chan result, n)
	send := func(i int, hangUpAfter time.Duration) {
		body := fmt.Sprintf(`{"type":"order.created","n":%d}`, i)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if hangUpAfter > 0 {
			time.AfterFunc(hangUpAfter, cancel)
		}
		// Of unknown length (chunked): the server reads the body to its
		// end, and so notices a hang-up at once.
		req, _ := http.NewRequestWithContext(ctx, "POST", h.base+"/in/"+src.ID, io.MultiReader(strings.NewReader(body)))
		req.Header = signed(t, "relay", src.Secret, []byte(body), time.Now())
		resp, err := http.DefaultClient.Do(req)
		r := result{body: body, cancelled: hangUpAfter > 0, err: err}
		if err == nil {
			r.code = resp.StatusCode
			resp.Body.Close()
		}
		results <- r
	}
	// The first record of the batch; its sender hangs up while it lingers.
	go send(0, 400*time.Millisecond)
	time.Sleep(200 * time.Millisecond)
	for i := 1; i < n; i++ {
		hangUp := time.Duration(0)
		if i%5 == 0 {
			hangUp = 200 * time.Millisecond
		}
		go send(i, hangUp)
	}
	var all []result
	for range n {
		all = append(all, <-results)
	}
	// Every request has had its answer, or hung up; the events of those
	// that hung up may still be on their way.
	time.Sleep(time.Second)
	stored := h.bodies()
	for _, r := range all {
		switch {
		case !r.cancelled && (r.err != nil || r.code != 202):
			t.Errorf("a sender that stayed got %d %v for %s", r.code, r.err, r.body)
		case !r.cancelled && stored[r.body] != 1:
			t.Errorf("an accepted event is stored %d times: %s", stored[r.body], r.body)
		case r.cancelled && stored[r.body] > 1:
			t.Errorf("a hung-up sender's event is stored %d times: %s", stored[r.body], r.body)
		}
	}
}

// A captured request of a scheme that signs its id, replayed within the
// tolerance with a fresh X-Idempotency-Key and another type header, is the
// same event: 200 with the original id, and the type stays the signed
// body's.
func TestUnsignedHeadersDoNotOverrideSignedIdentity(t *testing.T) {
	h := start(t, nil, "", nil)
	for _, scheme := range []string{"stripe", "standard-webhooks", "slack"} {
		t.Run(scheme, func(t *testing.T) {
			src := h.source(scheme)
			body := []byte(`{"id":"evt_replayed_1","event_id":"Ev_replayed_1","type":"payment.succeeded"}`)
			hdr := signed(t, scheme, src.Secret, body, time.Now())
			hdr.Set("X-Idempotency-Key", "first")
			code, _, raw := h.do("POST", "/in/"+src.ID, body, hdr)
			first := decode(t, raw)
			if code != 202 {
				t.Fatalf("first: %d %s", code, raw)
			}
			replay := hdr.Clone()
			replay.Set("X-Idempotency-Key", "fresh-"+scheme)
			replay.Set("X-GitHub-Event", "push")
			replay.Set("X-Shopify-Topic", "orders/create")
			code, _, raw = h.do("POST", "/in/"+src.ID, body, replay)
			if r := decode(t, raw); code != 200 || !r.Duplicate || r.EventID != first.EventID {
				t.Fatalf("replay with a fresh idempotency key: %d %s; want 200, a duplicate of %s", code, raw, first.EventID)
			}
			// Another event of the same source, with a type header that is
			// not the scheme's: typed by its signed body.
			other := []byte(`{"id":"evt_replayed_2","event_id":"Ev_replayed_2","type":"payment.failed"}`)
			ohdr := signed(t, scheme, src.Secret, other, time.Now())
			ohdr.Set("X-GitHub-Event", "push")
			code, _, raw = h.do("POST", "/in/"+src.ID, other, ohdr)
			if code != 202 {
				t.Fatalf("other: %d %s", code, raw)
			}
			var ev struct {
				Type string `json:"type"`
			}
			code, _, raw = h.do("GET", "/sources/"+src.ID+"/events/"+decode(t, raw).EventID, nil, admin())
			if code != 200 || json.Unmarshal(raw, &ev) != nil || ev.Type != "payment.failed" {
				t.Fatalf("event: %d %s; want the body's type", code, raw)
			}
		})
	}
}

func TestEverySchemeAcceptsSignedRejectsTamperedAndStale(t *testing.T) {
	h := start(t, nil, "", nil)
	for _, scheme := range signature.Names() {
		t.Run(scheme, func(t *testing.T) {
			src := h.source(scheme)
			body := []byte(`{"id":"evt_` + scheme + `_1","type":"invoice.paid"}`)
			code, _, raw := h.do("POST", "/in/"+src.ID, body, signed(t, scheme, src.Secret, body, time.Now()))
			if r := decode(t, raw); code != 202 || r.EventID == "" {
				t.Fatalf("signed request: %d %s", code, raw)
			}
			tampered := append([]byte(nil), body...)
			tampered[len(tampered)-3] = 'X'
			code, _, raw = h.do("POST", "/in/"+src.ID, tampered, signed(t, scheme, src.Secret, body, time.Now()))
			if r := decode(t, raw); code != 401 || r.Error.Code != "invalid_signature" {
				t.Fatalf("tampered body: %d %s", code, raw)
			}
			// The refusal's log line names the source, for the operator
			// whose sender's secret went stale.
			if !regexp.MustCompile(`"request failed".*"code":"invalid_signature".*"source_id":"` + src.ID + `"`).MatchString(h.logs.String()) {
				t.Fatalf("no log line of the refusal names source %s:\n%s", src.ID, h.logs.String())
			}
			switch scheme {
			case "standard-webhooks", "stripe", "slack":
				for _, skew := range []time.Duration{-10 * time.Minute, 10 * time.Minute} {
					code, _, raw = h.do("POST", "/in/"+src.ID, body, signed(t, scheme, src.Secret, body, time.Now().Add(skew)))
					if r := decode(t, raw); code != 401 || r.Error.Code != "timestamp_out_of_tolerance" {
						t.Fatalf("stale by %v: %d %s", skew, code, raw)
					}
				}
			}
		})
	}
	if got := metricVec(t, h, "relay_ingest_verification_failures_total").value(); got < float64(len(signature.Names())) {
		t.Fatalf("verification failures counted %v", got)
	}
}

// metricVec sums every series of a metric family in the harness's registry.
func metricVec(t *testing.T, h *harness, name string) *summed {
	t.Helper()
	return &summed{h: h, name: name}
}

type summed struct {
	h    *harness
	name string
}

func (s *summed) value() float64 {
	mfs, _ := s.h.tel.Registry.Gather()
	var total float64
	for _, mf := range mfs {
		if mf.GetName() != s.name {
			continue
		}
		for _, m := range mf.GetMetric() {
			switch {
			case m.Counter != nil:
				total += m.Counter.GetValue()
			case m.Gauge != nil:
				total += m.Gauge.GetValue()
			case m.Histogram != nil:
				total += float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return total
}

func TestConcurrentIdenticalRequestsProduceOneRecord(t *testing.T) {
	h := start(t, nil, "", nil)
	src := h.source("standard-webhooks")
	body := []byte(`{"type":"payment.succeeded","amount":100}`)
	hdr := signed(t, "standard-webhooks", src.Secret, body, time.Now())
	before := h.records()

	const n = 100
	var wg sync.WaitGroup
	codes := make([]int, n)
	ids := make([]string, n)
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			code, _, raw := h.do("POST", "/in/"+src.ID, body, hdr)
			codes[i], ids[i] = code, decode(t, raw).EventID
		}()
	}
	close(start)
	wg.Wait()
	accepted, dups := 0, 0
	for i := range codes {
		switch codes[i] {
		case 202:
			accepted++
		case 200:
			dups++
		default:
			t.Errorf("request %d answered %d", i, codes[i])
		}
		if ids[i] != ids[0] {
			t.Errorf("request %d got event %s, request 0 got %s", i, ids[i], ids[0])
		}
	}
	if accepted != 1 || dups != n-1 {
		t.Fatalf("%d accepted, %d duplicates; want 1 and %d", accepted, dups, n-1)
	}
	if got := h.records() - before; got != 1 {
		t.Fatalf("%d records produced for %d identical requests, want 1", got, n)
	}
}

// A topic an operator lowered below what RELAY_MAX_BODY_BYTES needs refuses
// the event for good: the sender gets 503 with a code that is not an
// outage's and a long Retry-After, the operator an error naming the
// settings to compare, and nothing is half-accepted.
func TestBrokerRefusalAnswers503AndSaysWhy(t *testing.T) {
	h := start(t, nil, "", nil)
	src := h.source("relay")
	cl, err := kgo.NewClient(kgo.SeedBrokers(h.brokers...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	small := "1000"
	resp, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{{Op: kadm.SetConfig, Name: "max.message.bytes", Value: &small}}, h.topic)
	if err != nil || resp[0].Err != nil {
		t.Fatal(err, resp)
	}
	// The broker applies the new limit within moments; until then each
	// event (a new one each time) is accepted.
	var code int
	var respHdr http.Header
	var raw []byte
	n := 0
	testenv.Eventually(t, 20*time.Second, "the lowered limit to refuse an event", func() bool {
		n++
		body := []byte(fmt.Sprintf(`{"type":"big","n":%d,"pad":"%s"}`, n, strings.Repeat("x", 3000)))
		code, respHdr, raw = h.do("POST", "/in/"+src.ID, body, signed(t, "relay", src.Secret, body, time.Now()))
		return code != 202
	})
	if r := decode(t, raw); code != 503 || r.Error.Code != "broker_refused" || respHdr.Get("Retry-After") != "30" {
		t.Fatalf("refused: %d %v %s", code, respHdr, raw)
	}
	for _, want := range []string{`"level":"ERROR"`, "max.message.bytes", "RELAY_MAX_BODY_BYTES", "MESSAGE_TOO_LARGE"} {
		if !strings.Contains(h.logs.String(), want) {
			t.Errorf("logs lack %q", want)
		}
	}
}

func TestBrokerDownAnswers503AndLeavesNothingHalfAccepted(t *testing.T) {
	broker := testenv.StartKafka(t)
	h := start(t, []string{broker.Addr}, "", map[string]string{"RELAY_PRODUCE_TIMEOUT": "2s", "RELAY_KAFKA_DIAL_TIMEOUT": "1s"})
	src := h.source("relay")
	body := []byte(`{"type":"order.created","id":42}`)
	hdr := signed(t, "relay", src.Secret, body, time.Now())
	hdr.Set("X-Idempotency-Key", "order-42")

	broker.Kill()
	code, respHdr, raw := h.do("POST", "/in/"+src.ID, body, hdr)
	if r := decode(t, raw); code != 503 || r.Error.Code != "broker_unavailable" || respHdr.Get("Retry-After") == "" {
		t.Fatalf("broker down: %d %v %s", code, respHdr, raw)
	}
	rdb := testenv.Redis(t)
	s, _ := signature.Lookup("relay")
	key := dedup.Key(src.ID, classify.DedupKey(hdr, body, s))
	// The record never reached a broker, so it fails for good, at the
	// request's deadline or just after it, and the claim goes with it.
	testenv.Eventually(t, 10*time.Second, "the failed produce's dedup marker to go", func() bool {
		n, err := rdb.Exists(context.Background(), key).Result()
		return err == nil && n == 0
	})

	broker.Start()
	var accepted reply
	testenv.Eventually(t, 60*time.Second, "the retried request to be accepted", func() bool {
		code, _, raw := h.do("POST", "/in/"+src.ID, body, hdr)
		accepted = decode(t, raw)
		return code == 202
	})
	code, _, raw = h.do("POST", "/in/"+src.ID, body, hdr)
	if r := decode(t, raw); code != 200 || !r.Duplicate || r.EventID != accepted.EventID {
		t.Fatalf("retry after acceptance: %d %s", code, raw)
	}
	if n := h.records(); n != 1 {
		t.Fatalf("%d records on the topic, want exactly the accepted one", n)
	}
}

// TestLateProduceIsFoundByTheRetry: a broker that took the record and has
// not answered when the request's time is up. The sender hears 503; the
// claim holds the key until the broker answers, so the retry finds the one
// event rather than making a second.
func TestLateProduceIsFoundByTheRetry(t *testing.T) {
	broker := testenv.StartKafka(t)
	h := start(t, []string{broker.Addr}, "", map[string]string{"RELAY_PRODUCE_TIMEOUT": "1s", "RELAY_DEDUP_WAIT": "100ms"})
	src := h.source("relay")
	body := []byte(`{"type":"order.created","id":43}`)
	hdr := signed(t, "relay", src.Secret, body, time.Now())
	hdr.Set("X-Idempotency-Key", "order-43")
	// One event first, so that the producer knows the topic's leaders and
	// holds its connection: frozen, the broker then takes the request and
	// answers nothing (a record never sent fails for good instead).
	warm := []byte(`{"type":"warm-up"}`)
	if code, _, raw := h.do("POST", "/in/"+src.ID, warm, signed(t, "relay", src.Secret, warm, time.Now())); code != 202 {
		t.Fatalf("warm-up: %d %s", code, raw)
	}

	broker.Freeze()
	code, respHdr, raw := h.do("POST", "/in/"+src.ID, body, hdr)
	if r := decode(t, raw); code != 503 || r.Error.Code != "broker_unavailable" || respHdr.Get("Retry-After") == "" {
		broker.Thaw()
		t.Fatalf("broker frozen: %d %v %s", code, respHdr, raw)
	}
	// While the outcome is unknown the key stays claimed, held past the
	// claim's own TTL (RELAY_PRODUCE_TIMEOUT + 10 s), and a retry waits.
	time.Sleep(12 * time.Second)
	code, _, raw = h.do("POST", "/in/"+src.ID, body, hdr)
	broker.Thaw()
	if r := decode(t, raw); code != 503 || r.Error.Code != "duplicate_in_flight" {
		t.Fatalf("retry while the produce is unanswered: %d %s, want 503 duplicate_in_flight", code, raw)
	}
	var found reply
	testenv.Eventually(t, 30*time.Second, "the retry to find the late event", func() bool {
		code, _, raw := h.do("POST", "/in/"+src.ID, body, hdr)
		found = decode(t, raw)
		return code == 200 && found.Duplicate
	})
	if n := h.records(); n != 2 {
		t.Fatalf("%d records on the topic, want the warm-up and the one taken late", n)
	}
	if got := metricVec(t, h, "relay_ingest_produce_late_total").value(); got != 1 {
		t.Fatalf("late acceptances counted %v, want 1", got)
	}
	if code, _, raw := h.do("GET", "/sources/"+src.ID+"/events/"+found.EventID, nil, admin()); code != 200 {
		t.Fatalf("the late event in the events API: %d %s", code, raw)
	}
}

func TestRedisDownAcceptsWithoutDedup(t *testing.T) {
	redis := testenv.StartRedis(t)
	h := start(t, nil, redis.Addr, map[string]string{"RELAY_REDIS_READ_TIMEOUT": "500ms", "RELAY_REDIS_DIAL_TIMEOUT": "500ms"})
	src := h.source("relay")
	body := []byte(`{"type":"a"}`)
	hdr := signed(t, "relay", src.Secret, body, time.Now())
	if code, _, raw := h.do("POST", "/in/"+src.ID, body, hdr); code != 202 {
		t.Fatalf("warm-up: %d %s", code, raw)
	}
	redis.Kill()
	body2 := []byte(`{"type":"b"}`)
	code, _, raw := h.do("POST", "/in/"+src.ID, body2, signed(t, "relay", src.Secret, body2, time.Now()))
	if code != 202 {
		t.Fatalf("with Redis down: %d %s, want 202 (fail open)", code, raw)
	}
	if got := metricVec(t, h, "relay_ingest_dedup_fail_open_total").value(); got != 1 {
		t.Fatalf("fail-open counted %v, want 1", got)
	}
	// The public probe says degraded, and no more: the error, which names
	// Redis's address, is on the admin port and in the log.
	testenv.Eventually(t, 5*time.Second, "readyz to see Redis down", func() bool {
		code, _, raw := h.do("GET", "/readyz", nil, nil)
		return code == 200 && strings.TrimSpace(string(raw)) == `{"status":"degraded"}`
	})
	if _, _, raw := h.do("GET", h.admin+"/readyz", nil, nil); !strings.Contains(string(raw), `"redis":"degraded: `) {
		t.Fatalf("admin readyz with Redis down: %s", raw)
	}
	if !strings.Contains(h.logs.String(), "readiness check failing") {
		t.Fatal("the failing check is not in the log")
	}
	redis.Start()
}

// TestRedisRefusingWritesAcceptsWithoutDedup: a Redis that answers but
// refuses writes (here out of memory under noeviction; also read-only or
// failing to persist) is treated like one that is down, not as a 500 that
// a sender without retries would lose its event to.
func TestRedisRefusingWritesAcceptsWithoutDedup(t *testing.T) {
	rs := testenv.StartRedis(t) // its own: the shared one must keep accepting writes
	h := start(t, nil, rs.Addr, nil)
	src := h.source("relay")
	rdb := goredis.NewClient(&goredis.Options{Addr: rs.Addr})
	defer rdb.Close()
	ctx := context.Background()
	if err := rdb.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	defer rdb.ConfigSet(ctx, "maxmemory", "0")
	if err := rdb.Set(ctx, "probe", "x", 0).Err(); !redisconn.IsWriteRefused(err) {
		t.Fatalf("a write to the full Redis answered %v, want OOM", err)
	}
	body := []byte(`{"type":"full"}`)
	code, _, raw := h.do("POST", "/in/"+src.ID, body, signed(t, "relay", src.Secret, body, time.Now()))
	if code != 202 {
		t.Fatalf("with Redis refusing writes: %d %s, want 202 (fail open)", code, raw)
	}
	if got := metricVec(t, h, "relay_ingest_dedup_fail_open_total").value(); got != 1 {
		t.Fatalf("fail-open counted %v, want 1", got)
	}
	// The management API says why it cannot write, rather than a bare 500.
	code, hdr, raw := h.do("POST", "/sources", map[string]any{"name": "more"}, admin())
	if r := decode(t, raw); code != 503 || r.Error.Code != "redis_refuses_writes" || !strings.Contains(r.Error.Message, "OOM") || hdr.Get("Retry-After") == "" {
		t.Fatalf("creating a source in a full Redis: %d %s, want 503 redis_refuses_writes naming OOM, with Retry-After", code, raw)
	}
}

func TestRotationGrace(t *testing.T) {
	h := start(t, nil, "", nil)
	src := h.source("github")
	body := []byte(`{"action":"opened"}`)
	code, _, raw := h.do("POST", "/sources/"+src.ID+"/rotate-secret", map[string]any{"grace": "2s"}, admin())
	var rot created
	if code != 200 || json.Unmarshal(raw, &rot) != nil || rot.Secret == "" || rot.Secret == src.Secret {
		t.Fatalf("rotate: %d %s", code, raw)
	}
	for name, secret := range map[string]string{"old": src.Secret, "new": rot.Secret} {
		if code, _, raw := h.do("POST", "/in/"+src.ID, body, signed(t, "github", secret, body, time.Now())); code != 202 {
			t.Fatalf("%s secret during grace: %d %s", name, code, raw)
		}
	}
	time.Sleep(2500 * time.Millisecond)
	if code, _, _ := h.do("POST", "/in/"+src.ID, body, signed(t, "github", src.Secret, body, time.Now())); code != 401 {
		t.Fatalf("old secret after grace: %d, want 401", code)
	}
	if code, _, _ := h.do("POST", "/in/"+src.ID, body, signed(t, "github", rot.Secret, body, time.Now())); code != 200 && code != 202 {
		t.Fatalf("new secret after grace: %d", code)
	}
}

func TestSuppliedSecretsAreUsed(t *testing.T) {
	h := start(t, nil, "", nil)
	// A provider's own secret (Stripe's whsec_…) is taken as given.
	const stripeSecret = "whsec_operator_supplied_0123456789"
	code, _, raw := h.do("POST", "/sources", map[string]any{"name": "stripe", "verification": map[string]any{"scheme": "stripe", "secret": stripeSecret}}, admin())
	var src created
	if code != 201 || json.Unmarshal(raw, &src) != nil || src.Secret != stripeSecret {
		t.Fatalf("create with a supplied secret: %d %s", code, raw)
	}
	body := []byte(`{"id":"evt_supplied","type":"charge.succeeded"}`)
	if code, _, raw := h.do("POST", "/in/"+src.ID, body, signed(t, "stripe", stripeSecret, body, time.Now())); code != 202 {
		t.Fatalf("signed with the supplied secret: %d %s", code, raw)
	}
	// A rotation to a supplied secret verifies with it.
	const rotated = "whsec_operator_rotated_9876543210"
	code, _, raw = h.do("POST", "/sources/"+src.ID+"/rotate-secret", map[string]any{"secret": rotated}, admin())
	var rot created
	if code != 200 || json.Unmarshal(raw, &rot) != nil || rot.Secret != rotated {
		t.Fatalf("rotate to a supplied secret: %d %s", code, raw)
	}
	body = []byte(`{"id":"evt_rotated","type":"charge.succeeded"}`)
	if code, _, raw := h.do("POST", "/in/"+src.ID, body, signed(t, "stripe", rotated, body, time.Now())); code != 202 {
		t.Fatalf("signed with the rotated secret: %d %s", code, raw)
	}
}

func TestSecretsNeverListed(t *testing.T) {
	h := start(t, nil, "", map[string]string{"RELAY_ALLOW_PRIVATE_DESTINATIONS": "true"})
	src := h.source("stripe")
	const endpointToken = "Bearer endpoint-token-7f3a"
	code, _, raw := h.do("POST", "/sources/"+src.ID+"/subscriptions", map[string]any{
		"url": "http://127.0.0.1:9/x", "events": []string{"a.*"}, "headers": map[string]string{"authorization": endpointToken},
	}, admin())
	var sub created
	if code != 201 || json.Unmarshal(raw, &sub) != nil || !strings.HasPrefix(sub.Secret, "whsec_") ||
		!strings.Contains(string(raw), `"header_names":["Authorization"]`) || strings.Contains(string(raw), endpointToken) {
		t.Fatalf("create subscription: %d %s", code, raw)
	}
	body := []byte(`{"id":"evt_1","type":"a.b"}`)
	h.do("POST", "/in/"+src.ID, body, signed(t, "stripe", src.Secret, body, time.Now()))
	h.do("POST", "/in/"+src.ID, body, http.Header{"Stripe-Signature": {"t=1,v1=00"}})
	for _, path := range []string{
		"/sources", "/sources/" + src.ID, "/sources/" + src.ID + "/subscriptions",
		"/sources/" + src.ID + "/subscriptions/" + sub.ID, "/sources/" + src.ID + "/events",
	} {
		code, _, raw := h.do("GET", path, nil, admin())
		if code != 200 {
			t.Fatalf("GET %s: %d", path, code)
		}
		for _, secret := range []string{src.Secret, sub.Secret, endpointToken} {
			if bytes.Contains(raw, []byte(secret)) || bytes.Contains(raw, []byte(`"secret"`)) {
				t.Fatalf("GET %s shows a secret: %s", path, raw)
			}
		}
	}
	// A PATCH of the headers answers their names only.
	code, _, raw = h.do("PATCH", "/sources/"+src.ID+"/subscriptions/"+sub.ID, map[string]any{"headers": map[string]string{"X-Api-Key": "key-value-9c1d"}}, admin())
	if code != 200 || !strings.Contains(string(raw), `"header_names":["X-Api-Key"]`) || strings.Contains(string(raw), "key-value-9c1d") {
		t.Fatalf("PATCH headers: %d %s", code, raw)
	}
	for _, secret := range []string{src.Secret, sub.Secret, token, endpointToken, "key-value-9c1d"} {
		if strings.Contains(h.logs.String(), secret) {
			t.Fatalf("a secret is in the logs")
		}
	}
}

func TestBadInput(t *testing.T) {
	h := start(t, nil, "", nil)
	src := h.source("relay")
	code, _, raw := h.do("POST", "/sources/"+src.ID+"/subscriptions", map[string]any{"url": "https://example.com"}, admin())
	var sub created
	if code != 201 || json.Unmarshal(raw, &sub) != nil {
		t.Fatalf("create subscription: %d %s", code, raw)
	}
	okBody := []byte(`{"type":"x"}`)
	tests := []struct {
		name     string
		method   string
		path     string
		body     any
		header   http.Header
		want     int
		code     string
		contains string
	}{
		{"unknown source", "POST", "/in/src_01ARZ3NDEKTSV4RRFFQ69G5FAV", okBody, signed(t, "relay", src.Secret, okBody, time.Now()), 404, "source_not_found", ""},
		{"malformed source id", "POST", "/in/../../etc/passwd", okBody, nil, 404, "", ""},
		{"missing signature names the header", "POST", "/in/" + src.ID, okBody, nil, 401, "missing_signature", "X-Relay-Signature"},
		{"malformed signature", "POST", "/in/" + src.ID, okBody, http.Header{"X-Relay-Signature": {"zz"}}, 401, "malformed_signature", "X-Relay-Signature"},
		{"body too large", "POST", "/in/" + src.ID, bytes.Repeat([]byte("a"), 5000), nil, 413, "payload_too_large", "4096"},
		{"chunked body too large", "POST", "/in/" + src.ID, io.MultiReader(bytes.NewReader(bytes.Repeat([]byte("a"), 5000))), nil, 413, "payload_too_large", "4096"},
		{"idempotency key too long", "POST", "/in/" + src.ID, okBody, func() http.Header {
			x := signed(t, "relay", src.Secret, okBody, time.Now())
			x.Set("X-Idempotency-Key", strings.Repeat("k", 300))
			return x
		}(), 400, "invalid_idempotency_key", ""},
		{"content type too long", "POST", "/in/" + src.ID, okBody, func() http.Header {
			x := signed(t, "relay", src.Secret, okBody, time.Now())
			x.Set("Content-Type", "application/json; x="+strings.Repeat("k", 1100))
			return x
		}(), 400, "invalid_content_type", "1024"},
		{"no admin token", "GET", "/sources", nil, nil, 401, "unauthorized", ""},
		{"wrong admin token", "GET", "/sources", nil, http.Header{"Authorization": {"Bearer nope"}}, 401, "unauthorized", ""},
		{"bad json", "POST", "/sources", `{"name":`, admin(), 400, "invalid_json", "malformed JSON"},
		{"unknown field named", "POST", "/sources", `{"name":"a","colour":"red"}`, admin(), 400, "invalid_json", `"colour"`},
		{"wrong type named", "POST", "/sources", `{"name":5}`, admin(), 400, "invalid_json", `"name"`},
		{"missing name", "POST", "/sources", `{}`, admin(), 400, "invalid_field", "name"},
		{"unknown scheme", "POST", "/sources", `{"name":"a","verification":{"scheme":"carrier-pigeon"}}`, admin(), 400, "invalid_field", "verification.scheme"},
		{"bad tolerance", "POST", "/sources", `{"name":"a","verification":{"scheme":"stripe","tolerance":"soon"}}`, admin(), 400, "invalid_field", "verification.tolerance"},
		// A zero given is out of range, not the default in disguise.
		{"zero tolerance", "POST", "/sources", `{"name":"a","verification":{"scheme":"stripe","tolerance":"0s"}}`, admin(), 400, "invalid_field", "verification.tolerance"},
		{"zero dedup window", "POST", "/sources", `{"name":"a","dedup_window":"0"}`, admin(), 400, "invalid_field", "dedup_window"},
		// A replay within the tolerance after the key expired would be new.
		{"dedup window under the tolerance", "POST", "/sources", `{"name":"a","verification":{"scheme":"stripe","tolerance":"1h"},"dedup_window":"30m"}`, admin(), 400, "invalid_field", "shorter than verification.tolerance (1h)"},
		{"unusable source secret", "POST", "/sources", `{"name":"a","verification":{"scheme":"standard-webhooks","secret":"whsec_%%%"}}`, admin(), 400, "invalid_field", "verification.secret"},
		{"unusable rotated secret", "POST", "/sources/" + src.ID + "/rotate-secret", `{"secret":"short"}`, admin(), 400, "invalid_field", "secret"},
		{"unusable subscription secret", "POST", "/sources/" + src.ID + "/subscriptions", `{"url":"https://example.com","secret":"not-whsec"}`, admin(), 400, "invalid_field", "secret"},
		{"bad subscription url", "POST", "/sources/" + src.ID + "/subscriptions", `{"url":"ftp://x"}`, admin(), 400, "invalid_field", "url"},
		{"private url refused", "POST", "/sources/" + src.ID + "/subscriptions", `{"url":"http://169.254.169.254/latest"}`, admin(), 400, "invalid_field", "not allowed"},
		{"zoned IPv6 url refused", "POST", "/sources/" + src.ID + "/subscriptions", `{"url":"http://[::1%25lo]/hook"}`, admin(), 400, "invalid_field", "zone"},
		{"reserved header", "POST", "/sources/" + src.ID + "/subscriptions", `{"url":"https://example.com","headers":{"webhook-signature":"v1,x"}}`, admin(), 400, "invalid_field", "Webhook-Signature is set by Relay"},
		{"relay's header prefix", "PATCH", "/sources/" + src.ID + "/subscriptions/" + sub.ID, `{"headers":{"X-Relay-Attempt":"1"}}`, admin(), 400, "invalid_field", "X-Relay-Attempt is set by Relay"},
		{"header name not a token", "POST", "/sources/" + src.ID + "/subscriptions", `{"url":"https://example.com","headers":{"Bad Name":"x"}}`, admin(), 400, "invalid_field", `"Bad Name" is not a header name`},
		{"header value with a line break", "POST", "/sources/" + src.ID + "/subscriptions", `{"url":"https://example.com","headers":{"X-Key":"a\r\nInjected: 1"}}`, admin(), 400, "invalid_field", "the value of X-Key must be"},
		{"header given twice", "POST", "/sources/" + src.ID + "/subscriptions", `{"url":"https://example.com","headers":{"x-key":"a","X-Key":"b"}}`, admin(), 400, "invalid_field", "X-Key is given twice"},
		{"header value not a string", "POST", "/sources/" + src.ID + "/subscriptions", `{"url":"https://example.com","headers":{"X-Key":1}}`, admin(), 400, "invalid_json", "headers"},
		{"bad glob", "POST", "/sources/" + src.ID + "/subscriptions", `{"url":"https://example.com","events":[""]}`, admin(), 400, "invalid_field", "events"},
		{"events of the wrong type named", "POST", "/sources/" + src.ID + "/subscriptions", `{"url":"https://example.com","events":5}`, admin(), 400, "invalid_json", `field "events" must be a glob`},
		{"events list of the wrong type named", "PATCH", "/sources/" + src.ID + "/subscriptions/" + sub.ID, `{"events":[1]}`, admin(), 400, "invalid_json", `field "events" must be a glob`},
		{"bad limit", "GET", "/sources?limit=0", nil, admin(), 400, "invalid_field", "limit"},
		{"bad cursor", "GET", "/sources/" + src.ID + "/events?cursor=zzz", nil, admin(), 400, "invalid_field", "cursor"},
		{"bad sources cursor", "GET", "/sources?cursor=zzz", nil, admin(), 400, "invalid_field", "cursor"},
		{"bad rewrap cursor", "POST", "/secrets/rewrap?cursor=zzz", nil, admin(), 400, "invalid_field", "cursor"},
		{"bad subscriptions cursor", "GET", "/sources/" + src.ID + "/subscriptions?cursor=" + src.ID, nil, admin(), 400, "invalid_field", "cursor"},
		{"bad day", "GET", "/sources/" + src.ID + "/metrics?from=yesterday", nil, admin(), 400, "invalid_field", "from"},
		{"unknown route", "GET", "/nope", nil, admin(), 404, "route_not_found", ""},
		{"wrong method", "PUT", "/sources", nil, admin(), 405, "method_not_allowed", ""},
		{"unknown event", "GET", "/sources/" + src.ID + "/events/evt_01ARZ3NDEKTSV4RRFFQ69G5FAV", nil, admin(), 404, "event_not_found", ""},
		// A misspelt filter must not widen a redrive to every parked delivery.
		{"unknown query parameter", "POST", "/replay/dlq?subscription=" + sub.ID, nil, admin(), 400, "unknown_parameter", `"subscription"; this route takes subscription_id, source_id`},
		{"query parameter on a route that takes none", "GET", "/sources/" + src.ID + "?limit=5", nil, admin(), 400, "unknown_parameter", "takes none"},
	}
	before := h.records()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, hdr, raw := h.do(tt.method, tt.path, tt.body, tt.header)
			if code != tt.want {
				t.Fatalf("status %d, want %d: %s", code, tt.want, raw)
			}
			if tt.code != "" {
				r := decode(t, raw)
				if r.Error.Code != tt.code || !strings.Contains(r.Error.Message, tt.contains) {
					t.Fatalf("error = %+v, want code %s mentioning %q", r.Error, tt.code, tt.contains)
				}
				if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
					t.Fatalf("content type %q", ct)
				}
			}
		})
	}
	if got := h.records() - before; got != 0 {
		t.Fatalf("bad requests produced %d records", got)
	}
	// Every failure left a log line.
	if n := strings.Count(h.logs.String(), `"request failed"`); n < len(tests) {
		t.Fatalf("%d failures logged, want at least %d", n, len(tests))
	}
}

// A body of unknown length (chunked) is read to its end, within the limit.
func TestChunkedBodyIsAccepted(t *testing.T) {
	h := start(t, nil, "", nil)
	src := h.source("relay")
	body := []byte(`{"type":"chunked.event"}`)
	code, _, raw := h.do("POST", "/in/"+src.ID, io.MultiReader(bytes.NewReader(body)), signed(t, "relay", src.Secret, body, time.Now()))
	if code != http.StatusAccepted {
		t.Fatalf("status %d: %s", code, raw)
	}
}

func TestEventsAPI(t *testing.T) {
	h := start(t, nil, "", nil)
	src := h.source("relay")
	var ids []string
	for i := 0; i < 5; i++ {
		body := []byte(fmt.Sprintf(`{"type":"t.%d","n":%d}`, i, i))
		_, _, raw := h.do("POST", "/in/"+src.ID, body, signed(t, "relay", src.Secret, body, time.Now()))
		ids = append(ids, decode(t, raw).EventID)
	}
	notJSON := []byte("a=1&b=2")
	_, _, raw := h.do("POST", "/in/"+src.ID, notJSON, signed(t, "relay", src.Secret, notJSON, time.Now()))
	formID := decode(t, raw).EventID

	var got []string
	cursor := ""
	for page := 0; page < 10; page++ {
		var out struct {
			Data []struct {
				ID   string `json:"id"`
				Type string `json:"type"`
			} `json:"data"`
			Next string `json:"next_cursor"`
		}
		_, _, raw := h.do("GET", "/sources/"+src.ID+"/events?limit=2&cursor="+cursor, nil, admin())
		if err := json.Unmarshal(raw, &out); err != nil {
			t.Fatal(err)
		}
		for _, e := range out.Data {
			got = append(got, e.ID)
		}
		if out.Next == "" {
			break
		}
		cursor = out.Next
	}
	want := append([]string{formID}, ids[4], ids[3], ids[2], ids[1], ids[0])
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("listing = %v, want newest first %v", got, want)
	}
	var one struct {
		Type          string          `json:"type"`
		Payload       json.RawMessage `json:"payload"`
		PayloadBase64 string          `json:"payload_base64"`
	}
	_, _, raw = h.do("GET", "/sources/"+src.ID+"/events/"+ids[2], nil, admin())
	if json.Unmarshal(raw, &one) != nil || one.Type != "t.2" || string(one.Payload) != `{"type":"t.2","n":2}` {
		t.Fatalf("event = %s", raw)
	}
	_, _, raw = h.do("GET", "/sources/"+src.ID+"/events/"+formID, nil, admin())
	if json.Unmarshal(raw, &one) != nil || one.Type != "unknown" || one.PayloadBase64 == "" {
		t.Fatalf("non-JSON event = %s", raw)
	}
}

// TestSourcePatch: a source is renamed and its tolerance and dedup window
// changed in place, so its sender keeps the same ingest URL; what PATCH
// cannot change (scheme, secret) is refused naming the field, and a damaged
// tolerance is repaired by setting it.
func TestSourcePatch(t *testing.T) {
	h := start(t, nil, "", nil)
	rdb := testenv.Redis(t)
	src := h.source("stripe")
	path := "/sources/" + src.ID
	body := []byte(`{"id":"evt_patch_1","type":"invoice.paid"}`)
	halfHourAgo := func() http.Header { return signed(t, "stripe", src.Secret, body, time.Now().Add(-30*time.Minute)) }
	if code, _, raw := h.do("POST", "/in/"+src.ID, body, halfHourAgo()); code != 401 {
		t.Fatalf("signed 30 minutes ago, default tolerance: %d %s", code, raw)
	}

	type sourceReply struct {
		ID           string `json:"id"`
		Name         string `json:"name"`
		Verification struct {
			Scheme, Tolerance string
		} `json:"verification"`
		DedupWindow string `json:"dedup_window"`
		IngestURL   string `json:"ingest_url"`
	}
	code, _, raw := h.do("PATCH", path, map[string]any{"name": " renamed ", "verification": map[string]any{"tolerance": "1h"}, "dedup_window": "2h"}, admin())
	var got sourceReply
	if code != 200 || json.Unmarshal(raw, &got) != nil || got.ID != src.ID || got.Name != "renamed" || got.Verification.Scheme != "stripe" ||
		got.Verification.Tolerance != "1h" || got.DedupWindow != "2h" || !strings.HasSuffix(got.IngestURL, "/in/"+src.ID) || strings.Contains(string(raw), `"secret"`) {
		t.Fatalf("PATCH: %d %s", code, raw)
	}
	// The new tolerance verifies at once, and the new window bounds the dedup key.
	code, _, raw = h.do("POST", "/in/"+src.ID, body, halfHourAgo())
	if code != 202 {
		t.Fatalf("signed 30 minutes ago, tolerance 1h: %d %s", code, raw)
	}
	ttl, err := rdb.TTL(context.Background(), dedup.Key(src.ID, "dlv:evt_patch_1")).Result()
	if err != nil || ttl <= time.Hour || ttl > 2*time.Hour {
		t.Fatalf("dedup key TTL %v %v, want the 2h window", ttl, err)
	}

	for _, tc := range []struct {
		body  string
		field string
	}{
		{`{"verification":{"scheme":"github"}}`, "verification.scheme"},
		{`{"verification":{"secret":"whsec_x"}}`, "verification.secret"},
		{`{"verification":{"tolerance":""}}`, "verification.tolerance"},
		{`{"verification":{"tolerance":"2h"}}`, "verification.tolerance"},
		{`{"dedup_window":"30s"}`, "dedup_window"},
		{`{"dedup_window":"soon"}`, "dedup_window"},
		{`{"name":"  "}`, "name"},
		// The window (now 2h) may not fall below the tolerance (now 1h),
		// by either change or both.
		{`{"dedup_window":"30m"}`, "dedup_window"},
		{`{"dedup_window":"1h","verification":{"tolerance":"1h"}}`, ""},
		{`{"dedup_window":"10m","verification":{"tolerance":"20m"}}`, "dedup_window"},
	} {
		if tc.field == "" {
			if code, _, raw := h.do("PATCH", path, tc.body, admin()); code != 200 {
				t.Errorf("PATCH %s: %d %s", tc.body, code, raw)
			}
			continue
		}
		code, _, raw := h.do("PATCH", path, tc.body, admin())
		if r := decode(t, raw); code != 400 || r.Error.Code != "invalid_field" || !strings.HasPrefix(r.Error.Message, tc.field+":") {
			t.Errorf("PATCH %s: %d %s, want 400 naming %s", tc.body, code, raw, tc.field)
		}
	}
	if code, _, raw := h.do("PATCH", path, `{"nmae":"x"}`, admin()); code != 400 || decode(t, raw).Error.Code != "invalid_json" {
		t.Errorf("PATCH with an unknown field: %d %s", code, raw)
	}
	if code, _, raw := h.do("PATCH", "/sources/src_01M0000000000000000000000A", `{"name":"x"}`, admin()); code != 404 {
		t.Errorf("PATCH of an unknown source: %d %s", code, raw)
	}
	// The same scheme, or nothing, changes nothing.
	for _, b := range []string{`{"verification":{"scheme":"stripe"}}`, `{}`} {
		code, _, raw = h.do("PATCH", path, b, admin())
		if json.Unmarshal(raw, &got) != nil || code != 200 || got.Name != "renamed" || got.Verification.Tolerance != "1h" {
			t.Fatalf("PATCH %s: %d %s", b, code, raw)
		}
	}

	// A damaged tolerance: refused until a PATCH sets it.
	if err := rdb.HSet(context.Background(), "relay:src:{"+src.ID+"}", "tolerance_ms", "soon").Err(); err != nil {
		t.Fatal(err)
	}
	code, _, raw = h.do("GET", path, nil, admin())
	if r := decode(t, raw); code != 500 || r.Error.Code != "corrupt_record" || !strings.Contains(r.Error.Message, "PATCH the source's verification.tolerance") {
		t.Fatalf("GET a damaged source: %d %s", code, raw)
	}
	code, _, raw = h.do("PATCH", path, `{"name":"other"}`, admin())
	if r := decode(t, raw); code != 500 || r.Error.Code != "corrupt_record" {
		t.Fatalf("PATCH leaving the damage: %d %s", code, raw)
	}
	if name, _ := rdb.HGet(context.Background(), "relay:src:{"+src.ID+"}", "name").Result(); name != "renamed" {
		t.Fatalf("a refused PATCH renamed the source to %q", name)
	}
	code, _, raw = h.do("PATCH", path, `{"verification":{"tolerance":"10m"}}`, admin())
	if json.Unmarshal(raw, &got) != nil || code != 200 || got.Verification.Tolerance != "10m" {
		t.Fatalf("PATCH repairing the tolerance: %d %s", code, raw)
	}
}

// TestForwardHeaders: a source forwards the sender's request headers it
// names with each event (on the record, in the events API, on replays);
// credentials for Relay's own endpoint and Relay's own headers are refused.
func TestForwardHeaders(t *testing.T) {
	h := start(t, nil, "", nil)
	code, _, raw := h.do("POST", "/sources", map[string]any{
		"name": "gh", "verification": map[string]any{"scheme": "github"},
		"forward_headers": []string{"x-github-event", "X-GitHub-Delivery", "X-Hub-Signature-256"},
	}, admin())
	var src struct {
		created
		ForwardHeaders []string `json:"forward_headers"`
	}
	if code != 201 || json.Unmarshal(raw, &src) != nil || strings.Join(src.ForwardHeaders, ",") != "X-Github-Event,X-Github-Delivery,X-Hub-Signature-256" {
		t.Fatalf("create source: %d %s", code, raw)
	}
	send := func(extra map[string]string) string {
		t.Helper()
		body := []byte(`{"action":"opened","number":` + fmt.Sprint(len(extra)) + `}`)
		hd := signed(t, "github", src.Secret, body, time.Now())
		for k, v := range extra {
			hd.Set(k, v)
		}
		code, _, raw := h.do("POST", "/in/"+src.ID, body, hd)
		r := decode(t, raw)
		if code != 202 {
			t.Fatalf("send: %d %s", code, raw)
		}
		return r.EventID
	}
	forwarded := func(evt string) map[string]string {
		t.Helper()
		var ev struct {
			Forwarded map[string]string `json:"forwarded_headers"`
		}
		_, _, raw := h.do("GET", "/sources/"+src.ID+"/events/"+evt, nil, admin())
		if err := json.Unmarshal(raw, &ev); err != nil {
			t.Fatal(err)
		}
		return ev.Forwarded
	}

	evt := send(map[string]string{"X-GitHub-Event": "pull_request", "X-GitHub-Delivery": "d-1", "X-Other": "not forwarded"})
	got := forwarded(evt)
	if len(got) != 3 || got["X-Github-Event"] != "pull_request" || got["X-Github-Delivery"] != "d-1" || !strings.HasPrefix(got["X-Hub-Signature-256"], "sha256=") {
		t.Fatalf("forwarded headers %v", got)
	}
	// A value too long to carry is left out, and the event still accepted.
	evt = send(map[string]string{"X-GitHub-Event": "push", "X-GitHub-Delivery": strings.Repeat("d", 9<<10)})
	if got := forwarded(evt); len(got) != 2 || got["X-Github-Event"] != "push" || !strings.Contains(h.logs.String(), "forwarded header too long") {
		t.Fatalf("with an over-long value: %v", got)
	}

	for body, field := range map[string]string{
		`{"forward_headers":["Authorization"]}`:     "Authorization carries a credential",
		`{"forward_headers":["content-type"]}`:      "Content-Type is set by Relay",
		`{"forward_headers":["X-Relay-Event-Id"]}`:  "X-Relay-Event-Id is set by Relay",
		`{"forward_headers":["X-A","x-a"]}`:         "X-A is given twice",
		`{"forward_headers":["bad name"]}`:          `"bad name" is not a header name`,
		`{"forward_headers":` + manyNames(21) + `}`: "at most 20",
	} {
		code, _, raw := h.do("PATCH", "/sources/"+src.ID, body, admin())
		if r := decode(t, raw); code != 400 || !strings.Contains(r.Error.Message, field) {
			t.Errorf("PATCH %s: %d %s, want 400 saying %q", body, code, raw, field)
		}
	}
	code, _, raw = h.do("PATCH", "/sources/"+src.ID, `{"forward_headers":[]}`, admin())
	if code != 200 || !strings.Contains(string(raw), `"forward_headers":[]`) {
		t.Fatalf("PATCH forward_headers []: %d %s", code, raw)
	}
	if got := forwarded(send(map[string]string{"X-GitHub-Event": "push"})); len(got) != 0 {
		t.Fatalf("after forwarding nothing: %v", got)
	}
}

// manyNames is a JSON list of n distinct header names.
func manyNames(n int) string {
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("X-H%d", i)
	}
	b, _ := json.Marshal(names)
	return string(b)
}

// TestRequireHTTPS: with RELAY_REQUIRE_HTTPS a subscription's url must be
// https, at creation and on a PATCH.
func TestRequireHTTPS(t *testing.T) {
	h := start(t, nil, "", map[string]string{"RELAY_REQUIRE_HTTPS": "true"})
	src := h.source("relay")
	subs := "/sources/" + src.ID + "/subscriptions"
	code, _, raw := h.do("POST", subs, map[string]any{"url": "http://example.com/hooks"}, admin())
	if r := decode(t, raw); code != 400 || !strings.Contains(r.Error.Message, "RELAY_REQUIRE_HTTPS") {
		t.Fatalf("http url: %d %s", code, raw)
	}
	code, _, raw = h.do("POST", subs, map[string]any{"url": "HTTPS://example.com/hooks"}, admin())
	var sub created
	if code != 201 || json.Unmarshal(raw, &sub) != nil {
		t.Fatalf("https url: %d %s", code, raw)
	}
	code, _, raw = h.do("PATCH", subs+"/"+sub.ID, map[string]any{"url": "http://example.com/other"}, admin())
	if r := decode(t, raw); code != 400 || !strings.HasPrefix(r.Error.Message, "url:") {
		t.Fatalf("PATCH to an http url: %d %s", code, raw)
	}
}

// TestHMACScheme: a source of the hmac scheme verifies a sender that signs
// the body in a header of its own (here as Linear does), dedups on the
// delivery id header and types events by the type header it names; its
// parameters are listed, checked, and can be PATCHed.
func TestHMACScheme(t *testing.T) {
	h := start(t, nil, "", nil)
	code, _, raw := h.do("POST", "/sources", map[string]any{"name": "linear", "verification": map[string]any{
		"scheme": "hmac", "header": "linear-signature", "id_header": "Linear-Delivery", "type_header": "Linear-Event",
	}}, admin())
	var src struct {
		created
		Verification map[string]string `json:"verification"`
	}
	if code != 201 || json.Unmarshal(raw, &src) != nil {
		t.Fatalf("create: %d %s", code, raw)
	}
	want := map[string]string{"scheme": "hmac", "header": "Linear-Signature", "algorithm": "sha256", "encoding": "hex", "id_header": "Linear-Delivery", "type_header": "Linear-Event"}
	for k, v := range want {
		if src.Verification[k] != v {
			t.Fatalf("verification %v, want %v", src.Verification, want)
		}
	}
	body := []byte(`{"action":"create","type":"Issue","data":{"id":"1"}}`)
	send := func(header, delivery string) (int, reply) {
		t.Helper()
		hd := http.Header{"Content-Type": {"application/json"}, "Linear-Delivery": {delivery}, "Linear-Event": {"Issue"}}
		hd.Set(header, signature.HexHMAC(src.Secret, body))
		code, _, raw := h.do("POST", "/in/"+src.ID, body, hd)
		return code, decode(t, raw)
	}
	code, r := send("Linear-Signature", "d-1")
	if code != 202 {
		t.Fatalf("signed: %d %+v", code, r)
	}
	var ev struct {
		Type string `json:"type"`
	}
	_, _, raw = h.do("GET", "/sources/"+src.ID+"/events/"+r.EventID, nil, admin())
	if json.Unmarshal(raw, &ev) != nil || ev.Type != "Issue" {
		t.Fatalf("event: %s", raw)
	}
	if code, dup := send("Linear-Signature", "d-1"); code != 200 || !dup.Duplicate || dup.EventID != r.EventID {
		t.Fatalf("the sender's retry: %d %+v", code, dup)
	}
	tampered := append([]byte(nil), body...)
	tampered[5] ^= 1
	hd := http.Header{"Linear-Signature": {signature.HexHMAC(src.Secret, body)}}
	if code, _, raw := h.do("POST", "/in/"+src.ID, tampered, hd); code != 401 || decode(t, raw).Error.Code != "invalid_signature" {
		t.Fatalf("tampered: %d %s", code, raw)
	}

	for body, field := range map[string]string{
		`{"name":"x","verification":{"scheme":"hmac","algorithm":"md5"}}`:  "verification.algorithm:",
		`{"name":"x","verification":{"scheme":"hmac","encoding":"b32"}}`:   "verification.encoding:",
		`{"name":"x","verification":{"scheme":"hmac","header":"a b"}}`:     "verification.header:",
		`{"name":"x","verification":{"scheme":"github","header":"X-Sig"}}`: "verification.header: only the hmac scheme",
	} {
		code, _, raw := h.do("POST", "/sources", body, admin())
		if r := decode(t, raw); code != 400 || !strings.HasPrefix(r.Error.Message, field) {
			t.Errorf("POST %s: %d %s, want 400 %q", body, code, raw, field)
		}
	}
	// A PATCH changes one parameter and keeps the others.
	code, _, raw = h.do("PATCH", "/sources/"+src.ID, `{"verification":{"header":"X-Linear-Signature"}}`, admin())
	if code != 200 || !strings.Contains(string(raw), `"header":"X-Linear-Signature"`) || !strings.Contains(string(raw), `"type_header":"Linear-Event"`) {
		t.Fatalf("PATCH header: %d %s", code, raw)
	}
	if code, r := send("Linear-Signature", "d-2"); code != 401 || r.Error.Code != "missing_signature" {
		t.Fatalf("the old header after the PATCH: %d %+v", code, r)
	}
	if code, _ := send("X-Linear-Signature", "d-3"); code != 202 {
		t.Fatalf("the new header after the PATCH: %d", code)
	}
	if code, _, raw := h.do("PATCH", "/sources/"+src.ID, `{"verification":{"algorithm":"sha3"}}`, admin()); code != 400 || !strings.HasPrefix(decode(t, raw).Error.Message, "verification.algorithm:") {
		t.Fatalf("PATCH a bad algorithm: %d %s", code, raw)
	}
}

// TestAllowedIPs: a source with allowed_ips takes webhooks only from those
// addresses, as RELAY_TRUSTED_PROXIES lets ingest see them behind a load
// balancer; entries are checked and normalised.
func TestAllowedIPs(t *testing.T) {
	h := start(t, nil, "", map[string]string{"RELAY_TRUSTED_PROXIES": "127.0.0.1"})
	code, _, raw := h.do("POST", "/sources", map[string]any{"name": "stripe", "allowed_ips": []string{"192.0.2.0/24", "10.1.2.3/8", "::ffff:198.51.100.9", "10.0.0.0/8"}}, admin())
	var src struct {
		created
		AllowedIPs []string `json:"allowed_ips"`
	}
	if code != 201 || json.Unmarshal(raw, &src) != nil || strings.Join(src.AllowedIPs, ",") != "192.0.2.0/24,10.0.0.0/8,198.51.100.9/32" {
		t.Fatalf("create: %d %s", code, raw)
	}
	send := func(from string) (int, reply) {
		t.Helper()
		body := []byte(`{"type":"x","from":"` + from + `"}`)
		hd := signed(t, "relay", src.Secret, body, time.Now())
		if from != "" {
			hd.Set("X-Forwarded-For", from)
		}
		code, _, raw := h.do("POST", "/in/"+src.ID, body, hd)
		return code, decode(t, raw)
	}
	// A sender writing an allowed address as the leftmost X-Forwarded-For,
	// behind a load balancer that appends the address it saw: only the
	// balancer is trusted, so the address it appended decides.
	for from, want := range map[string]int{"192.0.2.7": 202, "198.51.100.9": 202, "10.200.0.1": 202, "198.51.100.10": 403, "": 403,
		"192.0.2.7, 198.51.100.10": 403, "198.51.100.10, 192.0.2.7": 202} {
		code, r := send(from)
		if code != want || (want == 403 && r.Error.Code != "ip_not_allowed") {
			t.Errorf("from %q: %d %+v, want %d", from, code, r, want)
		}
	}
	code, _, raw = h.do("PATCH", "/sources/"+src.ID, `{"allowed_ips":[]}`, admin())
	if code != 200 || !strings.Contains(string(raw), `"allowed_ips":[]`) {
		t.Fatalf("PATCH allowed_ips []: %d %s", code, raw)
	}
	if code, _ := send("203.0.113.1"); code != 202 {
		t.Fatalf("with no allowed_ips, from anywhere: %d", code)
	}
	for _, bad := range []string{`{"allowed_ips":["not-an-ip"]}`, `{"allowed_ips":["10.0.0.0/33"]}`, `{"allowed_ips":"10.0.0.1"}`} {
		if code, _, raw := h.do("PATCH", "/sources/"+src.ID, bad, admin()); code != 400 || !strings.Contains(string(raw), "allowed_ips") {
			t.Errorf("PATCH %s: %d %s", bad, code, raw)
		}
	}
}

// TestSlackEndpointVerification: Slack accepts an Events API Request URL
// only once a signed url_verification request has been answered with its
// challenge; that request is not an event. Slack's events then take the
// type of the event inside their envelope.
func TestSlackEndpointVerification(t *testing.T) {
	h := start(t, nil, "", nil)
	src := h.source("slack")
	before := h.records()
	handshakes := func() float64 {
		mfs, _ := h.tel.Registry.Gather()
		for _, mf := range mfs {
			if mf.GetName() != "relay_ingest_events_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == "handshake" {
					return m.GetCounter().GetValue()
				}
			}
		}
		return -1
	}

	challenge := []byte(`{"token":"Jhj5dZrVaK7ZwHHjRyZWjbDl","challenge":"3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P","type":"url_verification"}`)
	code, hdr, raw := h.do("POST", "/in/"+src.ID, challenge, signed(t, "slack", src.Secret, challenge, time.Now()))
	var answer struct{ Challenge string }
	if code != 200 || !strings.HasPrefix(hdr.Get("Content-Type"), "application/json") || json.Unmarshal(raw, &answer) != nil ||
		answer.Challenge != "3eZbrw1aBm2rZgRNFdxV2595E9CY3gmdALWMmHkvFXO7tYXAYM8P" {
		t.Fatalf("url_verification: %d %s %s", code, hdr.Get("Content-Type"), raw)
	}
	// Unsigned, or signed too long ago, it is refused like any request.
	code, _, raw = h.do("POST", "/in/"+src.ID, challenge, http.Header{"Content-Type": {"application/json"}})
	if r := decode(t, raw); code != 401 || r.Error.Code != "missing_signature" {
		t.Fatalf("unsigned url_verification: %d %s", code, raw)
	}
	code, _, raw = h.do("POST", "/in/"+src.ID, challenge, signed(t, "slack", src.Secret, challenge, time.Now().Add(-time.Hour)))
	if r := decode(t, raw); code != 401 || r.Error.Code != "timestamp_out_of_tolerance" {
		t.Fatalf("stale url_verification: %d %s", code, raw)
	}
	if n := h.records() - before; n != 0 {
		t.Fatalf("the handshake produced %d records", n)
	}
	if got := handshakes(); got != 1 {
		t.Fatalf("handshakes counted %v, want 1", got)
	}

	for body, want := range map[string]string{
		`{"type":"event_callback","event_id":"Ev1","event":{"type":"app_mention","text":"<@U1> hi","channel":"C1"}}`:              "app_mention",
		`{"type":"event_callback","event_id":"Ev2","event":{"type":"message","subtype":"bot_message","text":"url_verification"}}`: "message.bot_message",
	} {
		code, _, raw = h.do("POST", "/in/"+src.ID, []byte(body), signed(t, "slack", src.Secret, []byte(body), time.Now()))
		r := decode(t, raw)
		if code != 202 || r.EventID == "" {
			t.Fatalf("slack event: %d %s", code, raw)
		}
		var ev struct {
			Type string `json:"type"`
		}
		_, _, raw = h.do("GET", "/sources/"+src.ID+"/events/"+r.EventID, nil, admin())
		if json.Unmarshal(raw, &ev) != nil || ev.Type != want {
			t.Fatalf("event type of %s = %s, want %q", body, raw, want)
		}
	}
	if n := h.records() - before; n != 2 {
		t.Fatalf("two events produced %d records", n)
	}
}

// TestCorruptSubscriptionIsReportedAndRepairable: a subscription whose
// stored events filter is damaged answers 500 naming the field (and is logged),
// rather than being listed as matching nothing; PATCH repairs it and DELETE
// removes it.
func TestCorruptSubscriptionIsReportedAndRepairable(t *testing.T) {
	h := start(t, nil, "", map[string]string{"RELAY_ALLOW_PRIVATE_DESTINATIONS": "true"})
	rdb := testenv.Redis(t)
	src := h.source("stripe")
	subs := "/sources/" + src.ID + "/subscriptions"
	code, _, raw := h.do("POST", subs, map[string]any{"url": "http://127.0.0.1:9/x", "events": "invoice.*"}, admin())
	var sub created
	if code != 201 || json.Unmarshal(raw, &sub) != nil {
		t.Fatalf("create subscription: %d %s", code, raw)
	}
	key := "relay:sub:{" + sub.ID + "}" // pkg/catalog's layout
	damage := func() {
		if err := rdb.HSet(context.Background(), key, "events", "invoice.*").Err(); err != nil {
			t.Fatal(err)
		}
	}
	damage()
	for _, path := range []string{subs, subs + "/" + sub.ID} {
		code, _, raw := h.do("GET", path, nil, admin())
		r := decode(t, raw)
		if code != 500 || r.Error.Code != "corrupt_record" || !strings.Contains(r.Error.Message, sub.ID) ||
			!strings.Contains(r.Error.Message, `"events"`) || !strings.Contains(r.Error.Message, "PATCH the subscription's events") {
			t.Fatalf("GET %s: %d %s, want 500 corrupt_record naming the subscription, its events field and the repair", path, code, raw)
		}
		if strings.Contains(string(raw), sub.Secret) {
			t.Fatalf("GET %s shows the secret: %s", path, raw)
		}
	}
	if !strings.Contains(h.logs.String(), "corrupt record in Redis") {
		t.Fatal("the corrupt record was not logged")
	}

	// A PATCH that leaves the damaged field alone is refused, and applies nothing.
	code, _, raw = h.do("PATCH", subs+"/"+sub.ID, map[string]any{"url": "http://127.0.0.1:9/other"}, admin())
	if r := decode(t, raw); code != 500 || r.Error.Code != "corrupt_record" || !strings.Contains(r.Error.Message, "PATCH the subscription's events") {
		t.Fatalf("PATCH of another field: %d %s, want 500 corrupt_record saying what to PATCH", code, raw)
	}
	if url, _ := rdb.HGet(context.Background(), key, "url").Result(); url != "http://127.0.0.1:9/x" {
		t.Fatalf("the refused PATCH changed the url to %q", url)
	}

	code, _, raw = h.do("PATCH", subs+"/"+sub.ID, map[string]any{"events": []string{"invoice.paid"}}, admin())
	if code != 200 || !strings.Contains(string(raw), `"invoice.paid"`) {
		t.Fatalf("PATCH repairing the events: %d %s", code, raw)
	}
	if code, _, raw := h.do("GET", subs+"/"+sub.ID, nil, admin()); code != 200 {
		t.Fatalf("GET after the repair: %d %s", code, raw)
	}

	damage()
	if code, _, raw := h.do("DELETE", subs+"/"+sub.ID, nil, admin()); code != 204 {
		t.Fatalf("DELETE of a corrupt subscription: %d %s", code, raw)
	}
	if code, _, raw := h.do("GET", subs, nil, admin()); code != 200 || strings.Contains(string(raw), sub.ID) {
		t.Fatalf("GET after the delete: %d %s", code, raw)
	}
}

// TestSubscriptionListingPages: a listing longer than limit comes in pages
// joined by next_cursor (the last id of a page), in id order: creation order
// to the millisecond (ids made within one are ordered by their random part).
func TestSubscriptionListingPages(t *testing.T) {
	h := start(t, nil, "", nil)
	src := h.source("relay")
	path := "/sources/" + src.ID + "/subscriptions"
	var want []string
	for range 3 {
		code, _, raw := h.do("POST", path, map[string]any{"url": "https://example.com/h"}, admin())
		var sub created
		if code != 201 || json.Unmarshal(raw, &sub) != nil {
			t.Fatalf("create subscription: %d %s", code, raw)
		}
		want = append(want, sub.ID)
	}
	var got []string
	cursor := ""
	for pages := 0; ; pages++ {
		code, _, raw := h.do("GET", path+"?limit=2&cursor="+cursor, nil, admin())
		var page struct {
			Data []struct {
				ID string `json:"id"`
			} `json:"data"`
			Next string `json:"next_cursor"`
		}
		if code != 200 || json.Unmarshal(raw, &page) != nil || pages > 2 {
			t.Fatalf("page %d: %d %s", pages, code, raw)
		}
		for _, s := range page.Data {
			got = append(got, s.ID)
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	sort.Strings(want)
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("paged through %v, want %v", got, want)
	}
}

// TestReplayTargets: a replay queues the event's enabled subscriptions, or
// the one ?subscription_id= names, and says why it skipped any other.
func TestReplayTargets(t *testing.T) {
	h := start(t, nil, "", nil)
	src := h.source("relay")
	subs := "/sources/" + src.ID + "/subscriptions"
	sub := func(body map[string]any) string {
		t.Helper()
		body["url"] = "https://example.com/h"
		code, _, raw := h.do("POST", subs, body, admin())
		var c created
		if code != 201 || json.Unmarshal(raw, &c) != nil {
			t.Fatalf("create subscription: %d %s", code, raw)
		}
		return c.ID
	}
	on := sub(map[string]any{"events": "payment.*"})
	off := sub(map[string]any{"events": "*", "enabled": false})
	other := sub(map[string]any{"events": "invoice.*"})
	body := []byte(`{"type":"payment.succeeded"}`)
	code, _, raw := h.do("POST", "/in/"+src.ID, body, signed(t, "relay", src.Secret, body, time.Now()))
	if code != 202 {
		t.Fatalf("ingest: %d %s", code, raw)
	}
	replay := "/sources/" + src.ID + "/events/" + decode(t, raw).EventID + "/replay"
	deliveries := strings.TrimSuffix(h.topic, "events") + "deliveries"
	want := func(query, queued, skipped string) {
		t.Helper()
		before := h.recordsOn(deliveries)
		code, _, raw := h.do("POST", replay+query, nil, admin())
		var res struct {
			Queued  []string `json:"queued"`
			Skipped []struct {
				SubscriptionID string `json:"subscription_id"`
				Reason         string `json:"reason"`
			} `json:"skipped"`
		}
		if code != 202 || json.Unmarshal(raw, &res) != nil {
			t.Fatalf("replay%s: %d %s", query, code, raw)
		}
		var got []string
		for _, s := range res.Skipped {
			got = append(got, s.SubscriptionID+":"+s.Reason)
		}
		if strings.Join(res.Queued, ",") != queued || strings.Join(got, ",") != skipped {
			t.Fatalf("replay%s queued %v skipped %v; want %q and %q", query, res.Queued, got, queued, skipped)
		}
		if n := h.recordsOn(deliveries) - before; n != int64(len(res.Queued)) {
			t.Fatalf("replay%s put %d records on %s, want %d", query, n, deliveries, len(res.Queued))
		}
	}
	want("", on, off+":disabled")
	want("?subscription_id="+on, on, "")
	want("?subscription_id="+off, "", off+":disabled")
	want("?subscription_id="+other, "", other+":not_subscribed")

	elsewhere := h.source("relay")
	code, _, raw = h.do("POST", "/sources/"+elsewhere.ID+"/subscriptions", map[string]any{"url": "https://example.com/h"}, admin())
	var foreign created
	if code != 201 || json.Unmarshal(raw, &foreign) != nil {
		t.Fatalf("create subscription: %d %s", code, raw)
	}
	for _, id := range []string{foreign.ID, "sub_nope"} {
		if code, _, raw := h.do("POST", replay+"?subscription_id="+id, nil, admin()); code != 404 || decode(t, raw).Error.Code != "subscription_not_found" {
			t.Fatalf("replay to %s: %d %s, want 404 subscription_not_found", id, code, raw)
		}
	}
}

// TestReplayRange: every event of a time range is queued again for the
// subscriptions not yet delivered it, a page at a time within the budget,
// continuing from next_cursor; the range and its parameters are checked.
func TestReplayRange(t *testing.T) {
	h := start(t, nil, "", map[string]string{"RELAY_REDRIVE_BUDGET": "1ms"})
	src := h.source("relay")
	code, _, raw := h.do("POST", "/sources/"+src.ID+"/subscriptions", map[string]any{"url": "https://example.com/h", "events": "order.*"}, admin())
	var sub created
	if code != 201 || json.Unmarshal(raw, &sub) != nil {
		t.Fatalf("create subscription: %d %s", code, raw)
	}
	from := time.Now().Add(-time.Second).UTC()
	const n = 250 // more than one page
	for i := 0; i < n; i++ {
		typ := "order.paid"
		if i%50 == 0 {
			typ = "invoice.paid" // not the subscription's
		}
		body := []byte(`{"type":"` + typ + `","n":` + fmt.Sprint(i) + `}`)
		if code, _, raw := h.do("POST", "/in/"+src.ID, body, signed(t, "relay", src.Secret, body, time.Now())); code != 202 {
			t.Fatalf("ingest: %d %s", code, raw)
		}
	}
	deliveries := strings.TrimSuffix(h.topic, "events") + "deliveries"
	before := h.recordsOn(deliveries)
	type result struct {
		Events, Queued int
		Skipped        map[string]int
		Complete       bool
		NextCursor     string `json:"next_cursor"`
	}
	query := url.Values{"from": {from.Format(time.RFC3339Nano)}, "subscription_id": {sub.ID}}
	total := result{Skipped: map[string]int{}}
	for calls := 1; ; calls++ {
		code, _, raw := h.do("POST", "/sources/"+src.ID+"/replay?"+query.Encode(), nil, admin())
		var r result
		if code != 202 || json.Unmarshal(raw, &r) != nil {
			t.Fatalf("range replay: %d %s", code, raw)
		}
		total.Events, total.Queued = total.Events+r.Events, total.Queued+r.Queued
		for k, v := range r.Skipped {
			total.Skipped[k] += v
		}
		if r.Complete {
			if calls < 2 {
				t.Fatalf("%d events done in one call within a 1ms budget: %s", n, raw)
			}
			break
		}
		if r.NextCursor == "" || calls > 5 {
			t.Fatalf("call %d: %s", calls, raw)
		}
		query.Set("cursor", r.NextCursor)
	}
	if total.Events != n || total.Queued != n-5 || total.Skipped["not_subscribed"] != 5 {
		t.Fatalf("range replay went through %+v; want %d events, %d queued, 5 not subscribed", total, n, n-5)
	}
	if got := h.recordsOn(deliveries) - before; got != int64(n-5) {
		t.Fatalf("%d records on %s, want %d", got, deliveries, n-5)
	}

	for q, field := range map[string]string{
		"":                "from",
		"?from=yesterday": "from",
		"?from=2026-12-04T10:00:00Z&to=2026-12-04T09:00:00Z": "from",
		"?from=2026-12-04T10:00:00Z&cursor=zzz":              "cursor",
		"?from=2026-12-04T10:00:00Z&force=1":                 "force",
	} {
		code, _, raw := h.do("POST", "/sources/"+src.ID+"/replay"+q, nil, admin())
		if r := decode(t, raw); code != 400 || !strings.HasPrefix(r.Error.Message, field+":") {
			t.Errorf("POST replay%s: %d %s, want 400 naming %s", q, code, raw, field)
		}
	}
}

// TestDrainDelay: after SIGTERM a replica with RELAY_HTTP_DRAIN_DELAY answers
// /readyz 503 so that its load balancer takes it out, and meanwhile still
// accepts webhooks.
func TestDrainDelay(t *testing.T) {
	h := start(t, nil, "", map[string]string{"RELAY_HTTP_DRAIN_DELAY": "3s"})
	src := h.source("relay")
	if code, _, raw := h.do("GET", "/readyz", nil, nil); code != 200 {
		t.Fatalf("readyz before shutdown: %d %s", code, raw)
	}
	h.stop()
	var raw []byte
	testenv.Eventually(t, 2*time.Second, "readyz to say the replica is shutting down", func() bool {
		var code int
		code, _, raw = h.do("GET", "/readyz", nil, nil)
		return code == 503
	})
	if strings.TrimSpace(string(raw)) != `{"status":"unavailable"}` {
		t.Fatalf("public readyz while draining: %s", raw)
	}
	if _, _, raw := h.do("GET", h.admin+"/readyz", nil, nil); !strings.Contains(string(raw), `"shutdown":"shutting down"`) {
		t.Fatalf("admin readyz while draining: %s", raw)
	}
	body := []byte(`{"type":"drain.test"}`)
	if code, _, raw := h.do("POST", "/in/"+src.ID, body, signed(t, "relay", src.Secret, body, time.Now())); code != 202 {
		t.Fatalf("a webhook while draining: %d %s", code, raw)
	}
}

// The events API reads an event's body from Kafka: once Kafka has deleted
// it (and, as here, there is no archive), the API answers the metadata with
// payload_expired, and a replay of it 410; with the broker unreachable, 503
// with Retry-After, not a 500.
func TestEventPayloadExpiredOrUnavailable(t *testing.T) {
	broker := testenv.StartKafka(t)
	h := start(t, []string{broker.Addr}, "", map[string]string{"RELAY_KAFKA_DIAL_TIMEOUT": "1s"})
	src := h.source("relay")
	send := func(body string) string {
		t.Helper()
		code, _, raw := h.do("POST", "/in/"+src.ID, []byte(body), signed(t, "relay", src.Secret, []byte(body), time.Now()))
		if code != 202 {
			t.Fatalf("send: %d %s", code, raw)
		}
		return decode(t, raw).EventID
	}
	get := func(evt string) (int, http.Header, map[string]any) {
		t.Helper()
		code, hdr, raw := h.do("GET", "/sources/"+src.ID+"/events/"+evt, nil, admin())
		var v map[string]any
		_ = json.Unmarshal(raw, &v)
		return code, hdr, v
	}
	evt := send(`{"type":"order.created","n":1}`)
	if code, _, v := get(evt); code != 200 || v["payload"] == nil || v["payload_expired"] != nil {
		t.Fatalf("an event in Kafka: %d %v", code, v)
	}

	cl, err := kgo.NewClient(kgo.SeedBrokers(broker.Addr))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	adm := kadm.NewClient(cl)
	ends, err := adm.ListEndOffsets(ctx, h.topic)
	if err == nil {
		var resp kadm.DeleteRecordsResponses
		if resp, err = adm.DeleteRecords(ctx, ends.Offsets()); err == nil {
			err = resp.Error()
		}
	}
	cl.Close()
	if err != nil {
		t.Fatal(err)
	}
	code, _, v := get(evt)
	if code != 200 || v["payload_expired"] != true || v["payload"] != nil || v["type"] != "order.created" || v["size"] != float64(len(`{"type":"order.created","n":1}`)) {
		t.Fatalf("an event Kafka deleted: %d %v", code, v)
	}
	if code, _, raw := h.do("POST", "/sources/"+src.ID+"/events/"+evt+"/replay", nil, admin()); code != 410 || decode(t, raw).Error.Code != "payload_expired" {
		t.Fatalf("replay of an expired event: %d %s", code, raw)
	}

	fresh := send(`{"type":"order.created","n":2}`)
	broker.Kill()
	code, hdr, v := get(fresh)
	if e, _ := v["error"].(map[string]any); code != 503 || hdr.Get("Retry-After") == "" || e["code"] != "kafka_unavailable" {
		t.Fatalf("with the broker down: %d %v %v", code, hdr, v)
	}
	broker.Start()
}

// A DELETE of something that is not a source id touches nothing: the id
// is checked before any key made from it is.
func TestDeleteChecksTheIDFirst(t *testing.T) {
	h := start(t, nil, "", nil)
	rdb := testenv.Redis(t)
	ctx := context.Background()
	key := "relay:src:{not-a-source-" + testenv.UniquePrefix() + "}"
	if err := rdb.HSet(ctx, key, "name", "bystander").Err(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Del(ctx, key) })
	id := strings.TrimSuffix(strings.TrimPrefix(key, "relay:src:{"), "}")
	if code, _, raw := h.do("DELETE", "/sources/"+id, nil, admin()); code != 404 || decode(t, raw).Error.Code != "source_not_found" {
		t.Fatalf("DELETE of a bad id: %d %s", code, raw)
	}
	if n, err := rdb.Exists(ctx, key).Result(); err != nil || n != 1 {
		t.Fatalf("the DELETE of a bad id removed the key made from it (exists %d, %v)", n, err)
	}
}

// TestAdminTokenRotation: during a rotation the previous admin token is
// accepted alongside the new one, and no other is.
func TestAdminTokenRotation(t *testing.T) {
	const previous = "ingest-test-previous-token-0123"
	h := start(t, nil, "", map[string]string{"RELAY_ADMIN_TOKEN_PREVIOUS": previous})
	for tok, want := range map[string]int{token: 200, previous: 200, "ingest-test-other-token-012345": 401, "": 401} {
		code, _, raw := h.do("GET", "/sources?limit=1", nil, http.Header{"Authorization": {"Bearer " + tok}})
		if code != want {
			t.Errorf("token %q: %d %s, want %d", tok, code, raw, want)
		}
	}
	if _, err := LoadConfig(envconfig.FromMap(map[string]string{
		"RELAY_ADMIN_TOKEN": token, "RELAY_SECRET_KEY": secretbox.GenerateKey(), "RELAY_ADMIN_TOKEN_PREVIOUS": "short",
	})); err == nil || !strings.Contains(err.Error(), "RELAY_ADMIN_TOKEN_PREVIOUS") {
		t.Fatalf("a short previous token: %v, want an error naming RELAY_ADMIN_TOKEN_PREVIOUS", err)
	}
}

// TestSecretKeyRotation: replicas given RELAY_SECRET_KEY_PREVIOUS verify
// with secrets sealed under the old key; POST /secrets/rewrap seals them
// anew, after which the new key alone does.
func TestSecretKeyRotation(t *testing.T) {
	rs := testenv.StartRedis(t) // its own: the rewrap walks every source in Redis
	oldKey, newKey := secretbox.GenerateKey(), secretbox.GenerateKey()
	before := start(t, nil, rs.Addr, map[string]string{"RELAY_SECRET_KEY": oldKey})
	src := before.source("relay")
	body := []byte(`{"type":"rotation.test"}`)
	send := func(h *harness) int {
		t.Helper()
		code, _, _ := h.do("POST", "/in/"+src.ID, body, signed(t, "relay", src.Secret, body, time.Now()))
		return code
	}
	if code := send(before); code != 202 {
		t.Fatalf("before the rotation: %d", code)
	}
	during := start(t, nil, rs.Addr, map[string]string{"RELAY_SECRET_KEY": newKey, "RELAY_SECRET_KEY_PREVIOUS": oldKey})
	if code := send(during); code != 200 { // the same body again: a duplicate, verified
		t.Fatalf("with the old key as previous: %d, want 200 (a verified duplicate)", code)
	}
	// A replica given the new key alone too early cannot verify: 503, so the
	// sender retries, and the log says why.
	early := start(t, nil, rs.Addr, map[string]string{"RELAY_SECRET_KEY": newKey})
	code, hdr, raw := early.do("POST", "/in/"+src.ID, body, signed(t, "relay", src.Secret, body, time.Now()))
	if r := decode(t, raw); code != 503 || r.Error.Code != "source_unreadable" || hdr.Get("Retry-After") == "" {
		t.Fatalf("the new key alone before the rewrap: %d %s, want 503 source_unreadable", code, raw)
	}
	if !strings.Contains(early.logs.String(), "cannot be decrypted with RELAY_SECRET_KEY") {
		t.Fatal("the undecryptable secret was not logged")
	}
	var res struct {
		Rewrapped     int      `json:"rewrapped"`
		Undecryptable []string `json:"undecryptable"`
		Complete      bool     `json:"complete"`
	}
	code, _, raw = during.do("POST", "/secrets/rewrap", nil, admin())
	if code != 200 || json.Unmarshal(raw, &res) != nil || res.Rewrapped != 1 || !res.Complete || res.Undecryptable == nil {
		t.Fatalf("rewrap: %d %s", code, raw)
	}
	if strings.Contains(string(raw), src.Secret) {
		t.Fatalf("the rewrap answer shows the secret: %s", raw)
	}
	after := start(t, nil, rs.Addr, map[string]string{"RELAY_SECRET_KEY": newKey})
	if code := send(after); code != 200 {
		t.Fatalf("with the new key alone after the rewrap: %d, want 200", code)
	}
}

// TestTrustedProxies: the client address logged for a failed request is
// X-Forwarded-For's only when the request came from a trusted load
// balancer; otherwise it is the connection's, whatever the header says.
func TestTrustedProxies(t *testing.T) {
	for trusted, want := range map[string]string{"": `"remote":"127.0.0.1"`, "10.0.0.0/8,127.0.0.1": `"remote":"203.0.113.9"`} {
		h := start(t, nil, "", map[string]string{"RELAY_TRUSTED_PROXIES": trusted})
		code, _, _ := h.do("GET", "/sources", nil, http.Header{"X-Forwarded-For": {"203.0.113.9"}})
		if code != 401 {
			t.Fatalf("status %d", code)
		}
		if !strings.Contains(h.logs.String(), want) {
			t.Errorf("trusting %q: the log line lacks %s:\n%s", trusted, want, h.logs.String())
		}
	}
	if _, err := LoadConfig(envconfig.FromMap(map[string]string{
		"RELAY_ADMIN_TOKEN": token, "RELAY_SECRET_KEY": secretbox.GenerateKey(), "RELAY_TRUSTED_PROXIES": "10.0.0.0/33",
	})); err == nil || !strings.Contains(err.Error(), "RELAY_TRUSTED_PROXIES") {
		t.Fatalf("a bad CIDR: %v, want an error naming RELAY_TRUSTED_PROXIES", err)
	}
}
