package order

import (
	"fmt"

	"github.com/shopspring/decimal"
)

// Side is BUY or SELL (the seed API calls it orderType).
type Side string

// Sides.
const (
	Buy  Side = "BUY"
	Sell Side = "SELL"
)

// ParseSide returns the side named s, or an error if there is none.
func ParseSide(s string) (Side, error) {
	switch Side(s) {
	case Buy, Sell:
		return Side(s), nil
	}
	return "", fmt.Errorf("unknown side %q: want BUY or SELL", s)
}

// Opposite returns the side an order of side s trades against.
func (s Side) Opposite() Side {
	if s == Buy {
		return Sell
	}
	return Buy
}

// Kind is MARKET or LIMIT (the seed API calls it orderKind).
type Kind string

// Kinds.
const (
	Market Kind = "MARKET"
	Limit  Kind = "LIMIT"
)

// ParseKind returns the kind named s, or an error if there is none.
func ParseKind(s string) (Kind, error) {
	switch Kind(s) {
	case Market, Limit:
		return Kind(s), nil
	}
	return "", fmt.Errorf("unknown kind %q: want MARKET or LIMIT", s)
}

// TimeInForce says how long an order's unfilled remainder may rest on the book.
type TimeInForce string

// Times in force. GTC rests until filled or cancelled; IOC cancels whatever the first
// match leaves; FOK (LIMIT only) fills entirely in its first match or does not trade at
// all; DAY and GTD (LIMIT only) rest until the order's expiry (the trading day's end, or
// the time given), when they end EXPIRED. MARKET orders never rest, so they are always
// IOC.
const (
	GTC TimeInForce = "GTC"
	IOC TimeInForce = "IOC"
	FOK TimeInForce = "FOK"
	DAY TimeInForce = "DAY"
	GTD TimeInForce = "GTD"
)

// Expiring reports whether orders of t end at an expiry.
func (t TimeInForce) Expiring() bool { return t == DAY || t == GTD }

// Rests reports whether an unfilled remainder of a LIMIT order of t stays on the book.
func (t TimeInForce) Rests() bool { return t == GTC || t.Expiring() }

// ParseTimeInForce returns the time in force named s, or an error if there is none.
func ParseTimeInForce(s string) (TimeInForce, error) {
	switch TimeInForce(s) {
	case GTC, IOC, FOK, DAY, GTD:
		return TimeInForce(s), nil
	}
	return "", fmt.Errorf("unknown time in force %q: want GTC, IOC, FOK, DAY or GTD", s)
}

// DefaultTimeInForce is the time in force of an order that names none.
func DefaultTimeInForce(k Kind) TimeInForce {
	if k == Market {
		return IOC
	}
	return GTC
}

// Instrument is what the validation rules need to know of a tradable instrument.
type Instrument struct {
	ID       int64
	Symbol   string
	TickSize decimal.Decimal
	LotSize  int64
	MinQty   int64
	MaxQty   int64
	Active   bool
}

// Rejection returns the reason an order of this kind, price and quantity may not trade on
// instrument in, or "" if it may.
func (in Instrument) Rejection(k Kind, price decimal.Decimal, qty int64) string {
	switch {
	case !in.Active:
		return ReasonInstrumentHalted
	case qty < in.MinQty || (in.MaxQty > 0 && qty > in.MaxQty):
		return ReasonQuantityOutOfRange
	case in.LotSize > 0 && qty%in.LotSize != 0:
		return ReasonLotSize
	case k == Limit && in.TickSize.IsPositive() && !price.Mod(in.TickSize).IsZero():
		return ReasonTickSize
	}
	return ""
}
