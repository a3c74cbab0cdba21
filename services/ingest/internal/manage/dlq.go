package manage

import (
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/relayhq/relay/pkg/ids"
	"github.com/relayhq/relay/pkg/record"
	"github.com/relayhq/relay/services/ingest/internal/dlq"
	"github.com/relayhq/relay/services/ingest/internal/rest"
)

func dlqFilter(c *gin.Context) (dlq.Filter, bool) {
	f := dlq.Filter{SubscriptionID: c.Query("subscription_id"), SourceID: c.Query("source_id"), Reason: c.Query("reason")}
	if f.Reason != "" && !slices.Contains(record.DeadReasons, f.Reason) {
		rest.Invalid(c, "reason", "is "+rest.QuoteID(f.Reason)+"; want one of "+strings.Join(record.DeadReasons, ", "))
		return f, false
	}
	if f.SubscriptionID != "" && !ids.Valid(ids.Subscription, f.SubscriptionID) {
		rest.Invalid(c, "subscription_id", "is not a subscription id (sub_…)")
		return f, false
	}
	if f.SourceID != "" && !ids.Valid(ids.Source, f.SourceID) {
		rest.Invalid(c, "source_id", "is not a source id (src_…)")
		return f, false
	}
	return f, true
}

// listDLQ is GET /dlq: what is parked, oldest first per partition.
func (a *API) listDLQ(c *gin.Context) {
	f, ok := dlqFilter(c)
	if !ok {
		return
	}
	limit, cursor, ok := rest.PageParams(c)
	if !ok {
		return
	}
	items, next, err := a.dlq.List(c.Request.Context(), f, cursor, limit)
	if errors.Is(err, dlq.ErrBadCursor) {
		rest.Invalid(c, "cursor", "is not a cursor returned by this listing")
		return
	}
	if err != nil {
		a.dlqError(c, "listing the DLQ", err)
		return
	}
	if items == nil {
		items = []dlq.Parked{}
	}
	c.JSON(http.StatusOK, rest.List[dlq.Parked]{Data: items, NextCursor: next})
}

// redriveDLQ is POST /replay/dlq: put what is parked back on relay.deliveries.
func (a *API) redriveDLQ(c *gin.Context) {
	f, ok := dlqFilter(c)
	if !ok {
		return
	}
	res, err := a.dlq.Redrive(c.Request.Context(), f, a.now())
	if errors.Is(err, dlq.ErrBusy) {
		rest.Fail(c, http.StatusConflict, "redrive_in_progress", "another redrive is running; retry when it finishes")
		return
	}
	if err != nil {
		a.dlqError(c, "redriving the DLQ", err)
		return
	}
	c.JSON(http.StatusAccepted, res)
}

func (a *API) dlqError(c *gin.Context, what string, err error) {
	a.log.ErrorContext(c.Request.Context(), "dlq operation failed", "while", what, "error", err)
	rest.Unavailable(c, "dlq_unavailable", what+" failed: the broker or Redis is unavailable; retry shortly", 5*time.Second)
}
