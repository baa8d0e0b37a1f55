package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/order"
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

// requestedBy is the details of a client's event. There is no authentication yet, so a
// request is attributed to the user it acts for.
type requestedBy struct {
	RequestedBy string `json:"requestedBy"`
}

// userActor returns the details of an event a client asked for on behalf of userID.
func userActor(userID int64) []byte {
	b, _ := json.Marshal(requestedBy{RequestedBy: "user:" + strconv.FormatInt(userID, 10)}) // a string cannot fail to encode
	return b
}

// placeOrder handles POST /api/v1/orders. The order, its ORDER_PLACED event and the
// outbox message that starts its execution are written by one statement, so an order is
// never stranded without its message nor announced without being stored. Concurrent
// requests share that statement and its commit (placer), so the database pays one
// commit per batch rather than per order; the 201 still comes only after the order's
// commit.
//
// Idempotency rests on UNIQUE (user_id, idempotency_key): of concurrent requests with one
// key, exactly one insert wins; the others wait for it on the unique index (or, in the
// same batch, are left out of it), write nothing (no order, so no event and no message
// either) and get no row. As the winner's statement has committed by then, the next
// statement reads its row.
func (s *server) placeOrder(w http.ResponseWriter, r *http.Request) error {
	if err := requireJSON(r); err != nil {
		return err
	}
	key, err := idempotencyKey(r)
	if err != nil {
		return err
	}
	req, err := decodeOrderRequest(r)
	if err != nil {
		return err
	}
	hash := req.hash()

	res := s.placer.place(req, key, hash)
	if res.err != nil {
		return fmt.Errorf("api: place order: %w", res.err)
	}
	if !res.created {
		existing, err := s.q.GetOrderByIdempotencyKey(r.Context(), queries.GetOrderByIdempotencyKeyParams{UserID: req.userID, IdempotencyKey: key})
		if err != nil {
			return fmt.Errorf("api: place order: load order of idempotency key: %w", err)
		}
		if existing.RequestHash != hash {
			return newError(codeKeyReused, "Idempotency-Key %q was already used by this user for a different order request; use a new key for a new order", key)
		}
		s.respond(w, r, http.StatusOK, placedView{orderView: s.orderView(existing), Message: msgDuplicate, Duplicate: true})
		return nil
	}

	placed := res.order
	w.Header().Set("Location", "/api/v1/orders/"+strconv.FormatInt(placed.ID, 10))
	s.respond(w, r, http.StatusCreated, placedView{orderView: s.orderView(placed), Message: msgAccepted})
	return nil
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
// error.
func (s *server) loadOrder(r *http.Request) (queries.Order, error) {
	id, err := orderID(r)
	if err != nil {
		return queries.Order{}, err
	}
	o, err := s.q.GetOrder(r.Context(), id)
	if errors.Is(err, pgx.ErrNoRows) {
		return queries.Order{}, orderNotFound(id)
	}
	if err != nil {
		return queries.Order{}, fmt.Errorf("api: get order %d: %w", id, err)
	}
	return o, nil
}

// getOrder handles GET /api/v1/orders/{id}.
func (s *server) getOrder(w http.ResponseWriter, r *http.Request) error {
	o, err := s.loadOrder(r)
	if err != nil {
		return err
	}
	s.respond(w, r, http.StatusOK, s.orderView(o))
	return nil
}

// sortKey maps a sort field a client may name to ListOrders' sort key.
func sortKey(field string) (string, bool) {
	switch field {
	case "id", "createdAt", "updatedAt", "price", "quantity":
		return field, true
	case "orderStatus":
		return "status", true
	}
	return "", false
}

// listQuery is a parsed GET /api/v1/orders query.
type listQuery struct {
	page, size int64
	params     queries.ListOrdersParams
}

// parseListQuery validates the list parameters, naming every bad one. Empty values mean
// the default, as in the seed (Spring) API; unknown parameters are ignored, as there.
func parseListQuery(v url.Values) (listQuery, error) {
	lq := listQuery{page: 0, size: defaultPageSize, params: queries.ListOrdersParams{SortKey: "createdAt", SortDesc: true}}
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
	// The offset is an int32 in the query; a page beyond it cannot hold anything anyway.
	if offset := lq.page * lq.size; lq.page > math.MaxInt32 || offset > math.MaxInt32 {
		bad("page", "is too large")
	}
	if sorts := v["sort"]; len(sorts) > 1 {
		bad("sort", "may be given once")
	} else if len(sorts) == 1 && sorts[0] != "" {
		field, dir, hasDir := strings.Cut(sorts[0], ",")
		key, ok := sortKey(field)
		if !ok {
			bad("sort", fmt.Sprintf("cannot sort by %q: use id, createdAt, updatedAt, price, quantity or orderStatus", field))
		} else {
			lq.params.SortKey = key
		}
		switch {
		case !hasDir || strings.EqualFold(dir, "asc"):
			lq.params.SortDesc = false
		case strings.EqualFold(dir, "desc"):
			lq.params.SortDesc = true
		default:
			bad("sort", fmt.Sprintf("direction must be asc or desc, got %q", dir))
		}
	}
	if s := v.Get("userId"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err != nil || n <= 0 {
			bad("userId", "must be a positive integer")
		} else {
			lq.params.UserID = &n
		}
	}
	if s := v.Get("instrumentId"); s != "" {
		if n, err := strconv.ParseInt(s, 10, 64); err != nil || n <= 0 {
			bad("instrumentId", "must be a positive integer")
		} else {
			lq.params.InstrumentID = &n
		}
	}
	if s := v.Get("status"); s != "" {
		if st, err := order.ParseStatus(s); err != nil {
			bad("status", "must be one of "+statusList())
		} else {
			str := string(st)
			lq.params.Status = &str
		}
	}
	if len(errs) > 0 {
		return listQuery{}, invalid(errs...)
	}
	lq.params.PageSize = int32(lq.size)
	lq.params.PageOffset = int32(lq.page * lq.size)
	return lq, nil
}

// statusList names every order status, for error messages.
func statusList() string {
	names := make([]string, len(order.Statuses))
	for i, st := range order.Statuses {
		names[i] = string(st)
	}
	return strings.Join(names, ", ")
}

// listOrders handles GET /api/v1/orders. The count and the page are read in one
// read-only REPEATABLE READ transaction, so totalElements always agrees with content.
func (s *server) listOrders(w http.ResponseWriter, r *http.Request) error {
	lq, err := parseListQuery(r.URL.Query())
	if err != nil {
		return err
	}
	ctx := r.Context()
	tx, err := s.pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return fmt.Errorf("api: list orders: begin: %w", err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	q := s.q.WithTx(tx)
	total, err := q.CountOrders(ctx, queries.CountOrdersParams{
		UserID: lq.params.UserID, Status: lq.params.Status, InstrumentID: lq.params.InstrumentID,
	})
	if err != nil {
		return fmt.Errorf("api: count orders: %w", err)
	}
	rows, err := q.ListOrders(ctx, lq.params)
	if err != nil {
		return fmt.Errorf("api: list orders: %w", err)
	}

	page := pageView{
		Content:          make([]orderView, len(rows)),
		TotalElements:    total,
		TotalPages:       (total + lq.size - 1) / lq.size,
		Number:           lq.page,
		Size:             lq.size,
		NumberOfElements: len(rows),
	}
	for i, o := range rows {
		page.Content[i] = s.orderView(o)
	}
	page.First = lq.page == 0
	page.Last = lq.page >= page.TotalPages-1
	s.respond(w, r, http.StatusOK, page)
	return nil
}

// cancelOrder handles POST /api/v1/orders/{id}/cancel.
//
// The request is first recorded (cancel_requested, and one CANCEL_REQUESTED event however
// often it is repeated) and only then sent to the workflow, so a cancel that cannot be
// delivered is still on record and a retry re-sends it. The answer tells the truth about
// the order afterwards: 200 when it is terminal (cancelled, or filled first), 202 when
// the workflow has yet to apply the cancel.
func (s *server) cancelOrder(w http.ResponseWriter, r *http.Request) error {
	id, err := orderID(r)
	if err != nil {
		return err
	}
	if err := s.recordCancel(r, id); err != nil {
		return err
	}

	ctx := r.Context()
	if _, err := s.cancels.RequestCancel(ctx, id, s.cfg.CancelWait); err != nil {
		return &apiError{
			code:    codeUnavailable,
			message: "the cancel request was recorded, but the order's workflow could not be reached; retry the request",
			cause:   fmt.Errorf("api: cancel order %d: %w", id, err),
		}
	}
	o, err := s.q.GetOrder(ctx, id)
	if err != nil {
		return fmt.Errorf("api: cancel order %d: re-read: %w", id, err)
	}
	status := order.Status(o.Status)
	if !status.Terminal() {
		s.respond(w, r, http.StatusAccepted, cancelView{orderView: s.orderView(o), Message: msgCancelAccepted})
		return nil
	}
	msg := "Order cancelled"
	if status != order.Cancelled && status != order.PartiallyCancelled {
		msg = fmt.Sprintf("Order reached %s before the cancel could be applied", status)
	}
	s.respond(w, r, http.StatusOK, cancelView{orderView: s.orderView(o), Message: msg})
	return nil
}

// recordCancel marks order id as cancel-requested and, the first time only, appends its
// CANCEL_REQUESTED event. The row lock taken by GetOrderForUpdate makes "first time"
// exact under concurrent cancels, and gives the event the next seq without racing a
// status change. It returns ORDER_NOT_FOUND or ORDER_TERMINAL errors.
func (s *server) recordCancel(r *http.Request, id int64) error {
	ctx := r.Context()
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("api: cancel order %d: begin: %w", id, err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	q := s.q.WithTx(tx)

	before, err := q.GetOrderForUpdate(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return orderNotFound(id)
	}
	if err != nil {
		return fmt.Errorf("api: cancel order %d: lock: %w", id, err)
	}
	terminal := func(st string) error {
		return newError(codeOrderTerminal, "order %d is %s and can no longer be cancelled", id, st)
	}
	if order.Status(before.Status).Terminal() {
		return terminal(before.Status)
	}
	if _, err := q.MarkCancelRequested(ctx, id); errors.Is(err, pgx.ErrNoRows) {
		return terminal(before.Status) // cannot happen under the row lock; kept for safety
	} else if err != nil {
		return fmt.Errorf("api: cancel order %d: mark: %w", id, err)
	}
	if !before.CancelRequested {
		from := before.Status
		if _, err := q.InsertOrderEvent(ctx, queries.InsertOrderEventParams{
			OrderID:    id,
			EventType:  string(order.EventCancelRequested),
			FromStatus: &from,
			ToStatus:   before.Status,
			Details:    userActor(before.UserID),
		}); err != nil {
			return fmt.Errorf("api: cancel order %d: insert event: %w", id, err)
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("api: cancel order %d: commit: %w", id, err)
	}
	return nil
}

// listOrderEvents handles GET /api/v1/orders/{id}/events: the timeline, oldest first.
func (s *server) listOrderEvents(w http.ResponseWriter, r *http.Request) error {
	o, err := s.loadOrder(r)
	if err != nil {
		return err
	}
	events, err := s.q.ListOrderEvents(r.Context(), o.ID)
	if err != nil {
		return fmt.Errorf("api: list events of order %d: %w", o.ID, err)
	}
	views := make([]eventView, len(events))
	for i, e := range events {
		views[i] = newEventView(e)
	}
	s.respond(w, r, http.StatusOK, views)
	return nil
}

// listOrderTrades handles GET /api/v1/orders/{id}/trades.
func (s *server) listOrderTrades(w http.ResponseWriter, r *http.Request) error {
	o, err := s.loadOrder(r)
	if err != nil {
		return err
	}
	trades, err := s.q.ListOrderTrades(r.Context(), o.ID)
	if err != nil {
		return fmt.Errorf("api: list trades of order %d: %w", o.ID, err)
	}
	views := make([]tradeView, len(trades))
	for i, t := range trades {
		views[i] = newTradeView(t)
	}
	s.respond(w, r, http.StatusOK, views)
	return nil
}

// listInstruments handles GET /api/v1/instruments.
func (s *server) listInstruments(w http.ResponseWriter, r *http.Request) error {
	instruments, err := s.q.ListInstruments(r.Context())
	if err != nil {
		return fmt.Errorf("api: list instruments: %w", err)
	}
	views := make([]instrumentView, len(instruments))
	for i, in := range instruments {
		views[i] = newInstrumentView(in)
	}
	s.respond(w, r, http.StatusOK, views)
	return nil
}
