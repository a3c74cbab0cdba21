package catalog

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/ordering"
	"github.com/relayhq/relay/pkg/secretbox"
	"github.com/relayhq/relay/pkg/testenv"
)

func newStore(t *testing.T, rdb redis.UniversalClient) *Store {
	t.Helper()
	box, err := secretbox.New(make([]byte, secretbox.KeySize), nil)
	if err != nil {
		t.Fatal(err)
	}
	return New(rdb, box)
}

func TestCatalog(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := newStore(t, rdb)
		now := time.UnixMilli(time.Now().UnixMilli())
		s.now = func() time.Time { return now }

		src := Source{ID: ids.New(ids.Source), Name: "stripe-prod", Scheme: "stripe", Tolerance: 5 * time.Minute, DedupWindow: 72 * time.Hour, CreatedAt: now}
		if err := s.CreateSource(ctx, src, "whsec_one"); err != nil {
			t.Fatal(err)
		}
		got, sec, err := s.GetSourceWithSecrets(ctx, src.ID)
		if err != nil {
			t.Fatal(err)
		}
		if got.Name != src.Name || got.Scheme != "stripe" || got.DedupWindow != 72*time.Hour || !got.CreatedAt.Equal(now) {
			t.Fatalf("source = %+v", got)
		}
		if a := sec.Active(now); len(a) != 1 || a[0] != "whsec_one" {
			t.Fatalf("secrets = %v", a)
		}
		raw, _ := rdb.HGetAll(ctx, sourceKey(src.ID)).Result()
		for k, v := range raw {
			if strings.Contains(v, "whsec_one") {
				t.Fatalf("field %s stores the secret in clear", k)
			}
		}

		// Rotation keeps the old secret for the grace period only.
		if err := s.RotateSourceSecret(ctx, src.ID, "whsec_two", time.Hour); err != nil {
			t.Fatal(err)
		}
		_, sec, _ = s.GetSourceWithSecrets(ctx, src.ID)
		if a := sec.Active(now); len(a) != 2 || a[0] != "whsec_two" || a[1] != "whsec_one" {
			t.Fatalf("during grace: %v", a)
		}
		now = now.Add(2 * time.Hour)
		_, sec, _ = s.GetSourceWithSecrets(ctx, src.ID)
		if a := sec.Active(now); len(a) != 1 || a[0] != "whsec_two" {
			t.Fatalf("after grace: %v", a)
		}

		sub := Subscription{ID: ids.New(ids.Subscription), SourceID: src.ID, URL: "https://example.com/hook", Events: []string{"payment.*"}, Enabled: true, CreatedAt: now}
		if err := s.CreateSubscription(ctx, sub, "whsec_c3ViLXNlY3JldC1zdWItc2VjcmV0", nil); err != nil {
			t.Fatal(err)
		}
		fan, err := s.SourceSubscriptions(ctx, src.ID)
		subs := fan.Subscriptions
		if err != nil || len(subs) != 1 || len(fan.Unreadable) != 0 || subs[0].URL != sub.URL || subs[0].Secrets.Current != "whsec_c3ViLXNlY3JldC1zdWItc2VjcmV0" || subs[0].Events[0] != "payment.*" {
			t.Fatalf("SourceSubscriptions = %+v, %v", subs, err)
		}
		off := false
		upd, err := s.UpdateSubscription(ctx, sub.ID, SubscriptionPatch{Enabled: &off, DisabledReason: "endpoint answered 410 Gone"})
		if err != nil || upd.Enabled || upd.DisabledReason == "" {
			t.Fatalf("UpdateSubscription = %+v, %v", upd, err)
		}
		if _, err := s.UpdateSubscription(ctx, ids.New(ids.Subscription), SubscriptionPatch{Enabled: &off}); !errors.Is(err, ErrNotFound) {
			t.Fatalf("patch of a missing subscription: %v", err)
		}
		page, err := s.ListSubscriptions(ctx, src.ID, "", 10)
		if err != nil || len(page.Items) != 1 || page.Next != "" {
			t.Fatalf("ListSubscriptions = %+v, %v", page, err)
		}

		if err := s.DeleteSource(ctx, src.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := s.GetSource(ctx, src.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("deleted source still found: %v", err)
		}
		if _, err := s.GetSubscription(ctx, sub.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("subscription of a deleted source still found: %v", err)
		}
		if err := s.DeleteSource(ctx, src.ID); !errors.Is(err, ErrNotFound) {
			t.Fatalf("second delete: %v", err)
		}
	})
}

func TestListSourcesPages(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	s := newStore(t, rdb)
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if err := s.CreateSource(ctx, Source{ID: ids.New(ids.Source), Name: "s", Scheme: "relay", CreatedAt: time.Now()}, "secret-123"); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	var seen []string
	cursor := ""
	for {
		page, err := s.ListSources(ctx, cursor, 2)
		if err != nil {
			t.Fatal(err)
		}
		for _, it := range page.Items {
			seen = append(seen, it.ID)
		}
		if page.Next == "" {
			break
		}
		cursor = page.Next
	}
	if len(seen) != 5 {
		t.Fatalf("paged through %d sources, want 5", len(seen))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Fatalf("pages out of order: %v", seen)
		}
	}
}

// TestCorruptRecordsAreRefused: a stored field Relay did not write that way
// is an error naming the record and the field, never a zero in its place
// (an events filter read as nothing would silently stop deliveries). It is
// about decoding, not Redis, and runs on miniredis: a corrupt source in the
// shared test Redis would fail other packages' listings running alongside.
func TestCorruptRecordsAreRefused(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := newStore(t, rdb)
	now := time.UnixMilli(time.Now().UnixMilli())
	src := Source{ID: ids.New(ids.Source), Name: "shop", Scheme: "shopify", Tolerance: time.Minute, DedupWindow: time.Hour, CreatedAt: now}
	if err := s.CreateSource(ctx, src, "whsec_src"); err != nil {
		t.Fatal(err)
	}
	sub := Subscription{ID: ids.New(ids.Subscription), SourceID: src.ID, URL: "https://example.com/h", Events: []string{"orders/*"}, Enabled: true, CreatedAt: now}
	if err := s.CreateSubscription(ctx, sub, "whsec_sub", nil); err != nil {
		t.Fatal(err)
	}
	healthy := Subscription{ID: ids.New(ids.Subscription), SourceID: src.ID, URL: "https://example.com/h2", Events: []string{"*"}, Enabled: true, CreatedAt: now}
	if err := s.CreateSubscription(ctx, healthy, "whsec_sub2", nil); err != nil {
		t.Fatal(err)
	}
	corrupt := func(t *testing.T, err error, record, field string) {
		t.Helper()
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), record) || !strings.Contains(err.Error(), `"`+field+`"`) {
			t.Fatalf("err = %v, want ErrCorrupt naming %s and field %q", err, record, field)
		}
		if strings.Contains(err.Error(), "whsec_") {
			t.Fatalf("the error shows a secret: %v", err)
		}
	}

	for field, value := range map[string]string{
		"events": "orders/*", "enabled": "yes", "created_at": "yesterday", "header_names": "Authorization",
		"filter": `type ==`, "max_attempts": "-1", "rate_limit": `{"rate":0,"period":1000000000,"burst":1}`,
	} {
		t.Run("subscription "+field, func(t *testing.T) {
			good, _ := rdb.HGet(ctx, subKey(sub.ID), field).Result()
			rdb.HSet(ctx, subKey(sub.ID), field, value)
			defer rdb.HSet(ctx, subKey(sub.ID), field, good)

			got, err := s.GetSubscription(ctx, sub.ID)
			corrupt(t, err, sub.ID, field)
			if got.ID != sub.ID || got.SourceID != src.ID {
				t.Fatalf("a corrupt subscription lost its id or source: %+v", got)
			}
			_, err = s.GetSubscriptionWithSecrets(ctx, sub.ID)
			corrupt(t, err, sub.ID, field)
			_, err = s.ListSubscriptions(ctx, src.ID, "", 10)
			corrupt(t, err, sub.ID, field)
			// A source's damaged subscription is returned apart, the
			// others as usual: it must not stop their deliveries.
			fan, err := s.SourceSubscriptions(ctx, src.ID)
			if err != nil || len(fan.Unreadable) != 1 || fan.Unreadable[0].ID != sub.ID || fan.Unreadable[0].Decoded {
				t.Fatalf("SourceSubscriptions = %+v, %v; want the damaged one apart, undecoded", fan, err)
			}
			corrupt(t, fan.Unreadable[0].Err, sub.ID, field)
			if !Unreadable(fan.Unreadable[0].Err) {
				t.Fatal("Unreadable is false for a damaged field")
			}
			if len(fan.Subscriptions) != 1 || fan.Subscriptions[0].ID != healthy.ID {
				t.Fatalf("the healthy subscription beside it: %+v", fan.Subscriptions)
			}
		})
	}
	noEvents := Subscription{ID: ids.New(ids.Subscription), SourceID: src.ID, URL: "https://example.com/h", Enabled: true, CreatedAt: now}
	if err := s.CreateSubscription(ctx, noEvents, "whsec_sub", nil); err == nil {
		t.Fatal("a subscription without event types was stored, to read back as corrupt")
	}
	t.Run("subscription repaired by an update", func(t *testing.T) {
		rdb.HSet(ctx, subKey(sub.ID), "events", "not json")
		got, err := s.UpdateSubscription(ctx, sub.ID, SubscriptionPatch{Events: []string{"orders/create"}})
		if err != nil || len(got.Events) != 1 || got.Events[0] != "orders/create" {
			t.Fatalf("update = %+v, %v", got, err)
		}
	})
	for _, field := range []string{"tolerance_ms", "dedup_window_ms", "forward_headers", "allowed_ips", "scheme_params"} {
		t.Run("source "+field, func(t *testing.T) {
			good, _ := rdb.HGet(ctx, sourceKey(src.ID), field).Result()
			rdb.HSet(ctx, sourceKey(src.ID), field, "-5")
			defer rdb.HSet(ctx, sourceKey(src.ID), field, good)
			_, err := s.GetSource(ctx, src.ID)
			corrupt(t, err, src.ID, field)
			_, _, err = s.GetSourceWithSecrets(ctx, src.ID)
			corrupt(t, err, src.ID, field)
			_, err = s.ListSources(ctx, "", 1000)
			corrupt(t, err, src.ID, field)
		})
	}
	if _, err := s.GetSource(ctx, src.ID); err != nil {
		t.Fatalf("after the repairs: %v", err)
	}
	if fan, err := s.SourceSubscriptions(ctx, src.ID); err != nil || len(fan.Unreadable) != 0 || len(fan.Subscriptions) != 2 {
		t.Fatalf("after the repairs: %+v, %v", fan, err)
	}
}

// TestRewrapSecrets: after RELAY_SECRET_KEY changes, RewrapSecrets seals
// every secret still under the previous key anew, so the previous key can be
// dropped. It runs on miniredis: it walks every source in its Redis, and the
// shared test Redis holds other tests' sources under other keys.
func TestRewrapSecrets(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	oldKey, newKey := make([]byte, secretbox.KeySize), make([]byte, secretbox.KeySize)
	newKey[0] = 7
	store := func(key, previous []byte) *Store {
		box, err := secretbox.New(key, previous)
		if err != nil {
			t.Fatal(err)
		}
		return New(rdb, box)
	}
	before, during, after := store(oldKey, nil), store(newKey, oldKey), store(newKey, nil)
	now := time.Now()

	src1 := Source{ID: ids.New(ids.Source), Name: "a", Scheme: "relay", CreatedAt: now}
	src2 := Source{ID: ids.New(ids.Source), Name: "b", Scheme: "relay", CreatedAt: now}
	for _, src := range []Source{src1, src2} {
		if err := before.CreateSource(ctx, src, "secret-of-"+src.Name); err != nil {
			t.Fatal(err)
		}
	}
	// src1's secret rotated: the old one still verifies for an hour.
	if err := before.RotateSourceSecret(ctx, src1.ID, "secret-of-a-2", time.Hour); err != nil {
		t.Fatal(err)
	}
	sub := Subscription{ID: ids.New(ids.Subscription), SourceID: src2.ID, URL: "https://example.com", Events: []string{"*"}, Enabled: true, CreatedAt: now}
	if err := before.CreateSubscription(ctx, sub, "whsec_c3ViLXNlY3JldA==", map[string]string{"Authorization": "Bearer endpoint-token"}); err != nil {
		t.Fatal(err)
	}
	// Sealed by a replica already on the new key: left as it is.
	subNew := Subscription{ID: ids.New(ids.Subscription), SourceID: src2.ID, URL: "https://example.com/2", Events: []string{"*"}, Enabled: true, CreatedAt: now}
	if err := during.CreateSubscription(ctx, subNew, "whsec_bmV3LXNlY3JldA==", nil); err != nil {
		t.Fatal(err)
	}

	res, err := during.RewrapSecrets(ctx, "", time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Rewrapped != 5 || res.Current != 1 || !res.Complete() {
		t.Fatalf("first run = %+v; want 5 rewrapped (two source secrets, a rotated-out one, a subscription's secret and headers), 1 current", res)
	}
	// The new key alone now opens every secret, each the same as before.
	_, sec, err := after.GetSourceWithSecrets(ctx, src1.ID)
	if err != nil || sec.Current != "secret-of-a-2" || sec.Previous != "secret-of-a" {
		t.Fatalf("src1 under the new key alone: %+v %v", sec, err)
	}
	if _, sec, err := after.GetSourceWithSecrets(ctx, src2.ID); err != nil || sec.Current != "secret-of-b" {
		t.Fatalf("src2 under the new key alone: %+v %v", sec, err)
	}
	fan, err := after.SourceSubscriptions(ctx, src2.ID)
	subs := fan.Subscriptions
	if err != nil || len(subs) != 2 {
		t.Fatalf("subscriptions under the new key alone: %+v %v", subs, err)
	}
	for _, s := range subs { // in id order, which is creation order only to the millisecond
		if s.ID == sub.ID && s.Headers["Authorization"] != "Bearer endpoint-token" {
			t.Fatalf("headers under the new key alone: %v", s.Headers)
		}
	}
	if res, err := during.RewrapSecrets(ctx, "", time.Time{}); err != nil || res.Rewrapped != 0 || res.Current != 6 || !res.Complete() {
		t.Fatalf("second run = %+v %v; want nothing left to rewrap", res, err)
	}

	// Past its deadline a run stops after the source it is on, and the
	// next run continues after it.
	first, second := src1.ID, src2.ID
	if second < first {
		first, second = second, first
	}
	past := time.Unix(1, 0)
	for i, want := range []string{first, second, ""} {
		after := []string{"", first, second}[i]
		res, err := during.RewrapSecrets(ctx, after, past)
		if err != nil || res.Next != want || res.Complete() != (want == "") {
			t.Fatalf("run %d after %q: next %q complete %v (%v), want next %q", i, after, res.Next, res.Complete(), err, want)
		}
	}

	// A field changed since it was read (a rotation) is left to the writer.
	cur, _ := rdb.HGet(ctx, sourceKey(src2.ID), "secret").Result()
	if n, err := swapField.Run(ctx, rdb, []string{sourceKey(src2.ID)}, "secret", "stale", "replacement").Int(); err != nil || n != 0 {
		t.Fatalf("swap of a changed field = %d %v, want 0", n, err)
	}
	if now, _ := rdb.HGet(ctx, sourceKey(src2.ID), "secret").Result(); now != cur {
		t.Fatal("a changed field was overwritten")
	}

	// A secret neither key opens is named by its record, never shown.
	if err := rdb.HSet(ctx, subKey(sub.ID), "secret", "v1:garbage", "prev_secret", "v1:garbage too", "prev_expires", ms(now.Add(time.Hour))).Err(); err != nil {
		t.Fatal(err)
	}
	res, err = during.RewrapSecrets(ctx, "", time.Time{})
	if err != nil || res.Complete() || len(res.Undecryptable) != 1 || res.Undecryptable[0] != sub.ID {
		t.Fatalf("with an undecryptable secret: %+v %v", res, err)
	}
}

// A subscription's custom headers: their names are listed, their values
// are sealed like a secret and read only with the secrets; a patch replaces
// or removes them.
func TestSubscriptionHeaders(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := newStore(t, rdb)
		now := time.UnixMilli(time.Now().UnixMilli())
		sub := Subscription{ID: ids.New(ids.Subscription), SourceID: ids.New(ids.Source), URL: "https://example.com", Events: []string{"*"},
			Enabled: true, CreatedAt: now, HeaderNames: []string{"Authorization", "X-Api-Key"}}
		headers := map[string]string{"X-Api-Key": "key-value-1", "Authorization": "Bearer token-value-1"}
		if err := s.CreateSubscription(ctx, sub, "whsec_c3ViLXNlY3JldA==", headers); err != nil {
			t.Fatal(err)
		}
		got, err := s.GetSubscription(ctx, sub.ID)
		if err != nil || strings.Join(got.HeaderNames, ",") != "Authorization,X-Api-Key" {
			t.Fatalf("header names %q (%v)", got.HeaderNames, err)
		}
		raw, _ := rdb.HGetAll(ctx, subKey(sub.ID)).Result()
		for field, v := range raw {
			if strings.Contains(v, "value-1") {
				t.Fatalf("field %s holds a header value in the clear", field)
			}
		}
		ws, err := s.GetSubscriptionWithSecrets(ctx, sub.ID)
		if err != nil || len(ws.Headers) != 2 || ws.Headers["Authorization"] != "Bearer token-value-1" || ws.Headers["X-Api-Key"] != "key-value-1" {
			t.Fatalf("headers %v (%v)", ws.Headers, err)
		}
		// Sealed for the headers of this subscription: not readable as its secret.
		if _, err := s.box.Open(raw["headers"], sub.ID); err == nil {
			t.Fatal("the sealed headers open as the subscription's secret")
		}

		replaced := map[string]string{"Authorization": "Bearer token-value-2"}
		if got, err = s.UpdateSubscription(ctx, sub.ID, SubscriptionPatch{Headers: &replaced}); err != nil || strings.Join(got.HeaderNames, ",") != "Authorization" {
			t.Fatalf("after replacing: %q (%v)", got.HeaderNames, err)
		}
		if ws, err = s.GetSubscriptionWithSecrets(ctx, sub.ID); err != nil || len(ws.Headers) != 1 || ws.Headers["Authorization"] != "Bearer token-value-2" {
			t.Fatalf("replaced headers %v (%v)", ws.Headers, err)
		}
		none := map[string]string{}
		if got, err = s.UpdateSubscription(ctx, sub.ID, SubscriptionPatch{Headers: &none}); err != nil || len(got.HeaderNames) != 0 {
			t.Fatalf("after removing: %q (%v)", got.HeaderNames, err)
		}
		if ws, err = s.GetSubscriptionWithSecrets(ctx, sub.ID); err != nil || ws.Headers != nil || ws.Secrets.Current != "whsec_c3ViLXNlY3JldA==" {
			t.Fatalf("removed headers %v, secret %q (%v)", ws.Headers, ws.Secrets.Current, err)
		}
	})
}

// updated_at moves when a subscription changes, secret included, and only
// then.
// A subscription's delivery policy round-trips, and a patch changes or
// clears each part alone.
func TestSubscriptionPolicy(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := newStore(t, rdb)
	now := time.UnixMilli(time.Now().UnixMilli())
	sub := Subscription{
		ID: ids.New(ids.Subscription), SourceID: ids.New(ids.Source), URL: "https://example.com", Events: []string{"*"}, Enabled: true,
		CreatedAt: now, UpdatedAt: now, Filter: `data.total > 100`, MaxAttempts: 3,
	}
	if err := s.CreateSubscription(ctx, sub, "whsec_c3ViLXNlY3JldA==", nil); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetSubscription(ctx, sub.ID)
	if err != nil || got.Filter != sub.Filter || got.MaxAttempts != 3 {
		t.Fatalf("read back %+v, %v", got, err)
	}
	expr, one := `type == "a"`, 1
	if got, err = s.UpdateSubscription(ctx, sub.ID, SubscriptionPatch{Filter: &expr}); err != nil || got.Filter != expr || got.MaxAttempts != 3 {
		t.Fatalf("filter patched: %+v, %v", got, err)
	}
	if got, err = s.UpdateSubscription(ctx, sub.ID, SubscriptionPatch{MaxAttempts: &one}); err != nil || got.Filter != expr || got.MaxAttempts != 1 {
		t.Fatalf("max attempts patched: %+v, %v", got, err)
	}
	limit := RateLimit{Rate: 50, Period: time.Minute, Burst: 5}
	if got, err = s.UpdateSubscription(ctx, sub.ID, SubscriptionPatch{RateLimit: &limit}); err != nil || got.RateLimit == nil || *got.RateLimit != limit || got.RateLimit.Interval() != 1200*time.Millisecond {
		t.Fatalf("rate limit patched: %+v, %v", got, err)
	}
	none, zero := "", 0
	if got, err = s.UpdateSubscription(ctx, sub.ID, SubscriptionPatch{Filter: &none, MaxAttempts: &zero, RateLimit: &RateLimit{}}); err != nil ||
		got.Filter != "" || got.MaxAttempts != 0 || got.RateLimit != nil {
		t.Fatalf("all cleared: %+v, %v", got, err)
	}
}

// TestOrdering: a source's ordering key and an ordered subscription's
// on_failure are stored, read back, patched and cleared; a damaged one reads
// as corrupt rather than as unordered.
func TestOrdering(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := newStore(t, rdb)
	now := time.UnixMilli(time.Now().UnixMilli())
	src := Source{ID: ids.New(ids.Source), Name: "shop", Scheme: "relay", CreatedAt: now, OrderingKey: ordering.Spec{JSONPath: "data.customer_id"}}
	if err := s.CreateSource(ctx, src, "whsec_c3ViLXNlY3JldA=="); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSource(ctx, src.ID); err != nil || got.OrderingKey != src.OrderingKey {
		t.Fatalf("source read back %+v, %v", got.OrderingKey, err)
	}
	byHeader := ordering.Spec{Header: "X-Customer-Id"}
	if got, err := s.UpdateSource(ctx, src.ID, SourcePatch{OrderingKey: &byHeader}); err != nil || got.OrderingKey != byHeader {
		t.Fatalf("ordering key patched: %+v, %v", got.OrderingKey, err)
	}
	if got, err := s.UpdateSource(ctx, src.ID, SourcePatch{OrderingKey: &ordering.Spec{}}); err != nil || !got.OrderingKey.IsZero() {
		t.Fatalf("ordering key cleared: %+v, %v", got.OrderingKey, err)
	}

	sub := Subscription{
		ID: ids.New(ids.Subscription), SourceID: src.ID, URL: "https://example.com", Events: []string{"*"}, Enabled: true,
		CreatedAt: now, UpdatedAt: now, Ordered: true,
	}
	if err := s.CreateSubscription(ctx, sub, "whsec_c3ViLXNlY3JldA==", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSubscription(ctx, sub.ID); err != nil || !got.Ordered || got.OnFailure != OnFailureSkip {
		t.Fatalf("ordered subscription read back %+v, %v", got, err)
	}
	block := OnFailureBlock
	if got, err := s.UpdateSubscription(ctx, sub.ID, SubscriptionPatch{OnFailure: &block}); err != nil || !got.Ordered || got.OnFailure != OnFailureBlock {
		t.Fatalf("on_failure patched: %+v, %v", got, err)
	}
	rdb.HSet(ctx, subKey(sub.ID), "ordered", "sometimes")
	if _, err := s.GetSubscription(ctx, sub.ID); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("a damaged on_failure read as %v, want corrupt", err)
	}
	plain := Subscription{ID: ids.New(ids.Subscription), SourceID: src.ID, URL: "https://example.com", Events: []string{"*"}, Enabled: true, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateSubscription(ctx, plain, "whsec_c3ViLXNlY3JldA==", nil); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSubscription(ctx, plain.ID); err != nil || got.Ordered || got.OnFailure != "" {
		t.Fatalf("unordered subscription read back %+v, %v", got, err)
	}
}

func TestSubscriptionUpdatedAt(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := newStore(t, rdb)
	now := time.UnixMilli(time.Now().UnixMilli())
	s.now = func() time.Time { return now }
	sub := Subscription{ID: ids.New(ids.Subscription), SourceID: ids.New(ids.Source), URL: "https://example.com", Events: []string{"*"}, Enabled: true, CreatedAt: now, UpdatedAt: now}
	if err := s.CreateSubscription(ctx, sub, "whsec_c3ViLXNlY3JldA==", nil); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	got, err := s.UpdateSubscription(ctx, sub.ID, SubscriptionPatch{})
	if err != nil || !got.UpdatedAt.Equal(sub.CreatedAt) {
		t.Fatalf("an empty patch: updated_at %v (%v), want it unchanged at %v", got.UpdatedAt, err, sub.CreatedAt)
	}
	if err := s.RotateSubscriptionSecret(ctx, sub.ID, "whsec_bmV3LXNlY3JldA==", time.Hour); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSubscription(ctx, sub.ID); err != nil || !got.UpdatedAt.Equal(now) || !got.PreviousSecretExpiresAt.Equal(now.Add(time.Hour)) {
		t.Fatalf("after a rotation: updated_at %v, previous secret until %v (%v); want %v and an hour later", got.UpdatedAt, got.PreviousSecretExpiresAt, err, now)
	}
	if _, err := s.UpdateSubscription(ctx, ids.New(ids.Subscription), SubscriptionPatch{}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an empty patch of a missing subscription: %v, want ErrNotFound", err)
	}
}

// A subscription whose secret the running key does not open is unreadable
// but decoded: its events filter and switch are known, so deliver can tell
// whether an event concerns it at all.
func TestUndecryptableSubscriptionIsDecodedApart(t *testing.T) {
	rdb, _ := testenv.MiniRedis(t)
	ctx := context.Background()
	s := newStore(t, rdb)
	now := time.UnixMilli(time.Now().UnixMilli())
	src := Source{ID: ids.New(ids.Source), Name: "shop", Scheme: "relay", Tolerance: time.Minute, DedupWindow: time.Hour, CreatedAt: now}
	if err := s.CreateSource(ctx, src, "secret-of-src"); err != nil {
		t.Fatal(err)
	}
	sub := Subscription{ID: ids.New(ids.Subscription), SourceID: src.ID, URL: "https://example.com/h", Events: []string{"orders.*"}, Enabled: true, CreatedAt: now}
	if err := s.CreateSubscription(ctx, sub, "whsec_sub", nil); err != nil {
		t.Fatal(err)
	}
	otherKey := make([]byte, secretbox.KeySize)
	otherKey[0] = 1
	box, err := secretbox.New(otherKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	fan, err := New(rdb, box).SourceSubscriptions(ctx, src.ID)
	if err != nil || len(fan.Subscriptions) != 0 || len(fan.Unreadable) != 1 {
		t.Fatalf("SourceSubscriptions = %+v, %v", fan, err)
	}
	u := fan.Unreadable[0]
	if !u.Decoded || !errors.Is(u.Err, secretbox.ErrDecrypt) || !Unreadable(u.Err) || u.Events[0] != "orders.*" || !u.Enabled {
		t.Fatalf("unreadable = %+v", u)
	}
}

// Concurrent rotations of one secret are applied one after the other: the
// secret current last keeps the one current just before it as previous,
// never a secret an earlier rotation had already replaced. When each
// rotation read the current secret and then wrote, two that read the same
// one lost the first's new secret: its sender, configured with it, failed
// verification at once.
func TestConcurrentRotationsKeepEverySecret(t *testing.T) {
	testenv.RedisBackends(t, func(t *testing.T, rdb redis.UniversalClient) {
		ctx := context.Background()
		s := newStore(t, rdb)
		for round := 0; round < 20; round++ {
			src := Source{ID: ids.New(ids.Source), Name: "r", Scheme: "relay", Tolerance: time.Minute, DedupWindow: time.Hour, CreatedAt: time.Now()}
			if err := s.CreateSource(ctx, src, "secret-original"); err != nil {
				t.Fatal(err)
			}
			const n = 8
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := 0; i < n; i++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					if err := s.RotateSourceSecret(ctx, src.ID, fmt.Sprintf("secret-new-%d", i), time.Hour); err != nil {
						t.Error(err)
					}
				}()
			}
			close(start)
			wg.Wait()
			_, sec, err := s.GetSourceWithSecrets(ctx, src.ID)
			if err != nil {
				t.Fatal(err)
			}
			if !strings.HasPrefix(sec.Current, "secret-new-") || !strings.HasPrefix(sec.Previous, "secret-new-") || sec.Current == sec.Previous {
				t.Fatalf("round %d: after %d rotations, current %q and previous %q; want two of the new secrets", round, n, sec.Current, sec.Previous)
			}
		}
	})
}
