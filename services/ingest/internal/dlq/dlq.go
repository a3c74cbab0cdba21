// Package dlq lists and redrives parked deliveries. The DLQ is the relay.dlq
// topic itself; Relay keeps no second copy. How far it has been redriven is
// the committed offset of the relay-dlq-redrive consumer group: everything
// below it is resolved. Above it, records redriven out of order (by a filtered
// redrive) are remembered in Redis until the committed offset passes them.
//
// Keys:
//
//	relay:dlq:{<topic>:<partition>}:redriven  zset: offsets redriven above the committed offset
//	relay:dlq:{<topic>}:lock                  string: held by the redrive in progress
package dlq

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/delivery"
	"github.com/relayhq/relay/pkg/filter"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/record"
)

// ErrBusy means another redrive holds the lock.
var ErrBusy = errors.New("a redrive is already running")

// ErrBadCursor means a listing cursor was not made by List.
var ErrBadCursor = errors.New("invalid cursor")

// Parked is one parked delivery.
type Parked struct {
	Partition      int32     `json:"partition"`
	Offset         int64     `json:"offset"`
	EventID        string    `json:"event_id"`
	SourceID       string    `json:"source_id"`
	SubscriptionID string    `json:"subscription_id"`
	EventType      string    `json:"event_type"`
	Reason         string    `json:"reason"`
	Attempts       int       `json:"attempts"`
	LastStatusCode int       `json:"last_status_code"`
	LastError      string    `json:"last_error,omitempty"`
	DeadAt         time.Time `json:"dead_at"`
	// OrderingKey is set for a delivery of an ordered subscription, and
	// HeldKeyFor says how long it was its key's head, holding the key's
	// later events back, before it was parked.
	OrderingKey string `json:"ordering_key,omitempty"`
	HeldKeyFor  string `json:"held_key_for,omitempty"`
}

// Filter selects parked deliveries; empty fields match everything.
type Filter struct {
	SubscriptionID string
	SourceID       string
	// Reason is why the delivery was parked (record.DeadReasons).
	Reason string
}

func (f Filter) match(d record.Delivery) bool {
	return (f.SubscriptionID == "" || f.SubscriptionID == d.SubscriptionID) &&
		(f.SourceID == "" || f.SourceID == d.SourceID) &&
		(f.Reason == "" || f.Reason == d.DeadReason)
}

// Subscriptions reads subscriptions (catalog.Store).
type Subscriptions interface {
	GetSubscription(ctx context.Context, id string) (catalog.Subscription, error)
}

// concerns reports whether d's event still concerns its subscription's
// filter. A subscription that cannot be read (deleted, damaged) is left to
// deliver, which drops or holds the delivery as it does any other; filters
// holds those read so far by this redrive.
func (m *Manager) concerns(ctx context.Context, d record.Delivery, filters map[string]string) (bool, error) {
	expr, ok := filters[d.SubscriptionID]
	if !ok {
		sub, err := m.Subscriptions.GetSubscription(ctx, d.SubscriptionID)
		if err != nil && !errors.Is(err, catalog.ErrNotFound) && !catalog.Unreadable(err) {
			return false, err
		}
		expr = sub.Filter
		filters[d.SubscriptionID] = expr
	}
	if expr == "" {
		return true, nil
	}
	return catalog.Matches(ctx, expr, filter.NewInput(d.Event)), nil
}

// Manager lists and redrives the DLQ.
type Manager struct {
	Kafka      kafka.Config
	Names      record.Topics
	Producer   *kgo.Client
	Redis      redis.UniversalClient
	Deliveries *delivery.Store
	// Subscriptions reads the filters redriven deliveries must still match.
	Subscriptions Subscriptions
	Log           *slog.Logger
	// Budget bounds one redrive call; a redrive that runs out reports
	// Complete=false and the next call continues where it stopped.
	Budget time.Duration
}

func (m *Manager) markerKey(p int32) string {
	return "relay:dlq:{" + m.Names.DLQ + ":" + strconv.Itoa(int(p)) + "}:redriven"
}

func (m *Manager) lockKey() string { return "relay:dlq:{" + m.Names.DLQ + "}:lock" }

// bounds returns, per partition, the first unresolved offset (the group's
// committed offset, or the log start) and the end offset.
func (m *Manager) bounds(ctx context.Context) (from, to map[int32]int64, err error) {
	adm := kadm.NewClient(m.Producer)
	starts, err := adm.ListStartOffsets(ctx, m.Names.DLQ)
	if err != nil {
		return nil, nil, fmt.Errorf("dlq start offsets: %w", err)
	}
	ends, err := adm.ListEndOffsets(ctx, m.Names.DLQ)
	if err != nil {
		return nil, nil, fmt.Errorf("dlq end offsets: %w", err)
	}
	committed, err := adm.FetchOffsets(ctx, m.Names.Group(record.GroupRedrive))
	if errors.Is(err, kerr.GroupIDNotFound) {
		// Nothing redriven yet; some brokers say so with this error.
		committed, err = nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("dlq redrive offsets: %w", err)
	}
	from, to = map[int32]int64{}, map[int32]int64{}
	var lerr error
	ends.Each(func(o kadm.ListedOffset) {
		if o.Err != nil {
			lerr = fmt.Errorf("dlq end offset of partition %d: %w", o.Partition, o.Err)
			return
		}
		to[o.Partition] = o.Offset
		from[o.Partition] = 0
	})
	if lerr != nil {
		return nil, nil, lerr
	}
	starts.Each(func(o kadm.ListedOffset) {
		if o.Err == nil && o.Offset > from[o.Partition] {
			from[o.Partition] = o.Offset
		}
	})
	committed.Each(func(o kadm.OffsetResponse) {
		if o.Topic == m.Names.DLQ && o.Err == nil && o.At > from[o.Partition] {
			from[o.Partition] = o.At
		}
	})
	return from, to, nil
}

// redriven returns the offsets of partition p in [from, to) already redriven.
func (m *Manager) redriven(ctx context.Context, p int32, from, to int64) (map[int64]bool, error) {
	offs, err := m.Redis.ZRangeByScore(ctx, m.markerKey(p), &redis.ZRangeBy{
		Min: strconv.FormatInt(from, 10), Max: "(" + strconv.FormatInt(to, 10),
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("dlq markers of partition %d: %w", p, err)
	}
	out := make(map[int64]bool, len(offs))
	for _, o := range offs {
		n, err := strconv.ParseInt(o, 10, 64)
		if err != nil {
			// Read as offset 0, it would mark a parked delivery resolved
			// that was never redriven.
			return nil, fmt.Errorf("dlq marker %.40q of partition %d in %s is not an offset: remove it", o, p, m.markerKey(p))
		}
		out[n] = true
	}
	return out, nil
}

// scan reads [from, to) of every partition with a group-less consumer and
// calls fn for each record in partition order, until fn returns false or the
// ranges are read.
func (m *Manager) scan(ctx context.Context, from, to map[int32]int64, fn func(*kgo.Record) bool) error {
	start := map[int32]kgo.Offset{}
	remaining := map[int32]bool{}
	for p, f := range from {
		if f < to[p] {
			start[p] = kgo.NewOffset().At(f)
			remaining[p] = true
		}
	}
	if len(start) == 0 {
		return nil
	}
	cl, err := kafka.NewClient(m.Kafka, "relay-ingest-dlq", kafka.Instrumentation{Logger: m.Log}, nil,
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{m.Names.DLQ: start}),
		kgo.FetchMaxWait(200*time.Millisecond),
	)
	if err != nil {
		return err
	}
	defer cl.Close()
	for len(remaining) > 0 {
		fetches := cl.PollRecords(ctx, 500)
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("dlq scan: %w", err)
		}
		var ferr error
		fetches.EachError(func(t string, p int32, err error) { ferr = fmt.Errorf("dlq fetch %s/%d: %w", t, p, err) })
		if ferr != nil {
			return ferr
		}
		// Records of one partition arrive in order; keep the partitions apart
		// so a caller's per-partition bookkeeping stays simple.
		var recs []*kgo.Record
		fetches.EachRecord(func(r *kgo.Record) { recs = append(recs, r) })
		sort.SliceStable(recs, func(i, j int) bool { return recs[i].Partition < recs[j].Partition })
		for _, r := range recs {
			if !remaining[r.Partition] || r.Offset >= to[r.Partition] {
				continue
			}
			if !fn(r) {
				return nil
			}
			if r.Offset >= to[r.Partition]-1 {
				delete(remaining, r.Partition)
			}
		}
	}
	return nil
}

type cursor struct {
	Next map[int32]int64 `json:"n"`
}

func encodeCursor(c cursor) string {
	b, _ := json.Marshal(c)
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeCursor(s string) (cursor, error) {
	var c cursor
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || json.Unmarshal(b, &c) != nil || c.Next == nil {
		return c, ErrBadCursor
	}
	return c, nil
}

// List returns up to limit parked deliveries matching f, oldest first per
// partition, and a cursor for the next page ("" at the end). Deliveries that
// were delivered since they were parked (by a replay) are not listed.
func (m *Manager) List(ctx context.Context, f Filter, cur string, limit int) ([]Parked, string, error) {
	from, to, err := m.bounds(ctx)
	if err != nil {
		return nil, "", err
	}
	if cur != "" {
		c, err := decodeCursor(cur)
		if err != nil {
			return nil, "", err
		}
		for p, n := range c.Next {
			if n > from[p] {
				from[p] = n
			}
		}
	}
	marks := map[int32]map[int64]bool{}
	for p := range from {
		if from[p] >= to[p] {
			continue
		}
		if marks[p], err = m.redriven(ctx, p, from[p], to[p]); err != nil {
			return nil, "", err
		}
	}
	var (
		cands []record.Delivery
		where [][2]int64
		next  = map[int32]int64{}
		full  bool
	)
	for p, n := range from {
		next[p] = n
	}
	// Read a few more than asked, since delivered ones are dropped below.
	want := limit + limit/2 + 1
	err = m.scan(ctx, from, to, func(r *kgo.Record) bool {
		if len(cands) >= want {
			full = true
			return false
		}
		next[r.Partition] = r.Offset + 1
		if marks[r.Partition][r.Offset] {
			return true
		}
		d, err := record.ParseDelivery(r)
		if err != nil || !f.match(d) {
			return true
		}
		d.NotBefore = r.Timestamp // reuse as the time it was parked
		cands = append(cands, d)
		where = append(where, [2]int64{int64(r.Partition), r.Offset})
		return true
	})
	if err != nil {
		return nil, "", err
	}
	pairs := make([][2]string, len(cands))
	for i, d := range cands {
		pairs[i] = [2]string{d.ID, d.SubscriptionID}
	}
	states, err := m.Deliveries.Statuses(ctx, pairs)
	if err != nil {
		return nil, "", err
	}
	out := make([]Parked, 0, limit)
	for i, d := range cands {
		if states[i].Status == delivery.StatusDelivered {
			continue
		}
		if len(out) == limit {
			// Resume at this record next time.
			p, o := int32(where[i][0]), where[i][1]
			if o < next[p] {
				next[p] = o
			}
			for j := i + 1; j < len(cands); j++ {
				if q, oj := int32(where[j][0]), where[j][1]; oj < next[q] {
					next[q] = oj
				}
			}
			full = true
			break
		}
		out = append(out, Parked{
			Partition: int32(where[i][0]), Offset: where[i][1],
			EventID: d.ID, SourceID: d.SourceID, SubscriptionID: d.SubscriptionID, EventType: d.Type,
			Reason: d.DeadReason, Attempts: d.Attempt, LastStatusCode: d.LastStatus, LastError: d.LastError,
			DeadAt: d.NotBefore, OrderingKey: d.OrderingKey, HeldKeyFor: heldFor(d),
		})
	}
	if !full {
		return out, "", nil
	}
	return out, encodeCursor(cursor{Next: next}), nil
}

// RedriveResult reports one redrive call.
type RedriveResult struct {
	// Redriven were put on relay.deliveries.
	Redriven int `json:"redriven"`
	// AlreadyDelivered were delivered since they were parked; resolved without a new attempt.
	AlreadyDelivered int `json:"already_delivered"`
	// Filtered are events their subscription's filter, as it is now, does
	// not match; resolved without a new attempt.
	Filtered int `json:"filtered"`
	// Complete is false when the time budget ran out; call again to continue.
	Complete bool `json:"complete"`
}

// lockSlack is how long the redrive lock outlives a redrive's budget, so
// that a redrive finishing its last batch still holds it.
const lockSlack = 30 * time.Second

var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// unlock releases the redrive lock taken with token. A lock left behind
// expires by itself; until then every redrive is refused as busy, which the
// warning explains to whoever sees the refusals.
func (m *Manager) unlock(ctx context.Context, token string) {
	uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
	defer cancel()
	if err := unlockScript.Run(uctx, m.Redis, []string{m.lockKey()}, token).Err(); err != nil {
		m.Log.WarnContext(ctx, "releasing the DLQ redrive lock failed; redrives are refused until it expires",
			"expires_within", m.Budget+lockSlack, "error", err)
	}
}

// Redrive puts every delivery matching f that was parked when the call
// started onto relay.deliveries, once: each redriven record is marked in
// Redis after the broker acknowledged its copy, and the group's committed
// offset then moves past every resolved record. One redrive runs at a time.
func (m *Manager) Redrive(ctx context.Context, f Filter, now time.Time) (RedriveResult, error) {
	token := ids.New("lock")
	ok, err := m.Redis.SetNX(ctx, m.lockKey(), token, m.Budget+lockSlack).Result()
	if err != nil {
		return RedriveResult{}, fmt.Errorf("dlq lock: %w", err)
	}
	if !ok {
		return RedriveResult{}, ErrBusy
	}
	defer m.unlock(ctx, token)

	budget, cancel := context.WithTimeout(ctx, m.Budget)
	defer cancel()
	from, to, err := m.bounds(ctx)
	if err != nil {
		return RedriveResult{}, err
	}
	marks := map[int32]map[int64]bool{}
	for p := range from {
		if from[p] < to[p] {
			if marks[p], err = m.redriven(ctx, p, from[p], to[p]); err != nil {
				return RedriveResult{}, err
			}
		}
	}
	res := RedriveResult{Complete: true}
	filters := map[string]string{}
	var batch redriveBatch
	flush := func() error {
		if len(batch.ds) == 0 {
			return nil
		}
		pairs := make([][2]string, len(batch.ds))
		for i, d := range batch.ds {
			pairs[i] = [2]string{d.ID, d.SubscriptionID}
		}
		states, err := m.Deliveries.Statuses(ctx, pairs)
		if err != nil {
			return err
		}
		var out []*kgo.Record
		var outIdx []int
		for i, d := range batch.ds {
			if states[i].Status == delivery.StatusDelivered {
				res.AlreadyDelivered++
				continue
			}
			ok, err := m.concerns(ctx, d, filters)
			if err != nil {
				return err
			}
			if !ok {
				res.Filtered++
				continue
			}
			// The next attempt number: past every attempt made, whether the
			// state (which a replay may have advanced) or the record knows more.
			d.Attempt = max(states[i].Attempts, d.Attempt) + 1
			// A redrive starts the ladder afresh.
			d.NotBefore, d.Origin, d.DeadReason, d.Tier = now, record.OriginRedrive, "", 0
			rec := d.Record(m.Names.Deliveries)
			rec.Context = ctx
			out = append(out, rec)
			outIdx = append(outIdx, i)
		}
		if len(out) > 0 {
			if err := m.Producer.ProduceSync(ctx, out...).FirstErr(); err != nil {
				return fmt.Errorf("redrive produce: %w", err)
			}
		}
		res.Redriven += len(out)
		// Mark every record of the batch resolved (redriven, already delivered or filtered).
		_, err = m.Redis.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, po := range batch.offs {
				part := int32(po[0])
				p.ZAdd(ctx, m.markerKey(part), redis.Z{Score: float64(po[1]), Member: strconv.FormatInt(po[1], 10)})
				p.Expire(ctx, m.markerKey(part), m.Kafka.DLQRetention)
				marks[part][po[1]] = true
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("redrive markers: %w", err)
		}
		// The state shows the redriven deliveries as retrying. They are already
		// on relay.deliveries and marked, so a failure here costs only that.
		redriven := make([][2]string, len(outIdx))
		for j, i := range outIdx {
			redriven[j] = pairs[i]
		}
		if failed, err := m.Deliveries.ScheduleAll(ctx, redriven, now, now); failed > 0 {
			m.Log.WarnContext(ctx, "recording redriven deliveries in their state failed", "failed", failed, "redriven", len(outIdx), "error", err)
		}
		batch.reset()
		return nil
	}
	var ferr error
	err = m.scan(budget, from, to, func(r *kgo.Record) bool {
		if marks[r.Partition][r.Offset] {
			return true
		}
		d, err := record.ParseDelivery(r)
		if err != nil {
			m.Log.Warn("skipping malformed dlq record", "partition", r.Partition, "offset", r.Offset, "error", err)
			return true
		}
		if !f.match(d) {
			return true
		}
		if batch.add(d, r.Partition, r.Offset) {
			if ferr = flush(); ferr != nil {
				return false
			}
		}
		return true
	})
	if ferr == nil {
		ferr = flush()
	}
	if ferr != nil {
		return res, ferr
	}
	if err != nil {
		if !errors.Is(err, context.DeadlineExceeded) || ctx.Err() != nil {
			return res, err
		}
		res.Complete = false
	}
	if err := m.advance(ctx, from, to, marks); err != nil {
		return res, err
	}
	return res, nil
}

// A redrive produces and marks the parked deliveries it takes in batches of
// at most redriveBatchRecords records, a batch going out early once its
// payloads reach redriveBatchBytes: the replica running it also takes
// webhooks in, and 200 parked 1 MiB payloads would otherwise be held there
// at once.
const (
	redriveBatchRecords = 200
	redriveBatchBytes   = 16 << 20
)

// redriveBatch is a redrive's next batch: parsed deliveries, where each was
// read ([partition, offset]), and the size of their payloads.
type redriveBatch struct {
	ds    []record.Delivery
	offs  [][2]int64
	bytes int
}

// add appends d, read at partition and offset, and reports whether the
// batch is now full.
func (b *redriveBatch) add(d record.Delivery, partition int32, offset int64) bool {
	b.ds = append(b.ds, d)
	b.offs = append(b.offs, [2]int64{int64(partition), offset})
	b.bytes += len(d.Body)
	return len(b.ds) >= redriveBatchRecords || b.bytes >= redriveBatchBytes
}

func (b *redriveBatch) reset() {
	clear(b.ds) // let the payloads go
	b.ds, b.offs, b.bytes = b.ds[:0], b.offs[:0], 0
}

// advance commits, per partition, the first offset not yet resolved, and
// forgets markers below it.
func (m *Manager) advance(ctx context.Context, from, to map[int32]int64, marks map[int32]map[int64]bool) error {
	offs := kadm.Offsets{}
	for p, f := range from {
		at := f
		for at < to[p] && marks[p][at] {
			at++
		}
		if at > f {
			offs.AddOffset(m.Names.DLQ, p, at, -1)
		}
	}
	if len(offs) == 0 {
		return nil
	}
	resp, err := kadm.NewClient(m.Producer).CommitOffsets(ctx, m.Names.Group(record.GroupRedrive), offs)
	if err != nil {
		return fmt.Errorf("commit redrive offsets: %w", err)
	}
	if err := resp.Error(); err != nil {
		return fmt.Errorf("commit redrive offsets: %w", err)
	}
	_, err = m.Redis.Pipelined(ctx, func(pl redis.Pipeliner) error {
		offs.Each(func(o kadm.Offset) {
			pl.ZRemRangeByScore(ctx, m.markerKey(o.Partition), "-inf", "("+strconv.FormatInt(o.At, 10))
		})
		return nil
	})
	if err != nil {
		return fmt.Errorf("trim redrive markers: %w", err)
	}
	return nil
}

// heldFor is how long an ordered delivery held its key before it was
// parked, in seconds as a duration ("93s"); empty for an unordered one.
func heldFor(d record.Delivery) string {
	if d.HeadSince.IsZero() || d.NotBefore.Before(d.HeadSince) {
		return ""
	}
	return d.NotBefore.Sub(d.HeadSince).Truncate(time.Second).String()
}
