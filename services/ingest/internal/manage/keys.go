package manage

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/relayhq/relay/pkg/catalog"
	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/services/ingest/internal/keys"
	"github.com/relayhq/relay/services/ingest/internal/rest"
)

// maxKeySources bounds the sources one key is restricted to: a key for
// more is better unrestricted.
const maxKeySources = 100

type createKeyRequest struct {
	Name    string   `json:"name"`
	Scope   string   `json:"scope"`
	Sources []string `json:"sources"`
}

// createdKey is a key as created: the only answer that carries its token.
type createdKey struct {
	keys.Key
	Token string `json:"key"`
}

// createKey is POST /keys: a key of a scope, optionally restricted to some
// sources. Its token is in this answer only.
func (a *API) createKey(c *gin.Context) {
	var req createKeyRequest
	if !rest.BindJSON(c, &req, false) {
		return
	}
	switch {
	case req.Name == "" || len(req.Name) > 200 || !utf8.ValidString(req.Name):
		rest.Invalid(c, "name", "is required: up to 200 bytes of UTF-8 saying who or what holds the key")
		return
	case len(req.Sources) > maxKeySources:
		rest.Invalid(c, "sources", fmt.Sprintf("has %d sources; at most %d (leave it out for every source)", len(req.Sources), maxKeySources))
		return
	}
	scope, ok := keys.ParseScope(req.Scope)
	if !ok {
		rest.Invalid(c, "scope", fmt.Sprintf("is %s; want \"admin\", \"write\" or \"read\"", rest.QuoteID(req.Scope)))
		return
	}
	sources := slices.Compact(slices.Sorted(slices.Values(req.Sources)))
	for _, id := range sources {
		if !ids.Valid(ids.Source, id) {
			rest.Invalid(c, "sources", "holds "+rest.QuoteID(id)+", which is not a source id")
			return
		}
		if _, err := a.catalog.GetSource(c.Request.Context(), id); errors.Is(err, catalog.ErrNotFound) {
			rest.Invalid(c, "sources", "holds "+id+", which is no source")
			return
		} else if err != nil && !errors.As(err, new(*catalog.CorruptError)) {
			a.storeError(c, "reading the key's sources", err)
			return
		}
	}
	k, token, err := a.keys.Create(c.Request.Context(), req.Name, scope, sources)
	if err != nil {
		a.storeError(c, "creating the key", err)
		return
	}
	a.log.InfoContext(c.Request.Context(), "api key created", "key_id", k.ID, "scope", k.Scope, "sources", k.Sources)
	c.JSON(http.StatusCreated, createdKey{Key: k, Token: token})
}

// listKeys is GET /keys: every key, never its token.
func (a *API) listKeys(c *gin.Context) {
	limit, cursor, ok := rest.IDPageParams(c, keys.Prefix)
	if !ok {
		return
	}
	items, next, err := a.keys.List(c.Request.Context(), cursor, limit)
	if err != nil {
		a.storeError(c, "listing keys", err)
		return
	}
	c.JSON(http.StatusOK, rest.List[keys.Key]{Data: items, NextCursor: next})
}

// getKey is GET /keys/{key_id}.
func (a *API) getKey(c *gin.Context) {
	k, err := a.keys.Get(c.Request.Context(), c.Param("key_id"))
	if a.keyError(c, err) {
		return
	}
	c.JSON(http.StatusOK, k)
}

// revokeKey is DELETE /keys/{key_id}: the key stops working at once, and
// the console sessions signed in with it end.
func (a *API) revokeKey(c *gin.Context) {
	id := c.Param("key_id")
	if a.keyError(c, a.keys.Revoke(c.Request.Context(), id)) {
		return
	}
	a.log.InfoContext(c.Request.Context(), "api key revoked", "key_id", id)
	c.Status(http.StatusNoContent)
}

// keyError answers a key route's error, if any: 404 for a key that is not.
func (a *API) keyError(c *gin.Context, err error) bool {
	switch {
	case err == nil:
		return false
	case errors.Is(err, keys.ErrNotFound):
		rest.Fail(c, http.StatusNotFound, "key_not_found", "no key "+rest.QuoteID(c.Param("key_id"))+" (revoked keys are gone)")
	default:
		a.storeError(c, "reading keys", err)
	}
	return true
}
