package cli

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
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/relayhq/relay/pkg/signature"
)

// sendFlags is relay send, which posts a webhook to a source, signed exactly
// as the provider would.
func (a *app) sendFlags(cmd *cobra.Command) runFunc {
	var f apiFlags
	fs := a.apiFlags(cmd, &f)
	src := fs.String("source", "", "source id (required)")
	secret := fs.String("secret", a.getenv("RELAY_SOURCE_SECRET"), "the source's signing secret (RELAY_SOURCE_SECRET)")
	scheme := fs.String("scheme", "relay", "how to sign: "+strings.Join(signature.Names(), ", "))
	typ := fs.String("type", "test.event", "event type (the body's \"type\"; X-GitHub-Event for github, X-Shopify-Topic for shopify; the inner event's type for slack, url_verification for its handshake)")
	data := fs.String("data", "", "the body: JSON, or @file; default a small event of --type")
	idem := fs.String("idempotency-key", "", "x-idempotency-key header")
	return func(ctx context.Context, args []string) error {
		if err := need("source", *src); err != nil {
			return err
		}
		if err := need("secret", *secret); err != nil {
			return err
		}
		s, ok := signature.Lookup(*scheme)
		if !ok {
			return fmt.Errorf("--scheme %q: want one of %s", *scheme, strings.Join(signature.Names(), ", "))
		}
		if _, ok := s.(signature.Configurable); ok {
			// Signed as the source is configured: its parameters are in its listing.
			var err error
			if s, err = a.sourceScheme(ctx, &f, *src, *scheme); err != nil {
				return err
			}
		}
		body, err := sendBody(*data, *scheme, *typ)
		if err != nil {
			return err
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimSuffix(f.api, "/")+"/in/"+url.PathEscape(*src), bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		switch *scheme {
		case "github":
			req.Header.Set(signature.HeaderGitHubEvent, *typ)
		case "shopify":
			req.Header.Set(signature.HeaderShopifyTopic, *typ)
		}
		if h, ok := s.(signature.HMAC); ok && h.TypeHeader != "" {
			req.Header.Set(h.TypeHeader, *typ)
		}
		if *idem != "" {
			req.Header.Set("X-Idempotency-Key", *idem)
		}
		if err := s.Sign(req.Header, body, *secret, time.Now()); err != nil {
			return fmt.Errorf("sign: %w", err)
		}
		resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
		if err != nil {
			return fmt.Errorf("cannot reach the Relay API at %s: %w", f.api, err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode >= 300 {
			fmt.Fprintf(a.errOut, "HTTP %d ", resp.StatusCode)
			_, _ = a.errOut.Write(append(raw, '\n'))
			return fmt.Errorf("the webhook was not accepted (HTTP %d)", resp.StatusCode)
		}
		if f.raw() {
			return a.printRaw(&f, raw)
		}
		var out struct {
			EventID   string  `json:"event_id"`
			Duplicate bool    `json:"duplicate"`
			Challenge *string `json:"challenge"`
		}
		_ = json.Unmarshal(raw, &out)
		if out.Challenge != nil {
			fmt.Fprintf(a.out, "Endpoint verification answered (HTTP %d) with challenge %q; nothing was stored.\n", resp.StatusCode, *out.Challenge)
			return nil
		}
		if out.Duplicate {
			fmt.Fprintf(a.out, "Duplicate of %s (HTTP %d): not delivered again.\n", out.EventID, resp.StatusCode)
			return nil
		}
		fmt.Fprintf(a.out, "Accepted %s (HTTP %d). Follow it: relay deliveries --source %s %s\n", out.EventID, resp.StatusCode, *src, out.EventID)
		return nil
	}
}

func sendBody(data, scheme, typ string) ([]byte, error) {
	switch {
	case strings.HasPrefix(data, "@"):
		b, err := os.ReadFile(strings.TrimPrefix(data, "@"))
		if err != nil {
			return nil, fmt.Errorf("--data: %w", err)
		}
		return b, nil
	case data != "":
		if !json.Valid([]byte(data)) {
			return nil, errors.New("--data is not valid JSON (use @file for other bodies)")
		}
		return []byte(data), nil
	}
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	if scheme == "slack" {
		return slackBody(typ, hex.EncodeToString(id))
	}
	ev := map[string]any{
		"id": "evt_" + hex.EncodeToString(id), "type": typ, "created": time.Now().Unix(),
		"data": map[string]any{"object": map[string]any{"amount": 4200, "currency": "eur"}},
	}
	if scheme == "github" {
		delete(ev, "type")
	}
	return json.Marshal(ev)
}

// slackBody is what Slack's Events API posts: the event (--type, as
// `type.subtype` for a subtype) inside the envelope every event arrives in;
// --type url_verification is the request Slack proves a Request URL with.
func slackBody(typ, id string) ([]byte, error) {
	if typ == "url_verification" {
		return json.Marshal(map[string]any{"token": "relay-send", "challenge": "challenge_" + id, "type": typ})
	}
	now := time.Now()
	ev := map[string]any{"type": typ, "user": "U0000000001", "text": "sent by relay send", "channel": "C0000000001",
		"ts": fmt.Sprintf("%d.000100", now.Unix()), "event_ts": fmt.Sprintf("%d.000100", now.Unix())}
	if t, sub, ok := strings.Cut(typ, "."); ok {
		ev["type"], ev["subtype"] = t, sub
	}
	return json.Marshal(map[string]any{
		"token": "relay-send", "team_id": "T0000000001", "api_app_id": "A0000000001", "event": ev,
		"type": "event_callback", "event_id": "Ev" + strings.ToUpper(id), "event_time": now.Unix(),
	})
}

// sourceScheme returns scheme as the source's verification parameters
// configure it.
func (a *app) sourceScheme(ctx context.Context, f *apiFlags, src, scheme string) (signature.Scheme, error) {
	c, err := f.client()
	if err != nil {
		return nil, fmt.Errorf("--scheme %s signs as the source is configured, read from the API: %w", scheme, err)
	}
	var out struct {
		Verification map[string]string `json:"verification"`
	}
	if _, err := c.Do(ctx, "GET", "/sources/"+url.PathEscape(src), nil, &out); err != nil {
		return nil, err
	}
	if out.Verification["scheme"] != scheme {
		return nil, fmt.Errorf("source %s verifies with %s, not %s", src, out.Verification["scheme"], scheme)
	}
	params := map[string]string{}
	for k, v := range out.Verification {
		if k != "scheme" && k != "tolerance" {
			params[k] = v
		}
	}
	return signature.ForSource(scheme, params)
}
