// Package catalog stores sources and subscriptions in Redis. Ingest manages
// them through the HTTP API; deliver reads subscriptions to fan events out.
// Secrets are sealed with secretbox before they reach Redis and are returned
// only by the methods whose names say so.
//
// Keys (hash-tagged by id for Redis Cluster):
//
//	relay:src:{src_…}         hash: the source
//	relay:src:{src_…}:subs    zset: its subscription ids (lexicographic, so by creation time)
//	relay:sub:{sub_…}         hash: the subscription (its custom headers'
//	                          values sealed in one field, like its secret)
//	relay:sources             zset: every source id
package catalog

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/filter"
	"github.com/relayhq/relay/pkg/ordering"
	"github.com/relayhq/relay/pkg/secretbox"
)

// ErrNotFound means the source or subscription does not exist.
var ErrNotFound = errors.New("not found")

// ErrCorrupt means a stored source or subscription has a field Relay did not
// write that way (edited by hand, or damaged): the record is refused rather
// than read with a zero in the field's place, which for a subscription's
// events would silently stop its deliveries. Such errors are *CorruptError.
var ErrCorrupt = errors.New("stored record is corrupt")

// CorruptError names the record and the field that does not parse. Only
// fields that hold no secret are decoded, so it may quote the value found.
type CorruptError struct {
	Kind  string // "source" or "subscription"
	ID    string
	Field string
	Value string
	Want  string // what the field should hold
}

func (e *CorruptError) Error() string {
	return fmt.Sprintf("%v: %s %s: field %q is %.40q, not %s", ErrCorrupt, e.Kind, e.ID, e.Field, e.Value, e.Want)
}

// Is makes errors.Is(err, ErrCorrupt) true.
func (e *CorruptError) Is(target error) bool { return target == ErrCorrupt }

const sourcesIndex = "relay:sources"

func sourceKey(id string) string     { return "relay:src:{" + id + "}" }
func sourceSubsKey(id string) string { return "relay:src:{" + id + "}:subs" }
func subKey(id string) string        { return "relay:sub:{" + id + "}" }

// Secrets are the signing secrets of a source or subscription: the current
// one, and the one it replaced while that is within its grace period.
type Secrets struct {
	Current           string
	Previous          string
	PreviousExpiresAt time.Time
}

// Active returns the secrets valid at now, current first.
func (s Secrets) Active(now time.Time) []string {
	if s.Previous != "" && now.Before(s.PreviousExpiresAt) {
		return []string{s.Current, s.Previous}
	}
	return []string{s.Current}
}

// Source is a webhook sender Relay receives from.
type Source struct {
	ID          string
	Name        string
	Scheme      string
	Tolerance   time.Duration
	DedupWindow time.Duration
	CreatedAt   time.Time
	// PreviousSecretExpiresAt is when a rotated-out secret stops verifying;
	// zero when there is none.
	PreviousSecretExpiresAt time.Time
	// ForwardHeaders name the sender's request headers that go with each
	// event to the subscribers (X-GitHub-Event, say), canonical.
	ForwardHeaders []string
	// SchemeParams configure a scheme that takes them (hmac's header,
	// algorithm, ...); nil for the others. They hold no secret.
	SchemeParams map[string]string
	// AllowedIPs, when not empty, are the only sender addresses (IPs and
	// CIDR prefixes) the source takes webhooks from.
	AllowedIPs []string
	// OrderingKey says where an event's ordering key is (a header or a
	// JSON path); zero for none. Ordered subscriptions deliver the events
	// of one key one at a time, in order.
	OrderingKey ordering.Spec
}

// Subscription is an endpoint that receives a source's events.
type Subscription struct {
	ID             string
	SourceID       string
	URL            string
	Events         []string
	Enabled        bool
	DisabledReason string
	CreatedAt      time.Time
	UpdatedAt      time.Time
	// PreviousSecretExpiresAt is when a rotated-out secret stops signing;
	// zero when there is none.
	PreviousSecretExpiresAt time.Time
	// HeaderNames are the names of the headers every delivery carries
	// besides Relay's own (an endpoint's Authorization, say), canonical and
	// sorted. Their values are secrets: see SubscriptionWithSecrets.
	HeaderNames []string
	// Filter is a CEL expression over each event (package filter); empty
	// for none. Only events it matches become deliveries.
	Filter string
	// MaxAttempts caps the attempts of each delivery (the retry ladder's
	// first MaxAttempts-1 tiers); 0 for the whole ladder.
	MaxAttempts int
	// RateLimit paces deliveries to the endpoint across every deliver
	// replica; nil for none.
	RateLimit *RateLimit
	// Ordered makes the deliveries of events that share an ordering key
	// one at a time, in the order ingest accepted them. Set at creation.
	Ordered bool
	// OnFailure is what an ordered subscription's key does when its head
	// goes to the DLQ: OnFailureSkip (the next proceeds) or OnFailureBlock
	// (it waits until the entry is redriven and delivered, or discarded).
	OnFailure string
}

// What an ordered subscription does when a key's head goes to the DLQ.
const (
	OnFailureSkip  = "skip"
	OnFailureBlock = "block"
)

// RateLimit is a subscription's pace: at most Rate deliveries per Period
// (a second or a minute) on average, Burst of them at once.
type RateLimit struct {
	Rate   int           `json:"rate"`
	Period time.Duration `json:"period"`
	Burst  int           `json:"burst"`
}

// Interval is the time between two deliveries at the limit's pace.
func (r RateLimit) Interval() time.Duration { return r.Period / time.Duration(r.Rate) }

// Valid reports whether the limit can be enforced: a positive rate per
// second or per minute, and a burst of at least one.
func (r RateLimit) Valid() bool {
	return r.Rate > 0 && (r.Period == time.Second || r.Period == time.Minute) && r.Burst > 0 && r.Interval() > 0
}

// Filters compiles the subscriptions' filters once for the whole process:
// the catalog checks that a stored one compiles, and deliver and ingest
// evaluate it from here.
var Filters filter.Cache

// Matches reports whether the filter expr matches the event in, as deliver
// decides it: an expression that does not compile or an evaluation that
// fails is a non-match.
func Matches(ctx context.Context, expr string, in *filter.Input) bool {
	f, err := Filters.Get(expr)
	if err != nil {
		return false
	}
	ok, err := f.Match(ctx, in)
	return ok && err == nil
}

// Store keeps the catalog in Redis.
type Store struct {
	rdb redis.UniversalClient
	box *secretbox.Box
	now func() time.Time
}

// New returns a Store.
func New(rdb redis.UniversalClient, box *secretbox.Box) *Store {
	return &Store{rdb: rdb, box: box, now: time.Now}
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// decoder reads a stored record's fields and keeps the first that does not
// parse. Only fields that hold no secret go through it.
type decoder struct {
	kind, id string
	m        map[string]string
	err      error
}

func (d *decoder) fail(field, want string) {
	if d.err == nil {
		d.err = &CorruptError{Kind: d.kind, ID: d.id, Field: field, Value: d.m[field], Want: want}
	}
}

// millis reads a non-negative count of milliseconds; absent reads as 0.
func (d *decoder) millis(field string) int64 {
	v := d.m[field]
	if v == "" {
		return 0
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		d.fail(field, "a count of milliseconds")
		return 0
	}
	return n
}

// time reads a Unix time in milliseconds; absent or 0 reads as the zero time.
func (d *decoder) time(field string) time.Time {
	if n := d.millis(field); n != 0 {
		return time.UnixMilli(n)
	}
	return time.Time{}
}

// count reads a positive integer.
func (d *decoder) count(field string) int {
	n, err := strconv.Atoi(d.m[field])
	if err != nil || n <= 0 {
		d.fail(field, "a positive integer")
		return 0
	}
	return n
}

// filter reads an optional CEL filter, which must compile: deliver holds
// a subscription's deliveries rather than guess what one that does not
// would have matched.
func (d *decoder) filter(field string) string {
	expr := d.m[field]
	if expr == "" {
		return ""
	}
	if _, err := Filters.Get(expr); err != nil {
		d.fail(field, "a CEL filter that compiles ("+err.Error()+")")
	}
	return expr
}

// rateLimit reads an optional rate limit; absent reads as none.
func (d *decoder) rateLimit(field string) *RateLimit {
	if d.m[field] == "" {
		return nil
	}
	var r RateLimit
	if err := json.Unmarshal([]byte(d.m[field]), &r); err != nil || !r.Valid() {
		d.fail(field, "a rate limit (a positive rate per second or minute, and a burst)")
		return nil
	}
	return &r
}

// orderingKey reads an optional ordering key; absent reads as none.
func (d *decoder) orderingKey(field string) ordering.Spec {
	var o ordering.Spec
	if d.m[field] == "" {
		return o
	}
	if err := json.Unmarshal([]byte(d.m[field]), &o); err != nil || o.Validate() != nil {
		d.fail(field, "an ordering key (a header or a JSON path)")
		return ordering.Spec{}
	}
	return o
}

// onFailure reads an ordered subscription's on_failure; absent reads as
// unordered.
func (d *decoder) onFailure(field string) (bool, string) {
	switch v := d.m[field]; v {
	case "":
		return false, ""
	case OnFailureSkip, OnFailureBlock:
		return true, v
	}
	d.fail(field, `"skip" or "block"`)
	return false, ""
}

// flag reads "1" or "0".
func (d *decoder) flag(field string) bool {
	switch d.m[field] {
	case "1":
		return true
	case "0":
		return false
	}
	d.fail(field, `"1" or "0"`)
	return false
}

// list reads an optional JSON list of strings (of what); absent reads as none.
func (d *decoder) list(field, what string) []string {
	if d.m[field] == "" {
		return nil
	}
	var out []string
	if err := json.Unmarshal([]byte(d.m[field]), &out); err != nil {
		d.fail(field, "a JSON list of "+what)
		return nil
	}
	return out
}

// params reads an optional JSON object of strings; absent reads as none.
func (d *decoder) params(field string) map[string]string {
	if d.m[field] == "" {
		return nil
	}
	var out map[string]string
	if err := json.Unmarshal([]byte(d.m[field]), &out); err != nil {
		d.fail(field, "a JSON object of scheme parameters")
		return nil
	}
	return out
}

// globs reads a JSON list of event type globs.
func (d *decoder) globs(field string) []string {
	var out []string
	if err := json.Unmarshal([]byte(d.m[field]), &out); err != nil || out == nil {
		d.fail(field, "a JSON list of event type globs")
		return nil
	}
	return out
}

// CreateSource stores a new source with its secret.
func (s *Store) CreateSource(ctx context.Context, src Source, secret string) error {
	key := sourceKey(src.ID)
	fields := map[string]any{
		"name":            src.Name,
		"scheme":          src.Scheme,
		"tolerance_ms":    src.Tolerance.Milliseconds(),
		"dedup_window_ms": src.DedupWindow.Milliseconds(),
		"created_at":      ms(src.CreatedAt),
		"secret":          s.box.Seal(secret, src.ID),
	}
	for _, f := range []struct {
		name  string
		empty bool
		v     any
	}{
		{"forward_headers", len(src.ForwardHeaders) == 0, src.ForwardHeaders},
		{"scheme_params", len(src.SchemeParams) == 0, src.SchemeParams},
		{"allowed_ips", len(src.AllowedIPs) == 0, src.AllowedIPs},
		{"ordering_key", src.OrderingKey.IsZero(), src.OrderingKey},
	} {
		if f.empty {
			continue // absent reads as none
		}
		b, err := json.Marshal(f.v)
		if err != nil {
			return fmt.Errorf("create source %s: %w", src.ID, err)
		}
		fields[f.name] = string(b)
	}
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, key, fields)
		p.ZAdd(ctx, sourcesIndex, redis.Z{Member: src.ID})
		return nil
	})
	if err != nil {
		return fmt.Errorf("create source %s: %w", src.ID, err)
	}
	return nil
}

func (s *Store) sourceFields(ctx context.Context, id string) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, sourceKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("get source %s: %w", id, err)
	}
	if len(m) == 0 || m["scheme"] == "" {
		return nil, ErrNotFound
	}
	return m, nil
}

// sourceFrom decodes a stored source; an error wraps ErrCorrupt.
func sourceFrom(id string, m map[string]string) (Source, error) {
	d := decoder{kind: "source", id: id, m: m}
	src := Source{
		ID: id, Name: m["name"], Scheme: m["scheme"],
		Tolerance:      time.Duration(d.millis("tolerance_ms")) * time.Millisecond,
		DedupWindow:    time.Duration(d.millis("dedup_window_ms")) * time.Millisecond,
		CreatedAt:      d.time("created_at"),
		ForwardHeaders: d.list("forward_headers", "header names"),
		AllowedIPs:     d.list("allowed_ips", "IP addresses and CIDR prefixes"),
		SchemeParams:   d.params("scheme_params"),
		OrderingKey:    d.orderingKey("ordering_key"),
	}
	if m["prev_secret"] != "" {
		src.PreviousSecretExpiresAt = d.time("prev_expires")
	}
	return src, d.err
}

// GetSource returns a source without its secrets.
func (s *Store) GetSource(ctx context.Context, id string) (Source, error) {
	m, err := s.sourceFields(ctx, id)
	if err != nil {
		return Source{}, err
	}
	return sourceFrom(id, m)
}

// GetSourceWithSecrets returns a source and its decrypted secrets, for
// verifying inbound requests. It is one Redis round trip.
func (s *Store) GetSourceWithSecrets(ctx context.Context, id string) (Source, Secrets, error) {
	m, err := s.sourceFields(ctx, id)
	if err != nil {
		return Source{}, Secrets{}, err
	}
	src, err := sourceFrom(id, m)
	if err != nil {
		return Source{}, Secrets{}, err
	}
	sec, err := s.openSecrets(id, m, src.PreviousSecretExpiresAt)
	if err != nil {
		return Source{}, Secrets{}, err
	}
	return src, sec, nil
}

// openSecrets decrypts a record's secret, and its previous one until exp
// (the record's decoded prev_expires).
func (s *Store) openSecrets(owner string, m map[string]string, exp time.Time) (Secrets, error) {
	var sec Secrets
	var err error
	if sec.Current, err = s.box.Open(m["secret"], owner); err != nil {
		return sec, fmt.Errorf("secret of %s: %w", owner, err)
	}
	if m["prev_secret"] != "" {
		if s.now().Before(exp) {
			if sec.Previous, err = s.box.Open(m["prev_secret"], owner); err != nil {
				return sec, fmt.Errorf("previous secret of %s: %w", owner, err)
			}
			sec.PreviousExpiresAt = exp
		}
	}
	return sec, nil
}

// Page is one page of a listing.
type Page[T any] struct {
	Items []T
	// Next is the cursor of the following page, "" on the last page.
	Next string
}

// ListSources lists sources oldest first, limit at a time, after cursor.
func (s *Store) ListSources(ctx context.Context, cursor string, limit int) (Page[Source], error) {
	return listPage(ctx, s, "list sources", sourcesIndex, sourceKey, sourceFrom, cursor, limit)
}

// listPage reads one page of the records an index lists, decoding each with
// from; a record deleted since the index was read is left out.
func listPage[T any](ctx context.Context, s *Store, what, index string, key func(string) string,
	from func(string, map[string]string) (T, error), cursor string, limit int,
) (Page[T], error) {
	ids, next, err := s.listIDs(ctx, index, cursor, limit)
	if err != nil {
		return Page[T]{}, fmt.Errorf("%s: %w", what, err)
	}
	ms, err := s.hashes(ctx, ids, key)
	if err != nil {
		return Page[T]{}, fmt.Errorf("%s: %w", what, err)
	}
	page := Page[T]{Next: next}
	for i, m := range ms {
		if len(m) == 0 {
			continue
		}
		item, err := from(ids[i], m)
		if err != nil {
			return Page[T]{}, fmt.Errorf("%s: %w", what, err)
		}
		page.Items = append(page.Items, item)
	}
	return page, nil
}

// hashes reads the hash of every id in one pipelined round trip; a deleted
// record reads as an empty map.
func (s *Store) hashes(ctx context.Context, ids []string, key func(string) string) ([]map[string]string, error) {
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.HGetAll(ctx, key(id))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := make([]map[string]string, len(ids))
	for i, c := range cmds {
		out[i] = c.Val()
	}
	return out, nil
}

// listIDs pages through a lexicographic index. The cursor is the last id returned.
func (s *Store) listIDs(ctx context.Context, key, cursor string, limit int) ([]string, string, error) {
	min := "-"
	if cursor != "" {
		min = "(" + cursor
	}
	ids, err := s.rdb.ZRangeByLex(ctx, key, &redis.ZRangeBy{Min: min, Max: "+", Count: int64(limit) + 1}).Result()
	if err != nil {
		return nil, "", err
	}
	next := ""
	if len(ids) > limit {
		ids = ids[:limit]
		next = ids[limit-1]
	}
	return ids, next, nil
}

// SourcePatch changes a source's settings; nil fields stay as they are.
// Its scheme is fixed (it decides the secret's format), and its secret
// changes only by a rotation, which keeps the old one for a grace period.
type SourcePatch struct {
	Name        *string
	Tolerance   *time.Duration
	DedupWindow *time.Duration
	// ForwardHeaders, when not nil, replace the forwarded headers' names
	// (empty: none).
	ForwardHeaders *[]string
	// SchemeParams, when not nil, replace the scheme's parameters.
	SchemeParams *map[string]string
	// AllowedIPs, when not nil, replace the allowed sender addresses
	// (empty: any).
	AllowedIPs *[]string
	// OrderingKey, when not nil, replaces where the ordering key is (zero:
	// none).
	OrderingKey *ordering.Spec
}

// UpdateSource applies a patch and returns the updated source. Its id, and
// so the ingest URL a sender is configured with, stays.
func (s *Store) UpdateSource(ctx context.Context, id string, p SourcePatch) (Source, error) {
	var args []any
	if p.Name != nil {
		args = append(args, "name", *p.Name)
	}
	if p.Tolerance != nil {
		args = append(args, "tolerance_ms", p.Tolerance.Milliseconds())
	}
	if p.DedupWindow != nil {
		args = append(args, "dedup_window_ms", p.DedupWindow.Milliseconds())
	}
	for _, f := range []struct {
		name       string
		set, empty bool
		v          any
	}{
		{"forward_headers", p.ForwardHeaders != nil, p.ForwardHeaders == nil || len(*p.ForwardHeaders) == 0, p.ForwardHeaders},
		{"scheme_params", p.SchemeParams != nil, p.SchemeParams == nil || len(*p.SchemeParams) == 0, p.SchemeParams},
		{"allowed_ips", p.AllowedIPs != nil, p.AllowedIPs == nil || len(*p.AllowedIPs) == 0, p.AllowedIPs},
		{"ordering_key", p.OrderingKey != nil, p.OrderingKey == nil || p.OrderingKey.IsZero(), p.OrderingKey},
	} {
		if !f.set {
			continue
		}
		v := "" // none, as when absent
		if !f.empty {
			b, err := json.Marshal(f.v)
			if err != nil {
				return Source{}, fmt.Errorf("update source %s: %w", id, err)
			}
			v = string(b)
		}
		args = append(args, f.name, v)
	}
	if len(args) == 0 {
		return s.GetSource(ctx, id)
	}
	n, err := hsetIfExists.Run(ctx, s.rdb, []string{sourceKey(id)}, args...).Int()
	if err != nil {
		return Source{}, fmt.Errorf("update source %s: %w", id, err)
	}
	if n == 0 {
		return Source{}, ErrNotFound
	}
	return s.GetSource(ctx, id)
}

// DeleteSource deletes a source and its subscriptions.
func (s *Store) DeleteSource(ctx context.Context, id string) error {
	n, err := s.rdb.Del(ctx, sourceKey(id)).Result()
	if err != nil {
		return fmt.Errorf("delete source %s: %w", id, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	subs, err := s.rdb.ZRange(ctx, sourceSubsKey(id), 0, -1).Result()
	if err != nil {
		return fmt.Errorf("delete source %s: subscriptions: %w", id, err)
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, sub := range subs {
			p.Del(ctx, subKey(sub))
		}
		p.Del(ctx, sourceSubsKey(id))
		p.ZRem(ctx, sourcesIndex, id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete source %s: %w", id, err)
	}
	return nil
}

// rotateScript replaces the current secret, keeping the old one until its
// grace period ends. It reads the current secret itself, so that rotations
// racing each other apply one after the other, each keeping the secret the
// one before it made current. KEYS[1] record; ARGV: new sealed secret,
// expiry ms, and the time for updated_at ("" for records without one).
var rotateScript = redis.NewScript(`
local old = redis.call('HGET', KEYS[1], 'secret')
if not old then return 0 end
redis.call('HSET', KEYS[1], 'prev_secret', old, 'prev_expires', ARGV[2], 'secret', ARGV[1])
if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'updated_at', ARGV[3]) end
return 1
`)

// rotate makes newSecret current on the record at key; touch also sets its
// updated_at (subscriptions have one, sources do not).
func (s *Store) rotate(ctx context.Context, key, owner, newSecret string, grace time.Duration, touch bool) error {
	now, updated := s.now(), ""
	if touch {
		updated = ms(now)
	}
	n, err := rotateScript.Run(ctx, s.rdb, []string{key}, s.box.Seal(newSecret, owner), ms(now.Add(grace)), updated).Int()
	if err != nil {
		return fmt.Errorf("rotate secret of %s: %w", owner, err)
	}
	if n == 0 {
		return ErrNotFound
	}
	return nil
}

// RewrapResult is what RewrapSecrets did.
type RewrapResult struct {
	// Rewrapped secrets were sealed under the previous key and are now
	// sealed under the current one; Current ones already were.
	Rewrapped, Current int
	// ChangedMeanwhile secrets were rotated or deleted while the run read
	// them and were left as they are: run again.
	ChangedMeanwhile int
	// Undecryptable are the ids of records with a secret that neither key
	// opens. Only ids: never a secret or ciphertext.
	Undecryptable []string
	// Next is where a run that reached its deadline stopped: pass it as
	// after to continue. Empty when every source was seen.
	Next string
}

// Complete reports whether every secret seen is sealed under the current
// key and every source was seen, so that RELAY_SECRET_KEY_PREVIOUS can be
// dropped (given a run from the start, or runs chained by Next).
func (r RewrapResult) Complete() bool {
	return r.Next == "" && r.ChangedMeanwhile == 0 && len(r.Undecryptable) == 0
}

// swapField sets a field only while it still holds what was read.
// KEYS[1] record; ARGV: field, value read, new value.
var swapField = redis.NewScript(`
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
return 1
`)

// RewrapSecrets seals every stored secret that only the previous key
// (RELAY_SECRET_KEY_PREVIOUS) opens anew under the current key: sources'
// and subscriptions' secrets, rotated-out ones still in their grace period,
// and subscriptions' custom headers. Each is swapped only if unchanged
// since it was read, so a concurrent rotation wins. Run it once every replica seals with the new
// key; when the result is Complete, the previous key can go.
//
// It starts after the source id after ("" for the first) and stops at the
// first source boundary past deadline (zero for none), returning Next.
func (s *Store) RewrapSecrets(ctx context.Context, after string, deadline time.Time) (RewrapResult, error) {
	var res RewrapResult
	now := s.now().UnixMilli()
	// rewrap walks an index from cursor; each, when set, is called after
	// every record, and may stop the walk by returning errStop.
	rewrap := func(index, cursor string, key func(string) string, each func(id string) error) error {
		for {
			ids, next, err := s.listIDs(ctx, index, cursor, 500)
			if err != nil {
				return err
			}
			ms, err := s.hashes(ctx, ids, key)
			if err != nil {
				return err
			}
			for i, m := range ms {
				id := ids[i]
				for _, field := range []string{"secret", "prev_secret", "headers"} {
					owner := id
					if field == "headers" {
						owner = headersOwner(id)
					}
					sealed := m[field]
					if sealed == "" {
						continue
					}
					if exp, err := strconv.ParseInt(m["prev_expires"], 10, 64); field == "prev_secret" && err == nil && exp <= now {
						continue // past its grace period: never opened again
					}
					out, changed, err := s.box.Rewrap(sealed, owner)
					switch {
					case err != nil:
						if n := len(res.Undecryptable); n == 0 || res.Undecryptable[n-1] != id {
							res.Undecryptable = append(res.Undecryptable, id) // once, whichever field
						}
						continue
					case !changed:
						res.Current++
						continue
					}
					n, err := swapField.Run(ctx, s.rdb, []string{key(id)}, field, sealed, out).Int()
					if err != nil {
						return fmt.Errorf("rewrap %s of %s: %w", field, id, err)
					}
					if n == 1 {
						res.Rewrapped++
					} else {
						res.ChangedMeanwhile++
					}
				}
				if len(m) > 0 && each != nil {
					if err := each(id); err != nil {
						return err
					}
				}
			}
			if next == "" {
				return nil
			}
			cursor = next
		}
	}
	err := rewrap(sourcesIndex, after, sourceKey, func(src string) error {
		if err := rewrap(sourceSubsKey(src), "", subKey, nil); err != nil {
			return err
		}
		if !deadline.IsZero() && s.now().After(deadline) {
			res.Next = src
			return errStop
		}
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		return res, fmt.Errorf("rewrap secrets: %w", err)
	}
	return res, nil
}

// errStop ends a walk early, without an error to report.
var errStop = errors.New("stop")

// RotateSourceSecret makes newSecret current; the previous secret keeps
// verifying for grace.
func (s *Store) RotateSourceSecret(ctx context.Context, id, newSecret string, grace time.Duration) error {
	return s.rotate(ctx, sourceKey(id), id, newSecret, grace, false)
}

// headersOwner is what a subscription's sealed headers are bound to: not
// the id alone, so that they cannot be read as its secret or the reverse.
func headersOwner(id string) string { return id + "/headers" }

// headerFields returns the stored fields of a subscription's custom
// headers: their names in the clear, for listings, and the headers sealed.
// No headers are stored as empty fields.
func (s *Store) headerFields(id string, h map[string]string) (names, sealed string, err error) {
	if len(h) == 0 {
		return "", "", nil
	}
	list := make([]string, 0, len(h))
	for k := range h {
		list = append(list, k)
	}
	sort.Strings(list)
	n, err := json.Marshal(list)
	if err != nil {
		return "", "", err
	}
	v, err := json.Marshal(h)
	if err != nil {
		return "", "", err
	}
	return string(n), s.box.Seal(string(v), headersOwner(id)), nil
}

// openHeaders decrypts a subscription's custom headers (nil for none).
func (s *Store) openHeaders(id string, m map[string]string) (map[string]string, error) {
	if m["headers"] == "" {
		return nil, nil
	}
	plain, err := s.box.Open(m["headers"], headersOwner(id))
	if err != nil {
		return nil, fmt.Errorf("headers of %s: %w", id, err)
	}
	var h map[string]string
	if err := json.Unmarshal([]byte(plain), &h); err != nil {
		// It decrypted, so Relay wrote it: a bug, not damage. Say which, never what.
		return nil, fmt.Errorf("headers of %s: %w: %v", id, ErrCorrupt, err)
	}
	return h, nil
}

// CreateSubscription stores a new subscription with its secret and the
// custom headers its deliveries carry (nil for none).
func (s *Store) CreateSubscription(ctx context.Context, sub Subscription, secret string, headers map[string]string) error {
	if sub.Events == nil {
		// Stored as null, it would read back as corrupt (subFrom).
		return fmt.Errorf("create subscription %s: no event types (use [\"*\"] for all)", sub.ID)
	}
	events, err := json.Marshal(sub.Events)
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	names, sealed, err := s.headerFields(sub.ID, headers)
	if err != nil {
		return fmt.Errorf("create subscription: %w", err)
	}
	fields := map[string]any{
		"source_id":  sub.SourceID,
		"url":        sub.URL,
		"events":     string(events),
		"enabled":    boolStr(sub.Enabled),
		"created_at": ms(sub.CreatedAt),
		"updated_at": ms(sub.CreatedAt),
		"secret":     s.box.Seal(secret, sub.ID),
	}
	if sealed != "" {
		fields["header_names"], fields["headers"] = names, sealed
	}
	if sub.Filter != "" {
		fields["filter"] = sub.Filter
	}
	if sub.MaxAttempts > 0 {
		fields["max_attempts"] = strconv.Itoa(sub.MaxAttempts)
	}
	if sub.RateLimit != nil {
		b, err := json.Marshal(sub.RateLimit)
		if err != nil {
			return fmt.Errorf("create subscription: %w", err)
		}
		fields["rate_limit"] = string(b)
	}
	if sub.Ordered {
		// One field says both: present, the subscription is ordered.
		fields["ordered"] = cmp.Or(sub.OnFailure, OnFailureSkip)
	}
	_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.HSet(ctx, subKey(sub.ID), fields)
		p.ZAdd(ctx, sourceSubsKey(sub.SourceID), redis.Z{Member: sub.ID})
		return nil
	})
	if err != nil {
		return fmt.Errorf("create subscription %s: %w", sub.ID, err)
	}
	return nil
}

func boolStr(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

// subFrom decodes a stored subscription; an error wraps ErrCorrupt, and the
// subscription returned with it holds what could be read (its id and
// source at least, so that it can still be repaired or deleted).
func subFrom(id string, m map[string]string) (Subscription, error) {
	d := decoder{kind: "subscription", id: id, m: m}
	sub := Subscription{
		ID: id, SourceID: m["source_id"], URL: m["url"],
		Events:         d.globs("events"),
		Enabled:        d.flag("enabled"),
		DisabledReason: m["disabled_reason"],
		CreatedAt:      d.time("created_at"),
		UpdatedAt:      d.time("updated_at"),
		HeaderNames:    d.list("header_names", "header names"),
		Filter:         d.filter("filter"),
	}
	if m["max_attempts"] != "" {
		sub.MaxAttempts = d.count("max_attempts")
	}
	sub.RateLimit = d.rateLimit("rate_limit")
	sub.Ordered, sub.OnFailure = d.onFailure("ordered")
	if m["prev_secret"] != "" {
		sub.PreviousSecretExpiresAt = d.time("prev_expires")
	}
	return sub, d.err
}

func (s *Store) subFields(ctx context.Context, id string) (map[string]string, error) {
	m, err := s.rdb.HGetAll(ctx, subKey(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("get subscription %s: %w", id, err)
	}
	if len(m) == 0 || m["source_id"] == "" {
		return nil, ErrNotFound
	}
	return m, nil
}

// GetSubscription returns a subscription without its secrets.
func (s *Store) GetSubscription(ctx context.Context, id string) (Subscription, error) {
	m, err := s.subFields(ctx, id)
	if err != nil {
		return Subscription{}, err
	}
	return subFrom(id, m)
}

// GetSubscriptionWithSecrets returns a subscription with its decrypted
// secrets and headers, for deliveries.
func (s *Store) GetSubscriptionWithSecrets(ctx context.Context, id string) (SubscriptionWithSecrets, error) {
	m, err := s.subFields(ctx, id)
	if err != nil {
		return SubscriptionWithSecrets{}, err
	}
	sub, err := subFrom(id, m)
	if err != nil {
		return SubscriptionWithSecrets{Subscription: sub}, err
	}
	return s.withSecrets(sub, m)
}

// withSecrets opens what a delivery needs of a decoded subscription.
func (s *Store) withSecrets(sub Subscription, m map[string]string) (SubscriptionWithSecrets, error) {
	sec, err := s.openSecrets(sub.ID, m, sub.PreviousSecretExpiresAt)
	if err != nil {
		return SubscriptionWithSecrets{}, err
	}
	h, err := s.openHeaders(sub.ID, m)
	if err != nil {
		return SubscriptionWithSecrets{}, err
	}
	return SubscriptionWithSecrets{Subscription: sub, Secrets: sec, Headers: h}, nil
}

// SubscriptionWithSecrets pairs a subscription with its secrets and the
// values of its custom headers.
type SubscriptionWithSecrets struct {
	Subscription
	Secrets Secrets
	// Headers are the custom headers every delivery carries, by canonical
	// name; nil for none.
	Headers map[string]string
}

// FanOut is what deliver needs to fan an event of a source out: its
// subscriptions, with their secrets, in creation order, and apart those
// that cannot be read as stored.
type FanOut struct {
	Subscriptions []SubscriptionWithSecrets
	Unreadable    []UnreadableSubscription
}

// UnreadableSubscription is a subscription deliver cannot use as stored: a
// field that does not parse (ErrCorrupt), or a secret or header value
// RELAY_SECRET_KEY does not open (secretbox.ErrDecrypt). An operator
// repairs it with a PATCH or removes it with a DELETE.
type UnreadableSubscription struct {
	// Subscription holds what could be decoded: at least its id and source.
	Subscription
	// Decoded reports whether every field but the secrets decoded, so that
	// Events and Enabled can be trusted.
	Decoded bool
	Err     error
}

// Unreadable reports whether err says a stored record cannot be read as it
// is (damaged, or sealed under a key Relay does not have), as opposed to
// Redis being unreachable: only an operator's repair changes it.
func Unreadable(err error) bool {
	return errors.Is(err, ErrCorrupt) || errors.Is(err, secretbox.ErrDecrypt)
}

// SourceSubscriptions returns every subscription of a source: what deliver
// needs to fan an event out. A subscription that cannot be read is returned
// apart, not as an error: one damaged subscription must not stop its
// source's others.
func (s *Store) SourceSubscriptions(ctx context.Context, sourceID string) (FanOut, error) {
	ids, err := s.rdb.ZRange(ctx, sourceSubsKey(sourceID), 0, -1).Result()
	if err != nil {
		return FanOut{}, fmt.Errorf("subscriptions of %s: %w", sourceID, err)
	}
	ms, err := s.hashes(ctx, ids, subKey)
	if err != nil {
		return FanOut{}, fmt.Errorf("subscriptions of %s: %w", sourceID, err)
	}
	out := FanOut{Subscriptions: make([]SubscriptionWithSecrets, 0, len(ids))}
	for i, m := range ms {
		if len(m) == 0 {
			continue
		}
		sub, err := subFrom(ids[i], m)
		if err != nil {
			out.Unreadable = append(out.Unreadable, UnreadableSubscription{Subscription: sub, Err: err})
			continue
		}
		ws, err := s.withSecrets(sub, m)
		if err != nil {
			if !Unreadable(err) {
				return FanOut{}, err
			}
			out.Unreadable = append(out.Unreadable, UnreadableSubscription{Subscription: sub, Decoded: true, Err: err})
			continue
		}
		out.Subscriptions = append(out.Subscriptions, ws)
	}
	return out, nil
}

// ListSubscriptions lists a source's subscriptions, oldest first.
func (s *Store) ListSubscriptions(ctx context.Context, sourceID, cursor string, limit int) (Page[Subscription], error) {
	return listPage(ctx, s, "list subscriptions", sourceSubsKey(sourceID), subKey, subFrom, cursor, limit)
}

// SubscriptionPatch holds the fields a PATCH may change; nil leaves a field alone.
type SubscriptionPatch struct {
	URL     *string
	Events  []string
	Enabled *bool
	// DisabledReason is recorded when Enabled is set to false.
	DisabledReason string
	// Headers, when not nil, replace the custom headers (an empty map: none).
	Headers *map[string]string
	// Filter, when not nil, replaces the filter ("": none).
	Filter *string
	// MaxAttempts, when not nil, replaces the attempt cap (0: the ladder's).
	MaxAttempts *int
	// RateLimit, when not nil, replaces the rate limit (a zero one: none).
	RateLimit *RateLimit
	// OnFailure, when not nil, replaces an ordered subscription's
	// on_failure. Whether it is ordered is fixed at creation: a key's
	// queue must drain the way it filled.
	OnFailure *string
}

// hsetIfExists sets fields on KEYS[1] only when it exists. ARGV: field, value, ….
var hsetIfExists = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
`)

// UpdateSubscription applies a patch and returns the updated subscription.
func (s *Store) UpdateSubscription(ctx context.Context, id string, p SubscriptionPatch) (Subscription, error) {
	if p.URL == nil && p.Events == nil && p.Enabled == nil && p.Headers == nil && p.Filter == nil && p.MaxAttempts == nil && p.RateLimit == nil && p.OnFailure == nil {
		return s.GetSubscription(ctx, id) // nothing to change, updated_at included
	}
	args := []any{"updated_at", ms(s.now())}
	if p.URL != nil {
		args = append(args, "url", *p.URL)
	}
	if p.Events != nil {
		b, err := json.Marshal(p.Events)
		if err != nil {
			return Subscription{}, fmt.Errorf("update subscription %s: %w", id, err)
		}
		args = append(args, "events", string(b))
	}
	if p.Enabled != nil {
		reason := ""
		if !*p.Enabled {
			reason = p.DisabledReason
		}
		args = append(args, "enabled", boolStr(*p.Enabled), "disabled_reason", reason)
	}
	if p.Headers != nil {
		names, sealed, err := s.headerFields(id, *p.Headers)
		if err != nil {
			return Subscription{}, fmt.Errorf("update subscription %s: %w", id, err)
		}
		args = append(args, "header_names", names, "headers", sealed)
	}
	if p.Filter != nil {
		args = append(args, "filter", *p.Filter)
	}
	if p.MaxAttempts != nil {
		n := "" // the ladder's
		if *p.MaxAttempts > 0 {
			n = strconv.Itoa(*p.MaxAttempts)
		}
		args = append(args, "max_attempts", n)
	}
	if p.RateLimit != nil {
		v := ""
		if *p.RateLimit != (RateLimit{}) {
			b, err := json.Marshal(p.RateLimit)
			if err != nil {
				return Subscription{}, fmt.Errorf("update subscription %s: %w", id, err)
			}
			v = string(b)
		}
		args = append(args, "rate_limit", v)
	}
	if p.OnFailure != nil {
		args = append(args, "ordered", *p.OnFailure)
	}
	n, err := hsetIfExists.Run(ctx, s.rdb, []string{subKey(id)}, args...).Int()
	if err != nil {
		return Subscription{}, fmt.Errorf("update subscription %s: %w", id, err)
	}
	if n == 0 {
		return Subscription{}, ErrNotFound
	}
	return s.GetSubscription(ctx, id)
}

// DeleteSubscription deletes a subscription.
func (s *Store) DeleteSubscription(ctx context.Context, sourceID, id string) error {
	var del *redis.IntCmd
	_, err := s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		del = p.Del(ctx, subKey(id))
		p.ZRem(ctx, sourceSubsKey(sourceID), id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete subscription %s: %w", id, err)
	}
	if del.Val() == 0 {
		return ErrNotFound
	}
	return nil
}

// RotateSubscriptionSecret makes newSecret current; deliveries are signed
// with both secrets for grace.
func (s *Store) RotateSubscriptionSecret(ctx context.Context, id, newSecret string, grace time.Duration) error {
	return s.rotate(ctx, subKey(id), id, newSecret, grace, true)
}
