package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
)

// instrument is an instrument as the API shows it.
type instrument struct {
	InstrumentID int64           `json:"instrumentId"`
	Symbol       string          `json:"symbol"`
	TickSize     json.RawMessage `json:"tickSize"`
	LotSize      int64           `json:"lotSize"`
	MinQuantity  int64           `json:"minQuantity"`
	MaxQuantity  int64           `json:"maxQuantity"`
	Status       string          `json:"status"`
}

// statuses maps each instrument the route lists to its status.
func (h *harness) statuses(target string) map[int64]string {
	h.t.Helper()
	res := h.get(target)
	if res.status != http.StatusOK {
		h.t.Fatalf("GET %s: status %d; body %s", target, res.status, res.body)
	}
	out := map[int64]string{}
	for _, in := range decode[[]instrument](h.t, res) {
		out[in.InstrumentID] = in.Status
	}
	return out
}

// post sends a POST without a body.
func (h *harness) post(target string) response { return h.do(http.MethodPost, target, "") }

func TestOperatorsHaltAndResumeInstruments(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	t.Run("the admin list shows every instrument with its rules", func(t *testing.T) {
		res := h.get("/api/v1/admin/instruments")
		if res.status != http.StatusOK {
			t.Fatalf("status = %d; body %s", res.status, res.body)
		}
		list := decode[[]instrument](t, res)
		if len(list) != 3 {
			t.Fatalf("instruments = %+v, want 101, 102 and 103", list)
		}
		for i, in := range list {
			want := instrument{InstrumentID: int64(101 + i), Symbol: fmt.Sprintf("INST%d", 101+i), TickSize: in.TickSize,
				LotSize: 1, MinQuantity: 1, MaxQuantity: 1_000_000, Status: "ACTIVE"}
			if string(in.TickSize) != "0.01" || fmt.Sprint(in) != fmt.Sprint(want) {
				t.Errorf("instrument %d = %+v (tick %s), want %+v (tick 0.01)", i, in, in.TickSize, want)
			}
		}
	})

	t.Run("a halt answers the halted instrument and every list shows it halted", func(t *testing.T) {
		res := h.post("/api/v1/admin/instruments/102/halt")
		if res.status != http.StatusOK {
			t.Fatalf("status = %d; body %s", res.status, res.body)
		}
		if in := decode[instrument](t, res); in.InstrumentID != 102 || in.Symbol != "INST102" || in.Status != "HALTED" {
			t.Errorf("halt answered %+v, want instrument 102 HALTED", in)
		}
		want := map[int64]string{101: "ACTIVE", 102: "HALTED", 103: "ACTIVE"}
		for _, target := range []string{"/api/v1/instruments", "/api/v1/admin/instruments"} {
			if got := h.statuses(target); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Errorf("GET %s = %v, want %v", target, got, want)
			}
		}
	})

	t.Run("halting a halted instrument changes nothing", func(t *testing.T) {
		res := h.post("/api/v1/admin/instruments/102/halt")
		if in := decode[instrument](t, res); res.status != http.StatusOK || in.Status != "HALTED" {
			t.Errorf("second halt = %d %s, want 200 HALTED", res.status, res.body)
		}
	})

	t.Run("an order for a halted instrument is still accepted, for its validation to reject", func(t *testing.T) {
		o := h.mustPlace(`{"userId":7,"instrumentId":102,"orderType":"BUY","orderKind":"LIMIT","price":"5","quantity":1}`)
		if o.OrderStatus != "CREATED" {
			t.Errorf("order = %+v, want CREATED", o)
		}
	})

	t.Run("a resume answers the active instrument and the lists show it active", func(t *testing.T) {
		res := h.post("/api/v1/admin/instruments/102/resume")
		if res.status != http.StatusOK {
			t.Fatalf("status = %d; body %s", res.status, res.body)
		}
		if in := decode[instrument](t, res); in.InstrumentID != 102 || in.Status != "ACTIVE" {
			t.Errorf("resume answered %+v, want instrument 102 ACTIVE", in)
		}
		if got := h.statuses("/api/v1/instruments"); got[102] != "ACTIVE" {
			t.Errorf("GET /api/v1/instruments shows 102 %s after the resume", got[102])
		}
		again := h.post("/api/v1/admin/instruments/102/resume")
		if in := decode[instrument](t, again); again.status != http.StatusOK || in.Status != "ACTIVE" {
			t.Errorf("second resume = %d %s, want 200 ACTIVE", again.status, again.body)
		}
	})

	for _, action := range []string{"halt", "resume"} {
		t.Run(fmt.Sprintf("%s of an unknown instrument is not found", action), func(t *testing.T) {
			p := wantProblem(t, h.post("/api/v1/admin/instruments/999/"+action), http.StatusNotFound, "INSTRUMENT_NOT_FOUND", "")
			if p.Detail != "instrument 999 not found" {
				t.Errorf("detail = %q", p.Detail)
			}
			if got := h.statuses("/api/v1/instruments"); len(got) != 3 {
				t.Errorf("instruments after a %s of an unknown one = %v", action, got)
			}
		})
		for _, id := range []string{"abc", "0", "-3", "1.5", "99999999999999999999"} {
			t.Run(fmt.Sprintf("%s of the id %q is refused, naming id", action, id), func(t *testing.T) {
				wantProblem(t, h.post("/api/v1/admin/instruments/"+id+"/"+action), http.StatusBadRequest, "VALIDATION_FAILED", "id")
			})
		}
		t.Run(fmt.Sprintf("%s is a POST", action), func(t *testing.T) {
			res := h.get("/api/v1/admin/instruments/101/" + action)
			wantProblem(t, res, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "")
			if allow := res.header.Get("Allow"); allow != http.MethodPost {
				t.Errorf("Allow = %q, want POST", allow)
			}
		})
	}
}
