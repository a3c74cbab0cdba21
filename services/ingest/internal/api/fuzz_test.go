package api

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"go.opentelemetry.io/otel/trace/noop"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/counters"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/logging"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/secretbox"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/pkg/telemetry"
	"github.com/relayhq/relay/pkg/testenv"
	"github.com/relayhq/relay/services/ingest/internal/dedup"
	"github.com/relayhq/relay/services/ingest/internal/eventstore"
	"github.com/relayhq/relay/services/ingest/internal/inbound"
	"github.com/relayhq/relay/services/ingest/internal/manage"
)

// memProducer acknowledges every record and keeps it.
type memProducer struct{ recs []*kgo.Record }

func (m *memProducer) Produce(_ context.Context, r *kgo.Record, promise func(*kgo.Record, error)) {
	m.recs = append(m.recs, r)
	promise(r, nil)
}

func (m *memProducer) ProduceSync(_ context.Context, rs ...*kgo.Record) kgo.ProduceResults {
	out := make(kgo.ProduceResults, len(rs))
	for i, r := range rs {
		m.recs = append(m.recs, r)
		out[i] = kgo.ProduceResult{Record: r}
	}
	return out
}

// newTestAPI builds the API on miniredis and an in-memory producer.
func newTestAPI(t testing.TB) (*API, *memProducer, *catalog.Store) {
	p := &memProducer{}
	a, store, _ := newTestAPIWith(t, p, 0)
	return a, p, store
}

// newTestAPIWith builds the API on miniredis and p, with at most
// maxInflight webhooks worked on at once (0: the default's order).
func newTestAPIWith(t testing.TB, p Producer, maxInflight int) (*API, *catalog.Store, *telemetry.Telemetry) {
	rdb, _ := testenv.MiniRedis(t)
	box, _ := secretbox.New(make([]byte, secretbox.KeySize), nil)
	names, _ := record.NewTopics("", record.DefaultTierDelays)
	if maxInflight == 0 {
		maxInflight = 1024
	}
	store := catalog.New(rdb, box)
	tel := &telemetry.Telemetry{TracerProvider: noop.NewTracerProvider(), Registry: telemetry.NewRegistry()}
	a := New(Config{
		AdminToken: "fuzz-admin-token-0123456789",
		Inbound:    inbound.Config{MaxBodyBytes: 4096, MaxInflightBytes: 1 << 20, MaxInflightRequests: maxInflight, DefaultDedupWindow: time.Hour, ProduceTimeout: 10 * time.Second, Names: names},
		Manage:     manage.Config{DefaultDedupWindow: time.Hour, RotationGrace: time.Hour, Names: names},
	}, Deps{
		Catalog: store, Events: eventstore.New(rdb, time.Hour), Deliveries: delivery.New(rdb, time.Hour),
		Counters: counters.New(rdb), Dedup: dedup.New(rdb, nil, 5*time.Second, 100*time.Millisecond), Producer: p, Pipe: redisconn.Direct{Client: rdb},
		Telemetry: tel,
		Logger:    logging.Discard(),
	})
	return a, store, tel
}

// FuzzIngestHandler throws arbitrary bodies and signature headers at
// POST /in/{source_id} for every scheme: the handler never panics, always
// answers JSON with a documented status, and produces only what verified.
func FuzzIngestHandler(f *testing.F) {
	f.Add([]byte(`{"type":"payment.succeeded"}`), "relay", "", "", true)
	f.Add([]byte(`{"id":"evt_1","type":"x"}`), "stripe", "t=1,v1=00", "", false)
	f.Add([]byte("not json \x00\xff"), "github", "sha256=zz", "idem", false)
	f.Add(bytes.Repeat([]byte("a"), 5000), "slack", "v0=", "", true)
	f.Add([]byte(`{"type":123}`), "standard-webhooks", "v1,AAAA v1,", "k", true)
	f.Add([]byte(`[]`), "shopify", "===", "", true)
	a, prod, store := newTestAPI(f)
	h := a.Handler()
	srcs := map[string]catalog.Source{}
	secrets := map[string]string{}
	for _, name := range signature.Names() {
		s, _ := signature.Lookup(name)
		src := catalog.Source{ID: ids.New(ids.Source), Name: name, Scheme: name, Tolerance: 5 * time.Minute, DedupWindow: time.Hour, CreatedAt: time.Now()}
		secrets[name] = s.NewSecret()
		if err := store.CreateSource(context.Background(), src, secrets[name]); err != nil {
			f.Fatal(err)
		}
		srcs[name] = src
	}
	allowed := map[int]bool{200: true, 202: true, 400: true, 401: true, 404: true, 413: true, 503: true}
	f.Fuzz(func(t *testing.T, body []byte, scheme, sig, idem string, signIt bool) {
		src, ok := srcs[scheme]
		if !ok {
			scheme = "relay"
			src = srcs[scheme]
		}
		req := httptest.NewRequest(http.MethodPost, "/in/"+src.ID, bytes.NewReader(body))
		for _, hname := range []string{signature.HeaderRelaySignature, signature.HeaderStripeSignature, signature.HeaderGitHubSignature, signature.HeaderShopifyHmac, signature.HeaderSlackSignature, signature.HeaderWebhookSignature} {
			req.Header.Set(hname, sig)
		}
		req.Header.Set(signature.HeaderWebhookID, idem)
		req.Header.Set(signature.HeaderWebhookTimestamp, sig)
		req.Header.Set("X-Idempotency-Key", idem)
		if signIt {
			s, _ := signature.Lookup(scheme)
			_ = s.Sign(req.Header, body, secrets[scheme], time.Now())
		}
		before := len(prod.recs)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if !allowed[rec.Code] {
			t.Fatalf("status %d is not documented: %s", rec.Code, rec.Body.Bytes())
		}
		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("answer is not JSON: %q", rec.Body.Bytes())
		}
		produced := len(prod.recs) - before
		if produced > 1 || (produced == 1 && rec.Code != 202) || (rec.Code == 202 && produced != 1) {
			t.Fatalf("status %d with %d records produced", rec.Code, produced)
		}
		if produced == 1 && !bytes.Equal(prod.recs[len(prod.recs)-1].Value, body) {
			t.Fatal("the produced value is not the body byte for byte")
		}
	})
}
