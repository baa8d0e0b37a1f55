package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
)

// Amender applies a client's amendment through the order's run (a Temporal Update, so the
// run orders it with the order's fills and cancels) and waits up to wait for the run to
// have applied or refused it. applied is false when it is still being applied. An error
// wraps orderbook.ErrNotAmendable when the run refused it before it reached the order.
type Amender interface {
	Amend(ctx context.Context, runKey string, req orderbook.AmendRequest, wait time.Duration) (res orderbook.Amended, applied bool, err error)
}

// amendFields are the members a PATCH body may have.
var amendFields = []string{"quantity", "price"}

// decodeAmendment reads a PATCH body: quantity (the new total, what has filled counting
// towards it) and price (the new limit), at least one of them.
func decodeAmendment(r *http.Request) (qty int64, price decimal.NullDecimal, err error) {
	if err := requireJSON(r); err != nil {
		return 0, price, err
	}
	fields, err := readObject(r)
	if err != nil {
		return 0, price, err
	}
	errs := unknownFields(fields, amendFields, "is not a known field: an amendment changes quantity, price or both")
	if raw, ok := fields["quantity"]; ok {
		if qty, err = positiveInt(raw); err != nil {
			errs = append(errs, fieldError{"quantity", err.Error()})
		}
	}
	if raw, ok := fields["price"]; ok {
		p, present, err := decimalPrice(raw)
		switch {
		case err != nil:
			errs = append(errs, fieldError{"price", err.Error()})
		case present:
			price = decimal.NewNullDecimal(p)
		}
	}
	if len(errs) == 0 && qty == 0 && !price.Valid {
		errs = append(errs, fieldError{"quantity", "an amendment needs a new quantity, a new price, or both"})
	}
	if len(errs) > 0 {
		return 0, price, invalid(errs...)
	}
	return qty, price, nil
}

// amendOrder handles PATCH /api/v1/orders/{id}: the order's own user amends a resting
// LIMIT order. A smaller quantity is applied in place and keeps the order's time
// priority (200); a new price or a larger quantity replaces the order with a new one for
// what is left to fill, which loses priority (201, Location: the new order, which names
// the old one in replacesOrderId; the old one ends CANCELLED or PARTIALLY_CANCELLED,
// reason REPLACED). The order's run applies it between fills, so the answer is the truth
// however a fill raced it: a quantity at or below what has filled meanwhile is refused
// (409), and If-Match is checked against the order as the run sees it (412). 202 when the
// run has not applied it within the wait; its timeline will tell.
func (s *server) amendOrder(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	o, err := s.loadOrder(r)
	if err != nil {
		return err
	}
	// Only the order's own user amends it: an operator's tools cancel, they do not trade.
	if o.UserID != c.UserID && !c.trusted {
		return orderNotFound(o.ID)
	}
	if !c.Has(auth.ScopeTrade) && !c.trusted {
		return &apiError{code: codeForbidden, message: "amending an order needs the trade scope",
			challenge: challenge + `, error="insufficient_scope", scope="trade"`}
	}
	match, err := ifMatch(r)
	if err != nil {
		return err
	}
	qty, price, err := decodeAmendment(r)
	if err != nil {
		return err
	}
	if match != nil && !match(o) {
		w.Header().Set("ETag", etag(o))
		return preconditionFailed(o)
	}
	if err := amendable(o); err != nil {
		return err
	}
	if s.cfg.Amends == nil {
		return newError(codeUnavailable, "amendments are not available on this server")
	}
	req := orderbook.AmendRequest{OrderID: o.ID, Quantity: qty, Price: price, RequestedBy: c.name()}
	if match != nil && !ifMatchesAny(r) {
		// The tag matched this version; the run checks it still is, under the book's lock.
		v := o.Version
		req.IfVersion = &v
	}
	res, applied, err := s.cfg.Amends.Amend(r.Context(), o.RunKey, req, s.cfg.CancelWait)
	switch {
	case errors.Is(err, orderbook.ErrNotAmendable):
		return &apiError{code: codeOrderNotAmendable, message: fmt.Sprintf("order %d cannot be amended now: it is not resting on the book, or another amendment of it is in progress; nothing was done", o.ID),
			cause: err, retryAfter: time.Second}
	case err != nil:
		return &apiError{code: codeUnavailable, message: "the order's workflow could not be reached; nothing was amended; retry the request",
			cause: fmt.Errorf("api: amend order %d: %w", o.ID, err), retryAfter: time.Second}
	}
	return s.answerAmendment(w, r, o, res, applied)
}

// amendable refuses at once an amendment of an order that is not resting on the book,
// before the run is asked (which would refuse it too).
func amendable(o queries.Order) error {
	st := order.Status(o.Status)
	switch {
	case st.Terminal():
		return newError(codeOrderTerminal, "order %d is %s and can no longer be amended", o.ID, st)
	case o.CancelRequested:
		return newError(codeOrderNotAmendable, "a cancel of order %d was requested; it can no longer be amended", o.ID)
	case !o.OnBook:
		return &apiError{code: codeOrderNotAmendable, retryAfter: time.Second, message: fmt.Sprintf(
			"order %d is %s and not resting on the book: only a resting LIMIT order can be amended (one still being placed can be once it rests)", o.ID, st)}
	}
	return nil
}

// answerAmendment answers with what the run did to order o.
func (s *server) answerAmendment(w http.ResponseWriter, r *http.Request, o queries.Order, res orderbook.Amended, applied bool) error {
	ctx := r.Context()
	current, err := s.book.Order(ctx, o.ID)
	if err != nil {
		return fmt.Errorf("api: amend order %d: re-read: %w", o.ID, err)
	}
	w.Header().Set("ETag", etag(current))
	status := http.StatusOK
	switch {
	case !applied:
		status = http.StatusAccepted
	case res.Outcome == orderbook.AmendReplaced:
		if current, err = s.book.Order(ctx, res.ReplacementID); err != nil {
			return fmt.Errorf("api: amend order %d: read its replacement %d: %w", o.ID, res.ReplacementID, err)
		}
		status = http.StatusCreated
		w.Header().Set("ETag", etag(current))
		w.Header().Set("Location", "/api/v1/orders/"+strconv.FormatInt(current.ID, 10))
	case res.Outcome == orderbook.AmendPreconditionFailed:
		return preconditionFailed(current)
	case res.Outcome == orderbook.AmendBelowFilled:
		return newError(codeAmendBelowFilled, "%s; nothing was done", res.Detail)
	case res.Outcome == orderbook.AmendNotAmendable:
		return newError(codeOrderNotAmendable, "%s; nothing was done", res.Detail)
	case res.Outcome == orderbook.AmendInvalid:
		field := "quantity"
		if res.Detail == order.ReasonTickSize {
			field = "price"
		}
		return invalid(fieldError{field, "is refused by the instrument's rules: " + res.Detail})
	}
	v, err := s.fullView(ctx, current)
	if err != nil {
		return err
	}
	msg := map[orderbook.AmendOutcome]string{
		orderbook.AmendedInPlace: "Order amended; it keeps its place in the book",
		orderbook.AmendUnchanged: "The order already is as asked; nothing changed",
		orderbook.AmendReplaced:  fmt.Sprintf("Order %d replaced by this order, which takes its place at the back of its price level", o.ID),
	}[res.Outcome]
	if !applied {
		msg = "Amendment accepted; the order's workflow is applying it (its timeline will show the outcome)"
	}
	s.respond(w, r, status, cancelView{orderView: v, Message: msg})
	return nil
}

// ifMatchesAny reports whether the request's If-Match is "*" (any current version).
func ifMatchesAny(r *http.Request) bool {
	return strings.TrimSpace(strings.Join(r.Header.Values("If-Match"), ",")) == "*"
}
