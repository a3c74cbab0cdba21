// Package throttle keeps, per subscription, what decides when its next
// delivery may be attempted, shared by every deliver replica through Redis:
// its rate limit's schedule, a pause an endpoint asked for (429 with
// Retry-After), and its circuit breaker. It holds one small hash per
// subscription that has any of them, and nothing per delivery or event.
//
// The rate limit is GCRA (the generic cell rate algorithm) with
// reservations: each delivery asks for a slot and gets the earliest time it
// may be attempted, and the schedule moves on by one interval, so a backlog
// of n deliveries is spread over n intervals without anyone waiting in a
// loop. Slots are reserved in the order deliveries ask, across replicas,
// and never closer than the limit allows (Burst at once, then one per
// Interval).
//
// The breaker counts consecutive failed attempts (network errors, timeouts,
// 408 and 5xx). At Config.Failures it opens for Config.Cooldown: every
// delivery's slot is then the end of the cool-down. After it, one delivery
// is the probe (the others wait for ProbeWindow); its success closes the
// circuit, its failure opens it again for twice as long, up to
// Config.MaxCooldown.
//
// Key: relay:valve:{sub_…} (hash: tat, iv, fails, open_until, cooldown,
// opened_at, probe_until; times in unix microseconds). It expires once
// nothing in it matters any more.
package throttle

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Config is the breaker's.
type Config struct {
	// Failures in a row open the circuit; 0 turns the breaker off.
	Failures int
	// Cooldown is how long it stays open the first time; each failed probe
	// doubles it, up to MaxCooldown.
	Cooldown, MaxCooldown time.Duration
	// ProbeWindow is how long the others wait while a probe is out: longer
	// than an attempt can take.
	ProbeWindow time.Duration
}

// Store reads and writes the per-subscription state.
type Store struct {
	rdb redis.UniversalClient
	cfg Config
}

// New returns a Store.
func New(rdb redis.UniversalClient, cfg Config) *Store {
	return &Store{rdb: rdb, cfg: cfg}
}

func key(sub string) string { return "relay:valve:{" + sub + "}" }

// keepMS is how long a key outlives the last time it says anything about
// (a schedule ahead, an open circuit), in milliseconds: long enough for the
// breaker's count of failures to mean "in a row" across quiet spells.
const keepMS = int64(24 * time.Hour / time.Millisecond)

func us(t time.Time) int64        { return t.UnixMicro() }
func usDur(d time.Duration) int64 { return d.Microseconds() }
func fromUS(s string) (time.Time, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("throttle: bad time %q: %w", s, err)
	}
	return time.UnixMicro(n), nil
}

// Verdict is what Admit decided.
type Verdict string

const (
	// Go: the delivery may be attempted at Ticket.At (now, or a reserved
	// time ahead).
	Go Verdict = "go"
	// Open: the circuit is open until Ticket.At; nothing was reserved.
	Open Verdict = "open"
	// Probing: another delivery is the circuit's probe; ask again at
	// Ticket.At.
	Probing Verdict = "probing"
	// Probe: this delivery is the probe of a half-open circuit, now.
	Probe Verdict = "probe"
)

// Ticket is Admit's answer.
type Ticket struct {
	Verdict Verdict
	At      time.Time
}

// Limit is a pace: one delivery per Interval, Burst at once. The zero
// Limit is none: only a pause or the breaker can hold a delivery back.
type Limit struct {
	Interval time.Duration
	Burst    int
}

var admitScript = redis.NewScript(`
local now, iv, tol = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3])
local h = redis.call('HMGET', KEYS[1], 'tat', 'iv', 'open_until', 'probe_until')
local open = tonumber(h[3]) or 0
if open > 0 then
  if now < open then return {'open', string.format('%.0f', open)} end
  local probe = tonumber(h[4]) or 0
  if now < probe then return {'probing', string.format('%.0f', probe)} end
  redis.call('HSET', KEYS[1], 'probe_until', now + tonumber(ARGV[4]))
  return {'probe', string.format('%.0f', now)}
end
local tat = tonumber(h[1]) or now
local old = tonumber(h[2]) or 0
if iv > 0 and old > 0 and old ~= iv and tat > now then
  -- The limit changed: what is scheduled ahead is spread at the new pace.
  tat = now + (tat - now) * iv / old
end
if tat < now then tat = now end
if iv == 0 then
  -- No limit: only a pause holds it back, and nothing is reserved.
  return {'go', string.format('%.0f', tat)}
end
local slot = math.max(now, tat - tol)
tat = tat + iv
redis.call('HSET', KEYS[1], 'tat', string.format('%.0f', tat), 'iv', iv)
redis.call('PEXPIRE', KEYS[1], math.floor((tat - now) / 1000) + tonumber(ARGV[5]))
return {'go', string.format('%.0f', slot)}
`)

// Admit asks when a delivery to sub may be attempted, reserving a slot of
// its limit. Under an open circuit nothing is reserved: the delivery asks
// again when the cool-down ends.
func (s *Store) Admit(ctx context.Context, sub string, l Limit, now time.Time) (Ticket, error) {
	iv, tol := int64(0), int64(0)
	if l.Interval > 0 {
		iv = max(usDur(l.Interval), 1)
		tol = int64(max(l.Burst-1, 0)) * iv
	}
	probe := usDur(s.cfg.ProbeWindow)
	res, err := admitScript.Run(ctx, s.rdb, []string{key(sub)}, us(now), iv, tol, probe, keepMS).StringSlice()
	if err != nil {
		return Ticket{}, fmt.Errorf("throttle admit %s: %w", sub, err)
	}
	if len(res) != 2 {
		return Ticket{}, fmt.Errorf("throttle admit %s: answer %q", sub, res)
	}
	at, err := fromUS(res[1])
	if err != nil {
		return Ticket{}, err
	}
	return Ticket{Verdict: Verdict(res[0]), At: at}, nil
}

var pauseScript = redis.NewScript(`
local tat = tonumber(redis.call('HGET', KEYS[1], 'tat')) or 0
local untl = tonumber(ARGV[1])
if untl > tat then
  redis.call('HSET', KEYS[1], 'tat', ARGV[1])
end
local ttl = redis.call('PTTL', KEYS[1])
local want = math.floor((untl - tonumber(ARGV[2])) / 1000) + tonumber(ARGV[3])
if ttl < want then redis.call('PEXPIRE', KEYS[1], want) end
return 1
`)

// Pause holds every delivery to sub back until until: its endpoint asked
// (429 with Retry-After). A pause never shortens the schedule.
func (s *Store) Pause(ctx context.Context, sub string, until, now time.Time) error {
	if err := pauseScript.Run(ctx, s.rdb, []string{key(sub)}, us(until), us(now), keepMS).Err(); err != nil {
		return fmt.Errorf("throttle pause %s: %w", sub, err)
	}
	return nil
}

var failedScript = redis.NewScript(`
local now, threshold, cool, maxcool = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local h = redis.call('HMGET', KEYS[1], 'fails', 'open_until', 'cooldown', 'opened_at')
local fails = (tonumber(h[1]) or 0) + 1
local open = tonumber(h[2]) or 0
local cd = tonumber(h[3]) or 0
local since = tonumber(h[4]) or 0
local opened = 0
if open > 0 then
  if now >= open then
    -- The probe of a half-open circuit failed: open again, for longer.
    cd = math.min(cd * 2, maxcool)
    open = now + cd
    redis.call('HSET', KEYS[1], 'open_until', string.format('%.0f', open), 'cooldown', string.format('%.0f', cd), 'probe_until', 0)
    opened = 1
  end
elseif threshold > 0 and fails >= threshold then
  cd, open, since, opened = cool, now + cool, now, 1
  redis.call('HSET', KEYS[1], 'open_until', string.format('%.0f', open), 'cooldown', string.format('%.0f', cd), 'opened_at', string.format('%.0f', since))
end
redis.call('HSET', KEYS[1], 'fails', fails)
local ttl = redis.call('PTTL', KEYS[1])
local want = math.floor(math.max(open - now, 0) / 1000) + tonumber(ARGV[5])
if ttl < want then redis.call('PEXPIRE', KEYS[1], want) end
return {string.format('%.0f', open), string.format('%.0f', since), fails, opened}
`)

// Breaker is the circuit of a subscription as a failure left it.
type Breaker struct {
	// Fails is the count of failures in a row.
	Fails int
	// OpenUntil is when an open circuit lets its next probe through; zero
	// when it is closed.
	OpenUntil time.Time
	// OpenedAt is when the circuit opened (and has stayed open since,
	// probes failing); zero when it is closed.
	OpenedAt time.Time
	// Opened: this failure opened it, or reopened it after a probe.
	Opened bool
}

// Failed counts a failed attempt to sub's endpoint, opening its circuit at
// the threshold, or again (for longer) when it was the probe that failed.
func (s *Store) Failed(ctx context.Context, sub string, now time.Time) (Breaker, error) {
	res, err := failedScript.Run(ctx, s.rdb, []string{key(sub)}, us(now), s.cfg.Failures,
		usDur(s.cfg.Cooldown), usDur(max(s.cfg.MaxCooldown, s.cfg.Cooldown)), keepMS).Slice()
	if err != nil {
		return Breaker{}, fmt.Errorf("throttle failed %s: %w", sub, err)
	}
	return breakerFrom(res)
}

func breakerFrom(res []any) (Breaker, error) {
	if len(res) != 4 {
		return Breaker{}, fmt.Errorf("throttle: answer %v", res)
	}
	var b Breaker
	open, _ := res[0].(string)
	since, _ := res[1].(string)
	fails, _ := res[2].(int64)
	opened, _ := res[3].(int64)
	if open != "0" {
		t, err := fromUS(open)
		if err != nil {
			return b, err
		}
		b.OpenUntil = t
	}
	if since != "0" {
		t, err := fromUS(since)
		if err != nil {
			return b, err
		}
		b.OpenedAt = t
	}
	b.Fails, b.Opened = int(fails), opened == 1
	return b, nil
}

var succeededScript = redis.NewScript(`
local h = redis.call('HMGET', KEYS[1], 'fails', 'open_until')
if not h[1] and not h[2] then return 0 end
redis.call('HDEL', KEYS[1], 'fails', 'open_until', 'cooldown', 'opened_at', 'probe_until')
if (tonumber(h[2]) or 0) > 0 then return 1 end
return 0
`)

// Succeeded resets sub's count of failures and closes its circuit; closed
// reports whether it was open (the success was its probe's).
func (s *Store) Succeeded(ctx context.Context, sub string) (closed bool, err error) {
	n, err := succeededScript.Run(ctx, s.rdb, []string{key(sub)}).Int()
	if err != nil {
		return false, fmt.Errorf("throttle succeeded %s: %w", sub, err)
	}
	return n == 1, nil
}

// State is what the API shows of a subscription's throttle.
type State struct {
	// PausedUntil is when the schedule is next free: a pause, or the end of
	// what the rate limit has reserved; zero when it is free now.
	PausedUntil time.Time
	Breaker     Breaker
}

// Read returns sub's state as of now.
func (s *Store) Read(ctx context.Context, sub string, now time.Time) (State, error) {
	h, err := s.rdb.HMGet(ctx, key(sub), "tat", "fails", "open_until", "opened_at").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return State{}, fmt.Errorf("throttle read %s: %w", sub, err)
	}
	field := func(i int) time.Time {
		v, _ := h[i].(string)
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n == 0 {
			return time.Time{}
		}
		return time.UnixMicro(n)
	}
	var st State
	if t := field(0); t.After(now) {
		st.PausedUntil = t
	}
	if v, _ := h[1].(string); v != "" {
		st.Breaker.Fails, _ = strconv.Atoi(v)
	}
	st.Breaker.OpenUntil, st.Breaker.OpenedAt = field(2), field(3)
	return st, nil
}
