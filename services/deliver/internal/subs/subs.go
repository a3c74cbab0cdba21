// Package subs reads the subscriptions deliver fans events out to, through a
// short cache, and disables those whose endpoint is gone.
package subs

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/relayhq/relay/pkg/catalog"
)

// Subs reads subscriptions (with their secrets) through caches that keep
// each for ttl, so the fan-out of each event costs no Redis round trip in
// the steady state. A change made through the API is seen within the TTL;
// one deliver makes itself (Disable) at once.
type Subs struct {
	store    *catalog.Store
	bySource *catalog.Cache[catalog.FanOut]
	byID     *catalog.Cache[catalog.SubscriptionWithSecrets]
}

// New returns Subs over store.
func New(store *catalog.Store, ttl time.Duration) *Subs {
	return &Subs{
		store:    store,
		bySource: catalog.NewCache[catalog.FanOut](catalog.CacheConfig{TTL: ttl}),
		byID:     catalog.NewCache[catalog.SubscriptionWithSecrets](catalog.CacheConfig{TTL: ttl, Max: 100000}),
	}
}

// ForSource returns every subscription of a source, the unreadable apart.
func (s *Subs) ForSource(ctx context.Context, src string) (catalog.FanOut, error) {
	return s.bySource.Get(ctx, src, func(ctx context.Context) (catalog.FanOut, error) {
		return s.store.SourceSubscriptions(ctx, src)
	})
}

// Get returns one subscription; found is false when it was deleted. An
// unreadable one is an error catalog.Unreadable accepts.
func (s *Subs) Get(ctx context.Context, id string) (sub catalog.SubscriptionWithSecrets, found bool, err error) {
	sub, err = s.byID.Get(ctx, id, func(ctx context.Context) (catalog.SubscriptionWithSecrets, error) {
		return s.store.GetSubscriptionWithSecrets(ctx, id)
	})
	if errors.Is(err, catalog.ErrNotFound) {
		return sub, false, nil
	}
	return sub, err == nil, err
}

// Disable turns a subscription off, saying why, and forgets it, so that
// the next delivery to it sees it off.
func (s *Subs) Disable(ctx context.Context, id, reason string) error {
	off := false
	if _, err := s.store.UpdateSubscription(ctx, id, catalog.SubscriptionPatch{Enabled: &off, DisabledReason: reason}); err != nil {
		return err
	}
	s.byID.Forget(id)
	s.bySource.ForgetWhere(func(f catalog.FanOut) bool {
		return slices.ContainsFunc(f.Subscriptions, func(sub catalog.SubscriptionWithSecrets) bool { return sub.ID == id })
	})
	return nil
}
