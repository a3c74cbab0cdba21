package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/chromedp"

	"github.com/relayhq/relay/pkg/testenv"
)

// chromium is the browser the console's tests drive: Debian's chromium,
// which scripts/install-deps.sh installs. Its absence fails the test rather
// than skipping it, since make test installs it.
func chromium(t *testing.T) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	t.Fatal("no chromium: run scripts/install-deps.sh (make test does)")
	return ""
}

// browser is a headless chromium tab, and a way to act in it that fails the
// test on error.
type browser struct {
	t   *testing.T
	ctx context.Context
}

func newBrowser(t *testing.T) *browser {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(chromium(t)), chromedp.NoSandbox, chromedp.DisableGPU, chromedp.WindowSize(1280, 900),
		chromedp.UserDataDir(t.TempDir()))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(alloc)
	ctx, cancelTimeout := context.WithTimeout(ctx, 5*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	// The browser lives as long as the context of its first action: start
	// it on the tab's own, not on a step's shorter one.
	if err := chromedp.Do(ctx); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return &browser{t: t, ctx: ctx}
}

func (b *browser) do(what string, steps ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(ctx, steps...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, 30*time.Second)
	defer cancel()
	s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("reading %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// count is how many elements match sel now, without waiting for one.
func (b *browser) count(sel string) int {
	b.t.Helper()
	nodes, err := chromedp.Run(b.ctx, chromedp.Nodes(chromedp.CSSAll(sel), chromedp.AtLeast(0)))
	if err != nil {
		b.t.Fatalf("counting %s: %v", sel, err)
	}
	return len(nodes)
}

// shoot saves a full-page screenshot as name.png in dir.
func (b *browser) shoot(dir, name string) {
	b.t.Helper()
	png, err := chromedp.Run(b.ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Fatalf("screenshot %s: %v", name, err)
	}
	if !bytes.HasPrefix(png, []byte("\x89PNG")) {
		b.t.Fatalf("screenshot %s is not a PNG", name)
	}
	if err := os.WriteFile(filepath.Join(dir, name+".png"), png, 0o644); err != nil {
		b.t.Fatal(err)
	}
}

// until reloads url until sel is on the page.
func (b *browser) until(url, sel, what string) {
	b.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		b.do("open "+url, chromedp.Navigate(url))
		if b.count(sel) > 0 {
			return
		}
		if time.Now().After(deadline) {
			b.t.Fatalf("timed out waiting for %s (%s on %s)", what, sel, url)
		}
		time.Sleep(300 * time.Millisecond)
	}
}

// cookie is the console's session cookie in the browser.
func (b *browser) cookie(base string) *network.Cookie {
	b.t.Helper()
	res, err := chromedp.Call(b.ctx, network.GetCookies, network.GetCookiesParams{URLs: []string{base + "/console/"}})
	if err != nil {
		b.t.Fatal(err)
	}
	for _, c := range res.Cookies {
		if c.Name == "relay_console" {
			return c
		}
	}
	b.t.Fatal("no console session cookie")
	return nil
}

// postForm posts a console form from outside the browser, as another site
// or a tampering client would.
func postForm(t *testing.T, u, cookie string, form url.Values, header map[string]string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if cookie != "" {
		req.AddCookie(&http.Cookie{Name: "relay_console", Value: cookie})
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	cl := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }, Timeout: 10 * time.Second}
	resp, err := cl.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	return resp.StatusCode, body.String()
}

// consoleShots is where the console test's screenshots go: docs/console
// when RELAY_CONSOLE_SCREENSHOTS names it (make screenshots), else a
// temporary directory.
func consoleShots(t *testing.T) string {
	if dir := os.Getenv("RELAY_CONSOLE_SCREENSHOTS"); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	return t.TempDir()
}

// TestConsoleInABrowser drives the console in headless chromium against the
// real stack: sign in with the keyboard, create a source and a
// subscription, see a webhook delivered, force a failure into the DLQ and
// redrive it, replay an event; a read key sees no write control and cannot
// POST; a stale CSRF token, another site's form and a forged cookie are
// refused; the pages fit a phone's width.
func TestConsoleInABrowser(t *testing.T) {
	e := startServices(t, services{deliver: true, count: true}, nil)
	shots := consoleShots(t)
	var mu sync.Mutex
	refusing := true
	rcv := newReceiver(t, func(r *http.Request, _ int) (int, http.Header) {
		var b struct {
			Order string `json:"order"`
		}
		_ = json.NewDecoder(r.Body).Decode(&b)
		mu.Lock()
		defer mu.Unlock()
		if refusing && b.Order == "refuse-me" {
			return 400, nil
		}
		return 200, nil
	})
	admin := e.createKey("on-call", "admin")
	reader := e.createKey("dashboard", "read")
	base := e.api
	b := newBrowser(t)

	// Sign in with the keyboard alone: the field has focus, Enter submits.
	b.do("sign in", chromedp.Navigate(base+"/console/sources"), chromedp.WaitVisible(chromedp.ID("key")),
		chromedp.SendKeys(chromedp.ID("key"), admin.Key+"\r"), chromedp.WaitVisible(chromedp.CSS("form.who")))
	if h := b.text("h1"); h != "Sources" {
		t.Fatalf("after sign-in the page is %q", h)
	}
	ck := b.cookie(base)
	if !ck.HTTPOnly || ck.SameSite != network.CookieSameSiteStrict || ck.Path != "/console" {
		t.Fatalf("session cookie %+v: want HttpOnly, SameSite=Strict, Path=/console", ck)
	}

	// A source, its secret shown once.
	b.do("create a source", chromedp.SendKeys(chromedp.ID("name"), "shop"),
		chromedp.Click(chromedp.Search(`//button[normalize-space()="Create source"]`)), chromedp.WaitVisible(chromedp.ID("secret")))
	srcID, secret := b.text("#object-id"), b.text("#secret")
	if !strings.HasPrefix(srcID, "src_") || secret == "" {
		t.Fatalf("created source %q with secret %q", srcID, secret)
	}
	b.shoot(shots, "secret")
	b.do("open the source", chromedp.Click(chromedp.ID("continue")), chromedp.WaitVisible(chromedp.ID("ingest-url")))
	if u := b.text("#ingest-url"); !strings.HasSuffix(u, "/in/"+srcID) {
		t.Fatalf("ingest URL %q", u)
	}
	var src source
	if code := e.call("GET", "/sources/"+srcID, nil, &src); code != 200 {
		t.Fatalf("the source made in the console: %d", code)
	}
	src.Secret = secret

	// A subscription to the receiver.
	b.do("create a subscription", chromedp.SendKeys(chromedp.ID("url"), rcv.URL+"/hook"),
		chromedp.Click(chromedp.Search(`//button[normalize-space()="Create subscription"]`)), chromedp.WaitVisible(chromedp.ID("secret")))
	subID := b.text("#object-id")
	b.do("open the subscription", chromedp.Click(chromedp.ID("continue")), chromedp.WaitVisible(chromedp.CSS("form.grid")))
	b.do("edit the subscription", chromedp.SendKeys(chromedp.ID("filter"), `type == "order.paid"`),
		chromedp.SendKeys(chromedp.ID("per_second"), "50"),
		chromedp.Click(chromedp.Search(`//button[normalize-space()="Save"]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	var saved struct {
		Filter    string `json:"filter"`
		RateLimit struct {
			PerSecond int `json:"per_second"`
		} `json:"rate_limit"`
	}
	if code := e.call("GET", "/sources/"+srcID+"/subscriptions/"+subID, nil, &saved); code != 200 || saved.Filter != `type == "order.paid"` || saved.RateLimit.PerSecond != 50 {
		t.Fatalf("the subscription saved from the console: %d %+v", code, saved)
	}
	b.shoot(shots, "subscription")
	time.Sleep(2500 * time.Millisecond) // deliver's subscription cache

	// A signed webhook through the API, seen delivered in the console.
	send := func(order string) string {
		t.Helper()
		code, r := e.send(src, "relay", []byte(`{"type":"order.paid","order":"`+order+`","amount":4200}`), nil)
		if code != 202 {
			t.Fatalf("send: %d", code)
		}
		return r.EventID
	}
	first := send("o-1")
	eventURL := base + "/console/sources/" + srcID + "/events/" + first
	b.until(eventURL, `[data-status="delivered"]`, "the webhook delivered")
	if body := b.text("pre.body"); !strings.Contains(body, `"order": "o-1"`) {
		t.Fatalf("the event's body shows as %q", body)
	}
	b.shoot(shots, "event")

	// A failure into the DLQ, redriven from the console.
	dead := send("refuse-me")
	b.until(base+"/console/dlq?subscription_id="+subID, `a[href$="/events/`+dead+`"]`, "the refused delivery in the DLQ")
	b.shoot(shots, "dlq")
	mu.Lock()
	refusing = false
	mu.Unlock()
	b.do("redrive", chromedp.Click(chromedp.Search(`//button[starts-with(normalize-space(), "Redrive")]`)), chromedp.WaitVisible(chromedp.CSS(".flash")))
	if f := b.text(".flash"); !strings.HasPrefix(f, "Redriven 1;") {
		t.Fatalf("after the redrive: %q", f)
	}
	b.until(base+"/console/sources/"+srcID+"/events/"+dead, `[data-status="delivered"]`, "the redriven delivery delivered")

	// A replay of a delivered event: the endpoint gets it again.
	before := len(rcv.requests())
	b.do("resend", chromedp.Navigate(eventURL), chromedp.Click(chromedp.Search(`//button[normalize-space()="Resend to all, delivered ones too"]`)),
		chromedp.WaitVisible(chromedp.CSS(".flash")))
	if f := b.text(".flash"); !strings.HasPrefix(f, "Queued for 1 subscription") {
		t.Fatalf("after the resend: %q", f)
	}
	testenv.Eventually(t, 20*time.Second, "the resent event at the endpoint", func() bool {
		for _, r := range rcv.requests()[before:] {
			if strings.Contains(string(r.Body), `"o-1"`) {
				return true
			}
		}
		return false
	})

	// The other pages.
	b.do("events", chromedp.Navigate(base+"/console/sources/"+srcID+"/events?type=order.paid"), chromedp.WaitVisible(chromedp.CSS("table")))
	if n := b.count(`a[href*="/events/evt_"]`); n != 2 {
		t.Fatalf("the events page lists %d events of order.paid, want 2", n)
	}
	b.shoot(shots, "events")
	b.do("metrics", chromedp.Navigate(base+"/console/sources/"+srcID+"/metrics"), chromedp.WaitVisible(chromedp.CSS("svg.chart")))
	b.until(base+"/console/sources/"+srcID+"/metrics", "svg.chart rect.c0", "the day's bar in the chart")
	b.shoot(shots, "metrics")
	b.do("health", chromedp.Navigate(base+"/console/health"), chromedp.WaitVisible(chromedp.ID("status")))
	if s := b.text("#status"); s != "ok" {
		t.Fatalf("health says %q", s)
	}
	b.shoot(shots, "health")
	b.do("sources", chromedp.Navigate(base+"/console/sources"), chromedp.WaitVisible(chromedp.CSS("table")))
	b.shoot(shots, "sources")

	// A phone's width: nothing wider than the screen.
	b.do("phone", chromedp.EmulateViewport(390, 844, chromedp.EmulateScale(2)), chromedp.Navigate(eventURL), chromedp.WaitVisible(chromedp.CSS("h1")))
	wide, err := chromedp.Run(b.ctx, chromedp.Evaluate[bool](`document.documentElement.scrollWidth > window.innerWidth`))
	if err != nil || wide {
		t.Fatalf("the event page is wider than a phone (%v)", err)
	}
	b.shoot(shots, "phone-event")
	b.do("desktop", chromedp.EmulateViewport(1280, 900))

	// Forms the session did not make are refused.
	csrf, err := chromedp.Run(b.ctx, chromedp.Value(chromedp.CSS(`form.who input[name="csrf"]`)))
	if err != nil || csrf == "" {
		t.Fatalf("the page's CSRF token: %q %v", csrf, err)
	}
	adminCookie := b.cookie(base).Value
	create := base + "/console/sources"
	if code, body := postForm(t, create, adminCookie, url.Values{"csrf": {"stale"}, "name": {"x"}, "scheme": {"relay"}}, nil); code != 403 || !strings.Contains(body, "CSRF") {
		t.Fatalf("a stale CSRF token: %d", code)
	}
	if code, _ := postForm(t, create, adminCookie, url.Values{"csrf": {csrf}, "name": {"x"}, "scheme": {"relay"}}, map[string]string{"Sec-Fetch-Site": "cross-site"}); code != 403 {
		t.Fatalf("another site's form: %d", code)
	}
	if code, _ := postForm(t, create, "forged-"+adminCookie[7:], url.Values{"csrf": {csrf}, "name": {"x"}, "scheme": {"relay"}}, nil); code != 401 {
		t.Fatalf("a forged cookie: %d", code)
	}
	if code, _ := postForm(t, create, adminCookie, url.Values{"csrf": {csrf}, "name": {"made-outside"}, "scheme": {"relay"}}, nil); code != 201 {
		t.Fatalf("the session's own form: %d", code)
	}

	// Sign out, then in with the read key: no write control, and its POSTs
	// are refused.
	b.do("sign out", chromedp.Click(chromedp.Search(`//button[normalize-space()="Sign out"]`)), chromedp.WaitVisible(chromedp.ID("key")))
	if code, _ := postForm(t, create, adminCookie, url.Values{"csrf": {csrf}, "name": {"x"}, "scheme": {"relay"}}, nil); code != 401 {
		t.Fatalf("a signed-out session: %d", code)
	}
	b.do("sign in as reader", chromedp.SendKeys(chromedp.ID("key"), reader.Key+"\r"), chromedp.WaitVisible(chromedp.CSS("form.who")))
	for _, page := range []string{"/console/sources", "/console/sources/" + srcID, "/console/sources/" + srcID + "/subscriptions/" + subID,
		"/console/sources/" + srcID + "/events/" + first, "/console/dlq"} {
		b.do("open "+page, chromedp.Navigate(base+page), chromedp.WaitVisible(chromedp.CSS("h1")))
		if n := b.count(`main form[method="post"]`); n != 0 {
			t.Errorf("%s shows a read key %d write controls", page, n)
		}
	}
	b.do("reader's source page", chromedp.Navigate(base+"/console/sources/"+srcID), chromedp.WaitVisible(chromedp.CSS("h1")))
	b.shoot(shots, "read-only-source")
	readerCookie := b.cookie(base).Value
	readerCSRF, _ := chromedp.Run(b.ctx, chromedp.Value(chromedp.CSS(`form.who input[name="csrf"]`)))
	for path, form := range map[string]url.Values{
		"/console/sources":                                           {"name": {"x"}, "scheme": {"relay"}},
		"/console/sources/" + srcID + "/rotate":                      {},
		"/console/sources/" + srcID + "/events/" + first + "/replay": {"force": {"true"}},
		"/console/dlq/redrive":                                       {},
	} {
		form.Set("csrf", readerCSRF)
		if code, body := postForm(t, base+path, readerCookie, form, nil); code != 403 || !strings.Contains(body, "read-only") {
			t.Errorf("POST %s with the read key: %d", path, code)
		}
	}
}

// TestConsoleOnItsOwnAddress: RELAY_CONSOLE_ADDR serves the console there,
// with its security headers, and not on the API's address.
func TestConsoleOnItsOwnAddress(t *testing.T) {
	e := startServices(t, services{}, map[string]string{"RELAY_CONSOLE_ADDR": "127.0.0.1:0"})
	addr := e.stack.Ingest.ConsoleAddr()
	if addr == "" || "http://"+addr == e.api {
		t.Fatalf("console at %q, API at %s", addr, e.api)
	}
	resp, err := http.Get("http://" + addr + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if csp := resp.Header.Get("Content-Security-Policy"); resp.StatusCode != 200 || !strings.Contains(csp, "default-src 'none'") ||
		resp.Header.Get("X-Frame-Options") != "DENY" {
		t.Fatalf("the console's sign-in page: %d, CSP %q", resp.StatusCode, csp)
	}
	resp, err = http.Get(e.api + "/console/login")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("the API's address serves /console/login: %d", resp.StatusCode)
	}
}
