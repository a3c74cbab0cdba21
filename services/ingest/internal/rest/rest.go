// Package rest holds the conventions every route of ingest's API shares:
// the JSON error envelope, strict JSON request bodies, field validation
// answers, and paging.
package rest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/gin-gonic/gin"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/record"
)

// ErrorBody is every error response: {"error": {"code", "message"}}.
type ErrorBody struct {
	Error ErrorDetail `json:"error"`
}

type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Fail answers with a JSON error and stops the handler chain. The observe
// middleware logs it.
func Fail(c *gin.Context, status int, code, msg string) {
	c.Set("error_code", code)
	c.Set("error_message", msg)
	c.AbortWithStatusJSON(status, ErrorBody{Error: ErrorDetail{Code: code, Message: msg}})
}

// Unavailable answers 503 with Retry-After.
func Unavailable(c *gin.Context, code, msg string, retryAfter time.Duration) {
	c.Header("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
	Fail(c, http.StatusServiceUnavailable, code, msg)
}

// CodeServerBusy is the error code of a webhook refused because ingest is
// at one of its limits. Whoever refuses logs the refusals, paced; the
// observe middleware does not log each.
const CodeServerBusy = "server_busy"

// Busy answers 503 server_busy with Retry-After: 1.
func Busy(c *gin.Context, msg string) { Unavailable(c, CodeServerBusy, msg, time.Second) }

// Internal answers 500 without leaking the cause, which is logged.
func Internal(c *gin.Context, log *slog.Logger, what string, err error) {
	log.ErrorContext(c.Request.Context(), what, "error", err)
	Fail(c, http.StatusInternalServerError, "internal", "internal error while "+what+"; see the service log")
}

// BindJSON decodes a management request body strictly: Invalid UTF-8,
// unknown fields, wrong types and trailing data are 400s that name the
// field. An empty body decodes to the zero value when allowEmpty.
func BindJSON(c *gin.Context, dst any, allowEmpty bool) bool {
	raw, err := io.ReadAll(http.MaxBytesReader(c.Writer, c.Request.Body, 64<<10))
	if err != nil {
		Fail(c, http.StatusBadRequest, "invalid_json", describeJSONError(err))
		return false
	}
	if len(bytes.TrimSpace(raw)) == 0 && allowEmpty {
		return true
	}
	// encoding/json would silently turn Invalid UTF-8 into U+FFFD.
	if !utf8.Valid(raw) {
		Fail(c, http.StatusBadRequest, "invalid_json", "request body is not valid UTF-8")
		return false
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	err = dec.Decode(dst)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err != nil {
		Fail(c, http.StatusBadRequest, "invalid_json", describeJSONError(err))
		return false
	}
	return true
}

func describeJSONError(err error) string {
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	var big *http.MaxBytesError
	switch {
	case errors.Is(err, io.EOF):
		return "request body is empty; send a JSON object"
	case errors.As(err, &syn):
		return fmt.Sprintf("malformed JSON at byte %d", syn.Offset)
	case errors.As(err, &typ):
		if typ.Field != "" {
			return fmt.Sprintf("field %q must be %s", typ.Field, jsonExpected(typ.Type))
		}
		return "request body must be a JSON object"
	case errors.As(err, &big):
		return "request body is larger than 64 KiB"
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		return "unknown field " + strings.TrimPrefix(err.Error(), "json: unknown field ")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of input"
	}
	return "malformed JSON: " + err.Error()
}

// Expecter is a request field type that decodes more than one JSON kind
// and so says itself what it accepts.
type Expecter interface{ Expects() string }

// jsonExpected says what a field of type t accepts.
func jsonExpected(t reflect.Type) string {
	if e, ok := reflect.Zero(t).Interface().(Expecter); ok {
		return e.Expects()
	}
	return jsonKind(t.Kind().String())
}

func jsonKind(k string) string {
	switch k {
	case "string":
		return "a string"
	case "bool":
		return "a boolean"
	case "slice":
		return "an array"
	case "struct", "map", "ptr":
		return "an object"
	}
	return "a number"
}

// Invalid answers 400 for a field that parsed but is not acceptable.
func Invalid(c *gin.Context, field, msg string) {
	Fail(c, http.StatusBadRequest, "invalid_field", field+": "+msg)
}

// PageParams reads limit (1..500, default 50) and cursor.
func PageParams(c *gin.Context) (int, string, bool) {
	limit := 50
	if v := c.Query("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 500 {
			Invalid(c, "limit", "must be an integer from 1 to 500")
			return 0, "", false
		}
		limit = n
	}
	return limit, c.Query("cursor"), true
}

// IDPageParams is PageParams for a listing whose cursor is the last id (of
// kind prefix) of the page before: anything else is refused rather than
// read as a place in the listing, as the other listings' cursors are.
func IDPageParams(c *gin.Context, prefix string) (int, string, bool) {
	limit, cursor, ok := PageParams(c)
	if ok && cursor != "" && !ids.Valid(prefix, cursor) {
		Invalid(c, "cursor", "is not a cursor returned by this listing")
		return 0, "", false
	}
	return limit, cursor, ok
}

// List is the envelope of every listing.
type List[T any] struct {
	Data       []T    `json:"data"`
	NextCursor string `json:"next_cursor,omitempty"`
}

// DurationField parses an optional duration field ("30s", "5m", "72h"),
// answering 400 naming the field when it does not parse. Empty means zero.
func DurationField(c *gin.Context, field, v string) (time.Duration, bool) {
	if v == "" {
		return 0, true
	}
	d, err := time.ParseDuration(v)
	if err != nil {
		Invalid(c, field, fmt.Sprintf("%q is not a duration (examples: 30s, 5m, 72h)", v))
		return 0, false
	}
	return d, true
}

func FormatDuration(d time.Duration) string { return record.FormatDelay(d) }

// QuoteID bounds and quotes an id from a URL for an error message.
func QuoteID(id string) string {
	if len(id) > 64 {
		id = id[:64] + "…"
	}
	return `"` + strings.ToValidUTF8(id, "?") + `"`
}
