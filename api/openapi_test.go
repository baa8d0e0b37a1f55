package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/orderflow/orderflow/auth"
)

// specValidator checks real requests and responses against api/openapi.yaml.
type specValidator struct {
	doc    *openapi3.T
	router routers.Router
}

func newSpecValidator(t *testing.T) *specValidator {
	t.Helper()
	doc, err := openapi3.NewLoader().LoadFromFile("openapi.yaml")
	if err != nil {
		t.Fatalf("load openapi.yaml: %v", err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("openapi.yaml is not a valid OpenAPI 3 document: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatalf("route openapi.yaml: %v", err)
	}
	return &specValidator{doc: doc, router: router}
}

// check validates res, the answer to req. A request the spec has no operation for (an
// unknown path or method) must still be answered with a Problem. It reports with
// t.Errorf only, so it is safe to call from several goroutines.
func (v *specValidator) check(t *testing.T, req *http.Request, res response) {
	if req.Method == http.MethodOptions && req.Header.Get("Access-Control-Request-Method") != "" {
		return // a CORS preflight, answered by the CORS middleware and outside the spec
	}
	route, params, err := v.router.FindRoute(req)
	if errors.Is(err, routers.ErrPathNotFound) || errors.Is(err, routers.ErrMethodNotAllowed) {
		if err := v.checkProblem(res); err != nil {
			t.Errorf("%s %s: answer to a request outside the spec: %v", req.Method, req.URL, err)
		}
		return
	}
	if err != nil {
		t.Errorf("%s %s: find route in spec: %v", req.Method, req.URL, err)
		return
	}
	input := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route},
		Status:                 res.status,
		Header:                 res.header,
		Options:                &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	input.SetBodyBytes(res.body)
	if err := openapi3filter.ValidateResponse(context.Background(), input); err != nil {
		t.Errorf("%s %s: response %d does not match the spec: %v\nbody: %s", req.Method, req.URL, res.status, err, res.body)
	}
}

// checkProblem validates res against the Problem schema.
func (v *specValidator) checkProblem(res response) error {
	if ct := res.header.Get("Content-Type"); ct != "application/problem+json" {
		return fmt.Errorf("Content-Type %q, want application/problem+json", ct)
	}
	var body any
	if err := json.Unmarshal(res.body, &body); err != nil {
		return fmt.Errorf("body is not JSON: %w", err)
	}
	if err := v.doc.Components.Schemas["Problem"].Value.VisitJSON(body); err != nil {
		return fmt.Errorf("body is not a Problem: %w", err)
	}
	return nil
}

// checkRequest validates a request against the spec; the tests use it to show that the
// requests the API accepts are the ones the spec describes.
//
// A request without a credential is checked with one, as the harness serves it with one.
func (v *specValidator) checkRequest(t *testing.T, req *http.Request) {
	t.Helper()
	if req.Header.Get("Authorization") == "" {
		key, _, _ := auth.NewKey()
		req = req.Clone(req.Context())
		req.Header.Set("Authorization", "Bearer "+key)
	}
	route, params, err := v.router.FindRoute(req)
	if err != nil {
		t.Fatalf("%s %s: find route in spec: %v", req.Method, req.URL, err)
	}
	body, err := io.ReadAll(req.Body)
	if err != nil {
		t.Fatalf("read request body: %v", err)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
	input := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route,
		Options: &openapi3filter.Options{AuthenticationFunc: bearerPresent}}
	if err := openapi3filter.ValidateRequest(context.Background(), input); err != nil {
		t.Errorf("%s %s: request does not match the spec: %v\nbody: %s", req.Method, req.URL, err, body)
	}
	req.Body = io.NopCloser(bytes.NewReader(body))
}

// bearerPresent checks a request's credential as the spec's bearer scheme describes it:
// an Authorization Bearer header (whether it is valid is the server's business).
func bearerPresent(_ context.Context, in *openapi3filter.AuthenticationInput) error {
	if in.SecuritySchemeName != "bearer" {
		return fmt.Errorf("unknown security scheme %q", in.SecuritySchemeName)
	}
	if !strings.HasPrefix(in.RequestValidationInput.Request.Header.Get("Authorization"), "Bearer ") {
		return errors.New("no Authorization Bearer header")
	}
	return nil
}

func TestServedSpecIsTheSpecFile(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	res := h.get("/openapi.yaml")
	if res.status != http.StatusOK {
		t.Fatalf("status = %d", res.status)
	}
	want, err := os.ReadFile("openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(res.body, want) {
		t.Error("GET /openapi.yaml does not serve api/openapi.yaml")
	}
	if _, err := openapi3.NewLoader().LoadFromData(res.body); err != nil {
		t.Errorf("served spec does not load: %v", err)
	}
}

func TestAcceptedRequestsMatchTheSpec(t *testing.T) {
	t.Parallel()
	spec := newSpecValidator(t)
	bodies := map[string]string{
		"a seed client order with string numbers": `{"userId":"1","instrumentId":"101","orderType":"BUY","orderKind":"LIMIT","price":"99.50","quantity":"10"}`,
		"an order with JSON numbers":              `{"userId":1,"instrumentId":101,"orderType":"SELL","orderKind":"LIMIT","price":99.5,"quantity":10,"timeInForce":"IOC"}`,
		"a market order with an empty price":      `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","price":"","quantity":10}`,
		"a market order with a null price":        `{"userId":1,"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","price":null,"quantity":10}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/api/v1/orders", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Idempotency-Key", "k1")
			spec.checkRequest(t, req)
		})
	}
	for _, target := range []string{
		"/api/v1/orders?page=1&size=5&sort=price,asc&userId=1&instrumentId=101&status=CREATED",
		"/api/v1/orders/7", "/api/v1/orders/7/events", "/api/v1/orders/7/trades", "/api/v1/instruments",
	} {
		t.Run("GET "+target, func(t *testing.T) {
			spec.checkRequest(t, httptest.NewRequest(http.MethodGet, target, nil))
		})
	}
}

// TestEveryRouteAnswersAsTheSpecSays walks every route and its main error answers; the
// harness checks each response against the spec.
func TestEveryRouteAnswersAsTheSpecSays(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	limit := h.mustPlace(limitBody(1, `"100.25"`, 10))
	market := h.mustPlace(`{"userId":2,"instrumentId":101,"orderType":"SELL","orderKind":"MARKET","quantity":4}`)
	h.exec(`INSERT INTO trades (instrument_id, buy_order_id, sell_order_id, aggressor_side, price, quantity)
	        VALUES (101, $1, $2, 'SELL', 100.25, 4)`, limit.OrderID, market.OrderID)
	h.exec(`UPDATE orders SET status = 'FAILED', reason = 'NO_LIQUIDITY' WHERE id = $1`, market.OrderID)
	parked := h.mustPlace(limitBody(3, `"99"`, 1))
	h.park(parked.OrderID, "Execute", "connection refused")
	jsonBody := []string{"Content-Type", "application/json"}

	steps := []struct {
		name       string
		method     string
		target     string
		body       string
		header     []string
		wantStatus int
	}{
		{"a replayed order", http.MethodPost, "/api/v1/orders", limitBody(1, `"100.25"`, 10), []string{"Content-Type", "application/json", "Idempotency-Key", "replay"}, http.StatusCreated},
		{"the replay itself", http.MethodPost, "/api/v1/orders", limitBody(1, `"100.25"`, 10), []string{"Content-Type", "application/json", "Idempotency-Key", "replay"}, http.StatusCreated},
		{"a reused key", http.MethodPost, "/api/v1/orders", limitBody(1, `"100.26"`, 10), []string{"Content-Type", "application/json", "Idempotency-Key", "replay"}, http.StatusUnprocessableEntity},
		{"an invalid order", http.MethodPost, "/api/v1/orders", limitBody(0, `"1"`, 1), []string{"Content-Type", "application/json", "Idempotency-Key", "bad"}, http.StatusBadRequest},
		{"a missing key", http.MethodPost, "/api/v1/orders", limitBody(1, `"1"`, 1), []string{"Content-Type", "application/json"}, http.StatusBadRequest},
		{"malformed JSON", http.MethodPost, "/api/v1/orders", `{"userId":`, []string{"Content-Type", "application/json", "Idempotency-Key", "bad"}, http.StatusBadRequest},
		{"a text body", http.MethodPost, "/api/v1/orders", "hello", []string{"Content-Type", "text/plain", "Idempotency-Key", "bad"}, http.StatusUnsupportedMediaType},
		{"a huge body", http.MethodPost, "/api/v1/orders", strings.Repeat(" ", 70<<10), []string{"Content-Type", "application/json", "Idempotency-Key", "bad"}, http.StatusRequestEntityTooLarge},
		{"a page of orders", http.MethodGet, "/api/v1/orders?size=1&sort=price,asc", "", nil, http.StatusOK},
		{"a bad page size", http.MethodGet, "/api/v1/orders?size=0", "", nil, http.StatusBadRequest},
		{"a limit order", http.MethodGet, fmt.Sprintf("/api/v1/orders/%d", limit.OrderID), "", nil, http.StatusOK},
		{"a market order", http.MethodGet, fmt.Sprintf("/api/v1/orders/%d", market.OrderID), "", nil, http.StatusOK},
		{"a bad order id", http.MethodGet, "/api/v1/orders/abc", "", nil, http.StatusBadRequest},
		{"an unknown order", http.MethodGet, "/api/v1/orders/999999", "", nil, http.StatusNotFound},
		{"an order's events", http.MethodGet, fmt.Sprintf("/api/v1/orders/%d/events", limit.OrderID), "", nil, http.StatusOK},
		{"an unknown order's events", http.MethodGet, "/api/v1/orders/999999/events", "", nil, http.StatusNotFound},
		{"an order's trades", http.MethodGet, fmt.Sprintf("/api/v1/orders/%d/trades", limit.OrderID), "", nil, http.StatusOK},
		{"an unknown order's trades", http.MethodGet, "/api/v1/orders/999999/trades", "", nil, http.StatusNotFound},
		{"a cancel", http.MethodPost, fmt.Sprintf("/api/v1/orders/%d/cancel", limit.OrderID), "", nil, http.StatusAccepted},
		{"a cancel of a terminal order", http.MethodPost, fmt.Sprintf("/api/v1/orders/%d/cancel", market.OrderID), "", nil, http.StatusConflict},
		{"a cancel of an unknown order", http.MethodPost, "/api/v1/orders/999999/cancel", "", nil, http.StatusNotFound},
		{"the instruments", http.MethodGet, "/api/v1/instruments", "", nil, http.StatusOK},
		{"the stuck orders", http.MethodGet, "/api/v1/admin/orders/stuck?olderThan=1m", "", nil, http.StatusOK},
		{"a retry of an order that is not parked", http.MethodPost, fmt.Sprintf("/api/v1/admin/orders/%d/retry", limit.OrderID), "", nil, http.StatusConflict},
		{"a retry of a parked order", http.MethodPost, fmt.Sprintf("/api/v1/admin/orders/%d/retry", parked.OrderID), "", nil, http.StatusOK},
		{"a fail without a reason", http.MethodPost, fmt.Sprintf("/api/v1/admin/orders/%d/fail", parked.OrderID), `{}`, jsonBody, http.StatusBadRequest},
		{"a fail of a parked order", http.MethodPost, fmt.Sprintf("/api/v1/admin/orders/%d/fail", parked.OrderID), `{"reason":"venue closed"}`, jsonBody, http.StatusOK},
		{"a retry of an unknown order", http.MethodPost, "/api/v1/admin/orders/999999/retry", "", nil, http.StatusNotFound},
		{"the instruments for operators", http.MethodGet, "/api/v1/admin/instruments", "", nil, http.StatusOK},
		{"a halt", http.MethodPost, "/api/v1/admin/instruments/102/halt", "", nil, http.StatusOK},
		{"a resume", http.MethodPost, "/api/v1/admin/instruments/102/resume", "", nil, http.StatusOK},
		{"a halt of an unknown instrument", http.MethodPost, "/api/v1/admin/instruments/999/halt", "", nil, http.StatusNotFound},
		{"liveness", http.MethodGet, "/healthz", "", nil, http.StatusOK},
		{"readiness", http.MethodGet, "/readyz", "", nil, http.StatusOK},
		{"an unknown route", http.MethodGet, "/api/v1/nothing", "", nil, http.StatusNotFound},
		{"a wrong method", http.MethodPut, "/api/v1/orders", "", nil, http.StatusMethodNotAllowed},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			res := h.do(s.method, s.target, s.body, s.header...)
			if res.status != s.wantStatus {
				t.Errorf("status = %d, want %d; body %s", res.status, s.wantStatus, res.body)
			}
		})
	}
}
