// Package smoke checks a running Relay end to end through its public
// surfaces only: the HTTP API, the demo receiver's /_stats and the S3
// archive. It runs the seed's checklist and more: source creation, signed
// ingest, dedup, bad signatures, fan-out to deliver, archive and count, glob
// filtering, a flaky endpoint, a failing one through every tier into the DLQ
// and back by redrive, single-event replay and the counts.
//
// The Relay under test should run with short retry tiers (for instance
// RELAY_RETRY_TIERS=1s,2s,4s), or the DLQ step waits for hours.
package smoke

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/relayhq/relay/pkg/archivefile"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/services/relay/internal/client"
	"github.com/relayhq/relay/services/relay/internal/receiver"
)

// Config says which Relay to check.
type Config struct {
	API   string
	Token string
	// Receiver is the demo receiver's base URL as Relay reaches it.
	Receiver string
	// ReceiverStats is the receiver's /_stats URL as the smoke test reaches
	// it (default: Receiver + "/_stats").
	ReceiverStats string
	// Archive is where the archive is read back; a nil S3 skips nothing:
	// the archive check fails without it.
	Archive archivefile.Reader
	// Timeout bounds each waiting step.
	Timeout time.Duration
	Out     io.Writer
}

// Result are the counts of one run.
type Result struct {
	Steps    int
	Accepted int
}

type run struct {
	cfg   Config
	c     *client.Client
	http  *http.Client
	tag   string
	step  int
	start time.Time
}

// Run performs every check in order and stops at the first failure.
func Run(ctx context.Context, cfg Config) (Result, error) {
	if cfg.ReceiverStats == "" {
		cfg.ReceiverStats = strings.TrimSuffix(cfg.Receiver, "/") + "/_stats"
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 90 * time.Second
	}
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	r := &run{cfg: cfg, c: client.New(cfg.API, cfg.Token), http: &http.Client{Timeout: 30 * time.Second}, tag: hex.EncodeToString(b)}
	return r.all(ctx)
}

func (r *run) ok(format string, args ...any) {
	r.step++
	fmt.Fprintf(r.cfg.Out, "ok %2d  %s (%s)\n", r.step, fmt.Sprintf(format, args...), time.Since(r.start).Round(time.Millisecond))
	r.start = time.Now()
}

// until polls cond every 250ms until it holds or the step timeout passes.
func (r *run) until(ctx context.Context, what string, cond func() (bool, error)) error {
	deadline := time.Now().Add(r.cfg.Timeout)
	var last error
	for {
		done, err := cond()
		if done && err == nil {
			return nil
		}
		if err != nil {
			last = err
		}
		if time.Now().After(deadline) {
			if last != nil {
				return fmt.Errorf("timed out after %v waiting for %s: %w", r.cfg.Timeout, what, last)
			}
			return fmt.Errorf("timed out after %v waiting for %s", r.cfg.Timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

type created struct {
	ID     string `json:"id"`
	Secret string `json:"secret"`
}

type delivery struct {
	SubscriptionID string `json:"subscription_id"`
	Status         string `json:"status"`
	Attempts       int    `json:"attempts"`
}

func (r *run) send(ctx context.Context, src created, body []byte, headers map[string]string, secret string) (int, string, bool, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(r.cfg.API, "/")+"/in/"+src.ID, bytes.NewReader(body))
	if err != nil {
		return 0, "", false, err
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	if err := (signature.StandardWebhooks{}).Sign(req.Header, body, secret, time.Now()); err != nil {
		return 0, "", false, err
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return 0, "", false, err
	}
	defer resp.Body.Close()
	var out struct {
		EventID   string `json:"event_id"`
		Duplicate bool   `json:"duplicate"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out.EventID, out.Duplicate, nil
}

func (r *run) deliveries(ctx context.Context, src, evt string) (map[string]delivery, error) {
	var out struct {
		Data []delivery `json:"data"`
	}
	if _, err := r.c.Do(ctx, "GET", "/sources/"+src+"/events/"+evt+"/deliveries", nil, &out); err != nil {
		return nil, err
	}
	m := map[string]delivery{}
	for _, d := range out.Data {
		m[d.SubscriptionID] = d
	}
	return m, nil
}

func (r *run) waitDelivery(ctx context.Context, src, evt, sub, status string, attempts int) error {
	var last delivery
	err := r.until(ctx, fmt.Sprintf("delivery %s → %s to be %s after %d attempt(s)", evt, sub, status, attempts), func() (bool, error) {
		m, err := r.deliveries(ctx, src, evt)
		if err != nil {
			return false, err
		}
		last = m[sub]
		return last.Status == status && last.Attempts == attempts, nil
	})
	if err != nil {
		return fmt.Errorf("%w (last seen: %+v)", err, last)
	}
	return nil
}

func (r *run) stats(ctx context.Context) (receiver.Stats, error) {
	var s receiver.Stats
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.cfg.ReceiverStats, nil)
	if err != nil {
		return s, err
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return s, fmt.Errorf("receiver stats at %s: %w", r.cfg.ReceiverStats, err)
	}
	defer resp.Body.Close()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

func (r *run) all(ctx context.Context) (Result, error) {
	res := Result{}
	r.start = time.Now()
	fail := func(step string, err error) (Result, error) {
		res.Steps = r.step
		return res, fmt.Errorf("step %d (%s): %w", r.step+1, step, err)
	}
	recv := strings.TrimSuffix(r.cfg.Receiver, "/")

	// 1. A source.
	var src created
	if _, err := r.c.Do(ctx, "POST", "/sources", map[string]any{"name": "smoke-" + r.tag, "verification": map[string]any{"scheme": "standard-webhooks"}}, &src); err != nil {
		return fail("create a source", err)
	}
	r.ok("created source %s (standard-webhooks)", src.ID)

	// 2. Subscriptions: healthy on order.*, flaky on everything, failing on
	//    payment.*, and one on invoice.* that this run must never feed.
	subs := map[string]created{}
	for name, spec := range map[string][2]string{
		"ok":      {recv + "/smoke/ok?mode=ok", "order.*"},
		"flaky":   {recv + "/smoke/flaky?mode=flaky", "*"},
		"fail":    {recv + "/smoke/fail?mode=fail", "payment.*"},
		"invoice": {recv + "/smoke/invoice?mode=ok", "invoice.*"},
	} {
		var s created
		if _, err := r.c.Do(ctx, "POST", "/sources/"+src.ID+"/subscriptions", map[string]any{"url": spec[0], "events": spec[1]}, &s); err != nil {
			return fail("create subscriptions", err)
		}
		subs[name] = s
	}
	r.ok("created 4 subscriptions (order.*, *, payment.*, invoice.*)")

	// 3. Signed ingest.
	orderBody := []byte(`{"type":"order.created","id":"ord_` + r.tag + `","amount":4200}`)
	code, order, _, err := r.send(ctx, src, orderBody, map[string]string{"Webhook-Id": "msg_order_" + r.tag}, src.Secret)
	if err != nil || code != 202 || order == "" {
		return fail("signed ingest", fmt.Errorf("HTTP %d, %v", code, err))
	}
	res.Accepted++
	r.ok("signed order.created accepted as %s", order)

	// 4. Dedup: the sender's retry (same webhook-id), also when replayed
	//    with a fresh idempotency key (webhook-id is signed, so it alone
	//    names the event); then another event.
	code, dup, isDup, err := r.send(ctx, src, orderBody, map[string]string{"Webhook-Id": "msg_order_" + r.tag}, src.Secret)
	if err != nil || code != 200 || !isDup || dup != order {
		return fail("dedup by webhook-id", fmt.Errorf("HTTP %d duplicate=%v id=%s, %v", code, isDup, dup, err))
	}
	code, dup, isDup, err = r.send(ctx, src, orderBody, map[string]string{"Webhook-Id": "msg_order_" + r.tag, "X-Idempotency-Key": "fresh-" + r.tag}, src.Secret)
	if err != nil || code != 200 || !isDup || dup != order {
		return fail("dedup by the signed webhook-id over an idempotency key", fmt.Errorf("HTTP %d duplicate=%v id=%s, %v", code, isDup, dup, err))
	}
	code, paid, _, err := r.send(ctx, src, []byte(`{"type":"order.paid","n":1}`), map[string]string{"Webhook-Id": "msg_a_" + r.tag}, src.Secret)
	if err != nil || code != 202 {
		return fail("another event", fmt.Errorf("HTTP %d, %v", code, err))
	}
	res.Accepted++
	r.ok("sender retries answered 200 duplicate (same webhook-id, with or without a fresh idempotency key)")

	// 5. A bad signature is refused.
	code, _, _, err = r.send(ctx, src, []byte(`{"type":"order.created"}`), nil, signature.StandardWebhooks{}.NewSecret())
	if err != nil || code != 401 {
		return fail("bad signature", fmt.Errorf("HTTP %d, %v", code, err))
	}
	r.ok("a wrongly signed request got 401")

	// 6. Fan-out to deliver: the healthy subscription got the order once.
	if err := r.waitDelivery(ctx, src.ID, order, subs["ok"].ID, "delivered", 1); err != nil {
		return fail("delivery", err)
	}
	r.ok("order delivered to the healthy endpoint on attempt 1")

	// 7. Flaky: 500 first, delivered on attempt 2.
	if err := r.waitDelivery(ctx, src.ID, order, subs["flaky"].ID, "delivered", 2); err != nil {
		return fail("flaky endpoint", err)
	}
	r.ok("flaky endpoint: failed once, delivered on attempt 2")

	// 8. Glob filtering: invoice.* and payment.* got nothing of the orders.
	m, err := r.deliveries(ctx, src.ID, order)
	if err != nil {
		return fail("glob filtering", err)
	}
	if _, ok := m[subs["invoice"].ID]; ok {
		return fail("glob filtering", errors.New("an order event was routed to the invoice.* subscription"))
	}
	if _, ok := m[subs["fail"].ID]; ok {
		return fail("glob filtering", errors.New("an order event was routed to the payment.* subscription"))
	}
	r.ok("glob filtering: order.created went to order.* and *, not to payment.* or invoice.*")

	// 9. Failing endpoint: every tier, then dead and listed.
	payBody := []byte(`{"type":"payment.failed","id":"pay_` + r.tag + `"}`)
	code, pay, _, err := r.send(ctx, src, payBody, map[string]string{"Webhook-Id": "msg_pay_" + r.tag}, src.Secret)
	if err != nil || code != 202 {
		return fail("send payment", fmt.Errorf("HTTP %d, %v", code, err))
	}
	res.Accepted++
	var dead delivery
	if err := r.until(ctx, "the failing delivery to go dead", func() (bool, error) {
		m, err := r.deliveries(ctx, src.ID, pay)
		dead = m[subs["fail"].ID]
		return dead.Status == "dead", err
	}); err != nil {
		return fail("retries into the DLQ", err)
	}
	var parked struct {
		Data []struct {
			EventID string `json:"event_id"`
			Reason  string `json:"reason"`
		} `json:"data"`
	}
	if err := r.until(ctx, "the DLQ to list it", func() (bool, error) {
		_, err := r.c.Do(ctx, "GET", "/dlq?subscription_id="+subs["fail"].ID, nil, &parked)
		return len(parked.Data) == 1 && parked.Data[0].EventID == pay, err
	}); err != nil {
		return fail("DLQ listing", err)
	}
	r.ok("failing endpoint: %d attempts through every tier, dead (%s), listed in the DLQ", dead.Attempts, parked.Data[0].Reason)

	// 10. Fix the endpoint, redrive: delivered once.
	if _, err := r.c.Do(ctx, "PATCH", "/sources/"+src.ID+"/subscriptions/"+subs["fail"].ID, map[string]any{"url": recv + "/smoke/fixed?mode=ok"}, nil); err != nil {
		return fail("fix the endpoint", err)
	}
	time.Sleep(3 * time.Second) // deliver sees subscription changes within RELAY_SUBSCRIPTION_CACHE_TTL
	var redrive struct {
		Redriven int  `json:"redriven"`
		Complete bool `json:"complete"`
	}
	if _, err := r.c.Do(ctx, "POST", "/replay/dlq?subscription_id="+subs["fail"].ID, nil, &redrive); err != nil || redrive.Redriven != 1 {
		return fail("redrive", fmt.Errorf("redriven %d, %v", redrive.Redriven, err))
	}
	if err := r.waitDelivery(ctx, src.ID, pay, subs["fail"].ID, "delivered", dead.Attempts+1); err != nil {
		return fail("redriven delivery", err)
	}
	if _, err := r.c.Do(ctx, "POST", "/replay/dlq?subscription_id="+subs["fail"].ID, nil, &redrive); err != nil || redrive.Redriven != 0 {
		return fail("second redrive", fmt.Errorf("a second redrive moved %d records, %v", redrive.Redriven, err))
	}
	r.ok("endpoint fixed, DLQ redriven: delivered on attempt %d; a second redrive finds nothing", dead.Attempts+1)

	// 11. Replay the order: every subscription is delivered, nothing queued.
	var replay struct {
		Queued  []string `json:"queued"`
		Skipped []struct {
			Reason string `json:"reason"`
		} `json:"skipped"`
	}
	if _, err := r.c.Do(ctx, "POST", "/sources/"+src.ID+"/events/"+order+"/replay", nil, &replay); err != nil {
		return fail("replay", err)
	}
	if len(replay.Queued) != 0 || len(replay.Skipped) != 2 {
		return fail("replay", fmt.Errorf("queued %v, skipped %d; want nothing queued and 2 skipped", replay.Queued, len(replay.Skipped)))
	}
	r.ok("replaying the order queues nothing: both subscriptions are delivered")

	// 12. The receiver saw each webhook once per subscription, plus the
	//     flaky and failed attempts, and never the duplicates or the 401:
	//     orders go to order.* (1) and * (flaky: 2); the payment to * (2)
	//     and payment.* (every failed attempt, then the redriven one).
	want := map[string]int{order: 3, paid: 3, pay: dead.Attempts + 3}
	if err := r.until(ctx, "the receiver's counts", func() (bool, error) {
		st, err := r.stats(ctx)
		if err != nil {
			return false, err
		}
		for id, n := range want {
			if st.ByWebhookID[id] > n {
				return false, fmt.Errorf("webhook %s arrived %d times, more than the %d expected", id, st.ByWebhookID[id], n)
			}
			if st.ByWebhookID[id] != n {
				return false, fmt.Errorf("webhook %s arrived %d times, want %d", id, st.ByWebhookID[id], n)
			}
		}
		return true, nil
	}); err != nil {
		return fail("receiver stats", err)
	}
	r.ok("receiver: each order ×3 (order.*, flaky 500 then 200), payment ×%d; no duplicate reached it", dead.Attempts+3)

	// 13. Archived once each, counted once each.
	accepted := map[string]bool{order: true, paid: true, pay: true}
	if r.cfg.Archive.S3 == nil {
		return fail("archive", errors.New("no S3 configured to read the archive from (--s3-endpoint, --bucket)"))
	}
	if err := r.until(ctx, "the archive to hold the 3 events", func() (bool, error) {
		objs, err := r.cfg.Archive.SourceObjects(ctx, src.ID, time.Time{}, time.Time{})
		if err != nil {
			return false, err
		}
		seen := map[string]int{}
		for _, o := range objs {
			lines, err := r.cfg.Archive.Lines(ctx, o.Key)
			if err != nil {
				return false, err
			}
			for _, l := range lines {
				seen[l.EventID]++
			}
		}
		for id := range accepted {
			if seen[id] != 1 {
				return false, fmt.Errorf("event %s archived %d times", id, seen[id])
			}
		}
		return len(seen) == len(accepted), nil
	}); err != nil {
		return fail("archive", err)
	}
	var counts struct {
		Data []struct {
			Type  string `json:"type"`
			Count int    `json:"count"`
		} `json:"data"`
	}
	if err := r.until(ctx, "the counts", func() (bool, error) {
		_, err := r.c.Do(ctx, "GET", "/sources/"+src.ID+"/metrics?from="+time.Now().UTC().AddDate(0, 0, -1).Format("2006-01-02"), nil, &counts)
		total := 0
		for _, c := range counts.Data {
			total += c.Count
		}
		return total == len(accepted), err
	}); err != nil {
		return fail("counts", err)
	}
	r.ok("archived once and counted once: %d events (order.created, order.paid, payment.failed)", len(accepted))
	res.Steps = r.step
	return res, nil
}

// ArchiveReader builds the archive reader of an S3 endpoint and bucket.
func ArchiveReader(ctx context.Context, cfg archivefile.Config) (archivefile.Reader, error) {
	c, err := archivefile.NewClient(ctx, cfg)
	if err != nil {
		return archivefile.Reader{}, err
	}
	return archivefile.Reader{S3: c, Bucket: cfg.Bucket}, nil
}
