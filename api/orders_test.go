package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/order"
)

func TestGettingAnOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	placed := h.mustPlace(limitBody(5, `"250.75"`, 8))

	t.Run("an existing order is shown with its workflow", func(t *testing.T) {
		res := h.get(fmt.Sprintf("/api/v1/orders/%d", placed.OrderID))
		if res.status != http.StatusOK {
			t.Fatalf("status = %d; body %s", res.status, res.body)
		}
		o := decode[orderBody](t, res)
		if o.OrderID != placed.OrderID || o.UserID != 5 || string(o.Price) != "250.75" || o.Quantity != 8 || o.OrderStatus != "CREATED" {
			t.Errorf("order = %+v", o)
		}
		// The run's id carries the order's id and a run key of its own (schema 0007).
		id, key, ok := order.ParseWorkflowID(o.WorkflowID)
		if !ok || id != o.OrderID || len(key) != 12 || o.WorkflowURL != "http://127.0.0.1:8233/namespaces/default/workflows/"+o.WorkflowID {
			t.Errorf("workflowId, workflowUrl = %s, %s", o.WorkflowID, o.WorkflowURL)
		}
		for _, ts := range []string{o.CreatedAt, o.UpdatedAt} {
			if _, err := time.Parse(time.RFC3339, ts); err != nil || !strings.HasSuffix(ts, "Z") || len(ts) != len("2006-01-02T15:04:05.000Z") {
				t.Errorf("timestamp %q is not RFC 3339 UTC with milliseconds", ts)
			}
		}
		if strings.Contains(string(res.body), `"reason"`) || strings.Contains(string(res.body), `"message"`) {
			t.Errorf("an empty reason, or a message, is shown: %s", res.body)
		}
	})

	t.Run("the workflow link is left out when no Temporal UI is configured", func(t *testing.T) {
		plain := newHarnessWith(t, h.pool, api.Config{}, nil)
		res := plain.get(fmt.Sprintf("/api/v1/orders/%d", placed.OrderID))
		if o := decode[orderBody](t, res); o.WorkflowURL != "" || strings.Contains(string(res.body), "workflowUrl") {
			t.Errorf("workflowUrl shown: %s", res.body)
		}
	})

	for _, id := range []string{"abc", "0", "-3", "1.5", "99999999999999999999"} {
		t.Run(fmt.Sprintf("the id %q is refused", id), func(t *testing.T) {
			wantProblem(t, h.get("/api/v1/orders/"+id), http.StatusBadRequest, "VALIDATION_FAILED", "id")
		})
	}

	t.Run("an unknown order is not found", func(t *testing.T) {
		wantProblem(t, h.get("/api/v1/orders/424242"), http.StatusNotFound, "ORDER_NOT_FOUND", "")
	})
}

// page is the list endpoint's answer.
type page struct {
	Content          []orderBody `json:"content"`
	TotalElements    int64       `json:"totalElements"`
	TotalPages       int64       `json:"totalPages"`
	Number           int64       `json:"number"`
	Size             int64       `json:"size"`
	First            bool        `json:"first"`
	Last             bool        `json:"last"`
	NumberOfElements int         `json:"numberOfElements"`
}

func TestListingOrders(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// Five orders: users 1 and 2, instruments 101 and 102, distinct prices and quantities.
	var ids []int64
	for i, b := range []string{
		`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"30","quantity":5}`,
		`{"userId":1,"instrumentId":102,"orderType":"SELL","orderKind":"LIMIT","price":"10.5","quantity":1}`,
		`{"userId":2,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"20","quantity":4}`,
		`{"userId":2,"instrumentId":101,"orderType":"SELL","orderKind":"MARKET","quantity":2}`,
		`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"40","quantity":3}`,
	} {
		ids = append(ids, h.mustPlace(b).OrderID)
		// Distinct creation times, so that sorting by them is deterministic.
		h.exec(`UPDATE orders SET created_at = now() + make_interval(secs => $2) WHERE id = $1`, ids[i], i)
	}
	h.exec(`UPDATE orders SET status = 'EXECUTED', remaining_quantity = 0 WHERE id = $1`, ids[2])

	tests := []struct {
		name    string
		query   string
		wantIDs []int64
		want    page // the paging fields
	}{
		{"the default is the first 20, newest first", "", []int64{ids[4], ids[3], ids[2], ids[1], ids[0]},
			page{TotalElements: 5, TotalPages: 1, Number: 0, Size: 20, First: true, Last: true, NumberOfElements: 5}},
		{"a page in the middle", "?page=1&size=2&sort=id,asc", []int64{ids[2], ids[3]},
			page{TotalElements: 5, TotalPages: 3, Number: 1, Size: 2, First: false, Last: false, NumberOfElements: 2}},
		{"the last, partial page", "?page=2&size=2&sort=id,asc", []int64{ids[4]},
			page{TotalElements: 5, TotalPages: 3, Number: 2, Size: 2, First: false, Last: true, NumberOfElements: 1}},
		{"a page past the end is empty", "?page=9&size=2", []int64{},
			page{TotalElements: 5, TotalPages: 3, Number: 9, Size: 2, Last: true}},
		{"sorting by price puts market orders (no price) last", "?sort=price,asc", []int64{ids[1], ids[2], ids[0], ids[4], ids[3]},
			page{TotalElements: 5, TotalPages: 1, Size: 20, First: true, Last: true, NumberOfElements: 5}},
		{"sorting without a direction is ascending", "?sort=quantity", []int64{ids[1], ids[3], ids[4], ids[2], ids[0]},
			page{TotalElements: 5, TotalPages: 1, Size: 20, First: true, Last: true, NumberOfElements: 5}},
		{"sorting by orderStatus sorts by status", "?sort=orderStatus,desc&size=1", []int64{ids[2]},
			page{TotalElements: 5, TotalPages: 5, Size: 1, First: true, NumberOfElements: 1}},
		{"filtering by user", "?userId=2&sort=id,asc", []int64{ids[2], ids[3]},
			page{TotalElements: 2, TotalPages: 1, Size: 20, First: true, Last: true, NumberOfElements: 2}},
		{"filtering by instrument", "?instrumentId=102", []int64{ids[1]},
			page{TotalElements: 1, TotalPages: 1, Size: 20, First: true, Last: true, NumberOfElements: 1}},
		{"filtering by status", "?status=EXECUTED", []int64{ids[2]},
			page{TotalElements: 1, TotalPages: 1, Size: 20, First: true, Last: true, NumberOfElements: 1}},
		{"filters combine", "?userId=1&instrumentId=101&status=CREATED&sort=createdAt,asc", []int64{ids[0], ids[4]},
			page{TotalElements: 2, TotalPages: 1, Size: 20, First: true, Last: true, NumberOfElements: 2}},
		{"no match is an empty page", "?userId=99", []int64{},
			page{TotalElements: 0, TotalPages: 0, Size: 20, First: true, Last: true}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := h.get("/api/v1/orders" + tt.query)
			if res.status != http.StatusOK {
				t.Fatalf("status = %d; body %s", res.status, res.body)
			}
			if !strings.Contains(string(res.body), `"content":[`) {
				t.Errorf("content is not an array: %s", res.body)
			}
			got := decode[page](t, res)
			gotIDs := []int64{}
			for _, o := range got.Content {
				gotIDs = append(gotIDs, o.OrderID)
			}
			if !slices.Equal(gotIDs, tt.wantIDs) {
				t.Errorf("orders = %v, want %v", gotIDs, tt.wantIDs)
			}
			got.Content, tt.want.Content = nil, nil
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("page = %+v, want %+v", got, tt.want)
			}
		})
	}

	for _, tt := range []struct{ query, field string }{
		{"?page=-1", "page"},
		{"?page=x", "page"},
		{"?page=99999999999", "page"},
		{"?size=0", "size"},
		{"?size=501", "size"},
		{"?sort=symbol,asc", "sort"},
		{"?sort=price,sideways", "sort"},
		{"?sort=price&sort=id", "sort"},
		{"?status=DONE", "status"},
		{"?userId=abc", "userId"},
		{"?instrumentId=0", "instrumentId"},
	} {
		t.Run(fmt.Sprintf("the query %s is refused, naming %s", tt.query, tt.field), func(t *testing.T) {
			wantProblem(t, h.get("/api/v1/orders"+tt.query), http.StatusBadRequest, "VALIDATION_FAILED", tt.field)
		})
	}
}

// event is one entry of the events endpoint's answer.
type event struct {
	ID         int64             `json:"id"`
	OrderID    int64             `json:"orderId"`
	Seq        int               `json:"seq"`
	EventType  string            `json:"eventType"`
	FromStatus *string           `json:"fromStatus"`
	ToStatus   string            `json:"toStatus"`
	Details    map[string]string `json:"details"`
	CreatedAt  string            `json:"createdAt"`
}

func TestListingAnOrdersEvents(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	o := h.mustPlace(limitBody(3, `"9"`, 1))

	t.Run("a new order has its ORDER_PLACED event", func(t *testing.T) {
		res := h.get(fmt.Sprintf("/api/v1/orders/%d/events", o.OrderID))
		if res.status != http.StatusOK {
			t.Fatalf("status = %d; body %s", res.status, res.body)
		}
		events := decode[[]event](t, res)
		if len(events) != 1 {
			t.Fatalf("events = %+v", events)
		}
		e := events[0]
		if e.OrderID != o.OrderID || e.Seq != 1 || e.EventType != "ORDER_PLACED" || e.FromStatus != nil ||
			e.ToStatus != "CREATED" || e.Details["requestedBy"] != h.trader(3) || e.CreatedAt == "" {
			t.Errorf("event = %+v", e)
		}
		if !strings.Contains(string(res.body), `"fromStatus":null`) {
			t.Errorf("fromStatus is not null: %s", res.body)
		}
	})

	t.Run("events are listed oldest first", func(t *testing.T) {
		h.exec(`UPDATE orders SET status = 'VALIDATED' WHERE id = $1`, o.OrderID)
		h.exec(`INSERT INTO order_events (order_id, seq, event_type, from_status, to_status) VALUES ($1, 2, 'VALIDATED', 'CREATED', 'VALIDATED')`, o.OrderID)
		events := decode[[]event](t, h.get(fmt.Sprintf("/api/v1/orders/%d/events", o.OrderID)))
		var types []string
		for _, e := range events {
			types = append(types, fmt.Sprintf("%d:%s", e.Seq, e.EventType))
		}
		if got := strings.Join(types, ","); got != "1:ORDER_PLACED,2:VALIDATED" {
			t.Errorf("events = %s", got)
		}
	})

	t.Run("an unknown order is not found", func(t *testing.T) {
		wantProblem(t, h.get("/api/v1/orders/777777/events"), http.StatusNotFound, "ORDER_NOT_FOUND", "")
	})
}

func TestListingAnOrdersTrades(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	buy := h.mustPlace(limitBody(1, `"101.5"`, 10))
	sell := h.mustPlace(`{"userId":2,"instrumentId":101,"orderType":"SELL","orderKind":"LIMIT","price":"100","quantity":4}`)
	other := h.mustPlace(limitBody(3, `"1"`, 1))
	h.exec(`INSERT INTO trades (instrument_id, buy_order_id, sell_order_id, aggressor_side, price, quantity, executed_at)
	        VALUES (101, $1, $2, 'SELL', 101.50, 3, '2030-01-02T03:04:05.678Z'), (101, $1, $2, 'SELL', 101.5, 1, now())`,
		buy.OrderID, sell.OrderID)

	type trade struct {
		TradeID      int64           `json:"tradeId"`
		InstrumentID int64           `json:"instrumentId"`
		BuyOrderID   *int64          `json:"buyOrderId"`
		SellOrderID  *int64          `json:"sellOrderId"`
		Price        json.RawMessage `json:"price"`
		Quantity     int64           `json:"quantity"`
		ExecutedAt   string          `json:"executedAt"`
	}
	id := func(p *int64) int64 {
		if p == nil {
			return 0
		}
		return *p
	}
	// Each side sees its own order's id and not the counterparty's (another user's order
	// is nobody else's business); an operator sees both.
	for _, c := range []struct {
		name       string
		order      int64
		credential string
		buy, sell  int64
	}{
		{"the buyer", buy.OrderID, bearer(h.key(1, auth.ScopeRead, auth.ScopeTrade)), buy.OrderID, 0},
		{"the seller", sell.OrderID, bearer(h.key(2, auth.ScopeRead, auth.ScopeTrade)), 0, sell.OrderID},
		{"an operator", buy.OrderID, bearer(h.key(devstack.OperatorUser, auth.ScopeAdmin)), buy.OrderID, sell.OrderID},
	} {
		t.Run(c.name+" sees the trades", func(t *testing.T) {
			res := h.do(http.MethodGet, fmt.Sprintf("/api/v1/orders/%d/trades", c.order), "", "Authorization", c.credential)
			if res.status != http.StatusOK {
				t.Fatalf("status = %d; body %s", res.status, res.body)
			}
			trades := decode[[]trade](t, res)
			if len(trades) != 2 {
				t.Fatalf("trades = %+v", trades)
			}
			first := trades[0]
			if first.InstrumentID != 101 || id(first.BuyOrderID) != c.buy || id(first.SellOrderID) != c.sell ||
				string(first.Price) != "101.5" || first.Quantity != 3 || first.ExecutedAt != "2030-01-02T03:04:05.678Z" {
				t.Errorf("first trade = %+v (price %s)", first, first.Price)
			}
			if trades[1].TradeID <= first.TradeID {
				t.Errorf("trades are not oldest first: %+v", trades)
			}
		})
	}

	t.Run("a fill's event names the counterparty's order to an operator only", func(t *testing.T) {
		h.exec(`INSERT INTO order_events (order_id, seq, event_type, from_status, to_status, details)
		        VALUES ($1, 9, 'PARTIALLY_FILLED', 'EXECUTING', 'PARTIALLY_FILLED', jsonb_build_object('tradeId', 1, 'counterpartyOrderId', $2::bigint))`,
			buy.OrderID, sell.OrderID)
		path := fmt.Sprintf("/api/v1/orders/%d/events", buy.OrderID)
		for who, cred := range map[string]string{
			"owner":    bearer(h.key(1, auth.ScopeRead, auth.ScopeTrade)),
			"operator": bearer(h.key(devstack.OperatorUser, auth.ScopeAdmin)),
		} {
			res := h.do(http.MethodGet, path, "", "Authorization", cred)
			named := strings.Contains(string(res.body), `"counterpartyOrderId"`)
			if res.status != http.StatusOK || named != (who == "operator") || !strings.Contains(string(res.body), `"tradeId":1`) {
				t.Errorf("%s: %d %s; counterparty named %v", who, res.status, res.body, named)
			}
		}
	})

	t.Run("an order without trades has an empty list", func(t *testing.T) {
		res := h.get(fmt.Sprintf("/api/v1/orders/%d/trades", other.OrderID))
		if res.status != http.StatusOK || strings.TrimSpace(string(res.body)) != "[]" {
			t.Errorf("status %d, body %s; want 200 []", res.status, res.body)
		}
	})

	t.Run("an unknown order is not found", func(t *testing.T) {
		wantProblem(t, h.get("/api/v1/orders/777777/trades"), http.StatusNotFound, "ORDER_NOT_FOUND", "")
	})
}

func TestListingInstruments(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	res := h.get("/api/v1/instruments")
	if res.status != http.StatusOK {
		t.Fatalf("status = %d; body %s", res.status, res.body)
	}
	var instruments []struct {
		InstrumentID int64           `json:"instrumentId"`
		Symbol       string          `json:"symbol"`
		TickSize     json.RawMessage `json:"tickSize"`
		LotSize      int64           `json:"lotSize"`
		Status       string          `json:"status"`
	}
	if err := json.Unmarshal(res.body, &instruments); err != nil {
		t.Fatal(err)
	}
	var ids []int64
	for _, in := range instruments {
		ids = append(ids, in.InstrumentID)
		if string(in.TickSize) != "0.01" || in.LotSize != 1 || in.Status != "ACTIVE" || in.Symbol == "" {
			t.Errorf("instrument = %+v (tick %s)", in, in.TickSize)
		}
	}
	if !slices.Equal(ids, []int64{101, 102, 103}) {
		t.Errorf("instruments = %v, want 101, 102, 103", ids)
	}
}

func TestHealthAndReadiness(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	for _, path := range []string{"/healthz", "/readyz"} {
		t.Run(path+" answers ok when the database is up", func(t *testing.T) {
			res := h.get(path)
			if res.status != http.StatusOK || strings.TrimSpace(string(res.body)) != `{"status":"ok"}` {
				t.Errorf("status %d, body %s", res.status, res.body)
			}
		})
	}

	down := newHarnessWith(t, unreachablePool(t), testConfig(), nil)
	t.Run("/healthz still answers ok when the database is down", func(t *testing.T) {
		if res := down.get("/healthz"); res.status != http.StatusOK {
			t.Errorf("status %d", res.status)
		}
	})
	t.Run("/readyz answers 503 when the database is down", func(t *testing.T) {
		wantProblem(t, down.get("/readyz"), http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "")
	})
	t.Run("a request that needs the database answers 503, not 500, when it is down", func(t *testing.T) {
		// Checking the credential is the first thing that needs the database.
		key, _, _ := auth.NewKey()
		wantProblem(t, down.do(http.MethodGet, "/api/v1/orders/1", "", "Authorization", bearer(key)), http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "")
		wantProblem(t, down.do(http.MethodPost, "/api/v1/orders", limitBody(1, `"1"`, 1), "Content-Type", "application/json",
			"Idempotency-Key", newKey(), "Authorization", bearer(key)), http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "")
	})
}

// unreachablePool returns a pool for a server that is not running.
func unreachablePool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	pool, err := pgxpool.New(context.Background(), fmt.Sprintf("postgres://postgres@127.0.0.1:%d/none?sslmode=disable&connect_timeout=2", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

func TestRoutingErrorsAreProblems(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	t.Run("an unknown route is a 404 problem", func(t *testing.T) {
		wantProblem(t, h.get("/api/v2/orders"), http.StatusNotFound, "NOT_FOUND", "")
	})
	t.Run("a wrong method is a 405 problem naming the allowed methods", func(t *testing.T) {
		res := h.do(http.MethodDelete, "/api/v1/orders/1", "")
		wantProblem(t, res, http.StatusMethodNotAllowed, "METHOD_NOT_ALLOWED", "")
		if got := res.header.Values("Allow"); !slices.Equal(got, []string{"GET", "PATCH"}) {
			t.Errorf("Allow = %v, want [GET PATCH]", got)
		}
	})
	t.Run("every answer carries a request id", func(t *testing.T) {
		res := h.do(http.MethodGet, "/healthz", "", "X-Request-Id", "abc-123")
		if got := res.header.Get("X-Request-Id"); got != "abc-123" {
			t.Errorf("X-Request-Id = %q", got)
		}
	})
}

func TestCORS(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	preflight := func(origin string) response {
		return h.do(http.MethodOptions, "/api/v1/orders", "",
			"Origin", origin, "Access-Control-Request-Method", "POST",
			"Access-Control-Request-Headers", "Content-Type, Idempotency-Key")
	}

	t.Run("the seed client's origin may place orders", func(t *testing.T) {
		res := preflight("http://localhost:3000")
		if got := res.header.Get("Access-Control-Allow-Origin"); got != "http://localhost:3000" {
			t.Errorf("Access-Control-Allow-Origin = %q", got)
		}
		if got := strings.ToLower(res.header.Get("Access-Control-Allow-Headers")); !strings.Contains(got, "idempotency-key") {
			t.Errorf("Access-Control-Allow-Headers = %q", got)
		}
	})
	t.Run("another origin may not", func(t *testing.T) {
		if got := preflight("http://evil.example").header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("Access-Control-Allow-Origin = %q", got)
		}
	})
	t.Run("the client may read the Location of a new order", func(t *testing.T) {
		res := h.do(http.MethodPost, "/api/v1/orders", limitBody(1, `"1"`, 1),
			"Origin", "http://localhost:3000", "Content-Type", "application/json", "Idempotency-Key", newKey())
		if got := res.header.Get("Access-Control-Expose-Headers"); !strings.Contains(got, "Location") {
			t.Errorf("Access-Control-Expose-Headers = %q", got)
		}
	})
}

func TestAPanicIsAGeneric500Problem(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	h := newHarnessWith(t, newPool(t), testConfig(), slog.New(slog.NewJSONHandler(&logs, nil)))
	o := h.mustPlace(limitBody(1, `"1"`, 1))
	h.cancels.answer(func(context.Context, int64) (bool, error) {
		panic("boom: a bug of the kind the recoverer is for")
	})
	res := h.do(http.MethodPost, fmt.Sprintf("/api/v1/orders/%d/cancel", o.OrderID), "")
	p := wantProblem(t, res, http.StatusInternalServerError, "INTERNAL_ERROR", "")
	if strings.Contains(string(res.body), "goroutine") || strings.Contains(p.Message, "boom") {
		t.Errorf("the answer leaks the panic: %s", res.body)
	}
	if got := logs.String(); !strings.Contains(got, "boom: a bug") || !strings.Contains(got, `"stack"`) {
		t.Errorf("the panic and its stack are not logged:\n%s", got)
	}
}

func TestEveryRequestIsLogged(t *testing.T) {
	t.Parallel()
	var logs syncBuffer
	h := newHarnessWith(t, newPool(t), testConfig(), slog.New(slog.NewJSONHandler(&logs, nil)))
	h.do(http.MethodGet, "/api/v1/orders/42", "", "X-Request-Id", "req-42")

	var line struct {
		Msg       string `json:"msg"`
		Method    string `json:"method"`
		Path      string `json:"path"`
		Status    int    `json:"status"`
		RequestID string `json:"request_id"`
		OrderID   int64  `json:"order_id"`
	}
	if err := json.Unmarshal([]byte(strings.TrimSpace(logs.String())), &line); err != nil {
		t.Fatalf("want one JSON log line, got %q: %v", logs.String(), err)
	}
	if line.Msg != "http request" || line.Method != "GET" || line.Path != "/api/v1/orders/42" || line.Status != 404 || line.RequestID != "req-42" ||
		line.OrderID != 42 {
		t.Errorf("access log = %+v", line)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
