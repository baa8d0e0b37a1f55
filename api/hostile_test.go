package api_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// hugeBody is a request body of size bytes, made up as it is read, that counts how much
// of it the server read: a JSON object opening with a string member that never ends.
type hugeBody struct {
	size int64
	read int64
}

func (b *hugeBody) Read(p []byte) (int, error) {
	const head = `{"userId":"`
	if b.read >= b.size {
		return 0, io.EOF
	}
	n := min(int64(len(p)), b.size-b.read)
	for i := range n {
		if at := b.read + i; at < int64(len(head)) {
			p[i] = head[at]
		} else {
			p[i] = '1'
		}
	}
	b.read += n
	return int(n), nil
}

// orderRows returns the row counts of the tables an order placement writes.
func (h *harness) orderRows() [3]int {
	h.t.Helper()
	return [3]int{h.count("orders"), h.count("order_events"), h.count("outbox")}
}

// paddedOrder is a valid MARKET order body of exactly size bytes, padded with
// whitespace (which JSON ignores) after its last member.
func paddedOrder(t *testing.T, size int) string {
	t.Helper()
	const order = `{"userId":3,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1`
	if size < len(order)+1 {
		t.Fatalf("a body of %d bytes cannot hold an order", size)
	}
	return order + strings.Repeat(" ", size-len(order)-1) + "}"
}

func TestHostileOrderRequestsAreRefusedAndWriteNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	valid := `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"10","quantity":1}`
	// order builds a LIMIT order body whose members are given as raw JSON text.
	order := func(userID, orderType, price, quantity string) string {
		return `{"userId":` + userID + `,"instrumentId":101,"orderType":` + orderType +
			`,"orderKind":"LIMIT","price":` + price + `,"quantity":` + quantity + `}`
	}
	const sqlText = `'; DROP TABLE orders; --`
	tests := []struct {
		name        string
		contentType string // default application/json
		key         string // default a fresh key; sent verbatim, even if net/http would refuse it
		body        string
		status      int
		code        string
		field       string
	}{
		{name: "a body just over 64 KiB is too large", body: paddedOrder(t, 64<<10+1), status: 413, code: "PAYLOAD_TOO_LARGE"},
		{name: "100000 nested arrays are too large before they are parsed", body: strings.Repeat("[", 100_000), status: 413, code: "PAYLOAD_TOO_LARGE"},
		{name: "60000 nested arrays within the size limit are malformed, not a stack overflow", body: strings.Repeat("[", 60_000), status: 400, code: "MALFORMED_JSON"},
		{name: "60000 nested arrays inside a field are malformed", body: `{"userId":` + strings.Repeat("[", 60_000), status: 400, code: "MALFORMED_JSON"},
		{name: "12000 nested objects are malformed", body: strings.Repeat(`{"a":`, 12_000), status: 400, code: "MALFORMED_JSON"},
		{name: "invalid UTF-8 inside orderType is refused", body: order("1", "\"BU\xffY\"", `"10"`, "1"), status: 400, code: "VALIDATION_FAILED", field: "orderType"},
		{name: "invalid UTF-8 inside a numeric string is refused", body: order("1", `"BUY"`, "\"1\xff0\"", "1"), status: 400, code: "VALIDATION_FAILED", field: "price"},
		{name: "invalid UTF-8 in a member name is named as an unknown field", body: "{\"user\xffId\":1," + valid[1:], status: 400, code: "VALIDATION_FAILED", field: "user\uFFFDId"},
		{name: "invalid UTF-8 outside any string is malformed", body: "{\xff" + valid[1:], status: 400, code: "MALFORMED_JSON"},
		{name: "a byte order mark before the object is malformed", body: "\xef\xbb\xbf" + valid, status: 400, code: "MALFORMED_JSON"},
		{name: "invalid UTF-8 in the Idempotency-Key is refused", key: "key-\xff\xfe", body: valid, status: 400, code: "VALIDATION_FAILED", field: "Idempotency-Key"},
		{name: "a quantity of 2^63 is refused", body: order("1", `"BUY"`, `"10"`, "9223372036854775808"), status: 400, code: "VALIDATION_FAILED", field: "quantity"},
		{name: "a quantity string of 2^63 is refused", body: order("1", `"BUY"`, `"10"`, `"9223372036854775808"`), status: 400, code: "VALIDATION_FAILED", field: "quantity"},
		{name: "a quantity of 1e400 is refused", body: order("1", `"BUY"`, `"10"`, "1e400"), status: 400, code: "VALIDATION_FAILED", field: "quantity"},
		{name: "a userId of 1e400 is refused", body: order("1e400", `"BUY"`, `"10"`, "1"), status: 400, code: "VALIDATION_FAILED", field: "userId"},
		{name: "a userId far beyond int64 is refused", body: order(strings.Repeat("9", 400), `"BUY"`, `"10"`, "1"), status: 400, code: "VALIDATION_FAILED", field: "userId"},
		{name: "a price of 1e400 is refused", body: order("1", `"BUY"`, "1e400", "1"), status: 400, code: "VALIDATION_FAILED", field: "price"},
		{name: "a price beyond int64 is refused", body: order("1", `"BUY"`, "9223372036854775808", "1"), status: 400, code: "VALIDATION_FAILED", field: "price"},
		{name: "a price of -0 is refused", body: order("1", `"BUY"`, "-0", "1"), status: 400, code: "VALIDATION_FAILED", field: "price"},
		{name: `a price of "-0" is refused`, body: order("1", `"BUY"`, `"-0"`, "1"), status: 400, code: "VALIDATION_FAILED", field: "price"},
		{name: `a price of "-0.000" is refused`, body: order("1", `"BUY"`, `"-0.000"`, "1"), status: 400, code: "VALIDATION_FAILED", field: "price"},
		{name: "a quantity of -0 is refused", body: order("1", `"BUY"`, `"10"`, "-0"), status: 400, code: "VALIDATION_FAILED", field: "quantity"},
		{name: `a quantity of "-0" is refused`, body: order("1", `"BUY"`, `"10"`, `"-0"`), status: 400, code: "VALIDATION_FAILED", field: "quantity"},
		{name: `a price of "NaN" is refused`, body: order("1", `"BUY"`, `"NaN"`, "1"), status: 400, code: "VALIDATION_FAILED", field: "price"},
		{name: `a price of "Infinity" is refused`, body: order("1", `"BUY"`, `"Infinity"`, "1"), status: 400, code: "VALIDATION_FAILED", field: "price"},
		{name: `a price of "-Infinity" is refused`, body: order("1", `"BUY"`, `"-Infinity"`, "1"), status: 400, code: "VALIDATION_FAILED", field: "price"},
		{name: `a quantity of "NaN" is refused`, body: order("1", `"BUY"`, `"10"`, `"NaN"`), status: 400, code: "VALIDATION_FAILED", field: "quantity"},
		{name: "a bare NaN is malformed", body: order("1", `"BUY"`, "NaN", "1"), status: 400, code: "MALFORMED_JSON"},
		{name: "SQL in orderType is refused", body: order("1", `"`+sqlText+`"`, `"10"`, "1"), status: 400, code: "VALIDATION_FAILED", field: "orderType"},
		{name: "SQL in a numeric string is refused", body: order(`"1; DROP TABLE orders"`, `"BUY"`, `"10"`, "1"), status: 400, code: "VALIDATION_FAILED", field: "userId"},
		{name: "CR LF in the Idempotency-Key is refused", key: "a\r\nX-Injected: 1", body: valid, status: 400, code: "VALIDATION_FAILED", field: "Idempotency-Key"},
		{name: "a bare LF in the Idempotency-Key is refused", key: "a\nX-Injected: 1", body: valid, status: 400, code: "VALIDATION_FAILED", field: "Idempotency-Key"},
		{name: "a NUL in the Idempotency-Key is refused", key: "a\x00b", body: valid, status: 400, code: "VALIDATION_FAILED", field: "Idempotency-Key"},
		{name: "a field sent twice is ambiguous and refused", body: `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1,"quantity":2}`, status: 400, code: "VALIDATION_FAILED", field: "quantity"},
		{name: "a field sent twice with the same value is refused too", body: `{"userId":1,"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1}`, status: 400, code: "VALIDATION_FAILED", field: "userId"},
		{name: "a field sent twice under an escaped name is refused", body: `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1,"quantit\u0079":2}`, status: 400, code: "VALIDATION_FAILED", field: "quantity"},
		{name: "a JSON array instead of an object is malformed", body: `[` + valid + `]`, status: 400, code: "MALFORMED_JSON"},
		{name: "a JSON string instead of an object is malformed", body: `"` + strings.ReplaceAll(valid, `"`, `\"`) + `"`, status: 400, code: "MALFORMED_JSON"},
		{name: "a null body is malformed", body: `null`, status: 400, code: "MALFORMED_JSON"},
		{name: "trailing garbage after the object is malformed", body: valid + `garbage`, status: 400, code: "MALFORMED_JSON"},
		{name: "a second object after the first is malformed", body: valid + valid, status: 400, code: "MALFORMED_JSON"},
		{name: "a valid body as text/plain is refused", contentType: "text/plain", body: valid, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "a valid body as a form is refused", contentType: "application/x-www-form-urlencoded", body: valid, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "a valid body in charset latin1 is refused", contentType: "application/json; charset=latin1", body: valid, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
		{name: "an unparsable content type is refused", contentType: "application/json; charset", body: valid, status: 415, code: "UNSUPPORTED_MEDIA_TYPE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := h.on(t)
			before := h.orderRows()
			req := httptest.NewRequest(http.MethodPost, "/api/v1/orders", strings.NewReader(tt.body))
			req.Header.Set("Content-Type", "application/json")
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			key := tt.key
			if key == "" {
				key = newKey()
			}
			// Set directly: net/http would refuse to send some of these keys, but a
			// proxy or another client need not.
			req.Header["Idempotency-Key"] = []string{key}
			start := time.Now()
			res := h.serve(req)
			if elapsed := time.Since(start); elapsed > 2*time.Second {
				t.Errorf("answering took %v; hostile input must be refused quickly", elapsed)
			}
			wantProblem(t, res, tt.status, tt.code, tt.field)
			for name := range res.header {
				if strings.EqualFold(name, "X-Injected") {
					t.Errorf("the response carries a header the request injected: %v", res.header)
				}
			}
			if after := h.orderRows(); after != before {
				t.Errorf("orders, order_events, outbox rows went from %v to %v", before, after)
			}
		})
	}
}

// on returns a copy of h that reports to t, for use inside a subtest.
func (h *harness) on(t *testing.T) *harness {
	c := *h
	c.t = t
	return &c
}

func TestAHugeBodyIsRefusedWithoutReadingIt(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	const size = 10 << 20
	const limit = 64 << 10
	tests := []struct {
		name     string
		declared bool
		maxRead  int64
	}{
		{"a 10 MB body with a declared length is refused before any of it is read", true, 0},
		{"a 10 MB body of unknown length is refused after reading at most 64 KiB of it", false, limit + 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := h.on(t)
			before := h.orderRows()
			body := &hugeBody{size: size}
			req := httptest.NewRequest(http.MethodPost, "/api/v1/orders", body)
			req.ContentLength = -1
			if tt.declared {
				req.ContentLength = size
			}
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", newKey())
			wantProblem(t, h.serve(req), http.StatusRequestEntityTooLarge, "PAYLOAD_TOO_LARGE", "")
			if body.read > tt.maxRead {
				t.Errorf("the server read %d bytes of the body, want at most %d", body.read, tt.maxRead)
			}
			if after := h.orderRows(); after != before {
				t.Errorf("orders, order_events, outbox rows went from %v to %v", before, after)
			}
		})
	}
}

func TestOddButHarmlessOrderRequestsAreAccepted(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	ctx := context.Background()

	// An Idempotency-Key is an opaque token of printable ASCII: refusing quotes or
	// semicolons would only break clients, since the key only ever reaches SQL as a
	// bound parameter. It must come back byte for byte, so a replay finds it.
	t.Run("an Idempotency-Key holding SQL is stored verbatim and the tables survive", func(t *testing.T) {
		h := h.on(t)
		const key = `'; DROP TABLE orders; -- "x" \ %s`
		body := `{"userId":41,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1}`
		res := h.place(key, body)
		if res.status != http.StatusCreated {
			t.Fatalf("status = %d, want 201; body %s", res.status, res.body)
		}
		o := decode[orderBody](t, res)
		var stored string
		if err := h.pool.QueryRow(ctx, "SELECT idempotency_key FROM orders WHERE id = $1", o.OrderID).Scan(&stored); err != nil {
			t.Fatalf("read the order's key: %v", err)
		}
		if stored != key {
			t.Errorf("stored key = %q, want %q", stored, key)
		}
		for _, table := range []string{"orders", "order_events", "outbox", "instruments", "idempotency_keys"} {
			var exists bool
			if err := h.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NOT NULL", table).Scan(&exists); err != nil || !exists {
				t.Errorf("table %s is gone (err %v)", table, err)
			}
		}
		replay := h.place(key, body)
		if replay.status != http.StatusCreated || replay.header.Get("Idempotent-Replayed") != "true" || decode[orderBody](t, replay).OrderID != o.OrderID {
			t.Errorf("a replay with the same key answered %d %s, want order %d's answer replayed", replay.status, replay.body, o.OrderID)
		}
	})

	t.Run("a body of exactly 64 KiB is accepted", func(t *testing.T) {
		h := h.on(t)
		res := h.place(newKey(), paddedOrder(t, 64<<10))
		if res.status != http.StatusCreated {
			t.Fatalf("status = %d, want 201; body %s", res.status, res.body)
		}
	})
}
