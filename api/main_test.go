package api_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/schema"
)

// cluster is the PostgreSQL cluster the package's tests share; each test gets its own
// database on it, so tests run in parallel. TestMain can hand it to the tests only
// through a package variable.
var cluster *devstack.Postgres

func TestMain(m *testing.M) { os.Exit(runTests(m)) }

func runTests(m *testing.M) int {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	pg, stop, err := devstack.StartTempPostgres(ctx, "orderflow-api-test-")
	cancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "api tests: start PostgreSQL:", err)
		return 1
	}
	defer func() {
		if err := stop(); err != nil {
			fmt.Fprintln(os.Stderr, "api tests:", err)
		}
	}()
	cluster = pg
	return m.Run()
}

// newPool returns a pool on a fresh, migrated database of its own.
func newPool(t *testing.T) *pgxpool.Pool {
	t.Helper()
	ctx := context.Background()
	name := "api_" + strings.ToLower(rand.Text()[:16])
	if err := cluster.CreateDatabase(ctx, name); err != nil {
		t.Fatalf("create database: %v", err)
	}
	cfg, err := pgxpool.ParseConfig(cluster.URL(name))
	if err != nil {
		t.Fatalf("parse database URL: %v", err)
	}
	// Few connections, so that the concurrency tests really queue on the pool.
	cfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(pool.Close)
	if err := schema.Migrate(ctx, pool); err != nil {
		t.Fatalf("migrate: %v", err)
	}
	return pool
}

// fakeCanceller stands in for the Temporal workflow: it records the cancel requests and
// answers with what the test tells it to do.
type fakeCanceller struct {
	mu        sync.Mutex
	calls     []cancelCall
	decisions []string // "retry <id> <by>" or "fail <id> <reason> <by>", in order
	refuse    error    // what Retry and Fail return instead of deciding, if set
	pending   bool     // Retry and Fail report the decision accepted but not yet applied
	do        func(ctx context.Context, orderID int64) (applied bool, err error)
}

// Retry implements api.Operator.
func (f *fakeCanceller) Retry(_ context.Context, orderID int64, _, by string, _ time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != nil {
		return false, f.refuse
	}
	f.decisions = append(f.decisions, fmt.Sprintf("retry %d %s", orderID, by))
	return !f.pending, nil
}

// Fail implements api.Operator.
func (f *fakeCanceller) Fail(_ context.Context, orderID int64, _, reason, by string, _ time.Duration) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refuse != nil {
		return false, f.refuse
	}
	f.decisions = append(f.decisions, fmt.Sprintf("fail %d %s %s", orderID, reason, by))
	return !f.pending, nil
}

func (f *fakeCanceller) decided() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.decisions...)
}

type cancelCall struct {
	orderID int64
	runKey  string
	by      string
	wait    time.Duration
}

// RequestCancel implements api.Canceller.
func (f *fakeCanceller) RequestCancel(ctx context.Context, orderID int64, runKey, by string, wait time.Duration) (bool, error) {
	f.mu.Lock()
	f.calls = append(f.calls, cancelCall{orderID, runKey, by, wait})
	do := f.do
	f.mu.Unlock()
	if do == nil {
		return false, nil
	}
	return do(ctx, orderID)
}

// answer sets what the next requests do.
func (f *fakeCanceller) answer(do func(ctx context.Context, orderID int64) (bool, error)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.do = do
}

func (f *fakeCanceller) recorded() []cancelCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]cancelCall(nil), f.calls...)
}

// harness is one API server on its own database, whose every response is checked
// against the OpenAPI spec.
type harness struct {
	t       *testing.T
	pool    *pgxpool.Pool
	cancels *fakeCanceller
	handler http.Handler
	spec    *specValidator
	creds   *devstack.Credentials // nil in trust-body mode
}

// testConfig is the configuration the tests run with: no rate limits but the ones a
// test sets, since many tests place orders as fast as they can.
func testConfig() api.Config {
	off := api.RateLimit{PerSecond: -1}
	return api.Config{
		CancelWait:    50 * time.Millisecond,
		TemporalUIURL: "http://127.0.0.1:8233/",
		Namespace:     "default",
		Limits:        api.Limits{Trade: off, Read: off, FailedAuth: off},
	}
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, newPool(t), testConfig(), nil)
}

// newHarnessWith returns a harness on pool with cfg, logging to logger (nil: nowhere).
func newHarnessWith(t *testing.T, pool *pgxpool.Pool, cfg api.Config, logger *slog.Logger) *harness {
	t.Helper()
	cancels := &fakeCanceller{}
	h := &harness{t: t, pool: pool, cancels: cancels, spec: newSpecValidator(t)}
	if !cfg.TrustBody {
		h.creds = devstack.NewCredentials(pool)
		if cfg.Auth == nil {
			cfg.Auth = &auth.Authenticator{}
		}
		cfg.Auth.Keys = h.creds.Keys()
	}
	h.handler = api.NewServer(pool, cancels, logger, cfg)
	return h
}

// key returns an API key of user with scopes, made on first use.
func (h *harness) key(user int64, scopes ...auth.Scope) string {
	h.t.Helper()
	k, err := h.creds.Key(context.Background(), user, scopes...)
	if err != nil {
		h.t.Errorf("create key: %v", err)
	}
	return k
}

// trader is the audit name of the trading key the harness uses for user.
func (h *harness) trader(user int64) string {
	return principalName(user, h.key(user, auth.ScopeRead, auth.ScopeTrade))
}

// operator is the audit name of the harness's default operator key.
func (h *harness) operator() string {
	return principalName(devstack.OperatorUser, h.key(devstack.OperatorUser, auth.ScopeAdmin))
}

// principalName is what the audit trail records for key of user.
func principalName(user int64, key string) string {
	id, _, _ := auth.ParseKey(key)
	return fmt.Sprintf("user:%d/key:%s", user, id)
}

// bearer is the Authorization header value of key.
func bearer(key string) string { return "Bearer " + key }

// response is what the server answered.
type response struct {
	status int
	header http.Header
	body   []byte
}

// serve runs req through the server and checks the response against the spec. It only
// reports with t.Errorf, so it may be called from several goroutines.
//
// A request without an Authorization header gets the one devstack.Credentials picks
// for it, unless it sets "Authorization: none".
func (h *harness) serve(req *http.Request) response {
	if h.creds != nil {
		if err := h.creds.Authorize(req); err != nil {
			h.t.Errorf("%v", err)
		}
	}
	rec := httptest.NewRecorder()
	h.handler.ServeHTTP(rec, req)
	res := response{status: rec.Code, header: rec.Result().Header, body: rec.Body.Bytes()}
	h.spec.check(h.t, req, res)
	return res
}

// do sends a request with an optional body and header pairs (name, value, ...).
func (h *harness) do(method, target, body string, header ...string) response {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, target, r)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return h.serve(req)
}

// get sends a GET request.
func (h *harness) get(target string) response { return h.do(http.MethodGet, target, "") }

// place posts an order body with an Idempotency-Key.
func (h *harness) place(key, body string) response {
	return h.do(http.MethodPost, "/api/v1/orders", body, "Content-Type", "application/json", "Idempotency-Key", key)
}

// mustPlace places an order that must be accepted and returns it.
func (h *harness) mustPlace(body string) orderBody {
	h.t.Helper()
	res := h.place(newKey(), body)
	if res.status != http.StatusCreated {
		h.t.Fatalf("place order: status %d, body %s", res.status, res.body)
	}
	return decode[orderBody](h.t, res)
}

// exec runs SQL directly, for setting up states only the workflow could reach.
func (h *harness) exec(sql string, args ...any) {
	h.t.Helper()
	if _, err := h.pool.Exec(context.Background(), sql, args...); err != nil {
		h.t.Fatalf("exec %q: %v", sql, err)
	}
}

// count returns the number of rows of a table.
func (h *harness) count(table string) int {
	h.t.Helper()
	var n int
	if err := h.pool.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		h.t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// newKey returns a fresh Idempotency-Key.
func newKey() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "key-" + hex.EncodeToString(b[:])
}

// orderBody is an order view, with the extra fields of the place and cancel answers.
type orderBody struct {
	OrderID           int64           `json:"orderId"`
	UserID            int64           `json:"userId"`
	InstrumentID      int64           `json:"instrumentId"`
	OrderType         string          `json:"orderType"`
	OrderKind         string          `json:"orderKind"`
	Price             json.RawMessage `json:"price"`
	Quantity          int64           `json:"quantity"`
	RemainingQuantity int64           `json:"remainingQuantity"`
	FilledQuantity    int64           `json:"filledQuantity"`
	AvgFillPrice      *json.Number    `json:"avgFillPrice"`
	OrderStatus       string          `json:"orderStatus"`
	TimeInForce       string          `json:"timeInForce"`
	ClientOrderID     string          `json:"clientOrderId"`
	ExpireAt          string          `json:"expireAt"`
	ReplacesOrderID   int64           `json:"replacesOrderId"`
	ReplacedByOrderID int64           `json:"replacedByOrderId"`
	Reason            string          `json:"reason"`
	CancelRequested   bool            `json:"cancelRequested"`
	CreatedAt         string          `json:"createdAt"`
	UpdatedAt         string          `json:"updatedAt"`
	WorkflowID        string          `json:"workflowId"`
	WorkflowURL       string          `json:"workflowUrl"`
	Message           string          `json:"message"`
	Duplicate         bool            `json:"duplicate"`
}

// problemBody is an error answer.
type problemBody struct {
	Type      string `json:"type"`
	Title     string `json:"title"`
	Status    int    `json:"status"`
	Detail    string `json:"detail"`
	Instance  string `json:"instance"`
	ErrorCode string `json:"errorCode"`
	Message   string `json:"message"`
	TimeStamp string `json:"timeStamp"`
	Path      string `json:"path"`
	Field     string `json:"field"`
	Errors    []struct {
		Field   string `json:"field"`
		Message string `json:"message"`
	} `json:"errors"`
}

// decode parses a JSON response body.
func decode[T any](t *testing.T, res response) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(res.body, &v); err != nil {
		t.Fatalf("decode %T from %s: %v", v, res.body, err)
	}
	return v
}

// wantProblem checks that res is a problem with the given status, code and (if not
// empty) field, and returns it.
func wantProblem(t *testing.T, res response, status int, code, field string) problemBody {
	t.Helper()
	if res.status != status {
		t.Fatalf("status = %d, want %d; body %s", res.status, status, res.body)
	}
	if ct := res.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("Content-Type = %q, want application/problem+json", ct)
	}
	p := decode[problemBody](t, res)
	if p.ErrorCode != code {
		t.Errorf("errorCode = %q, want %q; body %s", p.ErrorCode, code, res.body)
	}
	if p.Status != status {
		t.Errorf("status field = %d, want %d", p.Status, status)
	}
	if field != "" && p.Field != field {
		t.Errorf("field = %q, want %q; body %s", p.Field, field, res.body)
	}
	if field != "" && (len(p.Errors) == 0 || p.Errors[0].Field != field) {
		t.Errorf("errors = %+v, want the first naming %q", p.Errors, field)
	}
	if p.Path == "" || p.Instance != p.Path || p.TimeStamp == "" || p.Message == "" || p.Detail == "" || p.Title == "" || p.Type == "" {
		t.Errorf("problem lacks a standard or seed field: %s", res.body)
	}
	return p
}

// limitBody is a valid LIMIT order body for user.
func limitBody(user int64, price string, qty int64) string {
	return fmt.Sprintf(`{"userId":%d,"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":%s,"quantity":%d}`, user, price, qty)
}
