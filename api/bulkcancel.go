package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/orderflow/orderflow/order"
	"golang.org/x/sync/errgroup"
)

// Bounds of one bulk cancel: it answers within the request's deadline however many
// orders the user has open, and says when more remain.
const (
	bulkCancelMax         = 200
	bulkCancelConcurrency = 8
	bulkSignalTimeout     = 2 * time.Second
)

// bulkCancelResult is one order's outcome in a bulk cancel: the status a cancel of it
// alone would have answered, with the order afterwards, or the error's code.
type bulkCancelResult struct {
	OrderID         int64     `json:"orderId"`
	Status          int       `json:"status"`
	OrderStatus     string    `json:"orderStatus,omitempty"`
	CancelRequested bool      `json:"cancelRequested,omitempty"`
	ErrorCode       errorCode `json:"errorCode,omitempty"`
	Message         string    `json:"message"`
}

// bulkCancelView answers DELETE /api/v1/orders (207 Multi-Status).
type bulkCancelView struct {
	Results []bulkCancelResult `json:"results"`
	// More: other open orders matched the filters beyond this request's bound; repeat
	// the request to cancel them.
	More bool `json:"more"`
}

// cancelOrders handles DELETE /api/v1/orders: the caller's open orders (or, for a caller
// who sees every user's, those of the userId named), optionally of one instrument and
// side, are each cancelled as POST /api/v1/orders/{id}/cancel would, without waiting for
// their runs to apply it. At most bulkCancelMax per request: those whose cancel is not yet
// recorded first, then the oldest, so repeating the request makes progress.
func (s *server) cancelOrders(w http.ResponseWriter, r *http.Request) error {
	c, q := callerOf(r), r.URL.Query()
	user, err := s.userOf(c, q.Get("userId"))
	if err != nil {
		return err
	}
	var errs []fieldError
	var instrument *int64
	if v := q.Get("instrumentId"); v != "" {
		id, err := strconv.ParseInt(v, 10, 64)
		if err != nil || id <= 0 {
			errs = append(errs, fieldError{"instrumentId", "must be a positive integer"})
		}
		instrument = &id
	}
	var side *order.Side
	if v := q.Get("orderType"); v != "" {
		sd, err := order.ParseSide(v)
		if err != nil {
			errs = append(errs, fieldError{"orderType", "must be BUY or SELL"})
		}
		side = &sd
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	ctx := r.Context()
	open, err := s.book.UserOpenOrders(ctx, user, instrument, side, bulkCancelMax+1)
	if err != nil {
		return err
	}
	view := bulkCancelView{Results: make([]bulkCancelResult, 0, min(len(open), bulkCancelMax))}
	if len(open) > bulkCancelMax {
		open, view.More = open[:bulkCancelMax], true
	}
	view.Results = view.Results[:len(open)]
	// First every cancel is recorded, which takes the orders off the book, whatever
	// becomes of the runs; then the runs are told, each within bulkSignalTimeout, so that
	// Temporal being slow or down delays the answer by a bounded time and no order stays
	// on the book for it.
	recorded := make([]cancelOutcome, len(open))
	each := func(do func(i int)) {
		var g errgroup.Group
		g.SetLimit(bulkCancelConcurrency)
		for i := range open {
			g.Go(func() error { do(i); return nil })
		}
		_ = g.Wait() // do returns nothing: each order's outcome is its result
	}
	each(func(i int) { recorded[i] = s.recordCancel(ctx, open[i].ID, c.name(), nil) })
	each(func(i int) {
		out := recorded[i]
		if out.err == nil {
			sctx, cancel := context.WithTimeout(ctx, bulkSignalTimeout)
			out = s.signalCancel(sctx, out.current, c.name(), 0)
			cancel()
		}
		view.Results[i] = s.bulkResult(ctx, open[i].ID, out)
	})
	s.respond(w, r, http.StatusMultiStatus, view)
	return nil
}

// bulkResult is one order's entry in a bulk cancel's answer.
func (s *server) bulkResult(ctx context.Context, id int64, out cancelOutcome) bulkCancelResult {
	if out.err == nil {
		return bulkCancelResult{OrderID: id, Status: out.status, OrderStatus: out.current.Status,
			CancelRequested: out.current.CancelRequested, Message: out.message}
	}
	var ae *apiError
	if !errors.As(out.err, &ae) {
		s.logger.ErrorContext(ctx, "bulk cancel of one order failed", "order_id", id, "error", out.err)
		ae = &apiError{code: codeInternal, message: "internal error; it has been logged"}
	}
	status, _ := ae.code.describe()
	return bulkCancelResult{OrderID: id, Status: status, ErrorCode: ae.code, Message: ae.message}
}

// userOf is the user whose orders a request is about: the caller's own, which param (a
// userId) may name too, or, for a caller who sees every user's orders, the one param
// names, which it must.
func (s *server) userOf(c caller, param string) (int64, error) {
	if c.seesAll() {
		id, err := strconv.ParseInt(param, 10, 64)
		if err != nil || id <= 0 {
			return 0, invalid(fieldError{"userId", "is required (a positive integer) for a caller who sees every user's orders"})
		}
		return id, nil
	}
	if param != "" && param != strconv.FormatInt(c.UserID, 10) {
		return 0, &apiError{code: codeForbidden, fields: []fieldError{{"userId", "is not the user of this credential"}},
			message: "userId names another user; omit it, or send your own"}
	}
	return c.UserID, nil
}
