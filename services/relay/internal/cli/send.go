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

	"github.com/relayhq/relay/pkg/signature"
)

// runSend posts a webhook to a source, signed exactly as the provider would.
func runSend(ctx context.Context, a *app, args []string) error {
	var f apiFlags
	fs := a.apiFlagSet("send", &f)
	src := fs.String("source", "", "source id (required)")
	secret := fs.String("secret", a.getenv("RELAY_SOURCE_SECRET"), "the source's signing secret (RELAY_SOURCE_SECRET)")
	scheme := fs.String("scheme", "relay", "how to sign: "+strings.Join(signature.Names(), ", "))
	typ := fs.String("type", "test.event", "event type (the body's \"type\"; X-GitHub-Event for github, X-Shopify-Topic for shopify)")
	data := fs.String("data", "", "the body: JSON, or @file; default a small event of --type")
	idem := fs.String("idempotency-key", "", "x-idempotency-key header")
	if _, err := parse(fs, args); err != nil {
		return err
	}
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
		EventID   string `json:"event_id"`
		Duplicate bool   `json:"duplicate"`
	}
	_ = json.Unmarshal(raw, &out)
	if out.Duplicate {
		fmt.Fprintf(a.out, "Duplicate of %s (HTTP %d): not delivered again.\n", out.EventID, resp.StatusCode)
		return nil
	}
	fmt.Fprintf(a.out, "Accepted %s (HTTP %d). Follow it: relay deliveries --source %s %s\n", out.EventID, resp.StatusCode, *src, out.EventID)
	return nil
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
	ev := map[string]any{
		"id": "evt_" + hex.EncodeToString(id), "type": typ, "created": time.Now().Unix(),
		"data": map[string]any{"object": map[string]any{"amount": 4200, "currency": "eur"}},
	}
	if scheme == "github" {
		delete(ev, "type")
	}
	return json.Marshal(ev)
}
