package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
)

// instrumentStatus is the instrument's status as GET /api/v1/instruments shows it.
func (s *stack) instrumentStatus(t *testing.T, id int64) string {
	t.Helper()
	resp, err := s.client.Get(s.baseURL + "/api/v1/instruments")
	if err != nil {
		t.Fatalf("GET /api/v1/instruments: %v", err)
	}
	defer resp.Body.Close()
	var list []struct {
		InstrumentID int64  `json:"instrumentId"`
		Status       string `json:"status"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatalf("decode instruments: %v", err)
	}
	for _, in := range list {
		if in.InstrumentID == id {
			return in.Status
		}
	}
	t.Fatalf("GET /api/v1/instruments does not list instrument %d", id)
	return ""
}

// listedRow returns the fields of the row of `orderflow instruments list` for id.
func listedRow(t *testing.T, out string, id int64) []string {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if want := []string{"ID", "SYMBOL", "STATUS", "TICK", "LOT", "MIN", "QTY", "MAX", "QTY"}; !equal(strings.Fields(lines[0]), want) {
		t.Errorf("header = %q, want the columns %v", lines[0], want)
	}
	for _, l := range lines[1:] {
		if f := strings.Fields(l); len(f) > 0 && f[0] == strconv.FormatInt(id, 10) {
			return f
		}
	}
	t.Fatalf("instruments list has no row for %d:\n%s", id, out)
	return nil
}

func TestOperatorsHaltAndResumeAnInstrumentFromTheCommandLine(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	id := strconv.FormatInt(inst, 10)
	symbol := fmt.Sprintf("T%d", inst)

	row := listedRow(t, s.command(t, "instruments", "list"), inst)
	if want := []string{id, symbol, "ACTIVE", "0.01", "1", "1", "1000000"}; !equal(row, want) {
		t.Errorf("listed row = %v, want %v", row, want)
	}
	resting := s.mustPlace(t, limit(1, inst, "SELL", "20", 10))
	s.waitStatus(t, resting, "EXECUTING")

	out := s.command(t, "instruments", "halt", id)
	if want := fmt.Sprintf("instrument %d (%s) is HALTED: ", inst, symbol); !strings.HasPrefix(out, want) || strings.Count(out, "\n") != 1 {
		t.Errorf("halt printed %q, want one line starting %q", out, want)
	}
	if st := s.instrumentStatus(t, inst); st != "HALTED" {
		t.Errorf("the API shows the halted instrument %s", st)
	}
	if row := listedRow(t, s.command(t, "instruments", "list"), inst); row[2] != "HALTED" {
		t.Errorf("instruments list shows the halted instrument %s", row[2])
	}
	// Halting again changes nothing.
	if again := s.command(t, "instruments", "halt", id); again != out {
		t.Errorf("a second halt printed %q, want %q again", again, out)
	}
	refused := s.mustPlace(t, market(2, inst, "BUY", 4))
	if v := s.waitStatus(t, refused, "REJECTED"); v.Reason != "INSTRUMENT_HALTED" {
		t.Errorf("an order for the halted instrument was rejected for %q, want INSTRUMENT_HALTED", v.Reason)
	}
	if v := s.get(t, resting); v.OrderStatus != "EXECUTING" || v.RemainingQuantity != 10 {
		t.Errorf("the resting order changed during the halt: %+v", v)
	}

	out = s.command(t, "instruments", "resume", id)
	if want := fmt.Sprintf("instrument %d (%s) is ACTIVE: ", inst, symbol); !strings.HasPrefix(out, want) || strings.Count(out, "\n") != 1 {
		t.Errorf("resume printed %q, want one line starting %q", out, want)
	}
	if st := s.instrumentStatus(t, inst); st != "ACTIVE" {
		t.Errorf("the API shows the resumed instrument %s", st)
	}
	// The order that rested through the halt trades again.
	buy := s.mustPlace(t, market(2, inst, "BUY", 4))
	s.waitStatus(t, buy, "EXECUTED")
	if v := s.waitStatus(t, resting, "PARTIALLY_FILLED"); v.RemainingQuantity != 6 {
		t.Errorf("after resume the resting order has %d left, want 6", v.RemainingQuantity)
	}
	if tr := s.trades(t, buy); len(tr) != 1 || tr[0].sell != resting || tr[0].qty != 4 || tr[0].price != "20" {
		t.Errorf("trades = %+v, want one of 4 at 20 against the resting order", tr)
	}
	s.checkInvariants(t, []int64{resting, refused, buy})
}

func TestInstrumentsCommandsRejectBadInputInOneSentence(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"instruments"}, "usage: orderflow instruments"},
		{[]string{"instruments", "pause", "101"}, `unknown instruments command "pause"`},
		{[]string{"instruments", "list", "extra"}, `unexpected argument "extra"`},
		{[]string{"instruments", "halt"}, "halt needs exactly one instrument id"},
		{[]string{"instruments", "resume", "101", "102"}, "resume needs exactly one instrument id"},
		{[]string{"instruments", "halt", "abc"}, `instrument id "abc" is not a positive integer`},
		{[]string{"instruments", "resume", "0"}, `instrument id "0" is not a positive integer`},
		{[]string{"instruments", "halt", "-3"}, `instrument id "-3" is not a positive integer`},
		{[]string{"instruments", "halt", "99999999999999999999"}, `instrument id "99999999999999999999" is not a positive integer`},
		{[]string{"instruments", "halt", "9999999"}, "instrument 9999999 does not exist"},
		{[]string{"instruments", "resume", "9999999"}, "instrument 9999999 does not exist"},
	} {
		t.Run("orderflow "+strings.Join(tc.args, " ")+" is refused", func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tc.args, func(k string) string { return s.env[k] }, &out)
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("orderflow %v = %v, want one line starting %q", tc.args, err, tc.want)
			}
			if out.Len() != 0 {
				t.Errorf("orderflow %v printed %q, want nothing", tc.args, out.String())
			}
		})
	}
}
