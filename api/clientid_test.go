package api_test

import (
	"bytes"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/devstack"
)

// withClientID adds a clientOrderId to an order body.
func withClientID(body, cid string) string {
	return strings.TrimSuffix(body, "}") + `,"clientOrderId":` + cid + `}`
}

func TestAClientOrderIDIsTheUsersOwnAndFindsTheOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	alice := bearer(h.key(1, auth.ScopeRead, auth.ScopeTrade))
	operator := bearer(h.key(devstack.OperatorUser, auth.ScopeAdmin))
	lookupAs := func(who, cid string, extra ...string) response {
		q := url.Values{"clientOrderId": {cid}}
		for i := 0; i+1 < len(extra); i += 2 {
			q.Set(extra[i], extra[i+1])
		}
		return h.do(http.MethodGet, "/api/v1/orders/by-client-order-id?"+q.Encode(), "", "Authorization", who)
	}
	lookup := func(cid string, extra ...string) response { return lookupAs(alice, cid, extra...) }

	placed := h.place(newKey(), withClientID(limitBody(1, `"10"`, 1), `"my order|1"`))
	if placed.status != http.StatusCreated {
		t.Fatalf("place: %d %s", placed.status, placed.body)
	}
	o := decode[orderBody](t, placed)
	if o.ClientOrderID != "my order|1" {
		t.Errorf("placed clientOrderId = %q", o.ClientOrderID)
	}
	found := lookup("my order|1")
	if f := decode[orderBody](t, found); found.status != http.StatusOK || f.OrderID != o.OrderID || f.ClientOrderID != "my order|1" {
		t.Errorf("lookup: %d %s, want order %d", found.status, found.body, o.OrderID)
	}
	if got := decode[orderBody](t, h.get("/api/v1/orders/"+strconv.FormatInt(o.OrderID, 10))); got.ClientOrderID != "my order|1" {
		t.Errorf("GET by id: clientOrderId %q", got.ClientOrderID)
	}
	if page := decode[struct{ Content []orderBody }](t, h.get("/api/v1/orders?userId=1")); len(page.Content) != 1 || page.Content[0].ClientOrderID != "my order|1" {
		t.Errorf("the list does not show the clientOrderId: %+v", page.Content)
	}

	before := h.count("orders")
	again := h.place(newKey(), withClientID(limitBody(1, `"11"`, 2), `"my order|1"`))
	wantProblem(t, again, http.StatusConflict, "CLIENT_ORDER_ID_IN_USE", "clientOrderId")
	if n := h.count("orders"); n != before {
		t.Errorf("a refused clientOrderId wrote %d orders", n-before)
	}
	// Another user may use the same id; a replay of the first request is a replay.
	if res := h.place(newKey(), withClientID(limitBody(2, `"10"`, 1), `"my order|1"`)); res.status != http.StatusCreated {
		t.Errorf("another user's order with the same clientOrderId: %d %s", res.status, res.body)
	}
	wantProblem(t, lookup("no such id"), http.StatusNotFound, "ORDER_NOT_FOUND", "")
	wantProblem(t, lookup(""), http.StatusBadRequest, "VALIDATION_FAILED", "clientOrderId")
	wantProblem(t, lookup("my order|1", "userId", "2"), http.StatusForbidden, "FORBIDDEN", "userId")
	// An operator sees every user's orders, so names the user.
	if f := decode[orderBody](t, lookupAs(operator, "my order|1", "userId", "1")); f.OrderID != o.OrderID {
		t.Errorf("the operator's lookup found order %d, want %d", f.OrderID, o.OrderID)
	}
	wantProblem(t, lookupAs(operator, "my order|1"), http.StatusBadRequest, "VALIDATION_FAILED", "userId")

	for _, bad := range []string{`""`, `"` + strings.Repeat("x", 65) + `"`, `"tab\there"`, `7`} {
		wantProblem(t, h.place(newKey(), withClientID(limitBody(1, `"10"`, 1), bad)), http.StatusBadRequest, "VALIDATION_FAILED", "clientOrderId")
	}
	// The same key with a different clientOrderId is a different request.
	key := newKey()
	first := h.place(key, withClientID(limitBody(1, `"10"`, 1), `"a"`))
	wantProblem(t, h.place(key, withClientID(limitBody(1, `"10"`, 1), `"b"`)), http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED", "")
	if replay := h.place(key, withClientID(limitBody(1, `"10"`, 1), `"a"`)); !bytes.Equal(replay.body, first.body) {
		t.Errorf("replay with the same clientOrderId: %s, want %s", replay.body, first.body)
	}
}
