// Package receiver is the demo webhook receiver of `relay dev`, `relay
// receiver` and the compose stack. It answers according to the query string,
// so one receiver plays every kind of endpoint:
//
//	?mode=ok      2xx (the default)
//	?mode=fail    500 every time
//	?mode=flaky   500 on the first attempt of each webhook-id, then 200
//	?status=N     answer with status N
//	?delay=D      wait D (a Go duration, at most 60s) before answering
//
// With a secret it verifies each request's Standard Webhooks signature and
// answers 401 to a bad one. GET /_stats reports what it received.
package receiver

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/relayhq/relay/pkg/signature"
)

// maxTracked bounds the per-webhook-id bookkeeping.
const maxTracked = 100000

// Receiver is an http.Handler.
type Receiver struct {
	secrets []string
	log     *slog.Logger

	mu       sync.Mutex
	seen     map[string]int // by webhook-id and URL
	attempts map[string]int // by webhook-id
	total    int
	byStatus map[int]int
}

// New returns a receiver verifying with secrets (none: no verification).
func New(log *slog.Logger, secrets ...string) *Receiver {
	return &Receiver{secrets: secrets, log: log, seen: map[string]int{}, attempts: map[string]int{}, byStatus: map[int]int{}}
}

// Stats is the body of GET /_stats.
type Stats struct {
	Requests int            `json:"requests"`
	ByStatus map[string]int `json:"by_status"`
	// ByWebhookID counts the requests received per webhook-id.
	ByWebhookID map[string]int `json:"by_webhook_id"`
}

func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/_stats" {
		rc.stats(w)
		return
	}
	if r.Method != http.MethodPost {
		http.Error(w, "POST webhooks here; GET /_stats for what arrived", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 4<<20))
	if err != nil {
		http.Error(w, "unreadable body", http.StatusBadRequest)
		return
	}
	id := r.Header.Get(signature.HeaderWebhookID)
	q := r.URL.Query()
	mode := q.Get("mode")
	if mode == "" {
		mode = "ok"
	}

	// Attempts are counted per webhook-id and URL, so the same event sent to
	// ?mode=flaky and ?mode=fail is flaky and failing on its own.
	key := id + " " + r.URL.RequestURI()
	rc.mu.Lock()
	if _, ok := rc.seen[key]; !ok && len(rc.seen) >= maxTracked {
		rc.seen = map[string]int{}
		rc.attempts = map[string]int{}
	}
	rc.seen[key]++
	rc.attempts[id]++
	seen := rc.seen[key]
	rc.mu.Unlock()

	status := http.StatusOK
	verified := "not checked (no --secret)"
	if len(rc.secrets) > 0 {
		if err := (signature.StandardWebhooks{}).Verify(signature.Request{Header: r.Header, Body: body}, rc.secrets, time.Now(), 0); err != nil {
			status, verified = http.StatusUnauthorized, "invalid: "+err.Error()
		} else {
			verified = "valid"
		}
	}
	if status == http.StatusOK {
		switch mode {
		case "fail":
			status = http.StatusInternalServerError
		case "flaky":
			if seen == 1 {
				status = http.StatusInternalServerError
			}
		}
		if s, err := strconv.Atoi(q.Get("status")); err == nil && s >= 200 && s <= 599 {
			status = s
		}
	}
	if d, err := time.ParseDuration(q.Get("delay")); err == nil && d > 0 {
		select {
		case <-time.After(min(d, time.Minute)):
		case <-r.Context().Done():
			return
		}
	}
	rc.mu.Lock()
	rc.total++
	rc.byStatus[status]++
	rc.mu.Unlock()

	snippet := string(body)
	if len(snippet) > 200 {
		snippet = snippet[:200] + "…"
	}
	rc.log.Info("webhook received",
		"webhook_id", id, "event_type", r.Header.Get("X-Relay-Event-Type"),
		"attempt", r.Header.Get("X-Relay-Attempt"), "mode", mode, "answer", status,
		"signature", verified, "body", snippet)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = io.WriteString(w, `{"received":true,"status":`+strconv.Itoa(status)+`}`)
}

func (rc *Receiver) stats(w http.ResponseWriter) {
	rc.mu.Lock()
	s := Stats{Requests: rc.total, ByStatus: map[string]int{}, ByWebhookID: make(map[string]int, len(rc.attempts))}
	for k, v := range rc.byStatus {
		s.ByStatus[strconv.Itoa(k)] = v
	}
	for k, v := range rc.attempts {
		s.ByWebhookID[k] = v
	}
	rc.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s)
}
