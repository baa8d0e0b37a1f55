package api_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/kafka"
)

func TestPlacingAcceptsTheSeedClientsRequests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	tests := []struct {
		name        string
		contentType string
		body        string
		wantPrice   string // the JSON text of the answered price
		wantTIF     string
		wantKind    string
	}{
		{
			name:      "a LIMIT order with string numbers, as the seed client sends it, is accepted",
			body:      `{"userId":"101","instrumentId":"101","orderType":"BUY","orderKind":"LIMIT","price":"99.50","quantity":"10"}`,
			wantPrice: "99.5", wantTIF: "GTC", wantKind: "LIMIT",
		},
		{
			name:      "a LIMIT order with JSON numbers is accepted",
			body:      `{"userId":7,"instrumentId":102,"orderType":"SELL","orderKind":"LIMIT","price":100.25,"quantity":3}`,
			wantPrice: "100.25", wantTIF: "GTC", wantKind: "LIMIT",
		},
		{
			name:      "a MARKET order with an empty price string has no price and is IOC",
			body:      `{"userId":"101","instrumentId":"101","orderType":"BUY","orderKind":"MARKET","price":"","quantity":"10"}`,
			wantPrice: "null", wantTIF: "IOC", wantKind: "MARKET",
		},
		{
			name:      "a MARKET order with a null price has no price",
			body:      `{"userId":1,"instrumentId":101,"orderType":"SELL","orderKind":"MARKET","price":null,"quantity":1}`,
			wantPrice: "null", wantTIF: "IOC", wantKind: "MARKET",
		},
		{
			name:      "a MARKET order may say IOC explicitly",
			body:      `{"userId":1,"instrumentId":101,"orderType":"SELL","orderKind":"MARKET","quantity":1,"timeInForce":"IOC"}`,
			wantPrice: "null", wantTIF: "IOC", wantKind: "MARKET",
		},
		{
			name:      "a LIMIT order may be IOC",
			body:      `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"5","quantity":1,"timeInForce":"IOC"}`,
			wantPrice: "5", wantTIF: "IOC", wantKind: "LIMIT",
		},
		{
			name:      "a price keeps all eight decimal places exactly",
			body:      `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"12345678901.12345678","quantity":1}`,
			wantPrice: "12345678901.12345678", wantTIF: "GTC", wantKind: "LIMIT",
		},
		{
			name:      "trailing zeros beyond eight decimal places do not count",
			body:      `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":0.1000000000,"quantity":1}`,
			wantPrice: "0.1", wantTIF: "GTC", wantKind: "LIMIT",
		},
		{
			name:        "a charset parameter on the content type is allowed",
			contentType: "application/json; charset=UTF-8",
			body:        limitBody(1, `"1.5"`, 2),
			wantPrice:   "1.5", wantTIF: "GTC", wantKind: "LIMIT",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ct := tt.contentType
			if ct == "" {
				ct = "application/json"
			}
			res := h.do(http.MethodPost, "/api/v1/orders", tt.body, "Content-Type", ct, "Idempotency-Key", newKey())
			if res.status != http.StatusCreated {
				t.Fatalf("status = %d, want 201; body %s", res.status, res.body)
			}
			o := decode[orderBody](t, res)
			if got := string(o.Price); got != tt.wantPrice {
				t.Errorf("price = %s, want %s", got, tt.wantPrice)
			}
			if o.TimeInForce != tt.wantTIF || o.OrderKind != tt.wantKind {
				t.Errorf("timeInForce, orderKind = %s, %s; want %s, %s", o.TimeInForce, o.OrderKind, tt.wantTIF, tt.wantKind)
			}
			if o.OrderStatus != "CREATED" || o.Message != "Order accepted" || o.Duplicate {
				t.Errorf("orderStatus, message, duplicate = %s, %q, %v", o.OrderStatus, o.Message, o.Duplicate)
			}
			if want := fmt.Sprintf("/api/v1/orders/%d", o.OrderID); res.header.Get("Location") != want {
				t.Errorf("Location = %q, want %q", res.header.Get("Location"), want)
			}
			if o.RemainingQuantity != o.Quantity || o.FilledQuantity != 0 {
				t.Errorf("remaining, filled = %d, %d for quantity %d", o.RemainingQuantity, o.FilledQuantity, o.Quantity)
			}
		})
	}
}

func TestPlacingRejectsInvalidRequestsAndWritesNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	body := func(fields string) string {
		return `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"10",` + fields + `}`
	}
	tests := []struct {
		name   string
		header []string // replaces the default Content-Type and Idempotency-Key when set
		body   string
		status int
		code   string
		field  string
	}{
		{"a request without an Idempotency-Key is refused", []string{"Content-Type", "application/json"}, body(`"quantity":1`), 400, "MISSING_IDEMPOTENCY_KEY", "Idempotency-Key"},
		{"an Idempotency-Key over 128 characters is refused", []string{"Content-Type", "application/json", "Idempotency-Key", strings.Repeat("k", 129)}, body(`"quantity":1`), 400, "VALIDATION_FAILED", "Idempotency-Key"},
		{"a non-ASCII Idempotency-Key is refused", []string{"Content-Type", "application/json", "Idempotency-Key", "clé"}, body(`"quantity":1`), 400, "VALIDATION_FAILED", "Idempotency-Key"},
		{"a text/plain body is refused", []string{"Content-Type", "text/plain", "Idempotency-Key", "k"}, body(`"quantity":1`), 415, "UNSUPPORTED_MEDIA_TYPE", ""},
		{"a body without a content type is refused", []string{"Idempotency-Key", "k"}, body(`"quantity":1`), 415, "UNSUPPORTED_MEDIA_TYPE", ""},
		{"a JSON body in another charset is refused", []string{"Content-Type", "application/json; charset=latin1", "Idempotency-Key", "k"}, body(`"quantity":1`), 415, "UNSUPPORTED_MEDIA_TYPE", ""},
		{"truncated JSON is malformed", nil, `{"userId":1,`, 400, "MALFORMED_JSON", ""},
		{"an empty body is malformed", nil, ``, 400, "MALFORMED_JSON", ""},
		{"a JSON array is malformed", nil, `[1,2]`, 400, "MALFORMED_JSON", ""},
		{"JSON null is malformed", nil, `null`, 400, "MALFORMED_JSON", ""},
		{"two JSON objects are malformed", nil, body(`"quantity":1`) + `{}`, 400, "MALFORMED_JSON", ""},
		{"an unknown field is named", nil, body(`"quantity":1,"stopPrice":5`), 400, "VALIDATION_FAILED", "stopPrice"},
		{"a zero userId is refused", nil, `{"userId":0,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1}`, 400, "VALIDATION_FAILED", "userId"},
		{"a fractional userId string is refused", nil, `{"userId":"1.5","instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1}`, 400, "VALIDATION_FAILED", "userId"},
		{"a boolean userId is refused", nil, `{"userId":true,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1}`, 400, "VALIDATION_FAILED", "userId"},
		{"a negative instrumentId is refused", nil, `{"userId":1,"instrumentId":-101,"orderType":"BUY","orderKind":"MARKET","quantity":1}`, 400, "VALIDATION_FAILED", "instrumentId"},
		{"a non-numeric instrumentId string is refused", nil, `{"userId":1,"instrumentId":"abc","orderType":"BUY","orderKind":"MARKET","quantity":1}`, 400, "VALIDATION_FAILED", "instrumentId"},
		{"a zero quantity is refused", nil, body(`"quantity":0`), 400, "VALIDATION_FAILED", "quantity"},
		{"a negative quantity is refused", nil, body(`"quantity":-1`), 400, "VALIDATION_FAILED", "quantity"},
		{"a fractional quantity is refused", nil, body(`"quantity":1.5`), 400, "VALIDATION_FAILED", "quantity"},
		{"a fractional quantity string is refused", nil, body(`"quantity":"1.5"`), 400, "VALIDATION_FAILED", "quantity"},
		{"a quantity in exponent form is refused", nil, body(`"quantity":1e3`), 400, "VALIDATION_FAILED", "quantity"},
		{"a quantity beyond int64 is refused", nil, body(`"quantity":9223372036854775808`), 400, "VALIDATION_FAILED", "quantity"},
		{"a missing quantity is named", nil, body(`"timeInForce":"GTC"`), 400, "VALIDATION_FAILED", "quantity"},
		{"an unknown orderType is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"HOLD","orderKind":"MARKET","quantity":1}`, 400, "VALIDATION_FAILED", "orderType"},
		{"a lower-case orderType is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"buy","orderKind":"MARKET","quantity":1}`, 400, "VALIDATION_FAILED", "orderType"},
		{"a missing orderType is named", nil, `{"userId":1,"instrumentId":101,"orderKind":"MARKET","quantity":1}`, 400, "VALIDATION_FAILED", "orderType"},
		{"an unknown orderKind is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"STOP","quantity":1}`, 400, "VALIDATION_FAILED", "orderKind"},
		{"a numeric orderKind is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":1,"quantity":1}`, 400, "VALIDATION_FAILED", "orderKind"},
		{"a LIMIT order without a price is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","quantity":1}`, 400, "VALIDATION_FAILED", "price"},
		{"a LIMIT order with an empty price is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"","quantity":1}`, 400, "VALIDATION_FAILED", "price"},
		{"a zero price is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":0,"quantity":1}`, 400, "VALIDATION_FAILED", "price"},
		{"a negative price is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"-5","quantity":1}`, 400, "VALIDATION_FAILED", "price"},
		{"a non-numeric price is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"ten","quantity":1}`, 400, "VALIDATION_FAILED", "price"},
		{"a price in exponent form is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":1e2,"quantity":1}`, 400, "VALIDATION_FAILED", "price"},
		{"a price with nine decimal places is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"1.123456789","quantity":1}`, 400, "VALIDATION_FAILED", "price"},
		{"an absurdly large price is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"1234567890123456789","quantity":1}`, 400, "VALIDATION_FAILED", "price"},
		{"a MARKET order with a price is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","price":"100","quantity":1}`, 400, "VALIDATION_FAILED", "price"},
		{"a MARKET order that is GTC is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1,"timeInForce":"GTC"}`, 400, "VALIDATION_FAILED", "timeInForce"},
		{"an unknown timeInForce is refused", nil, body(`"quantity":1,"timeInForce":"GTT"`), 400, "VALIDATION_FAILED", "timeInForce"},
		{"a MARKET order that is FOK is refused", nil, `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1,"timeInForce":"FOK"}`, 400, "VALIDATION_FAILED", "timeInForce"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			header := tt.header
			if header == nil {
				header = []string{"Content-Type", "application/json", "Idempotency-Key", newKey()}
			}
			res := h.do(http.MethodPost, "/api/v1/orders", tt.body, header...)
			wantProblem(t, res, tt.status, tt.code, tt.field)
		})
	}

	t.Run("every invalid field is named, unknown fields first", func(t *testing.T) {
		res := h.place(newKey(), `{"zeta":1,"alpha":2,"userId":0,"instrumentId":101,"orderType":"X","orderKind":"LIMIT","quantity":0}`)
		p := wantProblem(t, res, 400, "VALIDATION_FAILED", "alpha")
		var fields []string
		for _, e := range p.Errors {
			fields = append(fields, e.Field)
		}
		if got, want := strings.Join(fields, ","), "alpha,zeta,userId,orderType,price,quantity"; got != want {
			t.Errorf("errors name %s, want %s", got, want)
		}
	})

	t.Run("a body over 64 KiB with a declared length is too large", func(t *testing.T) {
		res := h.place(newKey(), `{"userId":1`+strings.Repeat(" ", 64<<10)+`}`)
		wantProblem(t, res, http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", "")
	})

	t.Run("a body over 64 KiB without a declared length is too large", func(t *testing.T) {
		req := httptest.NewRequest(http.MethodPost, "/api/v1/orders", strings.NewReader(`{"userId":1`+strings.Repeat(" ", 64<<10)+`}`))
		req.ContentLength = -1
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", newKey())
		wantProblem(t, h.serve(req), http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", "")
	})

	for _, table := range []string{"orders", "order_events", "outbox"} {
		if n := h.count(table); n != 0 {
			t.Errorf("rejected requests wrote %d rows to %s", n, table)
		}
	}
}

func TestPlacingWritesTheOrderItsEventAndItsOutboxMessage(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const body = `{"userId":7,"instrumentId":102,"orderType":"SELL","orderKind":"LIMIT","price":"100.50","quantity":5}`
	idemKey := newKey()
	res := h.place(idemKey, body)
	if res.status != http.StatusCreated {
		t.Fatalf("place order: status %d, body %s", res.status, res.body)
	}
	o := decode[orderBody](t, res)
	ctx := context.Background()

	var status, side, kind, tif string
	var priceOK bool
	var remaining int64
	if err := h.pool.QueryRow(ctx, `SELECT status, side, kind, price = 100.5, time_in_force, remaining_quantity FROM orders WHERE id = $1`, o.OrderID).
		Scan(&status, &side, &kind, &priceOK, &tif, &remaining); err != nil {
		t.Fatal(err)
	}
	if status != "CREATED" || side != "SELL" || kind != "LIMIT" || !priceOK || tif != "GTC" || remaining != 5 {
		t.Errorf("stored order = %s %s %s (price 100.5: %v) %s %d", status, side, kind, priceOK, tif, remaining)
	}
	if n := h.count("orders"); n != 1 {
		t.Errorf("%d orders, want 1", n)
	}

	var seq int
	var eventType, toStatus string
	var fromStatus *string
	var details map[string]string
	if err := h.pool.QueryRow(ctx, `SELECT seq, event_type, from_status, to_status, details FROM order_events WHERE order_id = $1`, o.OrderID).
		Scan(&seq, &eventType, &fromStatus, &toStatus, &details); err != nil {
		t.Fatal(err)
	}
	if seq != 1 || eventType != "ORDER_PLACED" || fromStatus != nil || toStatus != "CREATED" || len(details) != 1 || details["requestedBy"] != h.trader(7) {
		t.Errorf("event = seq %d %s %v→%s %v", seq, eventType, fromStatus, toStatus, details)
	}
	if n := h.count("order_events"); n != 1 {
		t.Errorf("%d events, want 1", n)
	}

	var topic, key string
	var payload []byte
	if err := h.pool.QueryRow(ctx, `SELECT topic, key, payload FROM outbox`).Scan(&topic, &key, &payload); err != nil {
		t.Fatal(err)
	}
	if topic != kafka.TopicOrderExecution || key != strconv.FormatInt(o.OrderID, 10) {
		t.Errorf("outbox topic, key = %s, %s", topic, key)
	}
	msg, err := kafka.DecodeExecution(payload)
	if err != nil {
		t.Fatalf("outbox payload %s: %v", payload, err)
	}
	var runKey string
	if err := h.pool.QueryRow(ctx, `SELECT run_key FROM orders WHERE id = $1`, o.OrderID).Scan(&runKey); err != nil {
		t.Fatal(err)
	}
	want := kafka.ExecutionMessage{OrderID: o.OrderID, UserID: 7, InstrumentID: 102, Side: "SELL", Kind: "LIMIT", RunKey: runKey}
	if len(runKey) != 12 {
		t.Errorf("run key %q, want 12 hex digits", runKey)
	}
	if msg != want {
		t.Errorf("outbox message = %+v, want %+v", msg, want)
	}
	// The relay publishes the payload as stored, so it must be the very JSON value the
	// consumer's own encoding gives, not merely decode to the same message.
	var sameJSON bool
	if err := h.pool.QueryRow(ctx, `SELECT payload = $1::jsonb FROM outbox`, want.Encode()).Scan(&sameJSON); err != nil {
		t.Fatal(err)
	}
	if !sameJSON {
		t.Errorf("outbox payload %s is not the JSON value %s", payload, want.Encode())
	}
	if n := h.count("outbox"); n != 1 {
		t.Errorf("%d outbox rows, want 1", n)
	}

	again := h.place(idemKey, body)
	if again.status != http.StatusCreated || !bytes.Equal(again.body, res.body) || again.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: status %d, body %s; want the first answer (201, %s) replayed", again.status, again.body, res.body)
	}
	for _, table := range []string{"orders", "order_events", "outbox"} {
		if n := h.count(table); n != 1 {
			t.Errorf("after the replay %s has %d rows, want 1", table, n)
		}
	}
}

func TestPlacingAnOrderWakesTheOutboxRelay(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := h.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN outbox"); err != nil {
		t.Fatal(err)
	}

	// The order's own transaction does not notify (that would serialise commits); the
	// API wakes the relay after it. Twice: the waker's goroutine ends when idle and must
	// come back for the next order.
	for i := range 2 {
		h.mustPlace(limitBody(1, `"10"`, 1))
		if _, err := conn.Conn().WaitForNotification(ctx); err != nil {
			t.Fatalf("no notification on channel outbox after placing order %d: %v", i+1, err)
		}
	}
}

func TestPlacingIsIdempotent(t *testing.T) {
	t.Parallel()
	h := newHarness(t)

	t.Run("a replay answers the first answer byte for byte, however the order changed since", func(t *testing.T) {
		key := newKey()
		first := h.place(key, limitBody(1, `"100.5"`, 10))
		if first.status != http.StatusCreated || first.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("first answer: %d %v %s", first.status, first.header, first.body)
		}
		o := decode[orderBody](t, first)
		h.exec(`UPDATE orders SET status = 'EXECUTING', version = version + 2, updated_at = now() + interval '1 second' WHERE id = $1`, o.OrderID)
		res := h.place(key, limitBody(1, `100.50`, 10)) // the same request, written differently
		if res.status != http.StatusCreated || !bytes.Equal(res.body, first.body) {
			t.Fatalf("replay: %d %s; want 201 and the first body %s", res.status, res.body, first.body)
		}
		if got := res.header.Get("Idempotent-Replayed"); got != "true" {
			t.Errorf("replay's Idempotent-Replayed = %q, want true", got)
		}
		for _, name := range []string{"Content-Type", "Location"} {
			if got, want := res.header.Get(name), first.header.Get(name); got != want {
				t.Errorf("replay's %s = %q, want the first answer's %q", name, got, want)
			}
		}
		if n := h.count("orders"); n < 1 {
			t.Fatal("no order")
		}
	})

	t.Run("a request that failed stored nothing: its key places the order once it is right", func(t *testing.T) {
		key := newKey()
		wantProblem(t, h.place(key, limitBody(1, `"-1"`, 10)), http.StatusBadRequest, "VALIDATION_FAILED", "price")
		if res := h.place(key, limitBody(1, `"1"`, 10)); res.status != http.StatusCreated || res.header.Get("Idempotent-Replayed") != "" {
			t.Errorf("the corrected request: %d %v %s, want a new order", res.status, res.header, res.body)
		}
	})

	t.Run("an order placed before answers were stored is replayed as it is now", func(t *testing.T) {
		key := newKey()
		first := decode[orderBody](t, h.place(key, limitBody(1, `"7"`, 1)))
		h.exec(`DELETE FROM idempotency_keys WHERE order_id = $1`, first.OrderID)
		res := h.place(key, limitBody(1, `"7"`, 1))
		again := decode[orderBody](t, res)
		if res.status != http.StatusOK || again.OrderID != first.OrderID || !again.Duplicate || res.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("replay: %d %v %s; want 200, order %d, duplicate, replayed", res.status, res.header, res.body, first.OrderID)
		}
	})

	t.Run("an expired key places a new order", func(t *testing.T) {
		for _, stored := range []bool{true, false} {
			key := newKey()
			first := decode[orderBody](t, h.place(key, limitBody(1, `"8"`, 1)))
			if !stored {
				h.exec(`DELETE FROM idempotency_keys WHERE order_id = $1`, first.OrderID)
			}
			h.exec(`UPDATE orders SET created_at = now() - interval '25 hours' WHERE id = $1`, first.OrderID)
			h.exec(`UPDATE idempotency_keys SET created_at = now() - interval '25 hours', expires_at = now() - interval '1 hour' WHERE order_id = $1`, first.OrderID)
			res := h.place(key, limitBody(1, `"8"`, 1))
			again := decode[orderBody](t, res)
			if res.status != http.StatusCreated || res.header.Get("Idempotent-Replayed") != "" || again.OrderID == first.OrderID {
				t.Fatalf("stored %v: after the expiry: %d %v %s; want a new order", stored, res.status, res.header, res.body)
			}
			// And the new order's key replays the new order.
			if replay := h.place(key, limitBody(1, `"8"`, 1)); !bytes.Equal(replay.body, res.body) {
				t.Errorf("stored %v: replay of the renewed key: %s, want %s", stored, replay.body, res.body)
			}
			// A different request with the renewed key is refused against the new order.
			wantProblem(t, h.place(key, limitBody(1, `"9"`, 1)), http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED", "")
		}
	})

	t.Run("a key reused for a different request is refused", func(t *testing.T) {
		key := newKey()
		h.place(key, limitBody(2, `"100.5"`, 10))
		res := h.place(key, limitBody(2, `"100.5"`, 11))
		wantProblem(t, res, http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED", "")
	})

	t.Run("the same key for another user is a new order", func(t *testing.T) {
		key := newKey()
		a := decode[orderBody](t, h.place(key, limitBody(3, `"1"`, 1)))
		res := h.place(key, limitBody(4, `"1"`, 1))
		if res.status != http.StatusCreated {
			t.Fatalf("status = %d, want 201", res.status)
		}
		if b := decode[orderBody](t, res); b.OrderID == a.OrderID {
			t.Error("two users' orders share an id")
		}
	})
}

func TestConcurrentIdenticalRequestsPlaceOneOrder(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const n = 50
	key := newKey()
	body := limitBody(9, `"42.42"`, 3)

	start := make(chan struct{})
	results := make([]response, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			results[i] = h.place(key, body)
		}()
	}
	close(start)
	wg.Wait()

	// Each request either placed the order, replays its answer, or was told that the
	// key's first request is in flight (409) and wrote nothing.
	created, inFlight := 0, 0
	bodies := map[string]bool{}
	for _, res := range results {
		switch {
		case res.status == http.StatusCreated && res.header.Get("Idempotent-Replayed") == "":
			created++
			bodies[string(res.body)] = true
		case res.status == http.StatusCreated:
			bodies[string(res.body)] = true
		case res.status == http.StatusConflict:
			inFlight++
			if p := wantProblem(t, res, http.StatusConflict, "IDEMPOTENCY_KEY_IN_FLIGHT", ""); res.header.Get("Retry-After") == "" {
				t.Errorf("409 without Retry-After: %+v", p)
			}
		default:
			t.Errorf("status = %d; body %s", res.status, res.body)
		}
	}
	if created != 1 || len(bodies) != 1 {
		t.Errorf("%d answers placed the order and the 201s had %d different bodies; want exactly one of each", created, len(bodies))
	}
	t.Logf("%d placed, %d replayed, %d in flight", created, n-created-inFlight, inFlight)
	for table, want := range map[string]int{"orders": 1, "order_events": 1, "outbox": 1} {
		if got := h.count(table); got != want {
			t.Errorf("%s has %d rows, want %d", table, got, want)
		}
	}
}

func TestAKeyWhoseFirstRequestIsStillBeingWrittenGets409(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	key := newKey()
	body := limitBody(5, `"12"`, 2)

	// Hold the first request inside its transaction: its order is written and its key's
	// lock taken, and storing its answer waits for this lock.
	hold, err := h.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = hold.Rollback(ctx) }()
	if _, err := hold.Exec(ctx, `LOCK TABLE idempotency_keys IN EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	firstDone := make(chan response, 1)
	go func() { firstDone <- h.place(key, body) }()
	waitFor(t, "the first request to wait inside its transaction", func() bool {
		var waiting bool
		err := h.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO idempotency_keys%')`).Scan(&waiting)
		return err == nil && waiting
	})

	second := h.place(key, body)
	wantProblem(t, second, http.StatusConflict, "IDEMPOTENCY_KEY_IN_FLIGHT", "")
	if second.header.Get("Retry-After") == "" {
		t.Error("the 409 has no Retry-After")
	}
	// A different request with the key is in flight too, not yet a reuse: the first one
	// has not been answered.
	wantProblem(t, h.place(key, limitBody(5, `"13"`, 2)), http.StatusConflict, "IDEMPOTENCY_KEY_IN_FLIGHT", "")

	if err := hold.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	first := <-firstDone
	if first.status != http.StatusCreated || first.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("the first request: %d %s, want it placed", first.status, first.body)
	}
	third := h.place(key, body)
	if third.status != http.StatusCreated || !bytes.Equal(third.body, first.body) || third.header.Get("Idempotent-Replayed") != "true" {
		t.Errorf("a request after the first was answered: %d %s, want its answer replayed", third.status, third.body)
	}
	if n := h.count("orders"); n != 1 {
		t.Errorf("%d orders, want the first request's alone", n)
	}
}

func TestAFillOrKillLimitOrderIsAccepted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	o := h.mustPlace(`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"10","quantity":2,"timeInForce":"FOK"}`)
	if o.TimeInForce != "FOK" || o.OrderStatus != "CREATED" {
		t.Errorf("placed FOK: %+v", o)
	}
}

func TestExpiringOrdersCarryTheirExpiry(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	at := time.Now().Add(2 * time.Hour).UTC().Truncate(time.Millisecond)
	gtd := h.mustPlace(`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"10","quantity":1,"timeInForce":"GTD","expireAt":"` + at.Format(time.RFC3339Nano) + `"}`)
	if gtd.TimeInForce != "GTD" || gtd.ExpireAt != at.Format("2006-01-02T15:04:05.000Z07:00") {
		t.Errorf("GTD order: timeInForce %s, expireAt %q; want GTD at %s", gtd.TimeInForce, gtd.ExpireAt, at)
	}
	day := h.mustPlace(`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"10","quantity":1,"timeInForce":"DAY"}`)
	end, err := time.Parse(time.RFC3339, day.ExpireAt)
	if err != nil || !end.After(time.Now()) || time.Until(end) > 24*time.Hour || end.UTC().Hour() != 21 || end.UTC().Minute() != 0 {
		t.Errorf("DAY order's expireAt %q (%v): want the next 21:00 UTC", day.ExpireAt, err)
	}
	for name, body := range map[string]string{
		"GTD without expireAt":  `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"10","quantity":1,"timeInForce":"GTD"}`,
		"GTD in the past":       `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"10","quantity":1,"timeInForce":"GTD","expireAt":"2020-01-01T00:00:00Z"}`,
		"GTD too far ahead":     `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"10","quantity":1,"timeInForce":"GTD","expireAt":"` + time.Now().Add(100*24*time.Hour).Format(time.RFC3339) + `"}`,
		"GTD with a bad time":   `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"10","quantity":1,"timeInForce":"GTD","expireAt":"tomorrow"}`,
		"expireAt on a GTC one": `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"10","quantity":1,"expireAt":"` + at.Format(time.RFC3339) + `"}`,
	} {
		t.Run(name, func(t *testing.T) {
			wantProblem(t, h.place(newKey(), body), http.StatusBadRequest, "VALIDATION_FAILED", "expireAt")
		})
	}
	wantProblem(t, h.place(newKey(), `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1,"timeInForce":"DAY"}`), http.StatusBadRequest, "VALIDATION_FAILED", "timeInForce")
}
