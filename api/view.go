package api

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"time"

	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
)

// timeLayout is RFC 3339 with milliseconds; times are always shown in UTC.
const timeLayout = "2006-01-02T15:04:05.000Z07:00"

// formatTime renders t for JSON bodies.
func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// number renders a decimal as a JSON number with exactly its digits, so that money is
// never rounded through a float64 on the way out.
func number(d decimal.Decimal) json.Number { return json.Number(d.String()) }

// orderView is an order as the API shows it, in the seed's field names.
type orderView struct {
	OrderID           int64        `json:"orderId"`
	UserID            int64        `json:"userId"`
	InstrumentID      int64        `json:"instrumentId"`
	OrderType         string       `json:"orderType"`
	OrderKind         string       `json:"orderKind"`
	Price             *json.Number `json:"price"`
	Quantity          int64        `json:"quantity"`
	RemainingQuantity int64        `json:"remainingQuantity"`
	FilledQuantity    int64        `json:"filledQuantity"`
	AvgFillPrice      *json.Number `json:"avgFillPrice"` // null until the order has traded
	OrderStatus       string       `json:"orderStatus"`
	TimeInForce       string       `json:"timeInForce"`
	ClientOrderID     string       `json:"clientOrderId,omitempty"`
	ExpireAt          string       `json:"expireAt,omitempty"` // DAY and GTD orders
	ReplacesOrderID   int64        `json:"replacesOrderId,omitempty"`
	ReplacedByOrderID int64        `json:"replacedByOrderId,omitempty"` // shown for one order, not in lists
	Reason            string       `json:"reason,omitempty"`
	CancelRequested   bool         `json:"cancelRequested"`
	NeedsAttention    bool         `json:"needsAttention"`
	CreatedAt         string       `json:"createdAt"`
	UpdatedAt         string       `json:"updatedAt"`
	WorkflowID        string       `json:"workflowId"`
	WorkflowURL       string       `json:"workflowUrl,omitempty"`
}

// orderView renders o, linking its workflow in the Temporal UI when one is configured.
func (s *server) orderView(o queries.Order) orderView {
	v := orderView{
		OrderID:           o.ID,
		UserID:            o.UserID,
		InstrumentID:      o.InstrumentID,
		OrderType:         o.Side,
		OrderKind:         o.Kind,
		Quantity:          o.Quantity,
		RemainingQuantity: o.RemainingQuantity,
		FilledQuantity:    o.Quantity - o.RemainingQuantity,
		OrderStatus:       o.Status,
		TimeInForce:       o.TimeInForce,
		Reason:            o.Reason,
		CancelRequested:   o.CancelRequested,
		NeedsAttention:    o.NeedsAttention,
		CreatedAt:         formatTime(o.CreatedAt),
		UpdatedAt:         formatTime(o.UpdatedAt),
		WorkflowID:        order.WorkflowID(o.ID, o.RunKey),
	}
	if o.Price.Valid {
		p := number(o.Price.Decimal)
		v.Price = &p
	}
	if o.ClientOrderID != nil {
		v.ClientOrderID = *o.ClientOrderID
	}
	if o.ExpireAt != nil {
		v.ExpireAt = formatTime(*o.ExpireAt)
	}
	if o.ReplacesOrderID != nil {
		v.ReplacesOrderID = *o.ReplacesOrderID
	}
	if s.cfg.TemporalUIURL != "" {
		v.WorkflowURL = s.cfg.TemporalUIURL + "/namespaces/" + url.PathEscape(s.cfg.Namespace) +
			"/workflows/" + url.PathEscape(v.WorkflowID)
	}
	return v
}

// orderViews renders orders with the average price each traded at, read at once for
// those that traded.
func (s *server) orderViews(ctx context.Context, orders ...queries.Order) ([]orderView, error) {
	avg, err := s.book.AvgFillPrices(ctx, orders...)
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	views := make([]orderView, len(orders))
	for i, o := range orders {
		views[i] = s.orderView(o)
		if p, ok := avg[o.ID]; ok {
			n := number(p)
			views[i].AvgFillPrice = &n
		}
	}
	return views, nil
}

// fullView is orderViews of one order, with the order that replaced it, if an amendment
// did.
func (s *server) fullView(ctx context.Context, o queries.Order) (orderView, error) {
	v, err := s.orderViews(ctx, o)
	if err != nil {
		return orderView{}, err
	}
	if o.Reason == order.ReasonReplaced {
		repl, err := s.book.Replacement(ctx, o.ID)
		if err != nil {
			return orderView{}, fmt.Errorf("api: %w", err)
		}
		v[0].ReplacedByOrderID = repl.ID
	}
	return v[0], nil
}

// placedView answers POST /api/v1/orders, with the seed's message and duplicate flag.
type placedView struct {
	orderView
	Message   string `json:"message"`
	Duplicate bool   `json:"duplicate"`
}

// cancelView answers POST /api/v1/orders/{id}/cancel.
type cancelView struct {
	orderView
	Message string `json:"message"`
}

// pageView is the seed's (Spring Data) page object.
type pageView struct {
	Content          []orderView `json:"content"`
	TotalElements    int64       `json:"totalElements"`
	TotalPages       int64       `json:"totalPages"`
	Number           int64       `json:"number"`
	Size             int64       `json:"size"`
	First            bool        `json:"first"`
	Last             bool        `json:"last"`
	NumberOfElements int         `json:"numberOfElements"`
}

// eventView is one entry of an order's timeline.
type eventView struct {
	ID         int64           `json:"id"`
	OrderID    int64           `json:"orderId"`
	Seq        int32           `json:"seq"`
	EventType  string          `json:"eventType"`
	FromStatus *string         `json:"fromStatus"`
	ToStatus   string          `json:"toStatus"`
	Details    json.RawMessage `json:"details"`
	CreatedAt  string          `json:"createdAt"`
}

// newEventView renders e; details are passed through as the JSON object they are.
func newEventView(e queries.OrderEvent) eventView {
	details := json.RawMessage(e.Details)
	if len(details) == 0 {
		details = json.RawMessage("{}")
	}
	return eventView{
		ID:         e.ID,
		OrderID:    e.OrderID,
		Seq:        e.Seq,
		EventType:  e.EventType,
		FromStatus: e.FromStatus,
		ToStatus:   e.ToStatus,
		Details:    details,
		CreatedAt:  formatTime(e.CreatedAt),
	}
}

// tradeView is one trade an order took part in.
type tradeView struct {
	TradeID      int64       `json:"tradeId"`
	InstrumentID int64       `json:"instrumentId"`
	BuyOrderID   *int64      `json:"buyOrderId"`  // null: the counterparty's, to a caller who is not an operator
	SellOrderID  *int64      `json:"sellOrderId"` // likewise
	Price        json.Number `json:"price"`
	Quantity     int64       `json:"quantity"`
	ExecutedAt   string      `json:"executedAt"`
}

// newTradeView renders t as seen from order of, naming the other side's order only when
// both shows it: the counterparty's order is another user's.
func newTradeView(t queries.Trade, of int64, both bool) tradeView {
	side := func(id int64) *int64 {
		if id != of && !both {
			return nil
		}
		return &id
	}
	return tradeView{
		TradeID:      t.ID,
		InstrumentID: t.InstrumentID,
		BuyOrderID:   side(t.BuyOrderID),
		SellOrderID:  side(t.SellOrderID),
		Price:        number(t.Price),
		Quantity:     t.Quantity,
		ExecutedAt:   formatTime(t.ExecutedAt),
	}
}

// instrumentView is a tradable instrument and its trading rules.
type instrumentView struct {
	InstrumentID int64       `json:"instrumentId"`
	Symbol       string      `json:"symbol"`
	TickSize     json.Number `json:"tickSize"`
	LotSize      int64       `json:"lotSize"`
	MinQuantity  int64       `json:"minQuantity"`
	MaxQuantity  int64       `json:"maxQuantity"`
	Status       string      `json:"status"`
}

// bookView answers GET /api/v1/instruments/{id}/book: depth by price level, best first.
type bookView struct {
	InstrumentID int64           `json:"instrumentId"`
	Status       string          `json:"status"`
	Bids         []bookLevelView `json:"bids"`
	Asks         []bookLevelView `json:"asks"`
}

// bookLevelView is one price level: the quantity resting there and how many orders.
type bookLevelView struct {
	Price    json.Number `json:"price"`
	Quantity int64       `json:"quantity"`
	Orders   int64       `json:"orders"`
}

func newBookView(b orderbook.Book) bookView {
	levels := func(rows []queries.GetBookDepthRow) []bookLevelView {
		out := make([]bookLevelView, len(rows))
		for i, r := range rows {
			out[i] = bookLevelView{Price: number(r.Price), Quantity: r.Quantity, Orders: r.Orders}
		}
		return out
	}
	return bookView{InstrumentID: b.Instrument.ID, Status: b.Instrument.Status, Bids: levels(b.Bids), Asks: levels(b.Asks)}
}

// newInstrumentView renders i.
func newInstrumentView(i queries.Instrument) instrumentView {
	return instrumentView{
		InstrumentID: i.ID,
		Symbol:       i.Symbol,
		TickSize:     number(i.TickSize),
		LotSize:      i.LotSize,
		MinQuantity:  i.MinQuantity,
		MaxQuantity:  i.MaxQuantity,
		Status:       i.Status,
	}
}
