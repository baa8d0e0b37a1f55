package api_test

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
)

// runAmender applies amendments as the order's run does (orderbook.Service.Amend, with a
// fresh amendment id), or answers with refuse when set.
type runAmender struct {
	svc *orderbook.Service

	mu     sync.Mutex
	refuse error
}

func (a *runAmender) Amend(ctx context.Context, _ string, req orderbook.AmendRequest, _ time.Duration) (orderbook.Amended, bool, error) {
	a.mu.Lock()
	refuse := a.refuse
	a.mu.Unlock()
	if refuse != nil {
		return orderbook.Amended{}, false, refuse
	}
	req.AmendID = rand.Text()
	res, err := a.svc.Amend(ctx, req)
	if err != nil {
		return orderbook.Amended{}, false, err
	}
	out := orderbook.Amended{Outcome: res.Outcome, Detail: res.Detail}
	if res.Replacement != nil {
		out.ReplacementID = res.Replacement.ID
	}
	return out, true, nil
}

// amendHarness is a harness whose amendments are applied as runs apply them, with a
// helper that puts orders on the book the way their runs do.
type amendHarness struct {
	*harness
	book    *orderbook.Service
	amender *runAmender
}

func newAmendHarness(t *testing.T) *amendHarness {
	t.Helper()
	pool := newPool(t)
	svc := orderbook.New(pool, nil, orderbook.Config{})
	am := &runAmender{svc: svc}
	cfg := testConfig()
	cfg.Amends = am
	return &amendHarness{harness: newHarnessWith(t, pool, cfg, nil), book: svc, amender: am}
}

// rest places a LIMIT order of user and runs its first steps, as its run would: it rests
// on the book, or trades with what rests there.
func (h *amendHarness) rest(user int64, side, price string, qty int64) orderBody {
	h.t.Helper()
	o := h.mustPlace(fmt.Sprintf(`{"userId":%d,"instrumentId":101,"orderType":%q,"orderKind":"LIMIT","price":%q,"quantity":%d}`, user, side, price, qty))
	if _, err := h.book.Validate(context.Background(), o.OrderID); err != nil {
		h.t.Fatal(err)
	}
	if _, err := h.book.Match(context.Background(), o.OrderID); err != nil {
		h.t.Fatal(err)
	}
	return o
}

func (h *amendHarness) patch(id int64, body string, header ...string) response {
	return h.do(http.MethodPatch, fmt.Sprintf("/api/v1/orders/%d", id), body, append([]string{"Content-Type", "application/json"}, header...)...)
}

func TestASmallerQuantityAmendsTheOrderInPlace(t *testing.T) {
	t.Parallel()
	h := newAmendHarness(t)
	o := h.rest(1, "SELL", "100", 10)
	h.rest(2, "BUY", "100", 3) // 7 left

	before := h.get(fmt.Sprintf("/api/v1/orders/%d", o.OrderID))
	res := h.patch(o.OrderID, `{"quantity":"8"}`, "If-Match", before.header.Get("ETag"))
	if res.status != http.StatusOK {
		t.Fatalf("PATCH: %d %s", res.status, res.body)
	}
	got := decode[orderBody](t, res)
	if got.OrderID != o.OrderID || got.Quantity != 8 || got.RemainingQuantity != 5 || got.FilledQuantity != 3 || got.OrderStatus != "PARTIALLY_FILLED" {
		t.Errorf("amended order = %+v, want the same order with quantity 8, 5 left", got)
	}
	if res.header.Get("ETag") == before.header.Get("ETag") || res.header.Get("ETag") != h.get(fmt.Sprintf("/api/v1/orders/%d", o.OrderID)).header.Get("ETag") {
		t.Errorf("ETag %q: want the new version's", res.header.Get("ETag"))
	}
	events := decode[[]struct {
		EventType string `json:"eventType"`
	}](t, h.get(fmt.Sprintf("/api/v1/orders/%d/events", o.OrderID)))
	if last := events[len(events)-1]; last.EventType != string(order.EventAmended) {
		t.Errorf("last event %+v, want AMENDED", last)
	}
	// The same amendment again changes nothing.
	if again := h.patch(o.OrderID, `{"quantity":8}`); again.status != http.StatusOK || decode[orderBody](t, again).Quantity != 8 {
		t.Errorf("the same amendment again: %d %s", again.status, again.body)
	}
}

func TestANewPriceReplacesTheOrderWithALinkedNewOne(t *testing.T) {
	t.Parallel()
	h := newAmendHarness(t)
	o := h.rest(1, "SELL", "100", 10)
	h.rest(2, "BUY", "100", 4)

	res := h.patch(o.OrderID, `{"price":101.5,"quantity":12}`)
	if res.status != http.StatusCreated {
		t.Fatalf("PATCH: %d %s", res.status, res.body)
	}
	repl := decode[orderBody](t, res)
	if loc := res.header.Get("Location"); loc != "/api/v1/orders/"+strconv.FormatInt(repl.OrderID, 10) {
		t.Errorf("Location %q, want the new order %d", loc, repl.OrderID)
	}
	if repl.OrderID == o.OrderID || repl.ReplacesOrderID != o.OrderID || repl.Quantity != 8 || string(repl.Price) != "101.5" || repl.OrderStatus != "CREATED" {
		t.Errorf("replacement = %+v, want a new order for 8 at 101.5 that replaces %d", repl, o.OrderID)
	}
	old := decode[orderBody](t, h.get(fmt.Sprintf("/api/v1/orders/%d", o.OrderID)))
	if old.OrderStatus != "PARTIALLY_CANCELLED" || old.Reason != order.ReasonReplaced || old.ReplacedByOrderID != repl.OrderID {
		t.Errorf("old order = %+v, want PARTIALLY_CANCELLED (REPLACED) by %d", old, repl.OrderID)
	}
}

func TestAnAmendmentThatCannotApplyIsRefusedAndChangesNothing(t *testing.T) {
	t.Parallel()
	h := newAmendHarness(t)
	o := h.rest(1, "SELL", "100", 10)
	h.rest(2, "BUY", "100", 4)
	path := fmt.Sprintf("/api/v1/orders/%d", o.OrderID)
	etag := h.get(path).header.Get("ETag")

	wantProblem(t, h.do(http.MethodPatch, path, `{"quantity":8}`, "Content-Type", "text/plain"), http.StatusUnsupportedMediaType, "UNSUPPORTED_MEDIA_TYPE", "")
	wantProblem(t, h.patch(o.OrderID, `{}`), http.StatusBadRequest, "VALIDATION_FAILED", "quantity")
	wantProblem(t, h.patch(o.OrderID, `{"quantity":5,"side":"BUY"}`), http.StatusBadRequest, "VALIDATION_FAILED", "side")
	wantProblem(t, h.patch(o.OrderID, `{"quantity":-1}`), http.StatusBadRequest, "VALIDATION_FAILED", "quantity")
	wantProblem(t, h.patch(o.OrderID, `{"price":"100.001"}`), http.StatusBadRequest, "VALIDATION_FAILED", "price")
	wantProblem(t, h.patch(o.OrderID, `{"quantity":4}`), http.StatusConflict, "QUANTITY_NOT_ABOVE_FILLED", "")
	wantProblemWithETag(t, h.patch(o.OrderID, `{"quantity":8}`, "If-Match", `"0"`), etag)
	other := h.patch(o.OrderID, `{"quantity":8}`, "Authorization", bearer(h.key(2, auth.ScopeRead, auth.ScopeTrade)))
	wantProblem(t, other, http.StatusNotFound, "ORDER_NOT_FOUND", "")
	if now := h.get(path).header.Get("ETag"); now != etag {
		t.Fatalf("a refused amendment changed the order: ETag %s → %s", etag, now)
	}

	notResting := h.mustPlace(limitBody(1, `"99"`, 1))
	wantProblem(t, h.patch(notResting.OrderID, `{"quantity":2}`), http.StatusConflict, "ORDER_NOT_AMENDABLE", "")
	h.amender.mu.Lock()
	h.amender.refuse = fmt.Errorf("run busy: %w", orderbook.ErrNotAmendable)
	h.amender.mu.Unlock()
	wantProblem(t, h.patch(o.OrderID, `{"quantity":8}`), http.StatusConflict, "ORDER_NOT_AMENDABLE", "")
	h.amender.mu.Lock()
	h.amender.refuse = errors.New("temporal unavailable")
	h.amender.mu.Unlock()
	if res := wantProblem(t, h.patch(o.OrderID, `{"quantity":8}`), http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", ""); res.Message == "" {
		t.Error("no message")
	}
	if _, err := h.book.RecordCancel(context.Background(), o.OrderID, "", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := h.book.Cancel(context.Background(), orderbook.CancelRequest{OrderID: o.OrderID}); err != nil {
		t.Fatal(err)
	}
	wantProblem(t, h.patch(o.OrderID, `{"quantity":8}`), http.StatusConflict, "ORDER_TERMINAL", "")
}

// wantProblemWithETag checks a 412 that names the order's current ETag.
func wantProblemWithETag(t *testing.T, res response, etag string) {
	t.Helper()
	wantProblem(t, res, http.StatusPreconditionFailed, "PRECONDITION_FAILED", "")
	if got := res.header.Get("ETag"); got != etag {
		t.Errorf("412 ETag %q, want the current %q", got, etag)
	}
}
