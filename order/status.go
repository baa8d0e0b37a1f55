// Package order holds OrderFlow's domain rules: the order lifecycle, its one table of
// allowed transitions, and the execution strategies that match orders against a
// price-time-priority book. The api, activities and workflows packages all import it, so a
// rule changed here changes everywhere at once.
package order

import (
	"errors"
	"fmt"
)

// Status is where an order is in its lifecycle. Its string form is what PostgreSQL stores
// and the API shows.
type Status string

// The statuses of the lifecycle; see DESIGN.md for the flow between them.
const (
	Created            Status = "CREATED"
	Validated          Status = "VALIDATED"
	SentToExecutor     Status = "SENT_TO_EXECUTOR"
	Executing          Status = "EXECUTING"
	PartiallyFilled    Status = "PARTIALLY_FILLED"
	Executed           Status = "EXECUTED"
	Rejected           Status = "REJECTED"
	Cancelled          Status = "CANCELLED"
	PartiallyCancelled Status = "PARTIALLY_CANCELLED"
	Failed             Status = "FAILED"
	// Expired: the order's time ran out before it was filled: a DAY or GTD order at its
	// expiry (reason EXPIRED_DAY, EXPIRED_GTD), or a MARKET order that reached the book
	// too long after it was accepted (reason STALE).
	Expired Status = "EXPIRED"
)

// Statuses lists every status, in lifecycle order.
var Statuses = []Status{
	Created, Validated, SentToExecutor, Executing, PartiallyFilled,
	Executed, Rejected, Cancelled, PartiallyCancelled, Failed, Expired,
}

// ErrInvalidTransition is returned by CheckTransition for a move the table does not allow.
var ErrInvalidTransition = errors.New("invalid status transition")

// transitions is the one table of allowed status changes. PARTIALLY_FILLED may follow
// itself because each further fill of a partly filled order is its own change.
var transitions = map[Status][]Status{
	Created:         {Validated, Rejected, Cancelled, Failed},
	Validated:       {SentToExecutor, Cancelled, Failed},
	SentToExecutor:  {Executing, Cancelled, Failed, Expired},
	Executing:       {PartiallyFilled, Executed, Cancelled, Failed, Expired},
	PartiallyFilled: {PartiallyFilled, Executed, PartiallyCancelled, Failed, Expired},
}

// ParseStatus returns the status named s, or an error if there is none.
func ParseStatus(s string) (Status, error) {
	for _, st := range Statuses {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown order status %q", s)
}

// Terminal reports whether no transition leaves s.
func (s Status) Terminal() bool {
	_, ok := transitions[s]
	return !ok && s.Valid()
}

// Valid reports whether s is a known status.
func (s Status) Valid() bool {
	_, err := ParseStatus(string(s))
	return err == nil
}

// TerminalStatuses lists the statuses no transition leaves, in lifecycle order.
func TerminalStatuses() []Status {
	var out []Status
	for _, st := range Statuses {
		if st.Terminal() {
			out = append(out, st)
		}
	}
	return out
}

// RestingStatuses lists the statuses an order resting on the book may be in.
func RestingStatuses() []Status {
	var out []Status
	for _, st := range Statuses {
		if st.Resting() {
			out = append(out, st)
		}
	}
	return out
}

// PreMatchStatuses lists the statuses of an order that has not yet reached matching.
func PreMatchStatuses() []Status { return []Status{Created, Validated, SentToExecutor} }

// Names returns the statuses' names, as PostgreSQL stores them.
func Names(statuses []Status) []string {
	out := make([]string, len(statuses))
	for i, st := range statuses {
		out[i] = string(st)
	}
	return out
}

// Resting reports whether an order in status s may be resting on the book.
func (s Status) Resting() bool { return s == Executing || s == PartiallyFilled }

// CanTransition reports whether the table allows moving from one status to another.
func CanTransition(from, to Status) bool {
	for _, next := range transitions[from] {
		if next == to {
			return true
		}
	}
	return false
}

// CheckTransition returns an error wrapping ErrInvalidTransition unless from → to is allowed.
func CheckTransition(from, to Status) error {
	if !CanTransition(from, to) {
		return fmt.Errorf("%w: %s → %s", ErrInvalidTransition, from, to)
	}
	return nil
}

// EventType names an entry of an order's event timeline.
type EventType string

// Event types. A status change's event is named after the status it reaches; OrderPlaced
// opens every timeline and CancelRequested records a client's request without changing
// the status.
const (
	EventOrderPlaced        EventType = "ORDER_PLACED"
	EventValidated          EventType = "VALIDATED"
	EventRejected           EventType = "REJECTED"
	EventSentToExecutor     EventType = "SENT_TO_EXECUTOR"
	EventExecuting          EventType = "EXECUTING"
	EventPartiallyFilled    EventType = "PARTIALLY_FILLED"
	EventExecuted           EventType = "EXECUTED"
	EventCancelRequested    EventType = "CANCEL_REQUESTED"
	EventCancelled          EventType = "CANCELLED"
	EventPartiallyCancelled EventType = "PARTIALLY_CANCELLED"
	EventFailed             EventType = "FAILED"
	EventExpired            EventType = "EXPIRED"
	// EventExecutionStalled records that a step exhausted its retry budget and the order
	// is parked, waiting for an operator.
	EventExecutionStalled EventType = "EXECUTION_STALLED"
	// EventOperatorRetry records an operator's decision to retry a parked order's step.
	EventOperatorRetry EventType = "OPERATOR_RETRY"
	// EventAmended records a client's amendment of a resting order in place: a smaller
	// quantity, keeping its time priority. (A new price or a larger quantity replaces the
	// order instead: it ends CANCELLED or PARTIALLY_CANCELLED, reason REPLACED.)
	EventAmended EventType = "AMENDED"
)

// ChangesStatus reports whether events of type e record a status change; the others
// (CANCEL_REQUESTED, EXECUTION_STALLED, OPERATOR_RETRY, AMENDED) annotate the timeline,
// with from_status = to_status = the status the order was in.
func (e EventType) ChangesStatus() bool {
	switch e {
	case EventCancelRequested, EventExecutionStalled, EventOperatorRetry, EventAmended:
		return false
	}
	return true
}

// EventFor returns the event type that records reaching status to.
func EventFor(to Status) EventType { return EventType(to) }

// Reasons recorded on orders that end without being executed.
const (
	ReasonNoLiquidity     = "NO_LIQUIDITY"
	ReasonMarketRemainder = "MARKET_REMAINDER_CANCELLED"
	ReasonIOCRemainder    = "IOC_REMAINDER_CANCELLED"
	ReasonFOKNotFilled    = "FOK_NOT_FILLED"
	// ReasonStale: a MARKET order reached matching later than the configured age after it
	// was accepted, so it expired rather than fill at prices its client never saw.
	ReasonStale = "STALE"
	// ReasonExpiredDay and ReasonExpiredGTD: a DAY or GTD order reached its expiry.
	ReasonExpiredDay        = "EXPIRED_DAY"
	ReasonExpiredGTD        = "EXPIRED_GTD"
	ReasonSelfTrade         = "SELF_TRADE_PREVENTED"
	ReasonCancelledByClient = "CANCELLED_BY_CLIENT"
	// ReasonReplaced: a client's amendment (a new price or a larger quantity) replaced the
	// order with a new one, which names it (replacesOrderId).
	ReasonReplaced = "REPLACED"
	// ReasonRunCancelled: an operator cancelled the order's workflow run (Temporal UI or
	// CLI); the run cancels its order on its way out.
	ReasonRunCancelled       = "RUN_CANCELLED"
	ReasonUnknownInstrument  = "UNKNOWN_INSTRUMENT"
	ReasonInstrumentHalted   = "INSTRUMENT_HALTED"
	ReasonTickSize           = "PRICE_NOT_ON_TICK"
	ReasonLotSize            = "QUANTITY_NOT_ON_LOT"
	ReasonQuantityOutOfRange = "QUANTITY_OUT_OF_RANGE"
)
