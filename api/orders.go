package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
)

// Messages of the seed's responses.
const (
	msgAccepted       = "Order accepted"
	msgDuplicate      = "Duplicate request: returning the existing order"
	msgCancelAccepted = "Cancel accepted; it will be applied at the next safe point"
)

// List paging limits.
const (
	defaultPageSize = 20
	maxPageSize     = 500
)

// placeOrder handles POST /api/v1/orders: the order-book service writes the order, its
// ORDER_PLACED event, the outbox message that starts its execution and this answer in
// one transaction (shared with concurrent requests: group commit), and the 201 comes
// only after its commit. A replay of the user's Idempotency-Key gets the first answer
// byte for byte, marked Idempotent-Replayed; the same key with a different order, 422;
// while the first request is still being written, 409.
func (s *server) placeOrder(w http.ResponseWriter, r *http.Request) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	c := callerOf(r)
	req, err := decodeOrderRequest(r, c.trusted)
	if err != nil {
		return err
	}
	// The order is the caller's: a body naming another user is refused, never believed.
	if !c.trusted {
		if req.userID != 0 && req.userID != c.UserID {
			return &apiError{code: codeForbidden, fields: []fieldError{{"userId", "is not the user of this credential"}},
				message: fmt.Sprintf("userId %d is not the user of this credential; omit it, or send your own", req.userID)}
		}
		req.userID = c.UserID
	}
	if answered, err := s.admit(w, r, req, key); answered || err != nil {
		return err
	}
	if req.timeInForce == order.DAY {
		end := dayEnd(time.Now(), s.cfg.DayEnd)
		req.expireAt = &end
	}
	res, err := s.book.Place(r.Context(), orderbook.NewOrder{
		UserID: req.userID, InstrumentID: req.instrumentID, Side: req.side, Kind: req.kind, Price: req.price,
		Quantity: req.quantity, TimeInForce: req.timeInForce, IdempotencyKey: key, RequestHash: req.hash(),
		ClientOrderID: req.clientID, ExpireAt: req.expireAt, Details: c.details(), Answer: s.placedAnswer,
	})
	if err == nil || errors.Is(err, orderbook.ErrKeyReused) || errors.Is(err, orderbook.ErrKeyInFlight) {
		s.recent.add(req.userID, key)
	}
	switch {
	case errors.Is(err, orderbook.ErrClientOrderIDInUse):
		return &apiError{code: codeClientOrderIDInUse, fields: []fieldError{{"clientOrderId", "is the id of another of your orders"}},
			message: fmt.Sprintf("clientOrderId %q is already the id of another of your orders; nothing was placed", req.clientID)}
	case errors.Is(err, orderbook.ErrKeyReused):
		return newError(codeKeyReused, "Idempotency-Key %q was already used by this user for a different order request; use a new key for a new order", key)
	case errors.Is(err, orderbook.ErrKeyInFlight):
		msg := fmt.Sprintf("a request with Idempotency-Key %q is still being processed; retry shortly to get its answer", key)
		if req.clientID != "" {
			msg = fmt.Sprintf("a request with Idempotency-Key %q, or another with clientOrderId %q, is still being processed; retry shortly", key, req.clientID)
		}
		return &apiError{code: codeKeyInFlight, retryAfter: time.Second, message: msg}
	case errors.Is(err, orderbook.ErrBusy):
		return &apiError{code: codeUnavailable, retryAfter: time.Second, cause: err,
			message: "too many orders are waiting to be written; nothing was placed: retry shortly"}
	case errors.Is(err, orderbook.ErrNotPlaced):
		return &apiError{code: codeUnavailable, retryAfter: time.Second, cause: err,
			message: "the order could not be written (the request's deadline passed, or the database could not be reached); nothing was placed: retry"}
	case errors.Is(err, orderbook.ErrUnconfirmed):
		return &apiError{code: codeUnavailable, retryAfter: time.Second, cause: err,
			message: "the order's write was not confirmed (the deadline passed, or the connection was lost, while it ran); it may have been placed: retry with the same Idempotency-Key to learn its outcome"}
	case err != nil:
		return fmt.Errorf("api: %w", err)
	case res.Created && s.cfg.Admission != nil:
		s.cfg.Admission.Accepted(1)
	}
	s.replay(w, r, res)
	return nil
}

// dayEnd is when a DAY order placed at now expires: the next time of day end (UTC).
func dayEnd(now time.Time, end time.Duration) time.Time {
	day := now.UTC().Truncate(24 * time.Hour)
	if t := day.Add(end); t.After(now) {
		return t
	}
	return day.Add(24 * time.Hour).Add(end)
}

// placedAnswer renders the answer to the request that placed o, which is stored with it
// and is what every replay of its key gets.
func (s *server) placedAnswer(o queries.Order) orderbook.Answer {
	body, err := json.Marshal(placedView{orderView: s.orderView(o), Message: msgAccepted})
	if err != nil {
		panic(fmt.Sprintf("api: encode a placed order: %v", err)) // plain fields: cannot fail
	}
	return orderbook.Answer{
		Status: http.StatusCreated,
		Headers: map[string]string{
			"Content-Type": "application/json",
			"Location":     "/api/v1/orders/" + strconv.FormatInt(o.ID, 10),
		},
		Body: append(body, '\n'),
	}
}

// replay writes what placing res's order answered: the stored answer, marked
// Idempotent-Replayed unless this request placed it. An order placed before answers were
// stored is answered as it was then: 200, the order as it is now, duplicate: true.
func (s *server) replay(w http.ResponseWriter, r *http.Request, res orderbook.Placed) {
	if !res.Created {
		w.Header().Set(replayedHeader, "true")
	}
	a := res.Answer
	if a == nil {
		v, err := s.fullView(r.Context(), res.Order)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		s.respond(w, r, http.StatusOK, placedView{orderView: v, Message: msgDuplicate, Duplicate: true})
		return
	}
	for k, v := range a.Headers {
		w.Header().Set(k, v)
	}
	w.WriteHeader(a.Status)
	_, _ = w.Write(a.Body)
}

// replayedHeader marks an answer that is a replay of an earlier request's (as Stripe's
// API does).
const replayedHeader = "Idempotent-Replayed"

// admit applies admission control to a new order: while the system could not execute it
// in bounded time, it is refused (an error: 503 OVERLOADED with Retry-After) and nothing
// is written. A replay of an order already accepted asks for no new work and gets its
// answer as ever (answered: admit wrote it), if this process saw its key place the order
// (recentKeys) and the key's look-up answers within RefusalLookup; otherwise it is
// refused like a new order, and its retry gets the answer. Otherwise the order may be
// placed.
func (s *server) admit(w http.ResponseWriter, r *http.Request, req orderRequest, key string) (answered bool, err error) {
	if s.cfg.Admission == nil {
		return false, nil
	}
	ok, retry := s.cfg.Admission.Admit()
	if ok {
		return false, nil
	}
	var (
		res    orderbook.Placed
		looked bool
	)
	// Nearly every refusal is of a new order, whose key this process has not seen place
	// one: it is answered without a read.
	if s.recent.mayHave(req.userID, key) {
		res, looked, err = s.lookUpReplay(r.Context(), req.userID, key, req.hash())
	}
	switch {
	case !looked:
		return false, &apiError{code: codeOverloaded, retryAfter: retry,
			message: fmt.Sprintf("the system is executing as many orders as it can; this request placed nothing (if an earlier request with this Idempotency-Key was accepted, its order stands and a retry returns its answer): retry in %d seconds", max(1, seconds(retry)))}
	case errors.Is(err, orderbook.ErrNotFound):
		return false, &apiError{code: codeOverloaded, retryAfter: retry,
			message: fmt.Sprintf("the system is executing as many orders as it can; nothing was placed: retry in %d seconds", max(1, seconds(retry)))}
	case errors.Is(err, orderbook.ErrKeyReused):
		return false, newError(codeKeyReused, "Idempotency-Key %q was already used by this user for a different order request; use a new key for a new order", key)
	case err != nil:
		return false, fmt.Errorf("api: %w", err)
	}
	s.replay(w, r, res)
	return true, nil
}

// maxRefusalLookups bounds the refusals' key look-ups in flight: under overload the
// database is the bottleneck, and refusing must not add to its queue without bound.
const maxRefusalLookups = 16

// lookUpReplay looks the key up for a refusal, for at most RefusalLookup; looked is
// false when it did not answer in that time, or too many look-ups are in flight. A
// look-up that outlives its refusal runs on to its end (bounded by the request timeout)
// rather than be cancelled, which would cost its pool connection.
func (s *server) lookUpReplay(ctx context.Context, user int64, key, hash string) (res orderbook.Placed, looked bool, err error) {
	select {
	case s.lookups <- struct{}{}:
	default:
		return res, false, nil
	}
	type result struct {
		p   orderbook.Placed
		err error
	}
	done := make(chan result, 1)
	go func() {
		defer func() { <-s.lookups }()
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.RequestTimeout)
		defer cancel()
		p, err := s.book.Replay(ctx, user, key, hash)
		done <- result{p, err}
	}()
	t := time.NewTimer(s.cfg.RefusalLookup)
	defer t.Stop()
	select {
	case r := <-done:
		return r.p, true, r.err
	case <-t.C:
		return res, false, nil
	}
}

// orderID parses the {id} path parameter.
func orderID(r *http.Request) (int64, error) {
	raw := chi.URLParam(r, "id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return 0, invalid(fieldError{"id", fmt.Sprintf("must be a positive integer, got %q", raw)})
	}
	return id, nil
}

// loadOrder returns the order named by the {id} path parameter, or an ORDER_NOT_FOUND
// error, which is also the answer for another user's order (unless the caller sees
// every user's): whether an id exists is nobody else's business.
func (s *server) loadOrder(r *http.Request) (queries.Order, error) {
	id, err := orderID(r)
	if err != nil {
		return queries.Order{}, err
	}
	o, err := s.book.Order(r.Context(), id)
	if errors.Is(err, orderbook.ErrNotFound) || err == nil && !callerOf(r).sees(o) {
		return queries.Order{}, orderNotFound(id)
	}
	if err != nil {
		return queries.Order{}, fmt.Errorf("api: %w", err)
	}
	return o, nil
}

// getOrderByClientID handles GET /api/v1/orders/by-client-order-id?clientOrderId=…: the
// caller's order with that client order id. A caller who sees every user's orders names
// the user (userId), since the id is unique only among one user's orders.
func (s *server) getOrderByClientID(w http.ResponseWriter, r *http.Request) error {
	c, q := callerOf(r), r.URL.Query()
	cid := q.Get("clientOrderId")
	if err := printableID(cid, maxClientOrderIDLen); err != nil {
		return invalid(fieldError{"clientOrderId", err.Error()})
	}
	user, err := s.userOf(c, q.Get("userId"))
	if err != nil {
		return err
	}
	o, err := s.book.OrderByClientOrderID(r.Context(), user, cid)
	if errors.Is(err, orderbook.ErrNotFound) {
		return newError(codeOrderNotFound, "no order of user %d has clientOrderId %q", user, cid)
	}
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	w.Header().Set("ETag", etag(o))
	v, err := s.fullView(r.Context(), o)
	if err != nil {
		return err
	}
	s.respond(w, r, http.StatusOK, v)
	return nil
}

// getOrder handles GET /api/v1/orders/{id}.
func (s *server) getOrder(w http.ResponseWriter, r *http.Request) error {
	o, err := s.loadOrder(r)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", etag(o))
	if notModified(r, o) {
		w.WriteHeader(http.StatusNotModified)
		return nil
	}
	v, err := s.fullView(r.Context(), o)
	if err != nil {
		return err
	}
	s.respond(w, r, http.StatusOK, v)
	return nil
}

// sortFields maps the sort fields a client may name to the list's sort keys: the JSON
// names of the order's fields, which are the names the original backend's entity had
// (its web client sends them), and today's id and status.
var sortFields = map[string]orderbook.SortKey{
	"id": orderbook.SortID, "orderId": orderbook.SortID,
	"createdAt": orderbook.SortCreatedAt, "updatedAt": orderbook.SortUpdatedAt,
	"userId": orderbook.SortUserID, "instrumentId": orderbook.SortInstrumentID,
	"orderType": orderbook.SortSide, "orderKind": orderbook.SortKind,
	"price": orderbook.SortPrice, "quantity": orderbook.SortQuantity,
	"remainingQuantity": orderbook.SortRemainingQuantity,
	"orderStatus":       orderbook.SortStatus, "status": orderbook.SortStatus,
}

// sortFieldList names the sort fields, for error messages.
func sortFieldList() string {
	names := make([]string, 0, len(sortFields))
	for name := range sortFields {
		names = append(names, name)
	}
	slices.Sort(names)
	return strings.Join(names, ", ")
}

// listQuery is a parsed GET /api/v1/orders query.
type listQuery struct {
	page, size int64
	q          orderbook.ListQuery
}

// parseListQuery validates the list parameters, naming every bad one. Empty values mean
// the default, as in the seed (Spring) API; unknown parameters are ignored, as there.
func parseListQuery(v url.Values) (listQuery, error) {
	lq := listQuery{page: 0, size: defaultPageSize, q: orderbook.ListQuery{Sort: orderbook.SortCreatedAt, Desc: true}}
	var errs []fieldError
	bad := func(field, msg string) { errs = append(errs, fieldError{field, msg}) }

	if s := v.Get("page"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 0 {
			bad("page", "must be a non-negative integer")
		} else {
			lq.page = n
		}
	}
	if s := v.Get("size"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 || n > maxPageSize {
			bad("size", fmt.Sprintf("must be an integer from 1 to %d", maxPageSize))
		} else {
			lq.size = n
		}
	}
	// A page beyond this cannot hold anything anyway, and the offset stays an int32.
	if offset := lq.page * lq.size; lq.page > math.MaxInt32 || offset > math.MaxInt32 {
		bad("page", "is too large")
	}
	if sorts := v["sort"]; len(sorts) > 1 {
		bad("sort", "may be given once")
	} else if len(sorts) == 1 && sorts[0] != "" {
		field, dir, hasDir := strings.Cut(sorts[0], ",")
		key, ok := sortFields[field]
		if !ok {
			bad("sort", fmt.Sprintf("cannot sort by %q: use one of %s", field, sortFieldList()))
		} else {
			lq.q.Sort = key
		}
		switch {
		case !hasDir || strings.EqualFold(dir, "asc"):
			lq.q.Desc = false
		case strings.EqualFold(dir, "desc"):
			lq.q.Desc = true
		default:
			bad("sort", fmt.Sprintf("direction must be asc or desc, got %q", dir))
		}
	}
	if s := v.Get("userId"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err != nil || n <= 0 {
			bad("userId", "must be a positive integer")
		} else {
			lq.q.UserID = &n
		}
	}
	if s := v.Get("instrumentId"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err != nil || n <= 0 {
			bad("instrumentId", "must be a positive integer")
		} else {
			lq.q.InstrumentID = &n
		}
	}
	if s := v.Get("status"); s != "" {
		if st, err := order.ParseStatus(s); err != nil {
			bad("status", "must be one of "+strings.Join(order.Names(order.Statuses), ", "))
		} else {
			lq.q.Status = &st
		}
	}
	if len(errs) > 0 {
		return listQuery{}, invalid(errs...)
	}
	lq.q.Limit = int32(lq.size)
	lq.q.Offset = lq.page * lq.size
	return lq, nil
}

// restrictToCaller keeps a list to the caller's own orders; only one who sees every
// user's may filter by user.
func restrictToCaller(r *http.Request, lq *listQuery) error {
	c := callerOf(r)
	if c.seesAll() {
		return nil
	}
	if lq.q.UserID != nil && *lq.q.UserID != c.UserID {
		return &apiError{code: codeForbidden, fields: []fieldError{{"userId", "is not the user of this credential"}},
			message: fmt.Sprintf("userId %d is not the user of this credential: a list holds your own orders only", *lq.q.UserID)}
	}
	lq.q.UserID = &c.UserID
	return nil
}

// listOrders handles GET /api/v1/orders: a page, and a total that agrees with it; or, with
// limit or cursor, a keyset page (listOrdersByCursor).
func (s *server) listOrders(w http.ResponseWriter, r *http.Request) error {
	if cursorMode(r.URL.Query()) {
		return s.listOrdersByCursor(w, r)
	}
	lq, err := parseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	if err := restrictToCaller(r, &lq); err != nil {
		return err
	}
	res, err := s.book.ListOrders(r.Context(), lq.q)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	page := pageView{
		Content:          make([]orderView, len(res.Orders)),
		TotalElements:    res.Total,
		TotalPages:       (res.Total + lq.size - 1) / lq.size,
		Number:           lq.page,
		Size:             lq.size,
		NumberOfElements: len(res.Orders),
	}
	if page.Content, err = s.orderViews(r.Context(), res.Orders...); err != nil {
		return err
	}
	page.First = lq.page == 0
	page.Last = lq.page >= page.TotalPages-1
	s.respond(w, r, http.StatusOK, page)
	return nil
}

// cancelOrder handles POST /api/v1/orders/{id}/cancel.
//
// The request is first recorded (which takes the order off the book at once, so it
// never trades again) and only then sent to the workflow, so a cancel that cannot be
// delivered is still on record and a retry re-sends it. The answer tells the truth about
// the order afterwards: 200 when it is terminal (cancelled, or filled first), 202 when
// the workflow has yet to apply the cancel.
func (s *server) cancelOrder(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	o, err := s.loadOrder(r)
	if err != nil {
		return err
	}
	// A trader cancels their own orders; an operator (admin) anyone's. An order's user
	// never changes, so this check cannot go stale before the cancel is recorded.
	if o.UserID != c.UserID && !c.Admin() && !c.trusted {
		return orderNotFound(o.ID)
	}
	if o.UserID == c.UserID && !c.Has(auth.ScopeTrade) && !c.trusted {
		return &apiError{code: codeForbidden, message: "cancelling your own order needs the trade scope",
			challenge: challenge + `, error="insufficient_scope", scope="trade"`}
	}
	match, err := ifMatch(r)
	if err != nil {
		return err
	}
	out := s.cancel(r.Context(), o.ID, c.name(), match, s.cfg.CancelWait)
	if out.err != nil {
		if out.current.ID != 0 {
			w.Header().Set("ETag", etag(out.current))
		}
		return out.err
	}
	w.Header().Set("ETag", etag(out.current))
	v, err := s.fullView(r.Context(), out.current)
	if err != nil {
		return err
	}
	s.respond(w, r, out.status, cancelView{orderView: v, Message: out.message})
	return nil
}

// cancelOutcome is what one cancel did: its answer's status and message and the order
// afterwards, or err, the error to answer with (and current, if known, the order that
// made it so).
type cancelOutcome struct {
	status  int
	message string
	current queries.Order
	err     error
}

// cancel records the cancel of order id for by (if the order passes match, when not
// nil), signals its run and waits up to wait for the run to apply it. The caller has
// checked that by may cancel it.
func (s *server) cancel(ctx context.Context, id int64, by string, match func(queries.Order) bool, wait time.Duration) cancelOutcome {
	out := s.recordCancel(ctx, id, by, match)
	if out.err != nil {
		return out
	}
	return s.signalCancel(ctx, out.current, by, wait)
}

// recordCancel is cancel's first half: the cancel is on record (the order off the book)
// once it returns without error, with the order in current.
func (s *server) recordCancel(ctx context.Context, id int64, by string, match func(queries.Order) bool) cancelOutcome {
	rec, err := s.book.RecordCancel(ctx, id, by, match)
	var st *orderbook.StatusError
	switch {
	case errors.Is(err, orderbook.ErrNotFound):
		return cancelOutcome{err: orderNotFound(id)}
	case errors.Is(err, orderbook.ErrPrecondition):
		return cancelOutcome{current: rec, err: preconditionFailed(rec)}
	case errors.As(err, &st) && errors.Is(err, orderbook.ErrTerminal):
		return cancelOutcome{err: newError(codeOrderTerminal, "order %d is %s and can no longer be cancelled", id, st.Status)}
	case err != nil:
		return cancelOutcome{err: fmt.Errorf("api: cancel order %d: %w", id, err)}
	}
	return cancelOutcome{current: rec}
}

// signalCancel is cancel's second half, for the order rec whose cancel is recorded: it
// tells the run and waits up to wait for it to apply the cancel.
func (s *server) signalCancel(ctx context.Context, rec queries.Order, by string, wait time.Duration) cancelOutcome {
	id := rec.ID
	if _, err := s.cancels.RequestCancel(ctx, id, rec.RunKey, by, wait); err != nil {
		return cancelOutcome{current: rec, err: &apiError{
			code:    codeUnavailable,
			message: "the cancel request was recorded, but the order's workflow could not be reached; retry the request",
			cause:   fmt.Errorf("api: cancel order %d: %w", id, err),
		}}
	}
	o, err := s.book.Order(ctx, id)
	if err != nil {
		return cancelOutcome{err: fmt.Errorf("api: cancel order %d: re-read: %w", id, err)}
	}
	status := order.Status(o.Status)
	if !status.Terminal() {
		return cancelOutcome{status: http.StatusAccepted, message: msgCancelAccepted, current: o}
	}
	msg := "Order cancelled"
	if status != order.Cancelled && status != order.PartiallyCancelled {
		msg = fmt.Sprintf("Order reached %s before the cancel could be applied", status)
	}
	return cancelOutcome{status: http.StatusOK, message: msg, current: o}
}

// listOrderEvents handles GET /api/v1/orders/{id}/events: the timeline, oldest first.
func (s *server) listOrderEvents(w http.ResponseWriter, r *http.Request) error {
	o, err := s.loadOrder(r)
	if err != nil {
		return err
	}
	events, err := s.book.Events(r.Context(), o.ID)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	views := make([]eventView, len(events))
	both := callerOf(r).seesAll()
	for i, e := range events {
		views[i] = newEventView(e)
		if !both {
			views[i].Details = withoutCounterparty(views[i].Details)
		}
	}
	s.respond(w, r, http.StatusOK, views)
	return nil
}

// withoutCounterparty returns a fill's event details without the counterparty's order
// id, which is another user's; other details are returned as they are.
func withoutCounterparty(details json.RawMessage) json.RawMessage {
	if !bytes.Contains(details, []byte(`"counterpartyOrderId"`)) {
		return details
	}
	var m map[string]json.RawMessage
	if json.Unmarshal(details, &m) != nil {
		return details
	}
	delete(m, "counterpartyOrderId")
	b, err := json.Marshal(m)
	if err != nil {
		return details
	}
	return b
}

// listOrderTrades handles GET /api/v1/orders/{id}/trades.
func (s *server) listOrderTrades(w http.ResponseWriter, r *http.Request) error {
	o, err := s.loadOrder(r)
	if err != nil {
		return err
	}
	trades, err := s.book.Trades(r.Context(), o.ID)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	views := make([]tradeView, len(trades))
	for i, t := range trades {
		views[i] = newTradeView(t, o.ID, callerOf(r).seesAll())
	}
	s.respond(w, r, http.StatusOK, views)
	return nil
}

// listInstruments handles GET /api/v1/instruments (and the admin view of them).
// Depth limits of GET /api/v1/instruments/{id}/book.
const (
	defaultBookLevels = 10
	maxBookLevels     = 100
)

// getBook handles GET /api/v1/instruments/{id}/book?limit=N: the instrument's resting
// orders aggregated by price level, bids highest first and asks lowest first, at most N
// levels a side, both sides from one snapshot.
func (s *server) getBook(w http.ResponseWriter, r *http.Request) error {
	id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64)
	if err != nil || id <= 0 {
		return invalid(fieldError{"id", "must be a positive integer"})
	}
	levels := defaultBookLevels
	if v := r.URL.Query().Get("limit"); v != "" {
		if levels, err = strconv.Atoi(v); err != nil || levels < 1 || levels > maxBookLevels {
			return invalid(fieldError{"limit", fmt.Sprintf("must be an integer from 1 to %d", maxBookLevels)})
		}
	}
	b, err := s.book.Depth(r.Context(), id, levels)
	if errors.Is(err, orderbook.ErrInstrumentNotFound) {
		return newError(codeInstrumentNotFound, "no instrument has id %d", id)
	}
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	s.respond(w, r, http.StatusOK, newBookView(b))
	return nil
}

func (s *server) listInstruments(w http.ResponseWriter, r *http.Request) error {
	instruments, err := s.book.Instruments(r.Context())
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	views := make([]instrumentView, len(instruments))
	for i, in := range instruments {
		views[i] = newInstrumentView(in)
	}
	s.respond(w, r, http.StatusOK, views)
	return nil
}
