// Package console is Relay's web console, served by ingest under /console:
// server-rendered pages (html/template, assets embedded) over the
// management API, which it calls in-process as the signed-in key, so that
// the console can do nothing the key could not do through the API.
//
// A session starts from an API key (or RELAY_ADMIN_TOKEN) and lives in
// Redis; its cookie is HttpOnly, SameSite=Strict and Secure behind HTTPS.
// Every form carries the session's CSRF token, cross-origin POSTs are
// refused besides, and pages run no script under a strict
// Content-Security-Policy.
package console

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/services/ingest/internal/keys"
)

//go:embed templates/*.html static/*
var assets embed.FS

// Path is where the console is served.
const Path = "/console"

const cookieName = "relay_console"

// maxForm bounds a form's body: the largest field is a subscription's filter
// (4 KiB).
const maxForm = 64 << 10

// Config is the console's share of ingest's configuration.
type Config struct {
	// AdminToken and PreviousAdminToken sign in as an unrestricted admin.
	AdminToken, PreviousAdminToken string
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration
	// SecureCookies marks the cookie Secure even on a plain-HTTP request
	// (a TLS-terminating load balancer that sends no X-Forwarded-Proto).
	SecureCookies bool
}

// Deps are what the console works with.
type Deps struct {
	// API is the management API, called in-process.
	API    http.Handler
	Keys   *keys.Store
	Redis  redis.UniversalClient
	Logger *slog.Logger
}

// Console serves the console's pages.
type Console struct {
	cfg      Config
	api      http.Handler
	keys     *keys.Store
	sessions *sessions
	log      *slog.Logger
	pages    map[string]*template.Template
	mux      *http.ServeMux
}

// New returns the console.
func New(cfg Config, d Deps) (*Console, error) {
	if cfg.SessionTTL <= 0 {
		cfg.SessionTTL = 12 * time.Hour
	}
	c := &Console{
		cfg: cfg, api: d.API, keys: d.Keys, log: d.Logger,
		sessions: &sessions{rdb: d.Redis, ttl: cfg.SessionTTL},
		pages:    map[string]*template.Template{},
	}
	names, err := fs.Glob(assets, "templates/*.html")
	if err != nil {
		return nil, err
	}
	for _, name := range names {
		base := strings.TrimSuffix(strings.TrimPrefix(name, "templates/"), ".html")
		if base == "layout" || base == "partials" {
			continue
		}
		t, err := template.New(base).Funcs(funcs).ParseFS(assets, "templates/layout.html", "templates/partials.html", name)
		if err != nil {
			return nil, fmt.Errorf("console template %s: %w", name, err)
		}
		c.pages[base] = t
	}
	c.routes()
	return c, nil
}

// ServeHTTP serves the console, with its security headers on every answer
// and cross-origin state changes refused.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, Path+"/static/") {
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

// crossOrigin refuses a state-changing request another site's page made
// (Sec-Fetch-Site, or else Origin against Host): a second line behind the
// CSRF token.
var crossOrigin = http.NewCrossOriginProtection()

func (c *Console) routes() {
	m := http.NewServeMux()
	static, _ := fs.Sub(assets, "static")
	m.Handle("GET "+Path+"/static/", http.StripPrefix(Path+"/static/", http.FileServerFS(static)))
	m.HandleFunc("GET "+Path+"/login", c.loginPage)
	m.Handle("POST "+Path+"/login", crossOrigin.Handler(http.HandlerFunc(c.login)))
	m.HandleFunc("GET "+Path, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Path+"/sources", http.StatusSeeOther)
	})
	m.HandleFunc("GET "+Path+"/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Path+"/sources", http.StatusSeeOther)
	})
	get := func(pattern string, h handler) { m.Handle("GET "+Path+pattern, c.signedIn(h, false)) }
	post := func(pattern string, h handler) {
		m.Handle("POST "+Path+pattern, crossOrigin.Handler(c.signedIn(h, true)))
	}
	post("/logout", c.logout)
	get("/sources", c.sourcesPage)
	post("/sources", c.createSource)
	get("/sources/{src}", c.sourcePage)
	post("/sources/{src}/rotate", c.rotateSource)
	post("/sources/{src}/subscriptions", c.createSubscription)
	get("/sources/{src}/subscriptions/{sub}", c.subscriptionPage)
	post("/sources/{src}/subscriptions/{sub}", c.updateSubscription)
	post("/sources/{src}/subscriptions/{sub}/enabled", c.toggleSubscription)
	post("/sources/{src}/subscriptions/{sub}/rotate", c.rotateSubscription)
	get("/sources/{src}/events", c.eventsPage)
	get("/sources/{src}/events/{evt}", c.eventPage)
	post("/sources/{src}/events/{evt}/replay", c.replayEvent)
	get("/sources/{src}/metrics", c.metricsPage)
	get("/dlq", c.dlqPage)
	post("/dlq/redrive", c.redrive)
	get("/health", c.healthPage)
	m.HandleFunc(Path+"/", func(w http.ResponseWriter, r *http.Request) {
		c.render(w, r, http.StatusNotFound, "error", &view{Title: "Not found", Error: "No such page: " + r.URL.Path})
	})
	c.mux = m
}

// req is a signed-in request.
type req struct {
	*http.Request
	p       keys.Principal
	sess    session
	cookie  string
	display string // who is signed in, for the header
}

type handler func(w http.ResponseWriter, r *req)

// signedIn runs h for a request with a live session, whose principal it
// resolves anew each time (a revoked key, a rotated admin token end it);
// a form must carry the session's CSRF token. A page without a session
// goes to the sign-in page; a POST without one, or with a wrong token, is
// refused.
func (c *Console) signedIn(h handler, form bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cookie := ""
		if ck, err := r.Cookie(cookieName); err == nil {
			cookie = ck.Value
		}
		sess, err := c.sessions.get(r.Context(), cookie)
		var p keys.Principal
		display := ""
		if err == nil {
			p, display, err = c.principal(r.Context(), sess)
		}
		switch {
		case errors.Is(err, errNoSession) && !form:
			http.Redirect(w, r, Path+"/login?next="+url.QueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		case errors.Is(err, errNoSession):
			c.render(w, r, http.StatusUnauthorized, "error", &view{Title: "Signed out", Error: "Your session has ended or was never valid. Sign in again."})
			return
		case err != nil:
			c.unavailable(w, r, err)
			return
		}
		if form {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil {
				c.render(w, r, http.StatusBadRequest, "error", &view{Title: "Bad form", Error: "The form could not be read."})
				return
			}
			if subtle.ConstantTimeCompare([]byte(r.PostForm.Get("csrf")), []byte(sess.CSRF)) != 1 {
				c.log.WarnContext(r.Context(), "console form refused: wrong csrf token", "path", r.URL.Path, "remote", r.RemoteAddr)
				c.render(w, r, http.StatusForbidden, "error", &view{Title: "Refused", Error: "This form is stale or did not come from this console (CSRF token). Reload the page and try again."})
				return
			}
		}
		h(w, &req{Request: r, p: p, sess: sess, cookie: cookie, display: display})
	})
}

// principal is who a session acts as now.
func (c *Console) principal(ctx context.Context, s session) (keys.Principal, string, error) {
	if s.KeyID == "" {
		for _, t := range []string{c.cfg.AdminToken, c.cfg.PreviousAdminToken} {
			if t != "" && subtle.ConstantTimeCompare([]byte(fingerprint(t)), []byte(s.Admin)) == 1 {
				return keys.Principal{Scope: keys.Admin}, "admin token", nil
			}
		}
		return keys.Principal{}, "", errNoSession
	}
	k, err := c.keys.Get(ctx, s.KeyID)
	if errors.Is(err, keys.ErrNotFound) {
		return keys.Principal{}, "", errNoSession
	}
	if err != nil {
		return keys.Principal{}, "", err
	}
	return k.Principal(), k.Name + " (" + string(k.Scope) + ")", nil
}

func fingerprint(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// view is what every page's template gets.
type view struct {
	Title string
	// Nav is the section the page belongs to.
	Nav string
	// Who is signed in; empty on the sign-in page.
	Who      string
	CanWrite bool
	Admin    bool
	CSRF     string
	Flash    string
	Error    string
	Data     any
}

func (c *Console) render(w http.ResponseWriter, r *http.Request, status int, page string, v *view) {
	var buf bytes.Buffer
	if err := c.pages[page].ExecuteTemplate(&buf, "layout", v); err != nil {
		c.log.ErrorContext(r.Context(), "console page failed to render", "page", page, "error", err)
		http.Error(w, "the page failed to render; see the ingest log", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// show renders a signed-in page, with the session's pending message.
func (c *Console) show(w http.ResponseWriter, r *req, status int, page, title, nav string, data any) {
	flash, err := c.sessions.takeFlash(r.Context(), r.cookie)
	if err != nil {
		c.log.WarnContext(r.Context(), "console flash unreadable", "error", err)
	}
	c.render(w, r.Request, status, page, &view{
		Title: title, Nav: nav, Who: r.display, CanWrite: r.p.CanWrite(), Admin: r.p.Scope == keys.Admin,
		CSRF: r.sess.CSRF, Flash: flash, Data: data,
	})
}

// done ends a form's work: a message for the next page, and there.
func (c *Console) done(w http.ResponseWriter, r *req, msg, to string) {
	if err := c.sessions.flash(r.Context(), r.cookie, msg); err != nil {
		c.log.WarnContext(r.Context(), "console flash not kept", "error", err)
	}
	http.Redirect(w, r.Request, to, http.StatusSeeOther)
}

// apiError is an error answer of the management API.
type apiError struct {
	Status  int
	Code    string
	Message string
}

func (e *apiError) Error() string { return fmt.Sprintf("%d %s: %s", e.Status, e.Code, e.Message) }

// call makes a management API call in-process as the session's principal
// and decodes its JSON answer into out; an error answer is an *apiError.
func (c *Console) call(r *req, method, path string, body, out any) error {
	var rd io.Reader = http.NoBody
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	ctx, cancel := context.WithTimeout(keys.WithPrincipal(r.Context(), r.p), 30*time.Second)
	defer cancel()
	in, err := http.NewRequestWithContext(ctx, method, path, rd)
	if err != nil {
		return err
	}
	in.Header.Set("Content-Type", "application/json")
	in.RemoteAddr = r.RemoteAddr
	rec := &recorder{header: http.Header{}, status: http.StatusOK}
	c.api.ServeHTTP(rec, in)
	if rec.status >= 400 {
		var e struct {
			Error struct {
				Code    string `json:"code"`
				Message string `json:"message"`
			} `json:"error"`
		}
		_ = json.Unmarshal(rec.body.Bytes(), &e)
		return &apiError{Status: rec.status, Code: e.Error.Code, Message: e.Error.Message}
	}
	if out != nil && rec.body.Len() > 0 {
		if err := json.Unmarshal(rec.body.Bytes(), out); err != nil {
			return fmt.Errorf("%s %s answered what does not decode: %w", method, path, err)
		}
	}
	return nil
}

// recorder is the response of an in-process API call.
type recorder struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func (w *recorder) Header() http.Header         { return w.header }
func (w *recorder) Write(b []byte) (int, error) { return w.body.Write(b) }
func (w *recorder) WriteHeader(status int)      { w.status = status }

// failed shows what an API call answered, with its status: a page the key
// may not see is a 403, a missing one a 404.
func (c *Console) failed(w http.ResponseWriter, r *req, err error) {
	var ae *apiError
	if !errors.As(err, &ae) {
		c.unavailable(w, r.Request, err)
		return
	}
	title := http.StatusText(ae.Status)
	c.render(w, r.Request, ae.Status, "error", &view{Title: title, Who: r.display, CanWrite: r.p.CanWrite(), Admin: r.p.Scope == keys.Admin, CSRF: r.sess.CSRF, Error: ae.Message})
}

func (c *Console) unavailable(w http.ResponseWriter, r *http.Request, err error) {
	c.log.ErrorContext(r.Context(), "console request failed", "path", r.URL.Path, "error", err)
	msg := "Something failed; the ingest log says what."
	if redisconn.IsUnavailable(err) {
		msg = "Redis is unavailable; retry shortly."
	}
	w.Header().Set("Retry-After", "5")
	c.render(w, r, http.StatusServiceUnavailable, "error", &view{Title: "Unavailable", Error: msg})
}

// secure reports whether the session cookie must be Secure: behind HTTPS,
// directly or through a load balancer that says so.
func (c *Console) secure(r *http.Request) bool {
	return c.cfg.SecureCookies || r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: value, Path: Path, MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: c.secure(r),
	})
}

func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	c.render(w, r, http.StatusOK, "login", &view{Title: "Sign in", Data: map[string]string{"Next": safeNext(r.URL.Query().Get("next"))}})
}

// safeNext is where to go after signing in: a console page, never another
// site.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Path+"/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Path + "/sources"
	}
	return next
}

// login signs in with an API key or the admin token. The answer says only
// that the key did not sign in, never why.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		c.render(w, r, http.StatusBadRequest, "login", &view{Title: "Sign in", Error: "The form could not be read."})
		return
	}
	token := strings.TrimSpace(r.PostForm.Get("key"))
	next := safeNext(r.PostForm.Get("next"))
	sess := session{CSRF: random(32)}
	admin := false
	for _, t := range []string{c.cfg.AdminToken, c.cfg.PreviousAdminToken} {
		if t != "" && subtle.ConstantTimeCompare([]byte(token), []byte(t)) == 1 {
			admin = true
		}
	}
	switch {
	case admin:
		sess.Admin = fingerprint(token)
	default:
		k, err := c.keys.Verify(r.Context(), token)
		if errors.Is(err, keys.ErrUnknown) {
			c.log.InfoContext(r.Context(), "console sign-in refused", "remote", r.RemoteAddr)
			c.render(w, r, http.StatusUnauthorized, "login", &view{Title: "Sign in", Error: "That key does not sign in: it is wrong, or revoked.", Data: map[string]string{"Next": next}})
			return
		}
		if err != nil {
			c.unavailable(w, r, err)
			return
		}
		sess.KeyID = k.ID
	}
	cookie, err := c.sessions.create(r.Context(), sess)
	if err != nil {
		c.unavailable(w, r, err)
		return
	}
	c.setCookie(w, r, cookie, int(c.cfg.SessionTTL.Seconds()))
	c.log.InfoContext(r.Context(), "console sign-in", "key_id", sess.KeyID, "admin_token", admin, "remote", r.RemoteAddr)
	http.Redirect(w, r, next, http.StatusSeeOther)
}

func (c *Console) logout(w http.ResponseWriter, r *req) {
	if err := c.sessions.end(r.Context(), r.cookie); err != nil {
		c.unavailable(w, r.Request, err)
		return
	}
	c.setCookie(w, r.Request, "", -1)
	http.Redirect(w, r.Request, Path+"/login", http.StatusSeeOther)
}
