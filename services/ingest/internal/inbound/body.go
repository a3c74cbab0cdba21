package inbound

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/relayhq/relay/services/ingest/internal/rest"
)

// bodyBudget bounds the bytes that inbound request bodies hold in memory at
// once, over every request of the replica. It is charged as a body's buffer
// grows, never for what a request only declares: a few hundred bytes of
// headers claiming a MiB cost nothing until the MiB arrives.
type bodyBudget struct {
	limit int64
	held  atomic.Int64
}

// take charges n bytes, or reports false, charging nothing, when they
// would take the total past the limit.
func (b *bodyBudget) take(n int64) bool {
	if b.held.Add(n) > b.limit {
		b.held.Add(-n)
		return false
	}
	return true
}

func (b *bodyBudget) release(n int64) { b.held.Add(-n) }

// firstBodyBuffer is the most a body's buffer starts with before its bytes
// arrive; a body declared smaller starts at its size, and is read with one
// allocation.
const firstBodyBuffer = 4 << 10

// errBodyBudget is readBody's error when the replica holds its limit of
// body bytes.
var errBodyBudget = errors.New("ingest holds its limit of request bodies in memory")

// readBody reads the raw body, at most MaxBodyBytes, into a buffer that
// grows as bytes arrive, each growth charged to the replica's body budget
// (RELAY_INGEST_MAX_INFLIGHT_BYTES). It answers the request itself when it
// returns ok false. release gives the charge back; call it once the body is
// no longer needed, also when ok is false.
func (a *Handler) readBody(c *gin.Context) (body []byte, release func(), ok bool) {
	limit := a.cfg.MaxBodyBytes
	declared := c.Request.ContentLength
	var charged int64
	release = func() { a.bodies.release(charged) }
	if declared > limit {
		a.tooLarge(c)
		return nil, release, false
	}
	body, err := readGrowing(http.MaxBytesReader(c.Writer, c.Request.Body, limit), declared, func(n int) bool {
		if !a.bodies.take(int64(n)) {
			return false
		}
		charged += int64(n)
		return true
	})
	var tooBig *http.MaxBytesError
	switch {
	case errors.Is(err, errBodyBudget):
		a.m.busy.WithLabelValues("bytes").Inc()
		a.refusedBodies.note(c.Request.Context(), a.log, "requests refused: request bodies in memory at their limit (RELAY_INGEST_MAX_INFLIGHT_BYTES)", "limit", a.bodies.limit)
		rest.Busy(c, "ingest holds as many request bodies as it may right now; nothing was accepted, retry shortly")
		return nil, release, false
	case errors.As(err, &tooBig):
		a.tooLarge(c)
		return nil, release, false
	case err != nil:
		rest.Fail(c, http.StatusBadRequest, "unreadable_body", "the request body could not be read: "+err.Error())
		return nil, release, false
	}
	return body, release, true
}

func (a *Handler) tooLarge(c *gin.Context) {
	rest.Fail(c, http.StatusRequestEntityTooLarge, "payload_too_large", fmt.Sprintf("body is larger than %d bytes (RELAY_MAX_BODY_BYTES)", a.cfg.MaxBodyBytes))
}

// readGrowing reads r to its end into a buffer that grows as bytes arrive,
// doubling, up to the declared length when one is known (-1 when not).
// grow is asked before each allocation for the bytes it adds to the buffer
// and may refuse them, which ends the read with errBodyBudget.
func readGrowing(r io.Reader, declared int64, grow func(n int) bool) ([]byte, error) {
	size := firstBodyBuffer
	if declared >= 0 && declared < int64(size) {
		size = int(declared)
	}
	var buf []byte
	for {
		if len(buf) == cap(buf) {
			if declared >= 0 && int64(len(buf)) == declared {
				// Every declared byte is here: net/http ends the body at
				// its Content-Length, so this read only confirms the end.
				var end [1]byte
				n, err := r.Read(end[:])
				if n > 0 {
					return nil, errors.New("the body is longer than its Content-Length")
				}
				if err == io.EOF || err == nil {
					return nonNil(buf), nil
				}
				return nil, err
			}
			next := max(size, 2*cap(buf))
			if declared >= 0 {
				next = min(next, int(declared))
			}
			if !grow(next - cap(buf)) {
				return nil, errBodyBudget
			}
			grown := make([]byte, len(buf), next)
			copy(grown, buf)
			buf = grown
		}
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return nonNil(buf), nil
		}
		if err != nil {
			return nil, err
		}
	}
}

// nonNil makes an empty body an empty slice, as a body always was.
func nonNil(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// refusalLog writes one warning per second at most for requests refused
// for a limit, with how many were refused since the last: under overload a
// line per request would cost what the refusals save.
type refusalLog struct {
	last    atomic.Int64 // unix nanoseconds of the last line
	refused atomic.Int64 // since the last line
}

func (r *refusalLog) note(ctx context.Context, log *slog.Logger, msg string, args ...any) {
	r.refused.Add(1)
	now := time.Now().UnixNano()
	last := r.last.Load()
	if now-last < int64(time.Second) || !r.last.CompareAndSwap(last, now) {
		return
	}
	log.WarnContext(ctx, msg, append(args, "refused", r.refused.Swap(0))...)
}
