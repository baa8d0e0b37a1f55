package api_test

import (
	"cmp"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/shopspring/decimal"
)

// sortFixture is one order of the sort tests, with every value a sort may compare. Each
// field has ties and at least two values, so every sort shows both its field's order
// and the orderId tie-break.
type sortFixture struct {
	user, instrument    int64
	side, kind          string
	price               string // "" for MARKET
	quantity, remaining int64
	status              string
	created, updated    int // seconds after sortEpoch
	id                  int64
}

// sortEpoch is a whole second, so that the API's millisecond timestamps keep the order
// of the database's microsecond ones.
var sortEpoch = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

// sortFixtures builds the orders of the sort tests: placed through the API, then given
// the statuses, remaining quantities and timestamps only execution would give them.
func sortFixtures(h *harness) []sortFixture {
	h.t.Helper()
	fx := []sortFixture{
		{user: 3, instrument: 102, side: "BUY", kind: "LIMIT", price: "30", quantity: 5, remaining: 0, status: "EXECUTED", created: 3, updated: 10},
		{user: 1, instrument: 101, side: "SELL", kind: "LIMIT", price: "10.5", quantity: 1, remaining: 1, status: "CREATED", created: 1, updated: 12},
		{user: 2, instrument: 103, side: "BUY", kind: "MARKET", quantity: 4, remaining: 4, status: "FAILED", created: 5, updated: 10},
		{user: 3, instrument: 101, side: "SELL", kind: "MARKET", quantity: 2, remaining: 1, status: "PARTIALLY_CANCELLED", created: 1, updated: 11},
		{user: 1, instrument: 102, side: "BUY", kind: "LIMIT", price: "40", quantity: 5, remaining: 2, status: "PARTIALLY_FILLED", created: 0, updated: 15},
		{user: 2, instrument: 101, side: "SELL", kind: "LIMIT", price: "10.50", quantity: 3, remaining: 3, status: "CREATED", created: 6, updated: 13},
		{user: 4, instrument: 103, side: "BUY", kind: "LIMIT", price: "9.99", quantity: 2, remaining: 2, status: "EXECUTING", created: 2, updated: 14},
	}
	for i := range fx {
		f := &fx[i]
		price := "null"
		if f.price != "" {
			price = `"` + f.price + `"`
		}
		f.id = h.mustPlace(fmt.Sprintf(`{"userId":%d,"instrumentId":%d,"orderType":%q,"orderKind":%q,"price":%s,"quantity":%d}`,
			f.user, f.instrument, f.side, f.kind, price, f.quantity)).OrderID
		h.exec(`UPDATE orders SET status = $2, remaining_quantity = $3,
		            created_at = $4::timestamptz + make_interval(secs => $5),
		            updated_at = $4::timestamptz + make_interval(secs => $6)
		        WHERE id = $1`, f.id, f.status, f.remaining, sortEpoch, f.created, f.updated)
	}
	return fx
}

// comparePrices orders prices as PostgreSQL does: by value, with no price (MARKET)
// after every price.
func comparePrices(a, b string) int {
	switch {
	case a == "" && b == "":
		return 0
	case a == "":
		return 1
	case b == "":
		return -1
	}
	return decimal.RequireFromString(a).Cmp(decimal.RequireFromString(b))
}

// The sort names of the original backend's entity, which its web client sends, and the
// field each one compares.
var originalSortNames = []struct {
	name    string
	compare func(a, b sortFixture) int
}{
	{"orderId", func(a, b sortFixture) int { return 0 }},
	{"orderType", func(a, b sortFixture) int { return cmp.Compare(a.side, b.side) }},
	{"orderKind", func(a, b sortFixture) int { return cmp.Compare(a.kind, b.kind) }},
	{"userId", func(a, b sortFixture) int { return cmp.Compare(a.user, b.user) }},
	{"instrumentId", func(a, b sortFixture) int { return cmp.Compare(a.instrument, b.instrument) }},
	{"price", func(a, b sortFixture) int { return comparePrices(a.price, b.price) }},
	{"quantity", func(a, b sortFixture) int { return cmp.Compare(a.quantity, b.quantity) }},
	{"remainingQuantity", func(a, b sortFixture) int { return cmp.Compare(a.remaining, b.remaining) }},
	{"orderStatus", func(a, b sortFixture) int { return cmp.Compare(a.status, b.status) }},
	{"createdAt", func(a, b sortFixture) int { return cmp.Compare(a.created, b.created) }},
	{"updatedAt", func(a, b sortFixture) int { return cmp.Compare(a.updated, b.updated) }},
}

func TestListingOrdersSortsByEveryFieldTheOriginalClientNames(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	fx := sortFixtures(h)
	ascendingIDs := make([]int64, len(fx))
	for i, f := range fx {
		ascendingIDs[i] = f.id
	}
	descendingIDs := slices.Clone(ascendingIDs)
	slices.Reverse(descendingIDs)

	for _, sn := range originalSortNames {
		for _, dir := range []string{"asc", "desc"} {
			t.Run(fmt.Sprintf("sort=%s,%s orders by the field, then by orderId the same way", sn.name, dir), func(t *testing.T) {
				want := slices.Clone(fx)
				slices.SortFunc(want, func(a, b sortFixture) int {
					c := cmp.Or(sn.compare(a, b), cmp.Compare(a.id, b.id))
					if dir == "desc" {
						return -c
					}
					return c
				})
				wantIDs := make([]int64, len(want))
				for i, f := range want {
					wantIDs[i] = f.id
				}
				// A field whose order is the id's would not show that the sort happened.
				if sn.name != "orderId" && (slices.Equal(wantIDs, ascendingIDs) || slices.Equal(wantIDs, descendingIDs)) {
					t.Fatalf("the fixtures sort by %s as by orderId: give the field other values", sn.name)
				}

				target := fmt.Sprintf("/api/v1/orders?sort=%s,%s", sn.name, dir)
				h.spec.checkRequest(t, httptest.NewRequest(http.MethodGet, target, nil))
				res := h.get(target)
				if res.status != http.StatusOK {
					t.Fatalf("status = %d; body %s", res.status, res.body)
				}
				var gotIDs []int64
				for _, o := range decode[page](t, res).Content {
					gotIDs = append(gotIDs, o.OrderID)
				}
				if !slices.Equal(gotIDs, wantIDs) {
					t.Errorf("orders = %v, want %v", gotIDs, wantIDs)
				}
			})
		}
	}

	t.Run("the direction may be upper case and defaults to ascending", func(t *testing.T) {
		for _, q := range []string{"sort=quantity,ASC", "sort=quantity"} {
			asc := decode[page](t, h.get("/api/v1/orders?"+q))
			desc := decode[page](t, h.get("/api/v1/orders?sort=quantity,DESC"))
			if len(asc.Content) != len(fx) || len(desc.Content) != len(fx) {
				t.Fatalf("%s: %d and %d orders, want %d", q, len(asc.Content), len(desc.Content), len(fx))
			}
			for i := range asc.Content {
				if asc.Content[i].OrderID != desc.Content[len(fx)-1-i].OrderID {
					t.Errorf("%s is not the reverse of sort=quantity,DESC", q)
					break
				}
			}
		}
	})

	for _, q := range []string{"symbol,asc", "side,asc", "created_at,desc", "remaining_quantity", "OrderId,asc", ",asc", "price,up"} {
		t.Run(fmt.Sprintf("sort=%s is refused, naming sort", q), func(t *testing.T) {
			wantProblem(t, h.get("/api/v1/orders?sort="+q), http.StatusBadRequest, "VALIDATION_FAILED", "sort")
		})
	}
}
