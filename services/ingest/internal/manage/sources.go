package manage

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/ordering"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/pkg/redisconn"
	"github.com/relayhq/relay/pkg/signature"
	"github.com/relayhq/relay/services/ingest/internal/keys"
	"github.com/relayhq/relay/services/ingest/internal/rest"
)

type verificationJSON struct {
	Scheme    string `json:"scheme"`
	Tolerance string `json:"tolerance,omitempty"`
	schemeParamsJSON
}

// schemeParamsJSON are the verification fields of a scheme that takes
// parameters (hmac): in requests, absent or null is "not given".
type schemeParamsJSON struct {
	Header     *string `json:"header,omitempty"`
	Algorithm  *string `json:"algorithm,omitempty"`
	Encoding   *string `json:"encoding,omitempty"`
	Prefix     *string `json:"prefix,omitempty"`
	IDHeader   *string `json:"id_header,omitempty"`
	TypeHeader *string `json:"type_header,omitempty"`
}

func (p *schemeParamsJSON) fields() map[string]**string {
	return map[string]**string{
		signature.ParamHeader: &p.Header, signature.ParamAlgorithm: &p.Algorithm, signature.ParamEncoding: &p.Encoding,
		signature.ParamPrefix: &p.Prefix, signature.ParamIDHeader: &p.IDHeader, signature.ParamTypeHeader: &p.TypeHeader,
	}
}

// mergeInto sets in params every parameter given.
func (p schemeParamsJSON) mergeInto(params map[string]string) {
	for k, f := range p.fields() {
		if *f != nil {
			params[k] = **f
		}
	}
}

func paramsOut(params map[string]string) schemeParamsJSON {
	var p schemeParamsJSON
	for k, f := range p.fields() {
		if v, ok := params[k]; ok {
			*f = &v
		}
	}
	return p
}

// configureScheme returns the scheme called name as params configure it and
// the parameters to store, answering 400 naming the field when they do not
// fit it.
func configureScheme(c *gin.Context, name string, params map[string]string) (signature.Scheme, map[string]string, bool) {
	if _, ok := signature.Lookup(name); !ok {
		rest.Invalid(c, "verification.scheme", "must be one of "+strings.Join(signature.Names(), ", "))
		return nil, nil, false
	}
	s, err := signature.ForSource(name, params)
	if err != nil {
		field, msg, _ := strings.Cut(err.Error(), ": ")
		rest.Invalid(c, "verification."+field, msg)
		return nil, nil, false
	}
	var stored map[string]string
	if cf, ok := s.(signature.Configurable); ok {
		stored = cf.Params()
	}
	return s, stored, true
}

type sourceJSON struct {
	ID                      string           `json:"id"`
	Name                    string           `json:"name"`
	Verification            verificationJSON `json:"verification"`
	DedupWindow             string           `json:"dedup_window"`
	IngestURL               string           `json:"ingest_url"`
	CreatedAt               time.Time        `json:"created_at"`
	PreviousSecretExpiresAt *time.Time       `json:"previous_secret_expires_at,omitempty"`
	ForwardHeaders          []string         `json:"forward_headers"`
	AllowedIPs              []string         `json:"allowed_ips"`
	OrderingKey             *ordering.Spec   `json:"ordering_key,omitempty"`
	// Secret is set only in the responses that create or rotate it.
	Secret string `json:"secret,omitempty"`
}

func (a *API) sourceOut(s catalog.Source) sourceJSON {
	out := sourceJSON{
		ID: s.ID, Name: s.Name,
		Verification:   verificationJSON{Scheme: s.Scheme, schemeParamsJSON: paramsOut(s.SchemeParams)},
		DedupWindow:    rest.FormatDuration(s.DedupWindow),
		IngestURL:      strings.TrimSuffix(a.cfg.PublicURL, "/") + "/in/" + s.ID,
		CreatedAt:      s.CreatedAt.UTC(),
		ForwardHeaders: append([]string{}, s.ForwardHeaders...),
		AllowedIPs:     append([]string{}, s.AllowedIPs...),
	}
	if !s.OrderingKey.IsZero() {
		out.OrderingKey = &s.OrderingKey
	}
	if scheme, ok := signature.Lookup(s.Scheme); ok && signature.Timestamped(scheme) {
		out.Verification.Tolerance = rest.FormatDuration(s.Tolerance)
	}
	if !s.PreviousSecretExpiresAt.IsZero() && a.now().Before(s.PreviousSecretExpiresAt) {
		t := s.PreviousSecretExpiresAt.UTC()
		out.PreviousSecretExpiresAt = &t
	}
	return out
}

type createSourceRequest struct {
	Name         string `json:"name"`
	Verification *struct {
		Scheme    string `json:"scheme"`
		Secret    string `json:"secret"`
		Tolerance string `json:"tolerance"`
		schemeParamsJSON
	} `json:"verification"`
	DedupWindow    string         `json:"dedup_window"`
	ForwardHeaders []string       `json:"forward_headers"`
	AllowedIPs     []string       `json:"allowed_ips"`
	OrderingKey    *ordering.Spec `json:"ordering_key"`
}

func (a *API) createSource(c *gin.Context) {
	var req createSourceRequest
	if !rest.BindJSON(c, &req, false) {
		return
	}
	name, ok := sourceName(c, req.Name)
	if !ok {
		return
	}
	// An absent duration takes its default; one given, even 0s, must be in range.
	schemeName, secret, tol := "relay", "", signature.DefaultTolerance
	params := map[string]string{}
	if v := req.Verification; v != nil {
		if v.Scheme != "" {
			schemeName = v.Scheme
		}
		secret = v.Secret
		if v.Tolerance != "" {
			if tol, ok = rest.DurationField(c, "verification.tolerance", v.Tolerance); !ok {
				return
			}
		}
		v.mergeInto(params)
	}
	scheme, stored, ok := configureScheme(c, schemeName, params)
	if !ok {
		return
	}
	if secret, ok = secretFor(c, scheme, secret, "verification.secret"); !ok {
		return
	}
	if !toleranceInRange(c, tol) {
		return
	}
	window := a.cfg.DefaultDedupWindow
	if req.DedupWindow != "" {
		if window, ok = rest.DurationField(c, "dedup_window", req.DedupWindow); !ok {
			return
		}
	}
	if !windowInRange(c, window) || !windowCoversTolerance(c, scheme, window, tol) {
		return
	}
	forward, ok := checkForwardHeaders(c, req.ForwardHeaders)
	if !ok {
		return
	}
	allowed, ok := checkAllowedIPs(c, req.AllowedIPs)
	if !ok {
		return
	}
	src := catalog.Source{
		ID: ids.New(ids.Source), Name: name, Scheme: scheme.Name(),
		Tolerance: tol, DedupWindow: window, CreatedAt: a.now().Truncate(time.Millisecond),
		ForwardHeaders: forward, SchemeParams: stored, AllowedIPs: allowed,
	}
	if req.OrderingKey != nil {
		if err := req.OrderingKey.Validate(); err != nil {
			rest.Fail(c, http.StatusBadRequest, "invalid_field", err.Error()) // it names the field
			return
		}
		src.OrderingKey = *req.OrderingKey
	}
	if err := a.catalog.CreateSource(c.Request.Context(), src, secret); err != nil {
		a.storeError(c, "creating the source", err)
		return
	}
	out := a.sourceOut(src)
	out.Secret = secret
	c.JSON(http.StatusCreated, out)
}

// sourceName trims a source's name and answers 400 unless it is 1 to 200
// bytes of UTF-8.
func sourceName(c *gin.Context, v string) (string, bool) {
	v = strings.TrimSpace(v)
	if v == "" || len(v) > 200 || !utf8.ValidString(v) {
		rest.Invalid(c, "name", "is required, at most 200 bytes of UTF-8")
		return "", false
	}
	return v, true
}

func toleranceInRange(c *gin.Context, tol time.Duration) bool {
	if tol < time.Second || tol > time.Hour {
		rest.Invalid(c, "verification.tolerance", "must be from 1s to 1h")
		return false
	}
	return true
}

// windowCoversTolerance answers 400 unless a source of a timestamped scheme
// remembers its dedup keys at least as long as it accepts a request's
// timestamp: a request replayed within the tolerance after its key expired
// would be accepted as a new event.
func windowCoversTolerance(c *gin.Context, scheme signature.Scheme, window, tol time.Duration) bool {
	if !signature.Timestamped(scheme) || window >= tol {
		return true
	}
	rest.Invalid(c, "dedup_window", fmt.Sprintf("is %s, shorter than verification.tolerance (%s): a request replayed within the tolerance after its dedup key expired would be accepted again; make dedup_window at least the tolerance, or the tolerance shorter",
		rest.FormatDuration(window), rest.FormatDuration(tol)))
	return false
}

func windowInRange(c *gin.Context, window time.Duration) bool {
	if window < time.Minute || window > 30*24*time.Hour {
		rest.Invalid(c, "dedup_window", "must be from 1m to 720h")
		return false
	}
	return true
}

// notForwarded are credentials meant for Relay's endpoint: a subscriber
// authenticates Relay by its signature, and an endpoint's own credential is
// a subscription header.
var notForwarded = map[string]bool{"Authorization": true, "Cookie": true}

// checkForwardHeaders validates the names of the request headers a source
// forwards and returns them canonical.
func checkForwardHeaders(c *gin.Context, names []string) ([]string, bool) {
	if len(names) > record.MaxForwarded {
		rest.Invalid(c, "forward_headers", fmt.Sprintf("has %d names; at most %d", len(names), record.MaxForwarded))
		return nil, false
	}
	var out []string
	for _, n := range names {
		canon, ok := headerName(c, "forward_headers", n)
		switch {
		case !ok:
			return nil, false
		case notForwarded[canon]:
			rest.Invalid(c, "forward_headers", canon+" carries a credential for Relay's endpoint and is not forwarded; give an endpoint's own credential as a subscription header")
			return nil, false
		case slices.Contains(out, canon):
			rest.Invalid(c, "forward_headers", canon+" is given twice")
			return nil, false
		}
		out = append(out, canon)
	}
	return out, true
}

// maxAllowedIPs bounds a source's allowed_ips.
const maxAllowedIPs = 100

// checkAllowedIPs reads a source's allowed sender addresses, IPs or CIDR
// prefixes, and returns them as prefixes.
func checkAllowedIPs(c *gin.Context, v []string) ([]string, bool) {
	if len(v) > maxAllowedIPs {
		rest.Invalid(c, "allowed_ips", fmt.Sprintf("has %d entries; at most %d", len(v), maxAllowedIPs))
		return nil, false
	}
	var out []string
	for _, s := range v {
		p, err := catalog.ParseAllowed(s)
		if err != nil {
			rest.Invalid(c, "allowed_ips", fmt.Sprintf("%s is not an IP address or a CIDR prefix (examples: 192.0.2.10, 3.18.12.0/22, 2001:db8::/32)", rest.QuoteID(s)))
			return nil, false
		}
		if !slices.Contains(out, p.String()) {
			out = append(out, p.String())
		}
	}
	return out, true
}

// setDuration parses a duration a PATCH gives (null leaves it as it is;
// "" is not a duration there) and checks its range.
func setDuration(c *gin.Context, field string, v *string, inRange func(*gin.Context, time.Duration) bool) (*time.Duration, bool) {
	if v == nil {
		return nil, true
	}
	if *v == "" {
		rest.Invalid(c, field, `"" is not a duration (examples: 30s, 5m, 72h); leave the field out to keep it as it is`)
		return nil, false
	}
	d, ok := rest.DurationField(c, field, *v)
	if !ok || !inRange(c, d) {
		return nil, false
	}
	return &d, true
}

type updateSourceRequest struct {
	Name         *string `json:"name"`
	Verification *struct {
		Scheme    *string `json:"scheme"`
		Secret    *string `json:"secret"`
		Tolerance *string `json:"tolerance"`
		schemeParamsJSON
	} `json:"verification"`
	DedupWindow    *string   `json:"dedup_window"`
	ForwardHeaders *[]string `json:"forward_headers"`
	AllowedIPs     *[]string `json:"allowed_ips"`
	// OrderingKey {} clears it.
	OrderingKey *ordering.Spec `json:"ordering_key"`
}

// updateSource is PATCH /sources/{id}: rename a source, or change its
// tolerance, dedup window or forwarded headers, keeping its id and so the ingest URL its sender
// is configured with. Every replica uses the change within its source
// cache's 2 s; a new dedup window applies to events accepted from then on.
func (a *API) updateSource(c *gin.Context) {
	src, damaged, ok := a.findSource(c, true)
	if !ok {
		return
	}
	var req updateSourceRequest
	if !rest.BindJSON(c, &req, false) {
		return
	}
	var patch catalog.SourcePatch
	if req.Name != nil {
		name, ok := sourceName(c, *req.Name)
		if !ok {
			return
		}
		patch.Name = &name
	}
	if v := req.Verification; v != nil {
		if v.Scheme != nil && *v.Scheme != src.Scheme {
			rest.Invalid(c, "verification.scheme", "cannot be changed: it decides the secret's format and the sender's headers; create a new source for "+rest.QuoteID(*v.Scheme))
			return
		}
		if v.Secret != nil {
			rest.Invalid(c, "verification.secret", "is changed by POST /sources/{id}/rotate-secret, which keeps the old secret verifying for a grace period")
			return
		}
		if patch.Tolerance, ok = setDuration(c, "verification.tolerance", v.Tolerance, toleranceInRange); !ok {
			return
		}
		given := map[string]string{}
		v.mergeInto(given)
		if len(given) > 0 {
			// Changed parameters on top of the stored ones, checked as a whole.
			params := map[string]string{}
			maps.Copy(params, src.SchemeParams)
			maps.Copy(params, given)
			_, stored, ok := configureScheme(c, src.Scheme, params)
			if !ok {
				return
			}
			patch.SchemeParams = &stored
		}
	}
	if patch.DedupWindow, ok = setDuration(c, "dedup_window", req.DedupWindow, windowInRange); !ok {
		return
	}
	if patch.Tolerance != nil || patch.DedupWindow != nil {
		window, tol := src.DedupWindow, src.Tolerance
		if patch.DedupWindow != nil {
			window = *patch.DedupWindow
		}
		if patch.Tolerance != nil {
			tol = *patch.Tolerance
		}
		if scheme, known := signature.Lookup(src.Scheme); known && !windowCoversTolerance(c, scheme, window, tol) {
			return
		}
	}
	if req.ForwardHeaders != nil {
		names, ok := checkForwardHeaders(c, *req.ForwardHeaders)
		if !ok {
			return
		}
		patch.ForwardHeaders = &names
	}
	if req.AllowedIPs != nil {
		allowed, ok := checkAllowedIPs(c, *req.AllowedIPs)
		if !ok {
			return
		}
		patch.AllowedIPs = &allowed
	}
	if k := req.OrderingKey; k != nil {
		if err := k.Validate(); err != nil && !k.IsZero() {
			rest.Fail(c, http.StatusBadRequest, "invalid_field", err.Error()) // it names the field
			return
		}
		patch.OrderingKey = k
	}
	if damaged != nil && !(damaged.Field == "tolerance_ms" && patch.Tolerance != nil) && !(damaged.Field == "dedup_window_ms" && patch.DedupWindow != nil) {
		// A patch that leaves the damaged field as it is would not make the
		// record readable: refuse it, applying nothing, and say what would.
		a.storeError(c, "updating the source", damaged)
		return
	}
	updated, err := a.catalog.UpdateSource(c.Request.Context(), src.ID, patch)
	if errors.Is(err, catalog.ErrNotFound) {
		rest.Fail(c, http.StatusNotFound, "source_not_found", "no source "+rest.QuoteID(src.ID))
		return
	}
	if err != nil {
		a.storeError(c, "updating the source", err)
		return
	}
	a.sources.Forget(src.ID)
	c.JSON(http.StatusOK, a.sourceOut(updated))
}

// storeError answers for a failed Redis call: 503 when Redis is
// unreachable, 500 otherwise.
func (a *API) storeError(c *gin.Context, what string, err error) {
	if ce := (*catalog.CorruptError)(nil); errors.As(err, &ce) {
		// Only fields that hold no secret are decoded, so the cause can be told.
		a.log.ErrorContext(c.Request.Context(), "corrupt record in Redis", "while", what, "error", err)
		rest.Fail(c, http.StatusInternalServerError, "corrupt_record", ce.Error()+"; "+repairHint(ce))
		return
	}
	if redisconn.IsUnavailable(err) {
		a.log.WarnContext(c.Request.Context(), "redis unavailable", "while", what, "error", err)
		rest.Unavailable(c, "redis_unavailable", "Redis is unavailable while "+what+"; retry shortly", 5*time.Second)
		return
	}
	if redisconn.IsWriteRefused(err) {
		// Redis's own answer (OOM, READONLY, MISCONF) says what to fix and holds no secret.
		a.log.ErrorContext(c.Request.Context(), "redis refuses writes", "while", what, "error", err)
		rest.Unavailable(c, "redis_refuses_writes", "Redis refuses writes while "+what+": "+err.Error(), 30*time.Second)
		return
	}
	rest.Internal(c, a.log, what, err)
}

// repairHint says how a corrupt record can be mended through the API.
func repairHint(ce *catalog.CorruptError) string {
	if ce.Kind == "subscription" && (ce.Field == "events" || ce.Field == "enabled") {
		return "PATCH the subscription's " + ce.Field + " to repair it, or DELETE it"
	}
	if ce.Kind == "subscription" && ce.Field == "header_names" {
		return "PATCH the subscription's headers to repair it, or DELETE it"
	}
	if field, ok := map[string]string{"tolerance_ms": "verification.tolerance", "dedup_window_ms": "dedup_window"}[ce.Field]; ok && ce.Kind == "source" {
		return "PATCH the source's " + field + " to repair it, or DELETE it"
	}
	return "DELETE the " + ce.Kind + " and create it again, or repair the field in Redis"
}

func (a *API) listSources(c *gin.Context) {
	limit, cursor, ok := rest.IDPageParams(c, ids.Source)
	if !ok {
		return
	}
	var page catalog.Page[catalog.Source]
	var err error
	if p, ok := keys.FromContext(c.Request.Context()); ok && p.Restricted() {
		page, err = a.restrictedSources(c.Request.Context(), p.Sources, cursor, limit)
	} else {
		page, err = a.catalog.ListSources(c.Request.Context(), cursor, limit)
	}
	if err != nil {
		a.storeError(c, "listing sources", err)
		return
	}
	out := rest.List[sourceJSON]{Data: []sourceJSON{}, NextCursor: page.Next}
	for _, s := range page.Items {
		out.Data = append(out.Data, a.sourceOut(s))
	}
	c.JSON(http.StatusOK, out)
}

// restrictedSources is a page of the sources a key restricted to allowed
// sees, in id order like every listing of sources.
func (a *API) restrictedSources(ctx context.Context, allowed []string, cursor string, limit int) (catalog.Page[catalog.Source], error) {
	var page catalog.Page[catalog.Source]
	for _, id := range slices.Sorted(slices.Values(allowed)) {
		if id <= cursor {
			continue
		}
		if len(page.Items) == limit {
			page.Next = page.Items[limit-1].ID
			break
		}
		src, err := a.catalog.GetSource(ctx, id)
		if errors.Is(err, catalog.ErrNotFound) {
			continue
		}
		if err != nil {
			return page, err
		}
		page.Items = append(page.Items, src)
	}
	return page, nil
}

// loadSource answers 404 for an unknown source and returns false.
func (a *API) loadSource(c *gin.Context) (catalog.Source, bool) {
	src, _, ok := a.findSource(c, false)
	return src, ok
}

// findSource reads the source of the route, answering 404 when there is
// none and 5xx when it cannot be read. With corruptOK a corrupt record is
// returned with what is wrong with it.
func (a *API) findSource(c *gin.Context, corruptOK bool) (catalog.Source, *catalog.CorruptError, bool) {
	id := c.Param("source_id")
	if !ids.Valid(ids.Source, id) {
		rest.Fail(c, http.StatusNotFound, "source_not_found", "no source "+rest.QuoteID(id))
		return catalog.Source{}, nil, false
	}
	src, err := a.catalog.GetSource(c.Request.Context(), id)
	var damaged *catalog.CorruptError
	if errors.As(err, &damaged) && corruptOK {
		return src, damaged, true
	}
	if errors.Is(err, catalog.ErrNotFound) {
		rest.Fail(c, http.StatusNotFound, "source_not_found", "no source "+rest.QuoteID(id))
		return src, nil, false
	}
	if err != nil {
		a.storeError(c, "reading the source", err)
		return src, nil, false
	}
	return src, nil, true
}

func (a *API) getSource(c *gin.Context) {
	src, ok := a.loadSource(c)
	if !ok {
		return
	}
	c.JSON(http.StatusOK, a.sourceOut(src))
}

func (a *API) deleteSource(c *gin.Context) {
	id := c.Param("source_id")
	if !ids.Valid(ids.Source, id) {
		// Checked before anything is touched: an id is part of Redis keys.
		rest.Fail(c, http.StatusNotFound, "source_not_found", "no source "+rest.QuoteID(id))
		return
	}
	err := a.catalog.DeleteSource(c.Request.Context(), id)
	if errors.Is(err, catalog.ErrNotFound) {
		rest.Fail(c, http.StatusNotFound, "source_not_found", "no source "+rest.QuoteID(id))
		return
	}
	if err != nil {
		a.storeError(c, "deleting the source", err)
		return
	}
	a.sources.Forget(id)
	c.Status(http.StatusNoContent)
}

type rotateRequest struct {
	Secret string `json:"secret"`
	Grace  string `json:"grace"`
}

func (a *API) rotateSourceSecret(c *gin.Context) {
	src, ok := a.loadSource(c)
	if !ok {
		return
	}
	var req rotateRequest
	if !rest.BindJSON(c, &req, true) {
		return
	}
	scheme, _ := signature.Lookup(src.Scheme)
	secret, ok := secretFor(c, scheme, req.Secret, "secret")
	if !ok {
		return
	}
	grace, ok := a.grace(c, req.Grace)
	if !ok {
		return
	}
	if err := a.catalog.RotateSourceSecret(c.Request.Context(), src.ID, secret, grace); err != nil {
		a.storeError(c, "rotating the secret", err)
		return
	}
	a.sources.Forget(src.ID)
	src.PreviousSecretExpiresAt = a.now().Add(grace)
	out := a.sourceOut(src)
	out.Secret = secret
	c.JSON(http.StatusOK, out)
}

func (a *API) grace(c *gin.Context, v string) (time.Duration, bool) {
	g, ok := rest.DurationField(c, "grace", v)
	if !ok {
		return 0, false
	}
	if v == "" {
		g = a.cfg.RotationGrace
	}
	if g < 0 || g > 30*24*time.Hour {
		rest.Invalid(c, "grace", "must be from 0s to 720h")
		return 0, false
	}
	return g, true
}

type rewrapResponse struct {
	Rewrapped        int      `json:"rewrapped"`
	Current          int      `json:"current"`
	ChangedMeanwhile int      `json:"changed_meanwhile"`
	Undecryptable    []string `json:"undecryptable"`
	Complete         bool     `json:"complete"`
	NextCursor       string   `json:"next_cursor,omitempty"`
}

// rewrapSecrets is POST /secrets/rewrap: every stored secret that only
// RELAY_SECRET_KEY_PREVIOUS opens is sealed anew under RELAY_SECRET_KEY.
// One call works for at most RELAY_REDRIVE_BUDGET and then answers a
// next_cursor to continue from.
func (a *API) rewrapSecrets(c *gin.Context) {
	after := c.Query("cursor")
	if after != "" && !ids.Valid(ids.Source, after) {
		rest.Invalid(c, "cursor", "is not a cursor this route answered")
		return
	}
	res, err := a.catalog.RewrapSecrets(c.Request.Context(), after, a.now().Add(a.cfg.WorkBudget))
	if err != nil {
		a.storeError(c, "rewrapping secrets", err)
		return
	}
	out := rewrapResponse{
		Rewrapped: res.Rewrapped, Current: res.Current, ChangedMeanwhile: res.ChangedMeanwhile,
		Undecryptable: append([]string{}, res.Undecryptable...), Complete: res.Complete(), NextCursor: res.Next,
	}
	a.log.InfoContext(c.Request.Context(), "secrets rewrapped", "rewrapped", out.Rewrapped, "current", out.Current,
		"changed_meanwhile", out.ChangedMeanwhile, "undecryptable", out.Undecryptable)
	c.JSON(http.StatusOK, out)
}

// secretFor returns the secret an operator supplied when scheme accepts it,
// a fresh one in the scheme's format when none was supplied, and otherwise
// answers 400 naming field.
func secretFor(c *gin.Context, scheme signature.Scheme, given, field string) (string, bool) {
	if given == "" {
		return scheme.NewSecret(), true
	}
	if err := scheme.CheckSecret(given); err != nil {
		rest.Invalid(c, field, err.Error())
		return "", false
	}
	return given, true
}
