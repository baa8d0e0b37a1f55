package api_test

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/schema"
)

// newFuzzPool is newPool for a fuzz target, which has no *testing.T of its own: every
// input of the target runs against this one database.
func newFuzzPool(f *testing.F) *pgxpool.Pool {
	f.Helper()
	ctx := context.Background()
	name := "api_fuzz_" + strings.ToLower(rand.Text()[:16])
	if err := cluster.CreateDatabase(ctx, name); err != nil {
		f.Fatalf("create database: %v", err)
	}
	pool, err := pgxpool.New(ctx, cluster.URL(name))
	if err != nil {
		f.Fatalf("connect: %v", err)
	}
	f.Cleanup(pool.Close)
	if err := schema.Migrate(ctx, pool); err != nil {
		f.Fatalf("migrate: %v", err)
	}
	return pool
}

// FuzzPlaceOrder sends arbitrary bodies and Idempotency-Keys to POST /api/v1/orders
// through the real handler and database. Whatever the input, the answer is never a 5xx;
// a refusal is a problem+json body with an errorCode and a message and writes nothing;
// an acceptance names its order; and every answer matches the OpenAPI spec.
func FuzzPlaceOrder(f *testing.F) {
	const (
		limit  = `{"userId":"1","instrumentId":"101","orderType":"BUY","orderKind":"LIMIT","price":"100.25","quantity":"10"}`
		market = `{"userId":"1","instrumentId":"101","orderType":"SELL","orderKind":"MARKET","price":"","quantity":"5"}`
	)
	seeds := []struct{ body, key string }{
		// What the seed's web client sends: string numbers, "" for no price.
		{limit, "seed-limit"},
		{market, "seed-market"},
		{`{"userId":2,"instrumentId":102,"orderType":"BUY","orderKind":"LIMIT","price":99.5,"quantity":3,"timeInForce":"IOC"}`, "seed-numbers"},
		{`{"userId":2,"instrumentId":103,"orderType":"SELL","orderKind":"MARKET","price":null,"quantity":1,"timeInForce":"IOC"}`, "seed-null-price"},
		// The same key again: a replay, then a reuse for another order.
		{limit, "seed-limit"},
		{strings.Replace(limit, `"10"`, `"11"`, 1), "seed-limit"},
		// Every kind of refusal.
		{``, "seed-empty"},
		{`null`, "seed-null"},
		{`[1,2]`, "seed-array"},
		{`"order"`, "seed-string"},
		{`{"userId":1,`, "seed-truncated"},
		{limit + `x`, "seed-trailing"},
		{limit + limit, "seed-two-objects"},
		{strings.Repeat("[", 20_000), "seed-nested"},
		{`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1,"quantity":2}`, "seed-duplicate"},
		{`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1,"stopPrice":5}`, "seed-unknown"},
		{`{"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1}`, "seed-missing"},
		{`{"userId":0,"instrumentId":-1,"orderType":"HOLD","orderKind":"STOP","price":"ten","quantity":1.5,"timeInForce":"DAY"}`, "seed-all-bad"},
		{`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"10","quantity":9223372036854775808}`, "seed-2^63"},
		{`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":1e400,"quantity":1e400}`, "seed-1e400"},
		{`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"-0","quantity":-0}`, "seed-minus-zero"},
		{`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"NaN","quantity":"Infinity"}`, "seed-nan"},
		{`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"1.123456789","quantity":1}`, "seed-scale"},
		{`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"1234567890123456789","quantity":1}`, "seed-price-digits"},
		{`{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","price":"5","quantity":1,"timeInForce":"GTC"}`, "seed-market-price"},
		{`{"userId":1,"instrumentId":101,"orderType":"'; DROP TABLE orders; --","orderKind":"MARKET","quantity":1}`, "seed-sql"},
		{"{\"userId\":1,\"instrumentId\":101,\"orderType\":\"BU\xffY\",\"orderKind\":\"MARKET\",\"quantity\":1}", "seed-utf8"},
		{limit, "'; DROP TABLE orders; --"},
		{limit, "a\r\nX-Injected: 1"},
		{limit, "clé\xff"},
		{limit, strings.Repeat("k", 129)},
		{limit, ""},
	}
	for _, s := range seeds {
		f.Add(s.body, s.key)
	}

	pool := newFuzzPool(f)
	cancels := &fakeCanceller{}
	creds := devstack.NewCredentials(pool)
	cfg := testConfig()
	cfg.Auth = &auth.Authenticator{Keys: creds.Keys()}
	handler := api.NewServer(pool, cancels, nil, cfg)
	var spec *specValidator // loaded by the first input: newSpecValidator needs a *testing.T
	f.Fuzz(func(t *testing.T, body, key string) {
		if spec == nil {
			spec = newSpecValidator(t)
		}
		h := &harness{t: t, pool: pool, cancels: cancels, handler: handler, spec: spec, creds: creds}
		orders := h.count("orders")

		req := httptest.NewRequest(http.MethodPost, "/api/v1/orders", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if key != "" {
			req.Header["Idempotency-Key"] = []string{key} // verbatim, as a raw client could send it
		}
		res := h.serve(req)

		written := h.count("orders") - orders
		switch {
		case res.status >= 500:
			t.Fatalf("status %d for body %q, key %q: %s", res.status, body, key, res.body)
		case res.status >= 400:
			if ct := res.header.Get("Content-Type"); ct != "application/problem+json" {
				t.Errorf("status %d with Content-Type %q, want application/problem+json", res.status, ct)
			}
			var p problemBody
			if err := json.Unmarshal(res.body, &p); err != nil {
				t.Fatalf("status %d with a body that is not JSON: %v: %q", res.status, err, res.body)
			}
			if p.ErrorCode == "" || p.Message == "" || p.Status != res.status {
				t.Errorf("status %d with a problem lacking errorCode, message or status: %s", res.status, res.body)
			}
			if written != 0 {
				t.Errorf("a refused request (%d %s) wrote %d orders", res.status, p.ErrorCode, written)
			}
		case res.status == http.StatusCreated || res.status == http.StatusOK:
			var o orderBody
			if err := json.Unmarshal(res.body, &o); err != nil || o.OrderID <= 0 {
				t.Fatalf("status %d without an orderId (%v): %s", res.status, err, res.body)
			}
			replayed := res.header.Get("Idempotent-Replayed") == "true"
			if want := b2i(!replayed); written != want {
				t.Errorf("status %d (replayed %v) wrote %d orders, want %d", res.status, replayed, written, want)
			}
			if res.status == http.StatusOK && !o.Duplicate {
				t.Errorf("status 200 not marked duplicate: %s", res.body)
			}
		default:
			t.Fatalf("unexpected status %d: %s", res.status, res.body)
		}
	})
}

// b2i returns 1 for true and 0 for false.
func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}
