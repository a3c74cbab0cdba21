package catalog

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/secretbox"
	"github.com/relayhq/relay/pkg/testenv"
)

func newStore(t *testing.T, rdb redis.UniversalClient) *Store {
	t.Helper()
	box, err := secretbox.New(make([]byte, secretbox.KeySize))
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
		if err := s.CreateSubscription(ctx, sub, "whsec_c3ViLXNlY3JldC1zdWItc2VjcmV0"); err != nil {
			t.Fatal(err)
		}
		subs, err := s.SourceSubscriptions(ctx, src.ID)
		if err != nil || len(subs) != 1 || subs[0].URL != sub.URL || subs[0].Secrets.Current != "whsec_c3ViLXNlY3JldC1zdWItc2VjcmV0" || subs[0].Events[0] != "payment.*" {
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
