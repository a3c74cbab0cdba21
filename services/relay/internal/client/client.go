// Package client is the `relay` CLI's client of the ingest HTTP API.
package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
	"unicode/utf8"
)

// Client calls one Relay API.
type Client struct {
	Base  string
	Token string
	HTTP  *http.Client
}

// New returns a client of the API at base, authenticated with token.
func New(base, token string) *Client {
	return &Client{Base: strings.TrimSuffix(base, "/"), Token: token, HTTP: &http.Client{Timeout: 60 * time.Second}}
}

// Error is an error answer of the API.
type Error struct {
	Status  int
	Code    string `json:"code"`
	Message string `json:"message"`
	// Body is the start of an answer that is not the API's JSON error (a
	// load balancer's or proxy's page, say), shown as it came.
	Body string `json:"-"`
}

func (e *Error) Error() string {
	switch {
	case e.Code != "":
		return fmt.Sprintf("%s (HTTP %d): %s", e.Code, e.Status, e.Message)
	case e.Body != "":
		return fmt.Sprintf("HTTP %d, not from the Relay API (a proxy in between?): %s", e.Status, e.Body)
	}
	return fmt.Sprintf("HTTP %d", e.Status)
}

// snippet is the start of a foreign answer on one line.
func snippet(raw []byte) string {
	const limit = 200
	s := strings.Join(strings.Fields(strings.ToValidUTF8(string(raw), "?")), " ")
	if len(s) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut] + "…"
	}
	return s
}

// Do sends a request with a JSON body (nil for none) and decodes a JSON
// answer into out (nil to discard it). It returns the raw answer too.
func (c *Client) Do(ctx context.Context, method, path string, body, out any) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, fmt.Errorf("encode request: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.Base+path, rd)
	if err != nil {
		return nil, fmt.Errorf("request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("cannot reach the Relay API at %s (is `make dev` running? set RELAY_API or --api): %w", c.Base, err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("read answer: %w", err)
	}
	if resp.StatusCode >= 400 {
		var e struct {
			Error Error `json:"error"`
		}
		if json.Unmarshal(raw, &e) != nil || e.Error.Code == "" {
			e.Error = Error{Body: snippet(raw)}
		}
		e.Error.Status = resp.StatusCode
		if resp.StatusCode == http.StatusUnauthorized && e.Error.Code == "unauthorized" {
			e.Error.Message += " (set RELAY_API_KEY or RELAY_ADMIN_TOKEN, or --token, to a key or the token `relay dev` printed)"
		}
		return raw, &e.Error
	}
	if out != nil && len(raw) > 0 {
		if err := json.Unmarshal(raw, out); err != nil {
			return raw, fmt.Errorf("decode answer: %w", err)
		}
	}
	return raw, nil
}

// ListAll reads every page of a listing route and returns them as one
// answer, {"data": [...]}, so that a listing longer than a page is never cut
// short. path may carry filters of its own.
func (c *Client) ListAll(ctx context.Context, path string) ([]byte, error) {
	sep := "?"
	if strings.Contains(path, "?") {
		sep = "&"
	}
	items := []json.RawMessage{}
	for cursor := ""; ; {
		var page struct {
			Data []json.RawMessage `json:"data"`
			Next string            `json:"next_cursor"`
		}
		if _, err := c.Do(ctx, http.MethodGet, path+sep+"limit=500&cursor="+url.QueryEscape(cursor), nil, &page); err != nil {
			return nil, err
		}
		items = append(items, page.Data...)
		if page.Next == "" {
			break
		}
		if page.Next == cursor {
			return nil, fmt.Errorf("listing %s: the API answered the same cursor twice", path)
		}
		cursor = page.Next
	}
	return json.Marshal(struct {
		Data []json.RawMessage `json:"data"`
	}{items})
}
