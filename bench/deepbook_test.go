package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

func TestSweepStepsAreTheDistinctTimesOfTheBuysEvents(t *testing.T) {
	t0 := time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	// Placed, validated and sent, then three steps: the first reaches the book and fills
	// twice, the second fills twice, the third fills once and ends the order.
	events := []buyEvent{
		{"ORDER_PLACED", at(-50)}, {"VALIDATED", at(-40)}, {"SENT_TO_EXECUTOR", at(-30)},
		{"EXECUTING", at(0)}, {"PARTIALLY_FILLED", at(0)}, {"PARTIALLY_FILLED", at(0)},
		{"PARTIALLY_FILLED", at(300)}, {"PARTIALLY_FILLED", at(300)},
		{"EXECUTED", at(420)},
	}
	s, ok := sweepSteps(events, at(450))
	if !ok {
		t.Fatal("the order reached the book")
	}
	if !s.reached.Equal(at(0)) {
		t.Errorf("reached the book at %v, want %v", s.reached, at(0))
	}
	if len(s.starts) != 3 || !s.starts[1].Equal(at(300)) {
		t.Errorf("steps start at %v, want 0, 300 and 420 ms", s.starts)
	}
	if s.last != 30*time.Millisecond || s.longest != 300*time.Millisecond {
		t.Errorf("last step %v, longest %v; want 30ms and 300ms", s.last, s.longest)
	}

	// The last step counts when it is the longest: it lasts until the order was seen ended.
	if s, _ := sweepSteps(events, at(2000)); s.longest != 1580*time.Millisecond {
		t.Errorf("longest %v, want the last step's 1.58s", s.longest)
	}
	if _, ok := sweepSteps(events[:3], at(0)); ok {
		t.Error("an order without an EXECUTING event did not reach the book")
	}
}

func TestRestingPriceIsOneNoBuyReachesWithNoSellBelowIt(t *testing.T) {
	tick := decimal.RequireFromString("0.01")
	price := func(s string) decimal.NullDecimal {
		if s == "" {
			return decimal.NullDecimal{}
		}
		return decimal.NewNullDecimal(decimal.RequireFromString(s))
	}
	for _, c := range []struct {
		name, bid, ask, want string
	}{
		{"an empty book takes the high level", "", "", "10000"},
		{"buys below the high level leave it free", "101.5", "", "10000"},
		{"a buy at or above it pushes the level above the buy", "10000", "", "10010"},
		{"resting sells put it one tick under the best of them", "99", "100", "99.99"},
		{"sells alone do too", "", "100", "99.99"},
	} {
		t.Run(c.name, func(t *testing.T) {
			got, err := restingPrice(price(c.bid), price(c.ask), tick)
			if err != nil || !got.Equal(decimal.RequireFromString(c.want)) {
				t.Errorf("restingPrice(bid %q, ask %q) = %v, %v; want %s", c.bid, c.ask, got, err, c.want)
			}
		})
	}
	for _, c := range []struct{ name, bid, ask string }{
		{"a spread of one tick leaves no level", "99.99", "100"},
		{"a sell at the tick leaves no positive level", "", "0.01"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got, err := restingPrice(price(c.bid), price(c.ask), tick); err == nil {
				t.Errorf("restingPrice(bid %q, ask %q) = %v, want an error", c.bid, c.ask, got)
			}
		})
	}
}

func TestDeepBookTargetsNeedEveryTradeWithTheSellsInTime(t *testing.T) {
	ok := DeepBookReport{Orders: 100, BuyStatus: "EXECUTED", Trades: 100, TradesWithSells: 100, SweepMs: 800, Steps: 1, MaxStepMs: 800}
	for _, c := range []struct {
		name        string
		change      func(r *DeepBookReport)
		sweep, step bool
	}{
		{"a sweep in time meets both", func(*DeepBookReport) {}, true, true},
		{"a slow sweep misses the first", func(r *DeepBookReport) { r.SweepMs = 5001 }, false, true},
		{"a slow step misses the second", func(r *DeepBookReport) { r.MaxStepMs = 1000.5 }, true, false},
		{"a partial fill misses the first", func(r *DeepBookReport) { r.BuyStatus, r.Trades = "PARTIALLY_CANCELLED", 99 }, false, true},
		{"a trade with another order misses the first", func(r *DeepBookReport) { r.TradesWithSells = 99 }, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := ok
			c.change(&r)
			r.finish()
			if r.Targets["sweep_within_5s"] != c.sweep || r.Targets["no_step_over_1s"] != c.step {
				t.Errorf("targets %v, want sweep %v, step %v", r.Targets, c.sweep, c.step)
			}
		})
	}
}

func TestDeepBookReportIsOneLineOfJSONAndATable(t *testing.T) {
	rep := &DeepBookReport{Mode: ModeDeepBook, Orders: 5000, Instrument: 103, Price: "10000", BuyStatus: "EXECUTED",
		Trades: 5000, TradesWithSells: 5000, SweepMs: 1200, Steps: 5, MaxStepMs: 300, StepStartsMs: []float64{0, 250, 500, 750, 1000}}
	rep.finish()
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil || strings.Count(buf.String(), "\n") != 1 {
		t.Fatalf("not one line of JSON (%v): %q", err, buf.String())
	}
	for _, k := range []string{"mode", "orders", "price", "buy_status", "trades", "sweep_ms", "steps", "max_step_ms",
		"counterparties_done_ms", "targets_met"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, buf.String())
		}
	}
	if m["counterparties_done_ms"] != nil {
		t.Errorf("an unmeasured completion must be null: %s", buf.String())
	}
	buf.Reset()
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"5 steps (one transaction each)", "within 5 s met", "each ≤ 1 s met", "not seen completed", "0.0, 250.0"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, buf.String())
		}
	}
}
