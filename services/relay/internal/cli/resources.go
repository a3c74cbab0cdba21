package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/relayhq/relay/services/relay/internal/client"
)

type sourceOut struct {
	ID           string `json:"id"`
	Name         string `json:"name"`
	Verification struct {
		Scheme    string `json:"scheme"`
		Tolerance string `json:"tolerance"`
	} `json:"verification"`
	DedupWindow string    `json:"dedup_window"`
	IngestURL   string    `json:"ingest_url"`
	CreatedAt   time.Time `json:"created_at"`
	Secret      string    `json:"secret"`
}

func (a *app) sourcesFlags(cmd *cobra.Command) verbFunc {
	var f apiFlags
	fs := a.apiFlags(cmd, &f)
	name := fs.String("name", "", "source name (create, patch)")
	scheme := fs.String("scheme", "relay", "verification scheme: relay, standard-webhooks, stripe, github, shopify, slack, hmac (create; hmac takes --param)")
	secret := fs.String("secret", "", "the provider's signing secret; generated when empty (create, rotate)")
	tolerance := fs.String("tolerance", "", "timestamp tolerance, e.g. 5m (create, patch)")
	window := fs.String("dedup-window", "", "dedup window, e.g. 72h (create, patch)")
	grace := fs.String("grace", "", "how long the old secret keeps verifying, e.g. 24h (rotate)")
	params := map[string]string{}
	fs.Func("param", "'name=value', a parameter of the hmac scheme (header, algorithm, encoding, prefix, id_header, type_header); repeat for more (create, patch)", func(v string) error {
		k, val, ok := strings.Cut(v, "=")
		if !ok || k == "" {
			return errors.New("want name=value")
		}
		params[k] = val
		return nil
	})
	allowedIPs := fs.String("allowed-ips", "", "comma-separated IPs or CIDR prefixes the source takes webhooks from; on patch, '' takes them from anywhere (create, patch)")
	forward := fs.String("forward-headers", "", "comma-separated request headers of the sender's to forward to subscribers, e.g. 'X-GitHub-Event,X-GitHub-Delivery'; on patch, '' forwards none (create, patch)")
	keyHeader := fs.String("ordering-key-header", "", "the request header whose value is an event's ordering key, e.g. X-Customer-Id (create, patch)")
	keyPath := fs.String("ordering-key-path", "", "the JSON path into the body whose value is an event's ordering key, e.g. data.customer_id (create, patch)")
	noKey := fs.Bool("no-ordering-key", false, "remove the ordering key (patch)")
	// orderingKey adds the ordering key flags that were given to body.
	orderingKey := func(body map[string]any) error {
		switch {
		case *noKey && (*keyHeader != "" || *keyPath != ""):
			return errors.New("--no-ordering-key goes alone")
		case *noKey:
			body["ordering_key"] = map[string]any{}
		case *keyHeader != "" && *keyPath != "":
			return errors.New("give --ordering-key-header or --ordering-key-path, not both")
		case *keyHeader != "":
			body["ordering_key"] = map[string]any{"header": *keyHeader}
		case *keyPath != "":
			body["ordering_key"] = map[string]any{"json_path": *keyPath}
		}
		return nil
	}
	return func(ctx context.Context, verb string, pos []string) error {
		var err error
		c, err := f.client()
		if err != nil {
			return err
		}
		switch verb {
		case "create":
			if err := need("name", *name); err != nil {
				return err
			}
			ver := map[string]any{"scheme": *scheme}
			for k, v := range params {
				ver[k] = v
			}
			if *secret != "" {
				ver["secret"] = *secret
			}
			if *tolerance != "" {
				ver["tolerance"] = *tolerance
			}
			body := map[string]any{"name": *name, "verification": ver}
			if *window != "" {
				body["dedup_window"] = *window
			}
			if *forward != "" {
				body["forward_headers"] = splitGlobs(*forward)
			}
			if *allowedIPs != "" {
				body["allowed_ips"] = splitGlobs(*allowedIPs)
			}
			if err := orderingKey(body); err != nil {
				return err
			}
			var s sourceOut
			raw, err := c.Do(ctx, "POST", "/sources", body, &s)
			if err != nil {
				return err
			}
			if f.raw() {
				return a.printRaw(&f, raw)
			}
			fmt.Fprintf(a.out, "Created source %s (%s, scheme %s).\n\n  ingest URL  %s\n  secret      %s   (shown once: senders sign with it)\n",
				s.ID, s.Name, s.Verification.Scheme, s.IngestURL, s.Secret)
			return nil
		case "ls":
			var out struct {
				Data []sourceOut `json:"data"`
			}
			raw, err := c.ListAll(ctx, "/sources")
			if err != nil {
				return err
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return fmt.Errorf("decode sources: %w", err)
			}
			if f.raw() {
				return a.printRaw(&f, raw)
			}
			rows := [][]string{}
			for _, s := range out.Data {
				rows = append(rows, []string{s.ID, s.Name, s.Verification.Scheme, s.DedupWindow, s.CreatedAt.Local().Format(time.DateTime)})
			}
			a.table([]string{"ID", "NAME", "SCHEME", "DEDUP", "CREATED"}, rows)
			return nil
		case "get", "patch", "rm", "rotate":
			if len(pos) != 1 {
				return fmt.Errorf("usage: relay sources %s SOURCE_ID", verb)
			}
			path := "/sources/" + url.PathEscape(pos[0])
			switch verb {
			case "get":
				raw, err := c.Do(ctx, "GET", path, nil, nil)
				if err != nil {
					return err
				}
				return a.printJSON(raw)
			case "patch":
				body := map[string]any{}
				if *name != "" {
					body["name"] = *name
				}
				ver := map[string]any{}
				for k, v := range params {
					ver[k] = v
				}
				if *tolerance != "" {
					ver["tolerance"] = *tolerance
				}
				if len(ver) > 0 {
					body["verification"] = ver
				}
				if *window != "" {
					body["dedup_window"] = *window
				}
				fs.Visit(func(fl *pflag.Flag) {
					switch fl.Name {
					case "forward-headers":
						body["forward_headers"] = append([]string{}, splitGlobs(*forward)...)
					case "allowed-ips":
						body["allowed_ips"] = append([]string{}, splitGlobs(*allowedIPs)...)
					}
				})
				if err := orderingKey(body); err != nil {
					return err
				}
				if len(body) == 0 {
					return errors.New("nothing to change: give --name, --tolerance, --dedup-window, --forward-headers, --allowed-ips, --ordering-key-header, --ordering-key-path, --no-ordering-key or --param")
				}
				var s sourceOut
				raw, err := c.Do(ctx, "PATCH", path, body, &s)
				if err != nil {
					return err
				}
				if f.raw() {
					return a.printRaw(&f, raw)
				}
				tol := ""
				if s.Verification.Tolerance != "" {
					tol = ", tolerance " + s.Verification.Tolerance
				}
				fmt.Fprintf(a.out, "Updated source %s (%s, scheme %s%s, dedup window %s).\n", s.ID, s.Name, s.Verification.Scheme, tol, s.DedupWindow)
				return nil
			case "rm":
				if _, err := c.Do(ctx, "DELETE", path, nil, nil); err != nil {
					return err
				}
				fmt.Fprintf(a.out, "Deleted source %s and its subscriptions.\n", pos[0])
				return nil
			default:
				body := map[string]any{}
				if *secret != "" {
					body["secret"] = *secret
				}
				if *grace != "" {
					body["grace"] = *grace
				}
				var s sourceOut
				raw, err := c.Do(ctx, "POST", path+"/rotate-secret", body, &s)
				if err != nil {
					return err
				}
				if f.raw() {
					return a.printRaw(&f, raw)
				}
				fmt.Fprintf(a.out, "New secret for %s: %s (shown once; the old one keeps verifying during the grace period)\n", s.ID, s.Secret)
				return nil
			}
		}
		return fmt.Errorf("unknown subcommand %q: want create, ls, get, patch, rm or rotate", verb)
	}
}

type subOut struct {
	ID             string    `json:"id"`
	SourceID       string    `json:"source_id"`
	URL            string    `json:"url"`
	Events         []string  `json:"events"`
	Enabled        bool      `json:"enabled"`
	DisabledReason string    `json:"disabled_reason"`
	CreatedAt      time.Time `json:"created_at"`
	HeaderNames    []string  `json:"header_names"`
	Filter         string    `json:"filter"`
	Retry          *struct {
		MaxAttempts int `json:"max_attempts"`
	} `json:"retry"`
	RateLimit *struct {
		PerSecond int `json:"per_second"`
		PerMinute int `json:"per_minute"`
		Burst     int `json:"burst"`
	} `json:"rate_limit"`
	Ordered   bool   `json:"ordered"`
	OnFailure string `json:"on_failure"`
	Secret    string `json:"secret"`
}

func (a *app) subsFlags(cmd *cobra.Command) verbFunc {
	var f apiFlags
	fs := a.apiFlags(cmd, &f)
	src := fs.String("source", "", "source id (required)")
	target := fs.String("url", "", "endpoint URL (create, patch)")
	events := fs.String("events", "*", "comma-separated event type globs, e.g. 'payment.*,invoice.paid' (create, patch)")
	grace := fs.String("grace", "", "how long the old secret keeps signing, e.g. 24h (rotate)")
	headers := map[string]string{}
	fs.Func("header", "'Name: value', a header every delivery carries, e.g. an endpoint's credential; repeat for more (create; on patch, replaces them all)", func(v string) error {
		name, value, ok := strings.Cut(v, ":")
		if name, value = strings.TrimSpace(name), strings.TrimSpace(value); !ok || name == "" {
			return errors.New("want 'Name: value'")
		}
		headers[name] = value
		return nil
	})
	noHeaders := fs.Bool("no-headers", false, "remove every custom header (patch)")
	filterExpr := fs.String("filter", "", `a CEL expression an event must match, e.g. 'data.amount > 1000 && type.startsWith("invoice.")' (create, patch; "" removes it)`)
	maxAttempts := fs.Int("max-attempts", 0, "attempts per delivery, 1 to the retry tiers + 1 (create, patch; 0 for the whole ladder)")
	rate := fs.String("rate", "", "the most deliveries to the endpoint, across every deliver replica: N/s or N/m, e.g. 50/s (create, patch; 'none' removes it)")
	burst := fs.Int("burst", 0, "how many of --rate may go at once (default 1)")
	ordered := fs.Bool("ordered", false, "deliver the events of one ordering key one at a time, in order (create; fixed once created)")
	onFailure := fs.String("on-failure", "", "an ordered subscription's key when its head goes to the DLQ: skip (the next proceeds) or block (until redriven) (create, patch)")
	key := fs.String("key", "", "an ordering key (lane, skip-key)")
	// policy adds the delivery policy flags that were given to body.
	policy := func(body map[string]any) error {
		var err error
		fs.Visit(func(fl *pflag.Flag) {
			switch fl.Name {
			case "filter":
				body["filter"] = *filterExpr
			case "max-attempts":
				body["retry"] = map[string]any{"max_attempts": *maxAttempts}
			case "rate":
				var limit map[string]any
				if limit, err = rateLimit(*rate, *burst); err == nil {
					body["rate_limit"] = limit
				}
			case "burst":
				if *rate == "" {
					err = errors.New("--burst goes with --rate")
				}
			case "ordered":
				body["ordered"] = *ordered
			case "on-failure":
				body["on_failure"] = *onFailure
			}
		})
		return err
	}
	return func(ctx context.Context, verb string, pos []string) error {
		var err error
		if err := need("source", *src); err != nil {
			return err
		}
		c, err := f.client()
		if err != nil {
			return err
		}
		base := "/sources/" + url.PathEscape(*src) + "/subscriptions"
		switch verb {
		case "create":
			if err := need("url", *target); err != nil {
				return err
			}
			body := map[string]any{"url": *target, "events": splitGlobs(*events)}
			if len(headers) > 0 {
				body["headers"] = headers
			}
			if err := policy(body); err != nil {
				return err
			}
			var s subOut
			raw, err := c.Do(ctx, "POST", base, body, &s)
			if err != nil {
				return err
			}
			if f.raw() {
				return a.printRaw(&f, raw)
			}
			fmt.Fprintf(a.out, "Created subscription %s → %s for %s.\n\n  secret  %s   (shown once: the endpoint verifies deliveries with it)\n",
				s.ID, s.URL, strings.Join(s.Events, ", "), s.Secret)
			if len(s.HeaderNames) > 0 {
				fmt.Fprintf(a.out, "  headers %s   (values kept encrypted, never shown)\n", strings.Join(s.HeaderNames, ", "))
			}
			if s.Filter != "" {
				fmt.Fprintf(a.out, "  filter  %s\n", s.Filter)
			}
			if s.Retry != nil {
				fmt.Fprintf(a.out, "  retry   at most %d attempts\n", s.Retry.MaxAttempts)
			}
			if r := s.RateLimit; r != nil {
				n, per := r.PerSecond, "s"
				if r.PerMinute > 0 {
					n, per = r.PerMinute, "m"
				}
				fmt.Fprintf(a.out, "  rate    at most %d/%s, %d at once\n", n, per, max(r.Burst, 1))
			}
			if s.Ordered {
				fmt.Fprintf(a.out, "  ordered one at a time per ordering key; a key whose head goes to the DLQ: %s\n", s.OnFailure)
			}
			return nil
		case "ls":
			var out struct {
				Data []subOut `json:"data"`
			}
			raw, err := c.ListAll(ctx, base)
			if err != nil {
				return err
			}
			if err := json.Unmarshal(raw, &out); err != nil {
				return fmt.Errorf("decode subscriptions: %w", err)
			}
			if f.raw() {
				return a.printRaw(&f, raw)
			}
			rows := [][]string{}
			for _, s := range out.Data {
				state := "enabled"
				if !s.Enabled {
					state = "disabled: " + s.DisabledReason
				}
				rows = append(rows, []string{s.ID, s.URL, strings.Join(s.Events, ","), state})
			}
			a.table([]string{"ID", "URL", "EVENTS", "STATE"}, rows)
			return nil
		case "get", "rm", "enable", "disable", "rotate", "patch", "lane", "skip-key":
			if len(pos) != 1 {
				return fmt.Errorf("usage: relay subs %s --source SOURCE_ID SUBSCRIPTION_ID", verb)
			}
			path := base + "/" + url.PathEscape(pos[0])
			var raw []byte
			switch verb {
			case "get":
				raw, err = c.Do(ctx, "GET", path, nil, nil)
			case "rm":
				if _, err = c.Do(ctx, "DELETE", path, nil, nil); err == nil {
					fmt.Fprintf(a.out, "Deleted subscription %s.\n", pos[0])
					return nil
				}
			case "enable", "disable":
				raw, err = c.Do(ctx, "PATCH", path, map[string]any{"enabled": verb == "enable"}, nil)
			case "lane", "skip-key":
				if err := need("key", *key); err != nil {
					return err
				}
				lane := path + "/lane?ordering_key=" + url.QueryEscape(*key)
				if verb == "lane" {
					raw, err = c.Do(ctx, "GET", lane, nil, nil)
				} else {
					raw, err = c.Do(ctx, "POST", strings.Replace(lane, "/lane?", "/lane/skip?", 1), nil, nil)
				}
			case "patch":
				body := map[string]any{}
				fs.Visit(func(fl *pflag.Flag) {
					switch fl.Name {
					case "url":
						body["url"] = *target
					case "events":
						body["events"] = splitGlobs(*events)
					case "header", "no-headers":
						body["headers"] = headers
					}
				})
				if err := policy(body); err != nil {
					return err
				}
				if *noHeaders && len(headers) > 0 {
					return errors.New("patch: --header and --no-headers together")
				}
				if len(body) == 0 {
					return errors.New("patch: give --url, --events, --header, --no-headers, --filter, --max-attempts or --rate")
				}
				raw, err = c.Do(ctx, "PATCH", path, body, nil)
			default:
				body := map[string]any{}
				if *grace != "" {
					body["grace"] = *grace
				}
				raw, err = c.Do(ctx, "POST", path+"/rotate-secret", body, nil)
			}
			if err != nil {
				return err
			}
			return a.printRaw(&f, raw)
		}
		return fmt.Errorf("unknown subcommand %q", verb)
	}
}

// rateLimit reads --rate (N/s, N/m, or none) and --burst as the API's
// rate_limit.
func rateLimit(rate string, burst int) (map[string]any, error) {
	if rate == "none" {
		if burst != 0 {
			return nil, errors.New("--rate none takes no --burst")
		}
		return map[string]any{}, nil
	}
	n, per, ok := strings.Cut(strings.TrimSpace(rate), "/")
	count, err := strconv.Atoi(n)
	if !ok || err != nil || count < 1 {
		return nil, fmt.Errorf("--rate %q: want N/s or N/m with N at least 1, e.g. 50/s, or none", rate)
	}
	out := map[string]any{}
	switch per {
	case "s", "sec", "second":
		out["per_second"] = count
	case "m", "min", "minute":
		out["per_minute"] = count
	default:
		return nil, fmt.Errorf("--rate %q: per s or m, e.g. 50/s", rate)
	}
	if burst < 0 {
		return nil, errors.New("--burst must be at least 1")
	}
	if burst > 0 {
		out["burst"] = burst
	}
	return out, nil
}

func splitGlobs(s string) []string {
	var globs []string
	for _, g := range strings.Split(s, ",") {
		if g = strings.TrimSpace(g); g != "" {
			globs = append(globs, g)
		}
	}
	return globs
}

type eventOut struct {
	ID         string    `json:"id"`
	Type       string    `json:"type"`
	ReceivedAt time.Time `json:"received_at"`
	Size       int       `json:"size"`
}

func (a *app) eventsFlags(cmd *cobra.Command) verbFunc {
	var f apiFlags
	fs := a.apiFlags(cmd, &f)
	src := fs.String("source", "", "source id (required)")
	limit := fs.Int("limit", 20, "how many, newest first (ls)")
	return func(ctx context.Context, verb string, pos []string) error {
		var err error
		if err := need("source", *src); err != nil {
			return err
		}
		c, err := f.client()
		if err != nil {
			return err
		}
		base := "/sources/" + url.PathEscape(*src) + "/events"
		switch verb {
		case "ls":
			var out struct {
				Data []eventOut `json:"data"`
				Next string     `json:"next_cursor"`
			}
			raw, err := c.Do(ctx, "GET", base+"?limit="+strconv.Itoa(*limit), nil, &out)
			if err != nil {
				return err
			}
			if f.raw() {
				return a.printRaw(&f, raw)
			}
			rows := [][]string{}
			for _, e := range out.Data {
				rows = append(rows, []string{e.ID, e.Type, e.ReceivedAt.Local().Format(time.DateTime + ".000"), strconv.Itoa(e.Size)})
			}
			a.table([]string{"ID", "TYPE", "RECEIVED", "BYTES"}, rows)
			a.more(out.Next, "older events")
			return nil
		case "get":
			if len(pos) != 1 {
				return errors.New("usage: relay events get --source SOURCE_ID EVENT_ID")
			}
			raw, err := c.Do(ctx, "GET", base+"/"+url.PathEscape(pos[0]), nil, nil)
			if err != nil {
				return err
			}
			return a.printJSON(raw)
		}
		return fmt.Errorf("unknown subcommand %q: want ls or get", verb)
	}
}

type deliveryOut struct {
	SubscriptionID string     `json:"subscription_id"`
	URL            string     `json:"url"`
	Status         string     `json:"status"`
	Attempts       int        `json:"attempts"`
	LastStatusCode int        `json:"last_status_code"`
	LastError      string     `json:"last_error"`
	NextAttemptAt  *time.Time `json:"next_attempt_at"`
}

func (a *app) deliveriesFlags(cmd *cobra.Command) runFunc {
	var f apiFlags
	_, event := a.eventFlags(cmd, &f)
	return func(ctx context.Context, args []string) error {
		c, eventPath, err := event(ctx, args)
		if err != nil {
			return err
		}
		var out struct {
			Data []deliveryOut `json:"data"`
		}
		raw, err := c.Do(ctx, "GET", eventPath+"/deliveries", nil, &out)
		if err != nil {
			return err
		}
		if f.raw() {
			return a.printRaw(&f, raw)
		}
		rows := [][]string{}
		for _, d := range out.Data {
			next := ""
			if d.NextAttemptAt != nil {
				next = d.NextAttemptAt.Local().Format(time.TimeOnly)
			}
			code := ""
			if d.LastStatusCode != 0 {
				code = strconv.Itoa(d.LastStatusCode)
			}
			rows = append(rows, []string{d.SubscriptionID, d.Status, strconv.Itoa(d.Attempts), code, next, d.LastError})
		}
		a.table([]string{"SUBSCRIPTION", "STATUS", "ATTEMPTS", "LAST", "NEXT", "ERROR"}, rows)
		return nil
	}
}

func (a *app) replayFlags(cmd *cobra.Command) runFunc {
	var f apiFlags
	fs, event := a.eventFlags(cmd, &f)
	sub := fs.String("subscription", "", "replay to this subscription only")
	force := fs.Bool("force", false, "also resend where it was delivered (the endpoint acknowledged it, then lost it)")
	since := fs.Duration("since", 0, "replay the events of --source received this long ago until now, e.g. 24h")
	from := fs.String("from", "", "replay the events of --source received from this time (RFC 3339)")
	to := fs.String("to", "", "... until this time (RFC 3339; default now)")
	return func(ctx context.Context, args []string) error {
		if fs.Changed("since") || fs.Changed("from") {
			src, _ := fs.GetString("source")
			return a.replayRange(ctx, &f, replayRangeOpts{src: src, since: *since, from: *from, to: *to, sub: *sub, force: *force}, args)
		}
		c, eventPath, err := event(ctx, args)
		if err != nil {
			return err
		}
		path := eventPath + "/replay"
		q := url.Values{}
		if *sub != "" {
			q.Set("subscription_id", *sub)
		}
		if *force {
			q.Set("force", "true")
		}
		if len(q) > 0 {
			path += "?" + q.Encode()
		}
		var out struct {
			Queued  []string `json:"queued"`
			Skipped []struct {
				SubscriptionID string `json:"subscription_id"`
				Reason         string `json:"reason"`
			} `json:"skipped"`
		}
		raw, err := c.Do(ctx, "POST", path, nil, &out)
		if err != nil {
			return err
		}
		if f.raw() {
			return a.printRaw(&f, raw)
		}
		fmt.Fprintf(a.out, "Queued for %d subscription(s): %s\n", len(out.Queued), strings.Join(out.Queued, ", "))
		for _, s := range out.Skipped {
			fmt.Fprintf(a.out, "Skipped %s: %s\n", s.SubscriptionID, s.Reason)
		}
		return nil
	}
}

// replayRangeOpts are the flags of a range replay.
type replayRangeOpts struct {
	src, from, to, sub string
	since              time.Duration
	force              bool
}

// replayRange is relay replay --source SRC --since D | --from T [--to T]:
// every event of the source received in the range, oldest first, through
// POST /sources/{id}/replay, following next_cursor to the end.
func (a *app) replayRange(ctx context.Context, f *apiFlags, o replayRangeOpts, pos []string) error {
	src, since, from, to, sub, force := &o.src, &o.since, &o.from, &o.to, &o.sub, &o.force
	switch {
	case len(pos) > 0:
		return errors.New("usage: relay replay --source SOURCE_ID --since D | --from T [--to T] (no EVENT_ID: the range is the events)")
	case (*since == 0) == (*from == ""):
		return errors.New("give one of --since and --from")
	case *since < 0:
		return errors.New("--since must be positive")
	}
	if err := need("source", *src); err != nil {
		return err
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	q := url.Values{}
	if *since > 0 {
		q.Set("from", time.Now().Add(-*since).UTC().Format(time.RFC3339Nano))
	} else {
		q.Set("from", *from)
	}
	if *to != "" {
		q.Set("to", *to)
	}
	if *sub != "" {
		q.Set("subscription_id", *sub)
	}
	if *force {
		q.Set("force", "true")
	}
	events, queued, skipped := 0, 0, map[string]int{}
	for {
		var out struct {
			Events     int            `json:"events"`
			Queued     int            `json:"queued"`
			Skipped    map[string]int `json:"skipped"`
			Complete   bool           `json:"complete"`
			NextCursor string         `json:"next_cursor"`
		}
		raw, err := c.Do(ctx, "POST", "/sources/"+url.PathEscape(*src)+"/replay?"+q.Encode(), nil, &out)
		if err != nil {
			return err
		}
		if f.raw() {
			if err := a.printRaw(f, raw); err != nil {
				return err
			}
		}
		events, queued = events+out.Events, queued+out.Queued
		for k, v := range out.Skipped {
			skipped[k] += v
		}
		if out.Complete || out.NextCursor == "" {
			break
		}
		q.Set("cursor", out.NextCursor)
	}
	if f.raw() {
		return nil
	}
	fmt.Fprintf(a.out, "Went through %d event(s): queued %d deliveries.\n", events, queued)
	reasons := make([]string, 0, len(skipped))
	for k := range skipped {
		reasons = append(reasons, k)
	}
	sort.Strings(reasons)
	for _, k := range reasons {
		fmt.Fprintf(a.out, "Skipped %d: %s\n", skipped[k], k)
	}
	return nil
}

func (a *app) dlqFlags(cmd *cobra.Command) verbFunc {
	var f apiFlags
	fs := a.apiFlags(cmd, &f)
	sub := fs.String("subscription", "", "only this subscription")
	src := fs.String("source", "", "only this source")
	limit := fs.Int("limit", 50, "how many (ls)")
	return func(ctx context.Context, verb string, pos []string) error {
		c, err := f.client()
		if err != nil {
			return err
		}
		q := url.Values{}
		if *sub != "" {
			q.Set("subscription_id", *sub)
		}
		if *src != "" {
			q.Set("source_id", *src)
		}
		switch verb {
		case "ls":
			q.Set("limit", strconv.Itoa(*limit))
			var out struct {
				Data []struct {
					EventID        string    `json:"event_id"`
					SubscriptionID string    `json:"subscription_id"`
					EventType      string    `json:"event_type"`
					Reason         string    `json:"reason"`
					Attempts       int       `json:"attempts"`
					LastStatusCode int       `json:"last_status_code"`
					DeadAt         time.Time `json:"dead_at"`
				} `json:"data"`
				Next string `json:"next_cursor"`
			}
			raw, err := c.Do(ctx, "GET", "/dlq?"+q.Encode(), nil, &out)
			if err != nil {
				return err
			}
			if f.raw() {
				return a.printRaw(&f, raw)
			}
			rows := [][]string{}
			for _, d := range out.Data {
				rows = append(rows, []string{d.EventID, d.SubscriptionID, d.EventType, d.Reason, strconv.Itoa(d.Attempts), strconv.Itoa(d.LastStatusCode), d.DeadAt.Local().Format(time.DateTime)})
			}
			a.table([]string{"EVENT", "SUBSCRIPTION", "TYPE", "REASON", "ATTEMPTS", "LAST", "PARKED"}, rows)
			a.more(out.Next, "parked deliveries")
			return nil
		case "redrive":
			for {
				var out struct {
					Redriven         int  `json:"redriven"`
					AlreadyDelivered int  `json:"already_delivered"`
					Complete         bool `json:"complete"`
				}
				raw, err := c.Do(ctx, "POST", "/replay/dlq?"+q.Encode(), nil, &out)
				if err != nil {
					return err
				}
				if f.raw() {
					if err := a.printRaw(&f, raw); err != nil {
						return err
					}
				} else {
					fmt.Fprintf(a.out, "Redriven %d, already delivered %d.\n", out.Redriven, out.AlreadyDelivered)
				}
				if out.Complete {
					return nil
				}
			}
		}
		return fmt.Errorf("unknown subcommand %q: want ls or redrive", verb)
	}
}

func (a *app) metricsFlags(cmd *cobra.Command) runFunc {
	var f apiFlags
	fs := a.apiFlags(cmd, &f)
	src := fs.String("source", "", "source id (required)")
	from := fs.String("from", "", "first day, YYYY-MM-DD")
	to := fs.String("to", "", "last day, YYYY-MM-DD")
	return func(ctx context.Context, args []string) error {
		if err := need("source", *src); err != nil {
			return err
		}
		c, err := f.client()
		if err != nil {
			return err
		}
		q := url.Values{}
		if *from != "" {
			q.Set("from", *from)
		}
		if *to != "" {
			q.Set("to", *to)
		}
		var out struct {
			Data []struct {
				Day   string `json:"day"`
				Type  string `json:"type"`
				Count int64  `json:"count"`
			} `json:"data"`
		}
		raw, err := c.Do(ctx, "GET", "/sources/"+url.PathEscape(*src)+"/metrics?"+q.Encode(), nil, &out)
		if err != nil {
			return err
		}
		if f.raw() {
			return a.printRaw(&f, raw)
		}
		rows := [][]string{}
		for _, d := range out.Data {
			rows = append(rows, []string{d.Day, d.Type, strconv.FormatInt(d.Count, 10)})
		}
		a.table([]string{"DAY", "TYPE", "COUNT"}, rows)
		return nil
	}
}

// eventFlags binds the flags of a command about one event, `relay NAME
// [--source SOURCE_ID] EVENT_ID`, and returns its flag set, for flags of
// its own, and how it finds the API path of that event: from --source, or
// by asking each source when it is omitted.
func (a *app) eventFlags(cmd *cobra.Command, f *apiFlags) (*pflag.FlagSet, func(ctx context.Context, args []string) (*client.Client, string, error)) {
	fs := a.apiFlags(cmd, f)
	src := fs.String("source", "", "source id (found from the event when omitted)")
	return fs, func(ctx context.Context, args []string) (*client.Client, string, error) {
		if len(args) != 1 {
			return nil, "", fmt.Errorf("usage: relay %s [--source SOURCE_ID] EVENT_ID", cmd.Name())
		}
		c, err := f.client()
		if err != nil {
			return nil, "", err
		}
		source := *src
		if source == "" {
			if source, err = findSource(ctx, c, args[0]); err != nil {
				return nil, "", err
			}
		}
		return c, "/sources/" + url.PathEscape(source) + "/events/" + url.PathEscape(args[0]), nil
	}
}

// findSource finds which source an event belongs to, for commands given only
// an event id: it asks each source in turn.
func findSource(ctx context.Context, c *client.Client, evt string) (string, error) {
	raw, err := c.ListAll(ctx, "/sources")
	if err != nil {
		return "", err
	}
	var sources struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.Unmarshal(raw, &sources); err != nil {
		return "", fmt.Errorf("decode sources: %w", err)
	}
	for _, s := range sources.Data {
		_, err := c.Do(ctx, "GET", "/sources/"+url.PathEscape(s.ID)+"/events/"+url.PathEscape(evt), nil, nil)
		var apiErr *client.Error
		switch {
		case err == nil:
			return s.ID, nil
		case errors.As(err, &apiErr) && apiErr.Status == 404:
		default:
			return "", err
		}
	}
	return "", fmt.Errorf("no source has event %s (events are kept for RELAY_EVENT_RETENTION); pass --source", evt)
}

// secretsFlags is relay secrets rewrap: step 3 of rotating RELAY_SECRET_KEY
// (docs/configuration.md). It fails unless the rewrap is complete, so that a
// script does not drop the previous key too early.
func (a *app) secretsFlags(cmd *cobra.Command) verbFunc {
	var f apiFlags
	a.apiFlags(cmd, &f)
	return func(ctx context.Context, _ string, _ []string) error {
		c, err := f.client()
		if err != nil {
			return err
		}
		// One call works for a bounded time; follow next_cursor to the end and
		// judge the whole walk.
		var total struct{ rewrapped, current, changed int }
		var undecryptable []string
		for cursor := ""; ; {
			var out struct {
				Rewrapped        int      `json:"rewrapped"`
				Current          int      `json:"current"`
				ChangedMeanwhile int      `json:"changed_meanwhile"`
				Undecryptable    []string `json:"undecryptable"`
				Next             string   `json:"next_cursor"`
			}
			raw, err := c.Do(ctx, "POST", "/secrets/rewrap?"+url.Values{"cursor": {cursor}}.Encode(), nil, &out)
			if err != nil {
				return err
			}
			if f.raw() {
				if err := a.printRaw(&f, raw); err != nil {
					return err
				}
			}
			total.rewrapped += out.Rewrapped
			total.current += out.Current
			total.changed += out.ChangedMeanwhile
			undecryptable = append(undecryptable, out.Undecryptable...)
			if out.Next == "" {
				break
			}
			if out.Next == cursor {
				return fmt.Errorf("the API answered cursor %q twice", cursor)
			}
			cursor = out.Next
		}
		if !f.raw() {
			fmt.Fprintf(a.out, "Rewrapped %d, already under the current key %d, changed meanwhile %d.\n", total.rewrapped, total.current, total.changed)
			for _, id := range undecryptable {
				fmt.Fprintf(a.out, "Undecryptable with either key: %s\n", id)
			}
		}
		if total.changed > 0 || len(undecryptable) > 0 {
			return errors.New("not complete: keep RELAY_SECRET_KEY_PREVIOUS, look into any undecryptable record, and run it again")
		}
		return nil
	}
}
