package bench

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/kafka"
	"github.com/relayhq/relay/pkg/lifecycle"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/signature"
)

// overloadScenario offers deliver and then ingest twice what each can
// take: what an operator sees when traffic outgrows the deployment.
func (b *Bench) overloadScenario(ctx context.Context) error {
	if err := b.deliverOverload(ctx); err != nil {
		return err
	}
	return b.ingestOverload(ctx)
}

// deliverOverload finds deliver's maximum with events produced straight to
// relay.events (so that ingest takes no share of the cores), then offers
// twice that for cfg.Overload: deliver must keep delivering near its
// maximum within its memory bound, leave the excess in Kafka as lag, and
// catch up afterwards with nothing lost or POSTed twice. Defaults
// throughout, one endpoint answering at once.
func (b *Bench) deliverOverload(ctx context.Context) error {
	b.logf("scenario: deliver offered twice its maximum for %v (defaults)", b.cfg.Overload)
	sink := &Sink{}
	sinkURL, err := serve(ctx, sink)
	if err != nil {
		return err
	}
	r, ingestURL, err := b.up(ctx, []string{"ingest", "deliver"}, nil, []string{sinkURL + "/hook"})
	if err != nil {
		return err
	}
	defer r.stop()
	kcfg := kafka.Config{Brokers: strings.Split(b.cfg.Brokers, ","), TopicPrefix: r.prefix, DialTimeout: 5 * time.Second,
		RetryTiers: record.DefaultTierDelays, MaxBodyBytes: kafka.DefaultMaxBodyBytes}
	names, err := kcfg.Names()
	if err != nil {
		return err
	}
	cl, err := kafka.NewClient(kcfg, "bench-overload", kafka.Instrumentation{}, nil, kafka.ProducerOptions(kcfg)...)
	if err != nil {
		return err
	}
	defer cl.Close()
	src := path.Base(ingestURL)
	produce := func(ctx context.Context, run string, i int, _ time.Time) bool {
		ev := record.Event{ID: ids.New(ids.Event), SourceID: src, Type: "bench.event", ReceivedAt: time.Now(), ContentType: "application/json", Body: body(run, i)}
		return cl.ProduceSync(ctx, ev.Record(names.Events)).FirstErr() == nil
	}
	deliverPID := r.procs["deliver"].PID()
	admin := strings.TrimSuffix(r.procs["deliver"].ReadyURL, "/readyz")

	b.deliveryRunWith(ctx, sink, 1, b.cfg.WarmUpRate, b.cfg.WarmUp, 10*time.Second, produce)
	steps := ramp(500, 16000, b.meterFor(merge(b.infra(), r.pids())), b.settle(sink), func(rate float64) Stats {
		return b.deliveryRunWith(ctx, sink, 1, rate, b.cfg.Step, 10*time.Second, produce)
	})
	for _, s := range steps {
		b.add(Result{Scenario: "deliver ramp", System: "relay", Stats: s.Stats, Usage: s.Usage, Note: "events produced straight to relay.events"})
	}
	top := best(steps)
	b.add(Result{Scenario: "deliver max", System: "relay", Stats: top.Stats, Usage: top.Usage, Note: "defaults, one endpoint"})

	// Twice the maximum, for cfg.Overload.
	b.settle(sink)()
	rate := 2 * top.Achieved
	total := int(rate * b.cfg.Overload.Seconds())
	due := make([]time.Time, total)
	rec := &Recorder{}
	run := strconv.FormatInt(time.Now().UnixNano(), 36)
	sink.Arm(run, due, rec)
	deferred0 := metric(ctx, admin+"/metrics", `relay_deliver_outcomes_total{outcome="deferred"}`)
	m := b.meter(merge(b.infra(), r.pids()))
	var failed atomic.Int64
	start := time.Now()
	sent, shed := OpenLoop(ctx, rate, b.cfg.Overload, 4096, func(ctx context.Context, i int, at time.Time) {
		due[i] = at
		if !produce(ctx, run, i, at) {
			failed.Add(1)
		}
	})
	offeredFor := time.Since(start)
	during := rec.Summarise(rate, sent, shed, offeredFor)
	use := m.Stop()
	want := sent - int(failed.Load())
	backlog := want - during.OK
	for rec.Count() < want && time.Since(start) < offeredFor+10*time.Minute && ctx.Err() == nil {
		time.Sleep(100 * time.Millisecond)
	}
	catchUp := time.Since(start) - offeredFor
	peak := PeakRSS(deliverPID) // its whole life: the ramp's overloaded steps too
	lost := want - rec.Count()
	repeats := sink.Repeats()
	deferred := metric(ctx, admin+"/metrics", `relay_deliver_outcomes_total{outcome="deferred"}`) - deferred0
	during.Errors = int(failed.Load())
	b.add(Result{Scenario: "deliver at 2× max", System: "relay", Stats: during, Usage: use,
		Note: fmt.Sprintf("%v offered; delivered/s while offered; latencies of those", b.cfg.Overload)})
	caught := fmt.Sprintf("all delivered %v later", catchUp.Round(time.Second))
	if lost > 0 {
		caught = fmt.Sprintf("%d still not delivered %v later", lost, catchUp.Round(time.Second))
	}
	b.add(Result{Scenario: "deliver catch-up", System: "relay", Stats: Stats{OK: rec.Count()},
		Note: fmt.Sprintf("%d events behind when the load stopped, %s; %d POSTed again, %.0f deferred to a retry tier; deliver's peak RSS %d MiB", backlog, caught, repeats, deferred, peak>>20)})
	b.report.Summary = append(b.report.Summary,
		Summary{"deliver offered 2× its max: delivered/s", fmt.Sprintf("%.0f/s", during.Achieved), fmt.Sprintf("%.0f/s (its max)", top.Achieved), ratio(during.Achieved, top.Achieved), "≥ 80% of max", during.Achieved >= 0.8*top.Achieved},
		Summary{"deliver: peak RSS, ramp and overload", fmt.Sprintf("%d MiB", peak>>20), "", "", "< 300 MiB", peak > 0 && peak < 300<<20},
		Summary{"deliver after overload: lost, POSTed again", fmt.Sprintf("%d, %d (caught up in %v)", lost, repeats, catchUp.Round(time.Second)), "", "", "0, 0", lost == 0 && repeats == 0},
	)
	return nil
}

// ingestOverload offers ingest twice its maximum: beyond its in-flight
// limit it must answer 503 with Retry-After at once, and keep the requests
// it takes fast, rather than queue every request for seconds. Ingest runs
// on one core (GOMAXPROCS=1) here, so that the load generator, on the same
// machine, can offer twice what it takes without itself running out of CPU.
func (b *Bench) ingestOverload(ctx context.Context) error {
	b.logf("scenario: ingest (one core) offered twice its maximum, with its in-flight limit and without")
	r, url, err := b.warmIngest(ctx, map[string]string{"GOMAXPROCS": "1"})
	if err != nil {
		return err
	}
	defer r.stop()
	top := b.rampIngest(ctx, r, url, "ingest ramp, one core").Achieved
	limited := b.ingestOverloadRun(ctx, r, url, 2*top)
	r.stop()

	// The same without the limit, for comparison.
	unlimited, uurl, err := b.warmIngest(ctx, map[string]string{"GOMAXPROCS": "1", "RELAY_INGEST_MAX_INFLIGHT_REQUESTS": "1000000"})
	if err != nil {
		return err
	}
	defer unlimited.stop()
	without := b.ingestOverloadRun(ctx, unlimited, uurl, 2*top)

	for _, o := range []struct {
		name string
		o    overloaded
	}{{"limit 1024 (default)", limited}, {"no limit", without}} {
		b.add(Result{Scenario: "ingest at 2× max, 202s", System: "relay", Stats: o.o.accepted, Usage: o.o.usage,
			Note: fmt.Sprintf("%s; GOMAXPROCS=1, max %.0f/s; errors: the load generator's 4,096 in flight full, or answers neither 202 nor 503 with Retry-After %v", o.name, top, o.o.kinds)})
		b.add(Result{Scenario: "ingest at 2× max, 503s", System: "relay", Stats: o.o.refused, Note: o.name + "; 503 with Retry-After"})
	}
	a, rf, u := limited.accepted, limited.refused, without.accepted
	b.report.Summary = append(b.report.Summary,
		Summary{"ingest (one core) offered 2× its max: accepted", fmt.Sprintf("%.0f/s, p50 %s, p99 %s", a.Achieved, dur(a.P50), dur(a.P99)), fmt.Sprintf("%.0f/s, p50 %s, p99 %s without the limit", u.Achieved, dur(u.P50), dur(u.P99)), "", "p50 < 100ms, p99 < 1s", a.P50 < 100*time.Millisecond && a.P99 < time.Second},
		Summary{"ingest (one core) offered 2× its max: the rest", fmt.Sprintf("%d× 503 (p50 %s, p99 %s), %d not sent or failed", rf.OK, dur(rf.P50), dur(rf.P99), a.Errors+a.Shed), fmt.Sprintf("%d not sent or failed without the limit", u.Errors+u.Shed), "", "503 + Retry-After, p50 < 100ms; ≤ 1% not sent", rf.P50 < 100*time.Millisecond && float64(a.Errors+a.Shed) <= 0.01*float64(a.Sent+a.Shed)},
	)
	return nil
}

// overloaded is one overloaded ingest run: the requests accepted (202),
// those refused with 503 and Retry-After, and the kinds of any other answer.
type overloaded struct {
	accepted, refused Stats
	kinds             []string
	usage             Usage
}

// ingestOverloadRun offers rate/s to url for three steps.
func (b *Bench) ingestOverloadRun(ctx context.Context, r *relay, url string, rate float64) overloaded {
	b.fresh()
	accepted, refused := &Recorder{}, &Recorder{}
	var other atomic.Int64
	var kinds sync.Map
	run := hex.EncodeToString([]byte(strconv.FormatInt(time.Now().UnixNano(), 36)))
	m := b.meter(merge(b.infra(), r.pids()))
	window := 3 * b.cfg.Step
	sent, shed := OpenLoop(ctx, rate, window, 4096, func(ctx context.Context, i int, due time.Time) {
		status, retryAfter, err := b.postStatus(ctx, url, b.secret, body(run, i))
		switch {
		case status/100 == 2:
			accepted.Observe(time.Since(due))
		case status == http.StatusServiceUnavailable && retryAfter:
			refused.Observe(time.Since(due))
		default:
			other.Add(1)
			kind := "HTTP " + strconv.Itoa(status)
			if err != nil {
				kind = errorKind(err)
			}
			kinds.LoadOrStore(kind, true)
		}
	})
	o := overloaded{usage: m.Stop(), accepted: accepted.Summarise(rate, sent, shed, window)}
	o.accepted.Errors = int(other.Load())
	rf := refused.Summarise(rate, sent, shed, window)
	o.refused = Stats{Offered: rate, Achieved: rf.Achieved, OK: rf.OK, P50: rf.P50, P99: rf.P99, Max: rf.Max}
	kinds.Range(func(k, _ any) bool { o.kinds = append(o.kinds, k.(string)); return true })
	sort.Strings(o.kinds)
	return o
}

// postStatus sends one signed event and returns the answer's status and
// whether it carried Retry-After, or the error when no answer came.
func (b *Bench) postStatus(ctx context.Context, url, secret string, payload []byte) (int, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(payload))
	if err != nil {
		return 0, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(signature.HeaderRelaySignature, signature.HexHMAC(secret, payload))
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, resp.Header.Get("Retry-After") != "", nil
}

// errorKind is an error without what varies between requests (ports), so
// that a report can list the kinds.
func errorKind(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i >= 0 {
		return msg[i+2:]
	}
	return msg
}

// coldStart starts a broker of its own (cfg.KafkaScript) and fresh
// services, and offers 1,000 events/s end to end from the moment they are
// ready: the first 30 s against the 30 s that follow on the same stack.
func (b *Bench) coldStart(ctx context.Context) error {
	if b.cfg.KafkaScript == "" {
		b.logf("cold start skipped: no --kafka-script to start a fresh broker with")
		return nil
	}
	if _, err := os.Stat(b.cfg.KafkaScript); err != nil {
		return fmt.Errorf("the cold start's broker: %w (run from the repository, or pass --kafka-script)", err)
	}
	b.logf("scenario: cold start (fresh broker and services) at 1,000 events/s")
	broker, stop, err := b.freshBroker(ctx)
	if err != nil {
		return err
	}
	defer stop()
	sink := &Sink{}
	sinkURL, err := serve(ctx, sink)
	if err != nil {
		return err
	}
	r, url, err := b.up(ctx, []string{"ingest", "deliver"}, map[string]string{"RELAY_KAFKA_BROKERS": broker.addr}, []string{sinkURL + "/hook"})
	if err != nil {
		return err
	}
	defer r.stop()
	pids := merge(b.infra(), r.pids(), map[string]int{"kafka": broker.pid})
	window := 30 * time.Second
	m := b.meter(pids)
	first := b.deliveryRun(ctx, url, b.secret, sink, 1, 1000, window, 30*time.Second)
	b.add(Result{Scenario: "cold start, first 30 s", System: "relay", Stats: first, Usage: m.Stop(), Note: "fresh broker and services, defaults, 1,000 events/s"})
	m = b.meter(pids)
	next := b.deliveryRun(ctx, url, b.secret, sink, 1, 1000, window, 30*time.Second)
	b.add(Result{Scenario: "cold start, next 30 s", System: "relay", Stats: next, Usage: m.Stop()})
	b.report.Summary = append(b.report.Summary,
		Summary{"cold start: e2e p99, first 30 s at 1,000/s", dur(first.P99), dur(next.P99) + " (next 30 s)", "", "(no target)", true})
	return nil
}

type freshBroker struct {
	addr string
	pid  int
}

// freshBroker starts a single-node broker with cfg.KafkaScript in a
// temporary directory and waits until it answers; stop kills it and
// removes its data.
func (b *Bench) freshBroker(ctx context.Context) (freshBroker, func(), error) {
	dir, err := os.MkdirTemp("", "relay-bench-kafka-")
	if err != nil {
		return freshBroker{}, nil, err
	}
	port, err := lifecycle.FreePort()
	if err != nil {
		return freshBroker{}, nil, err
	}
	cport, err := lifecycle.FreePort()
	if err != nil {
		return freshBroker{}, nil, err
	}
	logf, err := os.Create(filepath.Join(dir, "kafka.log"))
	if err != nil {
		return freshBroker{}, nil, err
	}
	cmd := exec.Command(b.cfg.KafkaScript, "start", filepath.Join(dir, "data"), strconv.Itoa(port), strconv.Itoa(cport))
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return freshBroker{}, nil, err
	}
	stop := func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
		logf.Close()
		_ = os.RemoveAll(dir)
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.DialTimeout(2*time.Second))
	if err != nil {
		stop()
		return freshBroker{}, nil, err
	}
	defer cl.Close()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, err := kafka.BrokerVersion(pctx, cl)
		cancel()
		if err == nil {
			return freshBroker{addr: addr, pid: cmd.Process.Pid}, stop, nil
		}
		if time.Now().After(deadline) || ctx.Err() != nil {
			stop()
			return freshBroker{}, nil, fmt.Errorf("fresh broker at %s: %w", addr, err)
		}
		time.Sleep(250 * time.Millisecond)
	}
}
