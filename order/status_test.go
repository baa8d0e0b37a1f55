package order_test

import (
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/order"
)

// allowed is the lifecycle of DESIGN.md written out by hand, independently of the table in
// status.go: every pair not listed here must be refused.
var allowed = map[order.Status][]order.Status{
	order.Created:            {order.Validated, order.Rejected, order.Cancelled, order.Failed},
	order.Validated:          {order.SentToExecutor, order.Cancelled, order.Failed},
	order.SentToExecutor:     {order.Executing, order.Cancelled, order.Failed, order.Expired},
	order.Executing:          {order.PartiallyFilled, order.Executed, order.Cancelled, order.Failed, order.Expired},
	order.PartiallyFilled:    {order.PartiallyFilled, order.Executed, order.PartiallyCancelled, order.Failed, order.Expired},
	order.Executed:           nil,
	order.Rejected:           nil,
	order.Cancelled:          nil,
	order.PartiallyCancelled: nil,
	order.Failed:             nil,
	order.Expired:            nil,
}

func TestStatusesAreExactlyTheLifecycle(t *testing.T) {
	want := []order.Status{
		"CREATED", "VALIDATED", "SENT_TO_EXECUTOR", "EXECUTING", "PARTIALLY_FILLED",
		"EXECUTED", "REJECTED", "CANCELLED", "PARTIALLY_CANCELLED", "FAILED", "EXPIRED",
	}
	if !slices.Equal(order.Statuses, want) {
		t.Fatalf("Statuses = %v, want %v", order.Statuses, want)
	}
	if len(allowed) != len(order.Statuses) {
		t.Fatalf("the expected table covers %d statuses, Statuses has %d", len(allowed), len(order.Statuses))
	}
}

func TestTransitionTableIsExactlyTheLifecycle(t *testing.T) {
	for _, from := range order.Statuses {
		for _, to := range order.Statuses {
			want := slices.Contains(allowed[from], to)
			verb := "is refused"
			if want {
				verb = "is allowed"
			}
			t.Run(fmt.Sprintf("%s to %s %s", from, to, verb), func(t *testing.T) {
				if got := order.CanTransition(from, to); got != want {
					t.Errorf("CanTransition(%s, %s) = %v, want %v", from, to, got, want)
				}
				err := order.CheckTransition(from, to)
				if want && err != nil {
					t.Errorf("CheckTransition(%s, %s) = %v, want nil", from, to, err)
				}
				if !want && !errors.Is(err, order.ErrInvalidTransition) {
					t.Errorf("CheckTransition(%s, %s) = %v, want an error wrapping ErrInvalidTransition", from, to, err)
				}
			})
		}
	}
}

func TestTransitionsFromUnknownStatusesAreRefused(t *testing.T) {
	for _, s := range order.Statuses {
		if order.CanTransition("BOGUS", s) || order.CanTransition(s, "BOGUS") || order.CanTransition("", s) {
			t.Errorf("a transition between %s and an unknown status is allowed", s)
		}
		if err := order.CheckTransition(s, "BOGUS"); !errors.Is(err, order.ErrInvalidTransition) {
			t.Errorf("CheckTransition(%s, BOGUS) = %v, want ErrInvalidTransition", s, err)
		}
	}
}

func TestTerminalStatusesAreExactlyTheEnds(t *testing.T) {
	terminal := []order.Status{order.Executed, order.Rejected, order.Cancelled, order.PartiallyCancelled, order.Failed, order.Expired}
	for _, s := range order.Statuses {
		if got, want := s.Terminal(), slices.Contains(terminal, s); got != want {
			t.Errorf("%s.Terminal() = %v, want %v", s, got, want)
		}
	}
	for _, s := range []order.Status{"", "BOGUS", "executed"} {
		if s.Terminal() {
			t.Errorf("unknown status %q is terminal", s)
		}
	}
}

func TestTerminalStatusesHaveNoWayOut(t *testing.T) {
	for _, from := range order.Statuses {
		if !from.Terminal() {
			continue
		}
		for _, to := range order.Statuses {
			if order.CanTransition(from, to) {
				t.Errorf("terminal %s may move to %s", from, to)
			}
		}
	}
}

// reachable returns the statuses reachable from s through allowed transitions, s included.
func reachable(s order.Status) map[order.Status]bool {
	seen := map[order.Status]bool{s: true}
	queue := []order.Status{s}
	for len(queue) > 0 {
		cur := queue[0]
		queue = queue[1:]
		for _, next := range order.Statuses {
			if order.CanTransition(cur, next) && !seen[next] {
				seen[next] = true
				queue = append(queue, next)
			}
		}
	}
	return seen
}

func TestEveryNonTerminalStatusCanEnd(t *testing.T) {
	for _, s := range order.Statuses {
		if s.Terminal() {
			continue
		}
		ends := false
		for r := range reachable(s) {
			ends = ends || r.Terminal()
		}
		if !ends {
			t.Errorf("no terminal status is reachable from %s", s)
		}
	}
}

func TestEveryStatusIsReachableFromCreated(t *testing.T) {
	seen := reachable(order.Created)
	for _, s := range order.Statuses {
		if !seen[s] {
			t.Errorf("%s cannot be reached from CREATED", s)
		}
	}
}

func TestRestingStatuses(t *testing.T) {
	for _, s := range order.Statuses {
		want := s == order.Executing || s == order.PartiallyFilled
		if got := s.Resting(); got != want {
			t.Errorf("%s.Resting() = %v, want %v", s, got, want)
		}
	}
}

func TestParseStatus(t *testing.T) {
	t.Run("every status round-trips through its string", func(t *testing.T) {
		for _, s := range order.Statuses {
			got, err := order.ParseStatus(string(s))
			if err != nil || got != s {
				t.Errorf("ParseStatus(%q) = %q, %v; want %q, nil", s, got, err, s)
			}
			if !s.Valid() {
				t.Errorf("%s.Valid() = false", s)
			}
		}
	})
	t.Run("unknown names are errors", func(t *testing.T) {
		for _, in := range []string{"", "created", "Executed", " CREATED", "CREATED ", "DONE", "PARTIALLY FILLED"} {
			got, err := order.ParseStatus(in)
			if err == nil {
				t.Errorf("ParseStatus(%q) = %q, nil; want an error", in, got)
			}
			if got != "" {
				t.Errorf("ParseStatus(%q) returned status %q with its error", in, got)
			}
			if order.Status(in).Valid() {
				t.Errorf("Status(%q).Valid() = true", in)
			}
		}
	})
}

func TestEventForNamesTheStatusReached(t *testing.T) {
	want := map[order.Status]order.EventType{
		order.Validated:          order.EventValidated,
		order.Rejected:           order.EventRejected,
		order.SentToExecutor:     order.EventSentToExecutor,
		order.Executing:          order.EventExecuting,
		order.PartiallyFilled:    order.EventPartiallyFilled,
		order.Executed:           order.EventExecuted,
		order.Cancelled:          order.EventCancelled,
		order.PartiallyCancelled: order.EventPartiallyCancelled,
		order.Failed:             order.EventFailed,
		order.Expired:            order.EventExpired,
	}
	// Every status some transition reaches must have its event.
	for _, from := range order.Statuses {
		for _, to := range order.Statuses {
			if order.CanTransition(from, to) {
				if _, ok := want[to]; !ok {
					t.Errorf("%s is reachable but has no expected event", to)
				}
			}
		}
	}
	for to, ev := range want {
		if got := order.EventFor(to); got != ev {
			t.Errorf("EventFor(%s) = %q, want %q", to, got, ev)
		}
	}
}

func TestParseSide(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    order.Side
		wantErr bool
	}{
		{in: "BUY", want: order.Buy},
		{in: "SELL", want: order.Sell},
		{in: "buy", wantErr: true},
		{in: "Sell", wantErr: true},
		{in: "", wantErr: true},
		{in: "HOLD", wantErr: true},
		{in: " BUY", wantErr: true},
	} {
		got, err := order.ParseSide(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseSide(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if order.Buy.Opposite() != order.Sell || order.Sell.Opposite() != order.Buy {
		t.Errorf("Opposite: BUY→%s, SELL→%s", order.Buy.Opposite(), order.Sell.Opposite())
	}
}

func TestParseKind(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    order.Kind
		wantErr bool
	}{
		{in: "MARKET", want: order.Market},
		{in: "LIMIT", want: order.Limit},
		{in: "market", wantErr: true},
		{in: "Limit", wantErr: true},
		{in: "", wantErr: true},
		{in: "STOP", wantErr: true},
	} {
		got, err := order.ParseKind(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseKind(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestParseTimeInForce(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    order.TimeInForce
		wantErr bool
	}{
		{in: "GTC", want: order.GTC},
		{in: "IOC", want: order.IOC},
		{in: "gtc", wantErr: true},
		{in: "", wantErr: true},
		{in: "FOK", want: order.FOK},
		{in: "DAY", want: order.DAY},
		{in: "GTD", want: order.GTD},
		{in: "GTT", wantErr: true},
	} {
		got, err := order.ParseTimeInForce(tc.in)
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("ParseTimeInForce(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestDefaultTimeInForce(t *testing.T) {
	if got := order.DefaultTimeInForce(order.Market); got != order.IOC {
		t.Errorf("a market order defaults to %s, want IOC (it never rests)", got)
	}
	if got := order.DefaultTimeInForce(order.Limit); got != order.GTC {
		t.Errorf("a limit order defaults to %s, want GTC", got)
	}
}

func TestInstrumentRejection(t *testing.T) {
	px := decimal.RequireFromString
	active := order.Instrument{
		ID: 101, Symbol: "ACME", TickSize: px("0.05"), LotSize: 10, MinQty: 10, MaxQty: 1000, Active: true,
	}
	halted := active
	halted.Active = false
	quarter := active
	quarter.TickSize = px("0.25")

	for _, tc := range []struct {
		name  string
		inst  order.Instrument
		kind  order.Kind
		price string
		qty   int64
		want  string
	}{
		{"a limit order on tick and lot within range is accepted", active, order.Limit, "100.05", 100, ""},
		{"a market order without a price is accepted", active, order.Market, "0", 100, ""},
		{"the minimum quantity is accepted", active, order.Limit, "100", 10, ""},
		{"the maximum quantity is accepted", active, order.Limit, "100", 1000, ""},
		{"a halted instrument rejects every order", halted, order.Limit, "100", 100, order.ReasonInstrumentHalted},
		{"a halted instrument rejects market orders too", halted, order.Market, "0", 100, order.ReasonInstrumentHalted},
		{"a halted instrument is reported before other faults", halted, order.Limit, "100.01", 7, order.ReasonInstrumentHalted},
		{"a quantity below the minimum is out of range", active, order.Limit, "100", 0, order.ReasonQuantityOutOfRange},
		{"a negative quantity is out of range", active, order.Limit, "100", -10, order.ReasonQuantityOutOfRange},
		{"a quantity above the maximum is out of range", active, order.Limit, "100", 1010, order.ReasonQuantityOutOfRange},
		{"a quantity off the lot size is refused", active, order.Limit, "100", 15, order.ReasonLotSize},
		{"a market quantity off the lot size is refused", active, order.Market, "0", 101, order.ReasonLotSize},
		{"a limit price off the tick is refused", active, order.Limit, "100.03", 100, order.ReasonTickSize},
		{"a limit price finer than the tick is refused", active, order.Limit, "100.051", 100, order.ReasonTickSize},
		{"a limit price with trailing zeros on the tick is accepted", active, order.Limit, "100.0500", 100, ""},
		{"a quarter tick accepts .75", quarter, order.Limit, "10.75", 100, ""},
		{"a quarter tick refuses .10", quarter, order.Limit, "10.10", 100, order.ReasonTickSize},
		{"a market order is not checked against the tick", active, order.Market, "100.03", 100, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.inst.Rejection(tc.kind, px(tc.price), tc.qty); got != tc.want {
				t.Errorf("Rejection(%s, %s, %d) = %q, want %q", tc.kind, tc.price, tc.qty, got, tc.want)
			}
		})
	}
}
