package e2e

import (
	"bufio"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/testenv"
	"github.com/relayhq/relay/services/relay/internal/deploycheck"
)

// TestOneTraceFromIngestToEndpoint follows a webhook through the spans of
// every service: the ingest request, the produce, each consumer group's
// receive, deliver's process span and its outbound POST share one trace, and
// the endpoint receives that trace in traceparent. A retry starts a new trace
// linked to the first.
func TestOneTraceFromIngestToEndpoint(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	e := startTraced(t, tp)
	rc := newReceiver(t, func(r *http.Request, n int) (int, http.Header) {
		if r.Header.Get("X-Relay-Attempt") == "1" {
			return 503, nil
		}
		return 200, nil
	})
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "*")
	_, rep := e.send(src, "relay", []byte(`{"type":"trace.me"}`), nil)
	e.waitStatus(src.ID, rep.EventID, sub.ID, "delivered", 30*time.Second)
	testenv.Eventually(t, 20*time.Second, "archive and count to receive the event", func() bool {
		return len(e.archivedLines()) == 1 && e.counted(src.ID) == 1
	})

	spans := rec.Ended()
	var ingestSpan sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == "POST /in/:source_id" {
			ingestSpan = s
		}
	}
	if ingestSpan == nil {
		t.Fatalf("no ingest span among %d spans", len(spans))
	}
	tid := ingestSpan.SpanContext().TraceID()
	in := map[string]bool{}
	for _, s := range spans {
		if s.SpanContext().TraceID() == tid {
			in[s.Name()+" ("+s.SpanKind().String()+")"] = true
		}
	}
	for _, want := range []string{
		"POST /in/:source_id (server)",
		e.names.Events + " publish (producer)",
		e.names.Events + " receive (consumer)",
		e.names.Events + " process (consumer)",
		"POST webhook (client)",
	} {
		if !in[want] {
			t.Errorf("the ingest trace lacks %q; it has %v", want, in)
		}
	}
	// Three consumer groups received the event within the trace: deliver, archive, count.
	receives := 0
	for _, s := range spans {
		if s.SpanContext().TraceID() == tid && s.Name() == e.names.Events+" receive" {
			receives++
		}
	}
	if receives < 3 {
		t.Errorf("%d receive spans in the trace, want one per consumer group (3)", receives)
	}
	// The endpoint got the trace context.
	first := rc.requests()[0]
	if tp := first.Header.Get("Traceparent"); !strings.Contains(tp, tid.String()) {
		t.Errorf("first attempt's traceparent %q is not of trace %s", tp, tid)
	}
	// The retry is a new trace, linked to the previous one.
	second := rc.requests()[1]
	if strings.Contains(second.Header.Get("Traceparent"), tid.String()) {
		t.Error("the retry continued the first trace instead of starting a new one")
	}
	linked := false
	for _, s := range spans {
		if s.SpanContext().TraceID() == tid {
			continue
		}
		for _, l := range s.Links() {
			if l.SpanContext.TraceID() == tid {
				linked = true
			}
		}
	}
	if !linked {
		t.Error("no span of the retry links back to the first trace")
	}
}

func startTraced(t *testing.T, tp trace.TracerProvider) *env {
	t.Helper()
	vars := s3vars(t)
	return startServicesTraced(t, services{deliver: true, archive: true, count: true}, vars, tp)
}

// TestMetricsEndpoints scrapes every service's /metrics after some traffic
// and finds each metric the dashboard and alerts rely on.
func TestMetricsEndpoints(t *testing.T) {
	alerts := newReceiver(t, ok200)
	e := startServices(t, services{deliver: true, archive: true, count: true}, mergeVars(s3vars(t), map[string]string{
		"RELAY_ALERT_WEBHOOK_URL": alerts.URL,
	}))
	rc := newReceiver(t, func(*http.Request, int) (int, http.Header) { return 400, nil })
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "*")
	_, rep := e.send(src, "relay", []byte(`{"type":"m"}`), nil)
	e.send(src, "relay", []byte(`{"type":"m"}`), nil) // duplicate
	e.send(source{ID: src.ID}, "relay", []byte(`{}`), nil)
	e.waitStatus(src.ID, rep.EventID, sub.ID, "dead", 20*time.Second)
	testenv.Eventually(t, 20*time.Second, "archive and count", func() bool {
		return len(e.archivedLines()) == 1 && e.counted(src.ID) == 1
	})
	e.call("GET", "/dlq", nil, nil)
	exported := map[string]bool{}
	for _, url := range []string{
		e.api + "/metrics",
		"http://" + e.stack.Deliver.AdminAddr() + "/metrics",
		"http://" + e.stack.Archive.AdminAddr() + "/metrics",
		"http://" + e.stack.Count.AdminAddr() + "/metrics",
	} {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(resp.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			if strings.HasPrefix(line, "# TYPE ") {
				exported[strings.Fields(line)[2]] = true
			}
		}
		resp.Body.Close()
	}
	// The DLQ alert and the lag panels read these values, not just their names.
	deliverMetrics := "http://" + e.stack.Deliver.AdminAddr() + "/metrics"
	testenv.Eventually(t, 10*time.Second, "relay_dlq_depth counting the parked delivery", func() bool {
		return metricValue(t, deliverMetrics, "relay_dlq_depth") >= 1
	})
	if up := metricValue(t, deliverMetrics, "relay_lag_scrape_success"); up != 1 {
		t.Errorf("relay_lag_scrape_success = %v, want 1", up)
	}
	for _, name := range deploycheck.MetricNames {
		if !exported[name] {
			t.Errorf("no service exports %s", name)
		}
	}
	for _, name := range []string{"relay_kafka_produce_bytes_total", "relay_kafka_fetch_bytes_total", "go_goroutines", "process_resident_memory_bytes"} {
		if !exported[name] {
			t.Errorf("%s is not exported", name)
		}
	}
}

func mergeVars(ms ...map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

// TestDeadDeliveryAlertsTheOperator: a dead delivery makes Relay POST a
// signed relay.delivery.dead event to RELAY_ALERT_WEBHOOK_URL.
func TestDeadDeliveryAlertsTheOperator(t *testing.T) {
	secret := signature.StandardWebhooks{}.NewSecret()
	var mu sync.Mutex
	var got []received
	alerts := newReceiver(t, func(r *http.Request, n int) (int, http.Header) { return 200, nil })
	e := startStack(t, map[string]string{"RELAY_ALERT_WEBHOOK_URL": alerts.URL + "/pager", "RELAY_ALERT_WEBHOOK_SECRET": secret})
	rc := newReceiver(t, func(*http.Request, int) (int, http.Header) { return 404, nil })
	src := e.createSource("relay")
	sub := e.subscribe(src.ID, rc.URL, "*")
	_, rep := e.send(src, "relay", []byte(`{"type":"order.shipped"}`), nil)
	e.waitStatus(src.ID, rep.EventID, sub.ID, "dead", 20*time.Second)
	testenv.Eventually(t, 20*time.Second, "the alert", func() bool {
		mu.Lock()
		defer mu.Unlock()
		got = alerts.requests()
		return len(got) == 1
	})
	a := got[0]
	if err := (signature.StandardWebhooks{}).Verify(signature.Request{Header: a.Header, Body: a.Body}, []string{secret}, time.Now(), 0); err != nil {
		t.Fatalf("alert signature: %v", err)
	}
	var body struct {
		Type string `json:"type"`
		Data struct {
			EventID        string `json:"event_id"`
			SubscriptionID string `json:"subscription_id"`
			Reason         string `json:"reason"`
			Attempts       int    `json:"attempts"`
			LastStatusCode int    `json:"last_status_code"`
		} `json:"data"`
	}
	if err := json.Unmarshal(a.Body, &body); err != nil {
		t.Fatal(err)
	}
	if body.Type != "relay.delivery.dead" || body.Data.EventID != rep.EventID || body.Data.SubscriptionID != sub.ID ||
		body.Data.Reason != "non_retryable_status" || body.Data.Attempts != 1 || body.Data.LastStatusCode != 404 {
		t.Fatalf("alert = %s", a.Body)
	}
}
