package orderbook

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/jackc/pgx/v5"
	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/queries"
)

// AmendRequest is a client's amendment of a resting order. Quantity is the order's new
// total quantity (what it has filled counts towards it; 0 keeps it); Price its new limit
// (not Valid: kept). AmendID names the amendment, so a retry of one that was applied
// finds it applied. IfVersion, when not nil, is the version the client saw (If-Match).
type AmendRequest struct {
	OrderID     int64
	AmendID     string
	Quantity    int64
	Price       decimal.NullDecimal
	IfVersion   *int64
	RequestedBy string
}

// AmendOutcome is what an amendment did, or why it did nothing.
type AmendOutcome string

// Outcomes of Amend. The refusals change nothing.
const (
	// AmendedInPlace: a smaller quantity, applied to the order itself; its time priority
	// is kept.
	AmendedInPlace AmendOutcome = "AMENDED"
	// AmendReplaced: a new price or a larger quantity. The order ended (CANCELLED or
	// PARTIALLY_CANCELLED, reason REPLACED) and a new order, which names it, takes its
	// place at the back of its price level, with the rest of the quantity to fill; it is
	// executed as any new order is.
	AmendReplaced AmendOutcome = "REPLACED"
	// AmendUnchanged: the amendment asked for what the order already is.
	AmendUnchanged AmendOutcome = "UNCHANGED"
	// AmendPreconditionFailed: the order's version is not IfVersion.
	AmendPreconditionFailed AmendOutcome = "PRECONDITION_FAILED"
	// AmendNotAmendable: the order does not rest on the book (it has ended, a cancel was
	// requested, it is not yet or no longer on the book) or its instrument is halted.
	AmendNotAmendable AmendOutcome = "NOT_AMENDABLE"
	// AmendBelowFilled: the new quantity is not above what the order has filled.
	AmendBelowFilled AmendOutcome = "QUANTITY_NOT_ABOVE_FILLED"
	// AmendInvalid: the instrument's rules refuse the new price or quantity (Detail says
	// which: PRICE_NOT_ON_TICK, QUANTITY_NOT_ON_LOT, QUANTITY_OUT_OF_RANGE).
	AmendInvalid AmendOutcome = "INVALID"
)

// Applied reports whether the outcome changed the order (or found it as asked).
func (o AmendOutcome) Applied() bool {
	return o == AmendedInPlace || o == AmendReplaced || o == AmendUnchanged
}

// ErrNotAmendable: the order's run refused an amendment before it reached the order (it
// is not resting on the book, or another amendment is in progress).
var ErrNotAmendable = errors.New("the order cannot be amended now")

// Amended is what an amendment applied through the order's run did: its outcome, and
// the order that replaced the amended one (AmendReplaced), else 0.
type Amended struct {
	Outcome       AmendOutcome
	Detail        string
	ReplacementID int64
}

// AmendResult is what Amend did: Order is the amended order as it stands (for a
// replacement, ended), Replacement the new order that replaced it.
type AmendResult struct {
	Outcome     AmendOutcome
	Detail      string
	Order       queries.Order
	Replacement *queries.Order
}

// Amend applies req to a resting order, under its instrument's lock, so it is ordered
// with every match of the book: a fill that commits first is seen, and the amendment is
// judged against the order as the fill left it (a quantity must stay above what has been
// filled). A smaller quantity changes the order in place and keeps its time priority; a
// new price or a larger quantity replaces it, in the same transaction, with a new order
// for the rest (see AmendReplaced), so no order's price or book sequence ever changes
// once it has reached the book. A retry of an amendment that was applied finds it
// applied and answers the same. It returns ErrNotFound or ErrInstrumentNotFound.
func (s *Service) Amend(ctx context.Context, req AmendRequest) (res AmendResult, err error) {
	err = s.inTx(ctx, func(tx *txn) error {
		res, err = tx.amend(ctx, req)
		return err
	})
	if err == nil && res.Outcome == AmendReplaced && s.placer.waker != nil {
		s.placer.waker.Wake() // the replacement's outbox message starts its run
	}
	return res, err
}

func (tx *txn) amend(ctx context.Context, req AmendRequest) (AmendResult, error) {
	o, err := tx.getOrder(ctx, req.OrderID, false)
	if err != nil {
		return AmendResult{}, err
	}
	inst, found, err := tx.lockInstrument(ctx, o.InstrumentID)
	if err != nil {
		return AmendResult{}, err
	}
	if !found {
		return AmendResult{}, fmt.Errorf("order %d: instrument %d: %w", o.ID, o.InstrumentID, ErrInstrumentNotFound)
	}
	if o, err = tx.getOrder(ctx, req.OrderID, true); err != nil {
		return AmendResult{}, err
	}
	if done, applied, err := tx.amendApplied(ctx, o, req); err != nil || applied {
		return done, err
	}
	refuse := func(out AmendOutcome, format string, args ...any) (AmendResult, error) {
		return AmendResult{Outcome: out, Detail: fmt.Sprintf(format, args...), Order: o}, nil
	}
	st := order.Status(o.Status)
	switch {
	case req.IfVersion != nil && o.Version != *req.IfVersion:
		return refuse(AmendPreconditionFailed, "order %d is at version %d, not %d", o.ID, o.Version, *req.IfVersion)
	case st.Terminal():
		return refuse(AmendNotAmendable, "order %d has ended %s", o.ID, st)
	case o.CancelRequested:
		return refuse(AmendNotAmendable, "a cancel of order %d was requested", o.ID)
	case !o.OnBook:
		return refuse(AmendNotAmendable, "order %d is %s and not resting on the book: only a resting order can be amended", o.ID, st)
	case inst.Status != InstrumentActive:
		return refuse(AmendNotAmendable, "instrument %d is halted", inst.ID)
	}
	qty, price := o.Quantity, o.Price.Decimal
	if req.Quantity != 0 {
		qty = req.Quantity
	}
	if req.Price.Valid {
		price = req.Price.Decimal
	}
	filled := o.Quantity - o.RemainingQuantity
	switch {
	case qty <= filled:
		return refuse(AmendBelowFilled, "order %d has filled %d of %d: its quantity must stay above that (cancel it to stop it)", o.ID, filled, o.Quantity)
	case qty == o.Quantity && price.Equal(o.Price.Decimal):
		return AmendResult{Outcome: AmendUnchanged, Order: o}, nil
	}
	inPlace := price.Equal(o.Price.Decimal) && qty < o.Quantity
	// The rules of the instrument hold for the order's total, and for what a replacement
	// would place, so that it cannot be rejected once its predecessor has gone.
	reason := rules(inst).Rejection(order.Limit, price, qty)
	if reason == "" && !inPlace {
		reason = rules(inst).Rejection(order.Limit, price, qty-filled)
	}
	if reason != "" {
		return refuse(AmendInvalid, "%s", reason)
	}
	by := req.RequestedBy
	if by == "" {
		by = "user:" + strconv.FormatInt(o.UserID, 10)
	}
	if inPlace {
		amended, err := tx.ReduceOrderQuantity(ctx, queries.ReduceOrderQuantityParams{ID: o.ID, Version: o.Version, Quantity: qty})
		if err != nil {
			return AmendResult{}, fmt.Errorf("amend order %d: %w", o.ID, err)
		}
		if err := tx.annotate(ctx, amended, order.EventAmended, map[string]any{
			"amendId": req.AmendID, "requestedBy": by, "previousQuantity": o.Quantity,
			"quantity": amended.Quantity, "remainingQuantity": amended.RemainingQuantity, "priority": "kept",
		}); err != nil {
			return AmendResult{}, err
		}
		return AmendResult{Outcome: AmendedInPlace, Order: amended}, nil
	}
	return tx.replace(ctx, o, req, qty-filled, price, by)
}

// replace ends o (REPLACED) and places its replacement for quantity at price, in tx.
func (tx *txn) replace(ctx context.Context, o queries.Order, req AmendRequest, quantity int64, price decimal.Decimal, by string) (AmendResult, error) {
	details, err := json.Marshal(map[string]any{"requestedBy": by, "replacesOrderId": o.ID, "amendId": req.AmendID})
	if err != nil {
		return AmendResult{}, fmt.Errorf("event details: %w", err)
	}
	placed, err := tx.PlaceOrders(ctx, placeParams([]NewOrder{{
		UserID: o.UserID, InstrumentID: o.InstrumentID, Side: order.Side(o.Side), Kind: order.Limit,
		Price: decimal.NewNullDecimal(price), Quantity: quantity, TimeInForce: order.TimeInForce(o.TimeInForce),
		IdempotencyKey: replacementKey(o.ID, req.AmendID), RequestHash: replacementKey(o.ID, req.AmendID),
		ExpireAt: o.ExpireAt, Details: details,
	}}))
	if err != nil {
		return AmendResult{}, fmt.Errorf("place the replacement of order %d: %w", o.ID, err)
	}
	if len(placed) != 1 {
		return AmendResult{}, fmt.Errorf("place the replacement of order %d: %w", o.ID, ErrStale)
	}
	repl, err := tx.LinkReplacement(ctx, queries.LinkReplacementParams{ID: placed[0].ID, ReplacesOrderID: &o.ID})
	if err != nil {
		return AmendResult{}, fmt.Errorf("link order %d to the order %d it replaces: %w", placed[0].ID, o.ID, err)
	}
	ended, err := tx.transition(ctx, o, move{to: remainderCancelled(order.Status(o.Status)), reason: order.ReasonReplaced},
		map[string]any{"requestedBy": by, "amendId": req.AmendID, "replacedByOrderId": repl.ID})
	if err != nil {
		return AmendResult{}, err
	}
	return AmendResult{Outcome: AmendReplaced, Order: ended, Replacement: &repl}, nil
}

// amendApplied reports whether req was applied already (a retry after a commit whose
// answer was lost), and then what it did.
func (tx *txn) amendApplied(ctx context.Context, o queries.Order, req AmendRequest) (AmendResult, bool, error) {
	if req.AmendID == "" {
		return AmendResult{}, false, nil
	}
	repl, err := tx.GetReplacement(ctx, &o.ID)
	switch {
	case err == nil && repl.IdempotencyKey == replacementKey(o.ID, req.AmendID):
		return AmendResult{Outcome: AmendReplaced, Order: o, Replacement: &repl}, true, nil
	case err != nil && !errors.Is(err, pgx.ErrNoRows):
		return AmendResult{}, false, fmt.Errorf("find the replacement of order %d: %w", o.ID, err)
	}
	done, err := tx.AmendApplied(ctx, queries.AmendAppliedParams{OrderID: o.ID, AmendID: req.AmendID})
	if err != nil {
		return AmendResult{}, false, fmt.Errorf("find amendment %q of order %d: %w", req.AmendID, o.ID, err)
	}
	return AmendResult{Outcome: AmendedInPlace, Order: o}, done, nil
}

// replacementKey is the idempotency key of the order that amendment amendID of order id
// places. It holds a newline, which no client's key may (see ReleaseIdempotencyKey), so it
// never collides with one; the amendment id is hashed to keep it short.
func replacementKey(id int64, amendID string) string {
	sum := sha256.Sum256([]byte(amendID))
	return "replace\n" + strconv.FormatInt(id, 10) + "\n" + hex.EncodeToString(sum[:12])
}

// Replacement returns the order that replaced order id, or ErrNotFound.
func (s *Service) Replacement(ctx context.Context, id int64) (queries.Order, error) {
	o, err := s.q.GetReplacement(ctx, &id)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, fmt.Errorf("replacement of order %d: %w", id, ErrNotFound)
	}
	return o, err
}
