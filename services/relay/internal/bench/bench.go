package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/secretbox"
	"github.com/relayhq/relay/services/relay/internal/procs"
)

// Config says what to benchmark against.
type Config struct {
	// Self is the relay binary, run again as `relay bench-server` for the baselines.
	Self string
	// BinDir holds relay-ingest, relay-deliver, relay-archive, relay-count.
	BinDir     string
	Brokers    string
	Redis      string
	S3Endpoint string
	// KafkaPID and RedisPID, when known, are measured too.
	KafkaPID, RedisPID int
	// Step is how long each load step lasts.
	Step time.Duration
	// WarmUp is how long each system under test gets WarmUpRate requests/s
	// (deliveries/s in fan-out) before its first measured step.
	WarmUp time.Duration
	// WarmUpRate is 1,000 unless set.
	WarmUpRate float64
	// Prefill is how many events the archive and count scenarios read.
	Prefill int
	// Only, when set, names the scenarios to run: ingest, e2e, fanout, consumers, state, overload, coldstart, policy, ordering, latency.
	Only []string
	// Soak is how long the state scenario's soak with short windows runs
	// (10 minutes unless set).
	Soak time.Duration
	// Overload is how long the overload scenario offers deliver twice its
	// maximum (a minute unless set).
	Overload time.Duration
	// KafkaScript is scripts/kafka.sh, which the cold start runs a fresh
	// broker with (no cold start without it).
	KafkaScript string
	Log         io.Writer
}

// Result is one measured line of the report.
type Result struct {
	Scenario string
	System   string
	Stats    Stats
	Usage    Usage
	Note     string
}

// Report is everything one run measured.
type Report struct {
	Results []Result
	Summary []Summary
	Started time.Time
	Took    time.Duration
}

// Summary compares Relay to its baseline in one scenario.
type Summary struct {
	Scenario, Relay, Baseline, Ratio, Target string
	Pass                                     bool
}

// Bench runs the scenarios.
type Bench struct {
	cfg    Config
	secret string
	client *http.Client
	report Report
	token  string
	// rdb reads Redis's INFO for the AOF rewrites of each step (nil: none).
	rdb *redis.Client
	// quiet is how long the sink must have been idle before the next
	// delivery step starts: longer after a step that left deliveries behind.
	quiet time.Duration
}

// stragglerQuiet outlasts the first retry tier (5s by default), where
// deliveries an overloaded step could not take wait for their next attempt.
const stragglerQuiet = 6 * time.Second

// New returns a Bench.
func New(cfg Config) *Bench {
	if cfg.Step == 0 {
		cfg.Step = 4 * time.Second
	}
	if cfg.Prefill == 0 {
		cfg.Prefill = 60000
	}
	if cfg.WarmUp == 0 {
		cfg.WarmUp = 20 * time.Second
	}
	if cfg.WarmUpRate <= 0 {
		cfg.WarmUpRate = 1000
	}
	if cfg.Soak == 0 {
		cfg.Soak = 10 * time.Minute
	}
	if cfg.Overload == 0 {
		cfg.Overload = time.Minute
	}
	tr := &http.Transport{
		MaxIdleConns: 8192, MaxIdleConnsPerHost: 4096, IdleConnTimeout: 90 * time.Second,
		DialContext: (&net.Dialer{Timeout: 5 * time.Second}).DialContext,
	}
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return &Bench{cfg: cfg, secret: "rsk_bench_" + hex.EncodeToString(b[:8]), token: "bench-token-" + hex.EncodeToString(b[8:]),
		client: &http.Client{Timeout: 30 * time.Second, Transport: tr}}
}

func (b *Bench) logf(format string, args ...any) {
	fmt.Fprintf(b.cfg.Log, "bench: "+format+"\n", args...)
}

// body is a 1 KiB signed JSON event carrying its sequence number.
func body(run string, n int) []byte { return sizedBody(run, n, 1024) }

// sizedBody is body of size bytes.
func sizedBody(run string, n, size int) []byte {
	head := fmt.Sprintf(`{"type":"bench.event","run":"%s","n":%d,"pad":"`, run, n)
	pad := size - len(head) - 2
	return []byte(head + strings.Repeat("x", max(pad, 0)) + `"}`)
}

// post sends one signed event and reports success.
func (b *Bench) post(ctx context.Context, url, secret string, payload []byte) bool {
	status, _, _ := b.postStatus(ctx, url, secret, payload)
	return status/100 == 2
}

// ingestRun offers rate/s for dur to url and measures the answers.
func (b *Bench) ingestRun(ctx context.Context, url, secret string, rate float64, dur time.Duration) Stats {
	rec := &Recorder{}
	run := hex.EncodeToString([]byte(strconv.FormatInt(time.Now().UnixNano(), 36)))
	sent, shed := OpenLoop(ctx, rate, dur, 4096, func(ctx context.Context, i int, due time.Time) {
		if b.post(ctx, url, secret, body(run, i)) {
			rec.Observe(time.Since(due))
		} else {
			rec.Fail()
		}
	})
	return rec.Summarise(rate, sent, shed, dur)
}

// warmUp sends traffic for a while before anything is measured: connection
// set-up, topic metadata and first produce requests, and above all the
// broker's JVM, which on fresh topics burns up to a core for its first half
// minute (its JIT and new log segments; a long-running broker is past that).
// fanout is the deliveries per request, so that the endpoints see
// WarmUpRate deliveries/s.
func (b *Bench) warmUp(ctx context.Context, url, secret string, fanout int) {
	b.ingestRun(ctx, url, secret, b.cfg.WarmUpRate/float64(fanout), b.cfg.WarmUp)
}

// deliveryRun offers rate/s events for dur and measures deliveries at the
// sink (fanout deliveries per event), waiting up to drain for stragglers.
func (b *Bench) deliveryRun(ctx context.Context, url, secret string, sink *Sink, fanout int, rate float64, dur, drain time.Duration) Stats {
	return b.deliveryRunSized(ctx, url, secret, sink, fanout, rate, dur, drain, 1024)
}

// deliveryRunSized is deliveryRun with bodies of size bytes.
func (b *Bench) deliveryRunSized(ctx context.Context, url, secret string, sink *Sink, fanout int, rate float64, dur, drain time.Duration, size int) Stats {
	return b.deliveryRunWith(ctx, sink, fanout, rate, dur, drain, func(ctx context.Context, run string, i int, _ time.Time) bool {
		return b.post(ctx, url, secret, sizedBody(run, i, size))
	})
}

// deliveryRunWith is deliveryRun with send offering event i of run, due at
// due (true once it is accepted).
func (b *Bench) deliveryRunWith(ctx context.Context, sink *Sink, fanout int, rate float64, dur, drain time.Duration, send func(ctx context.Context, run string, i int, due time.Time) bool) Stats {
	total := int(rate * dur.Seconds())
	due := make([]time.Time, total)
	rec := &Recorder{}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	sink.Arm(run, due, rec)
	var failed atomic.Int64
	sent, shed := OpenLoop(ctx, rate, dur, 4096, func(ctx context.Context, i int, at time.Time) {
		due[i] = at
		if !send(ctx, run, i, at) {
			failed.Add(1)
		}
	})
	want := (sent - int(failed.Load())) * fanout
	deadline := time.Now().Add(drain)
	for rec.Count() < want && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	b.quiet = time.Second
	if rec.Count() < want {
		b.quiet = stragglerQuiet
	}
	s := rec.Summarise(rate*float64(fanout), sent*fanout, shed*fanout, dur)
	s.Errors = int(failed.Load())*fanout + max(0, want-rec.Count())
	return s
}

// settle waits, before a delivery step is measured, until the deliveries
// an overloaded earlier step left in the first retry tier have arrived, so
// that the step pays for none of them.
func (b *Bench) settle(sink *Sink) func() {
	return func() {
		sink.WaitQuiet(b.quiet, 2*time.Minute)
		b.fresh()
	}
}

// meter starts measuring the processes in pids and Redis's AOF rewrites.
func (b *Bench) meter(pids map[string]int) *Meter {
	return NewMeter(pids).CountRewrites(b.redisRewrites)
}

func (b *Bench) meterFor(pids map[string]int) func() *Meter {
	return func() *Meter { return b.meter(pids) }
}

// redisRewrites reads Redis's fork count and whether an AOF rewrite is
// running: a step that overlaps one shares the cores with it.
func (b *Bench) redisRewrites() (forks int64, running, ok bool) {
	if b.rdb == nil {
		return 0, false, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	info, err := b.rdb.InfoMap(ctx, "stats", "persistence").Result()
	if err != nil {
		return 0, false, false
	}
	return parseRewrites(info)
}

// parseRewrites reads total_forks and aof_rewrite_in_progress from INFO's
// sections, as go-redis's InfoMap splits them.
func parseRewrites(info map[string]map[string]string) (forks int64, running, ok bool) {
	forks, err := strconv.ParseInt(info["Stats"]["total_forks"], 10, 64)
	progress, found := info["Persistence"]["aof_rewrite_in_progress"]
	if err != nil || !found {
		return 0, false, false
	}
	return forks, progress == "1", true
}

// fresh closes the load generator's idle connections, so that every step
// starts from the same few rather than from the thousands an overloaded
// step opened (4,096 requests in flight), which a server then serves
// spread thin.
func (b *Bench) fresh() { b.client.CloseIdleConnections() }

// measured is one load step with the CPU and memory it cost.
type measured struct {
	Stats
	Usage Usage
}

// narrowings is how many times a ramp halves the interval between its last
// sustained rate and its first failed one. Doubling leaves the maximum known
// only to within a factor of two; three halvings leave it within an eighth of
// the last sustained rate (4,000/s then means 4,000 to 4,500/s, not 4,000 to
// 5,000/s), for the baseline and Relay alike.
const narrowings = 3

// ramp raises the rate from start, doubling, until a step is not sustained
// or limit is passed; then it tries halfway between the last sustained rate
// and the first that was not, narrowings times, to narrow the maximum down.
// Every step is measured by a meter of its own.
func ramp(start, limit float64, meter func() *Meter, settle func(), step func(rate float64) Stats) []measured {
	run := func(rate float64) measured {
		if settle != nil {
			settle()
		}
		m := meter()
		s := step(rate)
		return measured{Stats: s, Usage: m.Stop()}
	}
	var out []measured
	good, bad := 0.0, 0.0
	for rate := start; rate <= limit; rate *= 2 {
		s := run(rate)
		out = append(out, s)
		if !s.Sustained() {
			bad = rate
			break
		}
		good = rate
	}
	for i := 0; i < narrowings && good > 0 && bad > 0; i++ {
		mid := (good + bad) / 2
		s := run(mid)
		out = append(out, s)
		if s.Sustained() {
			good = mid
		} else {
			bad = mid
		}
	}
	return out
}

// best is the highest sustained step (the first step when none was).
func best(steps []measured) measured {
	var top measured
	for _, s := range steps {
		if s.Sustained() && s.Achieved > top.Achieved {
			top = s
		}
	}
	if top.Offered == 0 && len(steps) > 0 {
		return steps[0]
	}
	return top
}

// relay is one set of Relay service processes on a fresh topic prefix.
type relay struct {
	procs   map[string]*procs.Proc
	api     string
	prefix  string
	brokers []string
}

func (r *relay) pids() map[string]int {
	out := map[string]int{}
	for name, p := range r.procs {
		out[name] = p.PID()
	}
	return out
}

func (r *relay) stop() {
	for _, p := range r.procs {
		_ = p.Stop(30 * time.Second)
	}
}

// startRelay starts the named services ("ingest" always).
func (b *Bench) startRelay(services []string, extra map[string]string) (*relay, error) {
	pb := make([]byte, 4)
	_, _ = rand.Read(pb)
	r := &relay{procs: map[string]*procs.Proc{}, prefix: "bench" + hex.EncodeToString(pb) + ".", brokers: strings.Split(b.cfg.Brokers, ",")}
	vars := map[string]string{
		"RELAY_KAFKA_BROKERS": b.cfg.Brokers, "RELAY_KAFKA_TOPIC_PREFIX": r.prefix, "RELAY_KAFKA_PARTITIONS": "6",
		"RELAY_REDIS_ADDRS": b.cfg.Redis, "RELAY_ADMIN_TOKEN": b.token, "RELAY_SECRET_KEY": secretbox.GenerateKey(),
		"RELAY_ALLOW_PRIVATE_DESTINATIONS": "true", "RELAY_LOG_LEVEL": "warn", "OTEL_SDK_DISABLED": "true",
		"RELAY_S3_ENDPOINT": b.cfg.S3Endpoint, "RELAY_S3_BUCKET": "relay-bench-" + hex.EncodeToString(pb), "RELAY_S3_PATH_STYLE": "true",
		"RELAY_S3_ACCESS_KEY_ID": "bench", "RELAY_S3_SECRET_ACCESS_KEY": "bench",
	}
	for k, v := range extra {
		vars[k] = v
	}
	for _, name := range services {
		addr, err := lifecycle.FreeAddr()
		if err != nil {
			return nil, err
		}
		env := []string{}
		for k, v := range vars {
			env = append(env, k+"="+v)
		}
		addrVar := "RELAY_ADMIN_ADDR"
		if name == "ingest" {
			addrVar = "RELAY_HTTP_ADDR"
			r.api = "http://" + addr
		}
		p := &procs.Proc{Name: name, Bin: filepath.Join(b.cfg.BinDir, "relay-"+name), Env: append(env, addrVar+"="+addr), ReadyURL: "http://" + addr + "/readyz"}
		if err := p.Start(60 * time.Second); err != nil {
			r.stop()
			return nil, err
		}
		r.procs[name] = p
	}
	return r, nil
}

func (b *Bench) call(ctx context.Context, api, method, path string, in, out any) error {
	raw, _ := json.Marshal(in)
	req, err := http.NewRequestWithContext(ctx, method, api+path, bytes.NewReader(raw))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+b.token)
	resp, err := b.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		msg, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("%s %s: HTTP %d %s", method, path, resp.StatusCode, msg)
	}
	if out != nil {
		return json.NewDecoder(resp.Body).Decode(out)
	}
	return nil
}

// source creates a relay-scheme source with the bench secret and the given
// subscriptions, and returns its ingest URL.
func (b *Bench) source(ctx context.Context, r *relay, targets []string) (string, error) {
	var src struct {
		ID string `json:"id"`
	}
	if err := b.call(ctx, r.api, "POST", "/sources", map[string]any{"name": "bench", "verification": map[string]any{"scheme": "relay", "secret": b.secret}}, &src); err != nil {
		return "", err
	}
	for _, t := range targets {
		if err := b.call(ctx, r.api, "POST", "/sources/"+src.ID+"/subscriptions", map[string]any{"url": t}, nil); err != nil {
			return "", err
		}
	}
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache
	return r.api + "/in/" + src.ID, nil
}

// baseline starts `relay bench-server` with args as its own process.
func (b *Bench) baseline(kind string, args ...string) (*procs.Proc, string, error) {
	addr, err := lifecycle.FreeAddr()
	if err != nil {
		return nil, "", err
	}
	p := &procs.Proc{Name: "baseline", Bin: b.cfg.Self, Args: append([]string{"bench-server", kind, "--addr", addr, "--secret", b.secret}, args...), ReadyURL: "http://" + addr + "/healthz"}
	if err := p.Start(20 * time.Second); err != nil {
		return nil, "", err
	}
	return p, "http://" + addr, nil
}

func (b *Bench) infra() map[string]int {
	return map[string]int{"kafka": b.cfg.KafkaPID, "redis": b.cfg.RedisPID, "loadgen+sink": os.Getpid()}
}

func merge(ms ...map[string]int) map[string]int {
	out := map[string]int{}
	for _, m := range ms {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func (b *Bench) add(r Result) {
	b.logf("%-22s %-9s %s", r.Scenario, r.System, r.Stats)
	b.report.Results = append(b.report.Results, r)
}

// Run runs every scenario and returns the report.
func (b *Bench) Run(ctx context.Context) (Report, error) {
	b.report = Report{Started: time.Now()}
	if addr, _, _ := strings.Cut(b.cfg.Redis, ","); addr != "" {
		b.rdb = redis.NewClient(&redis.Options{Addr: addr, DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second})
		defer func() { _ = b.rdb.Close(); b.rdb = nil }()
	}
	scenarios := []struct {
		name string
		run  func(context.Context) error
	}{{"ingest", b.ingestScenario}, {"e2e", b.endToEndScenario}, {"fanout", b.fanoutScenarios}, {"consumers", b.consumersScenario}, {"state", b.stateScenario}, {"overload", b.overloadScenario}, {"coldstart", b.coldStart}, {"policy", b.policyScenario}, {"ordering", b.orderingScenario}, {"latency", b.latencyScenario}}
	for _, sc := range scenarios {
		if len(b.cfg.Only) > 0 && !slices.Contains(b.cfg.Only, sc.name) {
			continue
		}
		if err := sc.run(ctx); err != nil {
			return b.report, fmt.Errorf("scenario %s: %w", sc.name, err)
		}
	}
	b.report.Took = time.Since(b.report.Started)
	return b.report, nil
}

func ratio(a, base float64) string {
	if base == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.0f%%", 100*a/base)
}

func (b *Bench) ingestScenario(ctx context.Context) error {
	b.logf("scenario: ingest only (1 KiB signed bodies)")
	base, baseURL, err := b.baseline("hmac")
	if err != nil {
		return err
	}
	b.warmUp(ctx, baseURL+"/in/x", b.secret, 1)
	baseSteps := ramp(500, 64000, b.meterFor(merge(b.infra(), map[string]int{"baseline": base.PID()})), b.fresh, func(rate float64) Stats {
		return b.ingestRun(ctx, baseURL+"/in/x", b.secret, rate, b.cfg.Step)
	})
	_ = base.Stop(10 * time.Second)
	for _, s := range baseSteps {
		b.add(Result{Scenario: "ingest ramp", System: "baseline", Stats: s.Stats, Usage: s.Usage})
	}
	baseMax := best(baseSteps)
	b.add(Result{Scenario: "ingest max", System: "baseline", Stats: baseMax.Stats, Usage: baseMax.Usage, Note: "bare net/http + HMAC"})

	r, url, err := b.warmIngest(ctx, nil)
	if err != nil {
		return err
	}
	defer r.stop()
	top := b.rampIngest(ctx, r, url, "ingest ramp")
	b.add(Result{Scenario: "ingest max", System: "relay", Stats: top.Stats, Usage: top.Usage, Note: "verify, dedup (Redis), produce acks=all, store"})
	// Half the maximum, as the service runs at it: not in the wake of the
	// overloaded steps just before (a step at the rate first, unmeasured).
	half := top.Achieved / 2
	b.fresh()
	b.ingestRun(ctx, url, b.secret, half, b.cfg.Step)
	m := b.meter(merge(b.infra(), r.pids()))
	hs := b.ingestRun(ctx, url, b.secret, half, 2*b.cfg.Step)
	hu := m.Stop()
	b.add(Result{Scenario: "ingest at half max", System: "relay", Stats: hs, Usage: hu})
	halfP99 := hs.P99.Round(100 * time.Microsecond).String()
	if hu.Rewrites > 0 {
		halfP99 += " (Redis rewrote its AOF during it)"
	}
	b.report.Summary = append(b.report.Summary,
		Summary{"ingest: max sustained rate", fmt.Sprintf("%.0f/s", top.Achieved), fmt.Sprintf("%.0f/s", baseMax.Achieved), ratio(top.Achieved, baseMax.Achieved), "≥ 60% of baseline", top.Achieved >= 0.6*baseMax.Achieved},
		Summary{"ingest: p99 at half max", halfP99, "", "", "< 25ms", hs.P99 < 25*time.Millisecond && hs.Sustained()},
	)
	return nil
}

// up starts services with extra settings and creates the bench source,
// subscribed by targets; it returns the source's ingest URL.
func (b *Bench) up(ctx context.Context, services []string, extra map[string]string, targets []string) (*relay, string, error) {
	r, err := b.startRelay(services, extra)
	if err != nil {
		return nil, "", err
	}
	url, err := b.source(ctx, r, targets)
	if err != nil {
		r.stop()
		return nil, "", err
	}
	return r, url, nil
}

// warmIngest starts ingest alone with extra settings, creates the bench
// source and warms it up; it returns the source's ingest URL.
func (b *Bench) warmIngest(ctx context.Context, extra map[string]string) (*relay, string, error) {
	r, url, err := b.up(ctx, []string{"ingest"}, extra, nil)
	if err == nil {
		b.warmUp(ctx, url, b.secret, 1)
	}
	return r, url, err
}

// rampIngest ramps the load on url, adds each step as scenario, and
// returns the best.
func (b *Bench) rampIngest(ctx context.Context, r *relay, url, scenario string) measured {
	steps := ramp(500, 64000, b.meterFor(merge(b.infra(), r.pids())), b.fresh, func(rate float64) Stats { return b.ingestRun(ctx, url, b.secret, rate, b.cfg.Step) })
	for _, s := range steps {
		b.add(Result{Scenario: scenario, System: "relay", Stats: s.Stats, Usage: s.Usage})
	}
	return best(steps)
}

func (b *Bench) endToEndScenario(ctx context.Context) error {
	b.logf("scenario: end to end (ingest → Kafka → deliver → endpoint)")
	sink := &Sink{}
	sinkURL, err := serve(ctx, sink)
	if err != nil {
		return err
	}
	base, baseURL, err := b.baseline("proxy", "--forward", sinkURL+"/hook")
	if err != nil {
		return err
	}
	b.warmUp(ctx, baseURL+"/in/x", b.secret, 1)
	baseSteps := ramp(500, 32000, b.meterFor(merge(b.infra(), map[string]int{"baseline": base.PID()})), b.settle(sink), func(rate float64) Stats {
		return b.deliveryRun(ctx, baseURL+"/in/x", b.secret, sink, 1, rate, b.cfg.Step, 5*time.Second)
	})
	b.settle(sink)()
	baseFixed := b.deliveryRun(ctx, baseURL+"/in/x", b.secret, sink, 1, 1000, 2*b.cfg.Step, 5*time.Second)
	_ = base.Stop(10 * time.Second)
	baseMax := best(baseSteps)
	b.add(Result{Scenario: "e2e max", System: "baseline", Stats: baseMax.Stats, Usage: baseMax.Usage, Note: "two-hop bare HTTP: proxy verifies, forwards, waits"})
	b.add(Result{Scenario: "e2e at 1000/s", System: "baseline", Stats: baseFixed})

	// One endpoint takes every delivery, and the baseline proxy allows
	// 1,024 connections to it: lift deliver's per-subscription cap (96 by
	// default, under which each subscription's limit adapts) to its overall
	// concurrency.
	r, url, err := b.up(ctx, []string{"ingest", "deliver"}, map[string]string{"RELAY_DELIVER_PER_SUBSCRIPTION": "256"}, []string{sinkURL + "/hook"})
	if err != nil {
		return err
	}
	defer r.stop()
	b.warmUp(ctx, url, b.secret, 1)
	b.settle(sink)()
	m := b.meter(merge(b.infra(), r.pids()))
	fixed := b.deliveryRun(ctx, url, b.secret, sink, 1, 1000, 2*b.cfg.Step, 10*time.Second)
	b.add(Result{Scenario: "e2e at 1000/s", System: "relay", Stats: fixed, Usage: m.Stop(), Note: "latency from due time to arrival at the endpoint"})
	steps := ramp(500, 32000, b.meterFor(merge(b.infra(), r.pids())), b.settle(sink), func(rate float64) Stats {
		return b.deliveryRun(ctx, url, b.secret, sink, 1, rate, b.cfg.Step, 10*time.Second)
	})
	for _, s := range steps {
		b.add(Result{Scenario: "e2e ramp", System: "relay", Stats: s.Stats, Usage: s.Usage})
	}
	top := best(steps)
	b.add(Result{Scenario: "e2e max", System: "relay", Stats: top.Stats, Usage: top.Usage, Note: "RELAY_DELIVER_PER_SUBSCRIPTION=256"})
	b.report.Summary = append(b.report.Summary,
		Summary{"end to end: max sustained deliveries", fmt.Sprintf("%.0f/s", top.Achieved), fmt.Sprintf("%.0f/s", baseMax.Achieved), ratio(top.Achieved, baseMax.Achieved), "≥ 60% of baseline", top.Achieved >= 0.6*baseMax.Achieved},
		Summary{"end to end: p99 at 1,000 events/s", fixed.P99.Round(100 * time.Microsecond).String(), baseFixed.P99.Round(100 * time.Microsecond).String(), "", "< 100ms", fixed.P99 < 100*time.Millisecond && fixed.Sustained()},
	)
	return nil
}

func (b *Bench) fanoutScenarios(ctx context.Context) error {
	b.logf("scenario: fan-out 1→10, and one 5s endpoint among 10")
	sink := &Sink{}
	sinkURL, err := serve(ctx, sink)
	if err != nil {
		return err
	}
	slow := &Sink{delay: 5 * time.Second}
	slowURL, err := serve(ctx, slow)
	if err != nil {
		return err
	}
	var ten []string
	for i := 0; i < 10; i++ {
		ten = append(ten, fmt.Sprintf("%s/hook/%d", sinkURL, i))
	}
	base, baseURL, err := b.baseline("proxy", forwardArgs(ten)...)
	if err != nil {
		return err
	}
	b.warmUp(ctx, baseURL+"/in/x", b.secret, 10)
	baseSteps := ramp(100, 16000, b.meterFor(merge(b.infra(), map[string]int{"baseline": base.PID()})), b.settle(sink), func(rate float64) Stats {
		return b.deliveryRun(ctx, baseURL+"/in/x", b.secret, sink, 10, rate, b.cfg.Step, 5*time.Second)
	})
	_ = base.Stop(10 * time.Second)
	baseMax := best(baseSteps)
	b.add(Result{Scenario: "fan-out 1→10 max", System: "baseline", Stats: baseMax.Stats, Usage: baseMax.Usage, Note: "proxy POSTs to 10 endpoints at once"})

	r, err := b.startRelay([]string{"ingest", "deliver"}, nil)
	if err != nil {
		return err
	}
	url, err := b.source(ctx, r, ten)
	if err != nil {
		r.stop()
		return err
	}
	b.warmUp(ctx, url, b.secret, 10)
	steps := ramp(100, 16000, b.meterFor(merge(b.infra(), r.pids())), b.settle(sink), func(rate float64) Stats {
		return b.deliveryRun(ctx, url, b.secret, sink, 10, rate, b.cfg.Step, 10*time.Second)
	})
	r.stop()
	for _, s := range steps {
		b.add(Result{Scenario: "fan-out ramp", System: "relay", Stats: s.Stats, Usage: s.Usage})
	}
	top := best(steps)
	b.add(Result{Scenario: "fan-out 1→10 max", System: "relay", Stats: top.Stats, Usage: top.Usage, Note: "deliveries/s"})
	b.report.Summary = append(b.report.Summary,
		Summary{"fan-out 1→10: max sustained deliveries", fmt.Sprintf("%.0f/s", top.Achieved), fmt.Sprintf("%.0f/s", baseMax.Achieved), ratio(top.Achieved, baseMax.Achieved), "(no target)", true})

	// The same load, with one of the ten endpoints taking 5s per request.
	rate := max(20, top.Achieved/10/2)
	healthyRun := func(slowOne bool) (Stats, Usage, error) {
		targets := ten
		if slowOne {
			targets = append(append([]string(nil), ten[:9]...), slowURL+"/slow")
		}
		r, err := b.startRelay([]string{"ingest", "deliver"}, nil)
		if err != nil {
			return Stats{}, Usage{}, err
		}
		defer r.stop()
		url, err := b.source(ctx, r, targets)
		if err != nil {
			return Stats{}, Usage{}, err
		}
		b.warmUp(ctx, url, b.secret, 10)
		fan := 10
		if slowOne {
			fan = 9 // the sink counts only the nine healthy endpoints
		}
		b.settle(sink)()
		m := b.meter(merge(b.infra(), r.pids()))
		s := b.deliveryRun(ctx, url, b.secret, sink, fan, rate, 3*b.cfg.Step, 10*time.Second)
		return s, m.Stop(), nil
	}
	allHealthy, u1, err := healthyRun(false)
	if err != nil {
		return err
	}
	withSlow, u2, err := healthyRun(true)
	if err != nil {
		return err
	}
	perHealthy := func(s Stats, n float64) float64 { return s.Achieved / n }
	a, w := perHealthy(allHealthy, 10), perHealthy(withSlow, 9)
	b.add(Result{Scenario: "10 healthy endpoints", System: "relay", Stats: allHealthy, Usage: u1, Note: fmt.Sprintf("%.0f events/s", rate)})
	b.add(Result{Scenario: "9 healthy + one 5s", System: "relay", Stats: withSlow, Usage: u2, Note: "the nine healthy endpoints only"})
	cost := 1 - w/a
	b.report.Summary = append(b.report.Summary,
		Summary{"one 5s endpoint among 10: cost to the others", fmt.Sprintf("%.0f/s per healthy endpoint", w), fmt.Sprintf("%.0f/s with none slow", a), fmt.Sprintf("%.1f%% lower", 100*cost), "< 10%", cost < 0.10 && withSlow.P99 < 5*time.Second})
	return nil
}

func forwardArgs(targets []string) []string {
	var out []string
	for _, t := range targets {
		out = append(out, "--forward", t)
	}
	return out
}

// consumersScenario pre-fills relay.events, then measures how fast archive
// and count work through it, against a bare consumer reading the same topic.
func (b *Bench) consumersScenario(ctx context.Context) error {
	b.logf("scenario: archive and count throughput over %d pre-filled events", b.cfg.Prefill)
	pb := make([]byte, 4)
	_, _ = rand.Read(pb)
	prefix := "bench" + hex.EncodeToString(pb) + "."
	kcfg := kafka.Config{Brokers: strings.Split(b.cfg.Brokers, ","), Partitions: 6, ReplicationFactor: -1, EventsRetention: time.Hour,
		DLQRetention: time.Hour, DialTimeout: 5 * time.Second, TopicPrefix: prefix, RetryTiers: record.DefaultTierDelays, SessionTimeout: 10 * time.Second,
		MaxBodyBytes: kafka.DefaultMaxBodyBytes}
	names, err := kcfg.Names()
	if err != nil {
		return err
	}
	cl, err := kafka.NewClient(kcfg, "bench-prefill", kafka.Instrumentation{}, nil, kafka.ProducerOptions(kcfg)...)
	if err != nil {
		return err
	}
	if err := kafka.EnsureTopics(ctx, cl, kcfg, kafka.Topics(kcfg, names)); err != nil {
		cl.Close()
		return err
	}
	srcs := []string{ids.New(ids.Source), ids.New(ids.Source), ids.New(ids.Source)}
	batch := make([]*kgo.Record, 0, 1000)
	for i := 0; i < b.cfg.Prefill; i++ {
		ev := record.Event{ID: ids.New(ids.Event), SourceID: srcs[i%3], Type: fmt.Sprintf("bench.%d", i%5), ReceivedAt: time.Now(), ContentType: "application/json", Body: body("prefill", i)}
		batch = append(batch, ev.Record(names.Events))
		if len(batch) == cap(batch) || i == b.cfg.Prefill-1 {
			if err := cl.ProduceSync(ctx, batch...).FirstErr(); err != nil {
				cl.Close()
				return err
			}
			batch = batch[:0]
		}
	}
	cl.Close()

	// Baseline: a bare group consumer that only reads.
	start := time.Now()
	rc, err := kgo.NewClient(kgo.SeedBrokers(kcfg.Brokers...), kgo.ConsumerGroup(prefix+"bench-bare"), kgo.ConsumeTopics(names.Events), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		return err
	}
	read := 0
	m := b.meter(b.infra())
	for read < b.cfg.Prefill && ctx.Err() == nil {
		f := rc.PollRecords(ctx, 5000)
		read += f.NumRecords()
	}
	bare := time.Since(start)
	bareUse := m.Stop()
	rc.Close()
	bareRate := float64(b.cfg.Prefill) / bare.Seconds()
	b.add(Result{Scenario: "read pre-filled topic", System: "baseline", Stats: Stats{Achieved: bareRate, OK: read}, Usage: bareUse, Note: "bare franz-go group consumer"})

	for _, svc := range []struct{ name, metric string }{{"archive", "relay_archive_events_total"}, {"count", "relay_count_events_total"}} {
		r, err := b.startRelay([]string{"ingest"}, map[string]string{"RELAY_KAFKA_TOPIC_PREFIX": prefix, "RELAY_ARCHIVE_MAX_WAIT": "2s"})
		if err != nil {
			return err
		}
		addr, _ := lifecycle.FreeAddr()
		env := []string{"RELAY_ADMIN_ADDR=" + addr}
		for _, kv := range r.procs["ingest"].Env {
			if !strings.HasPrefix(kv, "RELAY_HTTP_ADDR=") {
				env = append(env, kv)
			}
		}
		p := &procs.Proc{Name: svc.name, Bin: filepath.Join(b.cfg.BinDir, "relay-"+svc.name), Env: env, ReadyURL: "http://" + addr + "/readyz"}
		start := time.Now()
		if err := p.Start(60 * time.Second); err != nil {
			r.stop()
			return err
		}
		m := b.meter(merge(b.infra(), map[string]int{svc.name: p.PID()}))
		for metric(ctx, "http://"+addr+"/metrics", svc.metric) < float64(b.cfg.Prefill) && time.Since(start) < 5*time.Minute {
			time.Sleep(100 * time.Millisecond)
		}
		took := time.Since(start)
		use := m.Stop()
		_ = p.Stop(30 * time.Second)
		r.stop()
		rate := float64(b.cfg.Prefill) / took.Seconds()
		b.add(Result{Scenario: svc.name + " throughput", System: "relay", Stats: Stats{Achieved: rate, OK: b.cfg.Prefill}, Usage: use, Note: "from start-up, including the group join"})
		b.report.Summary = append(b.report.Summary,
			Summary{svc.name + ": events/s from a pre-filled topic", fmt.Sprintf("%.0f/s", rate), fmt.Sprintf("%.0f/s (bare read)", bareRate), ratio(rate, bareRate), "(no target)", true})
	}
	return nil
}

// metric reads one metric's value from a /metrics page (0 when absent).
func metric(ctx context.Context, url, name string) float64 {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	var total float64
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{") {
			f := strings.Fields(line)
			if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
				total += v
			}
		}
	}
	return total
}
