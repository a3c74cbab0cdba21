// Package counters keeps per-source event counts by UTC day and type in
// Redis, applied exactly once per Kafka record.
//
// The count service applies each polled batch of a partition with one script
// that also stores, per (source, partition), the offset of the last record it
// counted; records at or below that offset are skipped. A redelivered record
// (after a crash, a rebalance or an offset reset) therefore never counts
// twice. The offsets live beside the counters, under the source's hash tag, so
// each script touches one Redis Cluster slot.
//
// Keys:
//
//	relay:met:{src_…}:<YYYY-MM-DD>  hash: event type -> count
//	relay:met:{src_…}:days          zset: days with counts (lexicographic)
//	relay:met:{src_…}:offsets       hash: partition -> last counted offset
package counters

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Retention is how long a day's counters are kept.
const Retention = 400 * 24 * time.Hour

const dayLayout = "2006-01-02"

func prefix(src string) string { return "relay:met:{" + src + "}:" }

// Record is one event to count.
type Record struct {
	Offset     int64
	Type       string
	ReceivedAt time.Time
}

// Store reads and writes counters.
type Store struct{ rdb redis.UniversalClient }

// New returns a Store.
func New(rdb redis.UniversalClient) *Store { return &Store{rdb: rdb} }

var applyScript = redis.NewScript(`
local last = tonumber(redis.call('HGET', KEYS[1], ARGV[1]) or '-1')
local maxo = last
local applied = 0
local ndays = tonumber(ARGV[3])
local i = 5 + ndays
while i <= #ARGV do
  local off = tonumber(ARGV[i])
  if off > last then
    redis.call('HINCRBY', KEYS[2 + tonumber(ARGV[i + 1])], ARGV[i + 2], 1)
    applied = applied + 1
    if off > maxo then maxo = off end
  end
  i = i + 3
end
if maxo > last then redis.call('HSET', KEYS[1], ARGV[1], maxo) end
for j = 1, ndays do
  redis.call('ZADD', KEYS[2], 0, ARGV[4 + j])
  redis.call('EXPIRE', KEYS[2 + j], ARGV[2])
end
redis.call('ZREMRANGEBYLEX', KEYS[2], '-', '(' .. ARGV[4])
redis.call('EXPIRE', KEYS[2], ARGV[2])
return applied
`)

// Apply counts the records of one source read from one partition, in a single
// script, skipping any at or below the partition's last counted offset. It
// returns how many were counted.
func (s *Store) Apply(ctx context.Context, src string, partition int32, recs []Record, now time.Time) (int, error) {
	if len(recs) == 0 {
		return 0, nil
	}
	p := prefix(src)
	keys := []string{p + "offsets", p + "days"}
	dayIndex := map[string]int{}
	var days []string
	args := make([]any, 0, 4+3*len(recs)+4)
	for _, r := range recs {
		d := r.ReceivedAt.UTC().Format(dayLayout)
		if _, ok := dayIndex[d]; !ok {
			days = append(days, d)
			dayIndex[d] = len(days)
			keys = append(keys, p+d)
		}
	}
	cutoff := now.Add(-Retention).UTC().Format(dayLayout)
	args = append(args, strconv.Itoa(int(partition)), int64(Retention.Seconds()), len(days), cutoff)
	for _, d := range days {
		args = append(args, d)
	}
	for _, r := range recs {
		args = append(args, r.Offset, dayIndex[r.ReceivedAt.UTC().Format(dayLayout)], r.Type)
	}
	n, err := applyScript.Run(ctx, s.rdb, keys, args...).Int()
	if err != nil {
		return 0, fmt.Errorf("apply counts of %s partition %d: %w", src, partition, err)
	}
	return n, nil
}

// DayCount is the count of one event type on one UTC day.
type DayCount struct {
	Day   string `json:"day"`
	Type  string `json:"type"`
	Count int64  `json:"count"`
}

// Read returns a source's counts from day from to day to (YYYY-MM-DD,
// inclusive; empty for unbounded), newest day first, types in name order.
func (s *Store) Read(ctx context.Context, src, from, to string) ([]DayCount, error) {
	p := prefix(src)
	min, max := "-", "+"
	if from != "" {
		min = "[" + from
	}
	if to != "" {
		max = "[" + to
	}
	days, err := s.rdb.ZRevRangeByLex(ctx, p+"days", &redis.ZRangeBy{Min: min, Max: max}).Result()
	if err != nil {
		return nil, fmt.Errorf("counts of %s: %w", src, err)
	}
	cmds := make([]*redis.MapStringStringCmd, len(days))
	_, err = s.rdb.Pipelined(ctx, func(pl redis.Pipeliner) error {
		for i, d := range days {
			cmds[i] = pl.HGetAll(ctx, p+d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("counts of %s: %w", src, err)
	}
	out := []DayCount{}
	for i, d := range days {
		m := cmds[i].Val()
		types := make([]string, 0, len(m))
		for t := range m {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			n, err := strconv.ParseInt(m[t], 10, 64)
			if err != nil {
				// Only HINCRBY writes counts, and it refuses a non-integer: this
				// one was edited by hand. Shown as 0, it would pass for a count.
				return nil, fmt.Errorf("counts of %s: %s of %s in %s is %.40q, not a count", src, t, d, p+d, m[t])
			}
			out = append(out, DayCount{Day: d, Type: t, Count: n})
		}
	}
	return out, nil
}

// ValidDay reports whether s is a YYYY-MM-DD day.
func ValidDay(s string) bool {
	_, err := time.Parse(dayLayout, s)
	return err == nil
}
