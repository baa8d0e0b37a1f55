package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"

	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/kafka"
	"github.com/orderflow/orderflow/workflows"
)

// stack is the real system the end-to-end tests drive: PostgreSQL, the Temporal dev
// server and a Kafka-protocol broker, with `orderflow api` and `orderflow worker` running
// against them through run, exactly as the binary runs them. Tests share it and isolate
// themselves by trading on instruments of their own.
type stack struct {
	baseURL  string
	dbURL    string
	env      map[string]string // the services' environment, for running other commands
	brokers  []string
	pool     *pgxpool.Pool
	temporal client.Client

	creds  *devstack.Credentials // the API keys of the tests' users
	client *http.Client          // talks to the API with the credential each request needs

	instruments atomic.Int64 // hands each test instruments of its own
	keys        atomic.Int64 // makes idempotency keys unique
}

var testStack *stack // set once by TestMain, read-only afterwards

func TestMain(m *testing.M) {
	os.Exit(runTests(m))
}

func runTests(m *testing.M) int {
	flag.Parse()
	if testing.Short() {
		return m.Run()
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, stop, err := startStack(ctx)
	if err != nil {
		fmt.Fprintln(os.Stderr, "start stack:", err)
		return 1
	}
	testStack = s
	code := m.Run()
	if err := auditAfterTests(ctx, s, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, err)
		code = 1
	}
	if err := stop(); err != nil {
		fmt.Fprintln(os.Stderr, "stop stack:", err)
		return 1
	}
	return code
}

func startStack(ctx context.Context) (*stack, func() error, error) {
	var stops []func() error
	stopAll := func() error {
		var first error
		for i := len(stops) - 1; i >= 0; i-- {
			if err := stops[i](); err != nil && first == nil {
				first = err
			}
		}
		return first
	}
	fail := func(err error) (*stack, func() error, error) {
		_ = stopAll()
		return nil, nil, err
	}
	dir, err := os.MkdirTemp("", "orderflow-e2e-")
	if err != nil {
		return fail(err)
	}
	stops = append(stops, func() error { return os.RemoveAll(dir) })
	pg, err := devstack.StartPostgres(ctx, devstack.PostgresOptions{Dir: dir + "/pg"})
	if err != nil {
		return fail(err)
	}
	stops = append(stops, pg.Stop)
	tmp, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{SearchAttributes: workflows.SearchAttributeTypes()})
	if err != nil {
		return fail(err)
	}
	stops = append(stops, tmp.Stop)
	k, err := devstack.StartKafka(devstack.KafkaOptions{Topics: []string{kafka.TopicOrderExecution, kafka.TopicDLQ}})
	if err != nil {
		return fail(err)
	}
	stops = append(stops, func() error { k.Close(); return nil })

	httpPort, err := devstack.FreePort()
	if err != nil {
		return fail(err)
	}
	metricsPort, err := devstack.FreePort()
	if err != nil {
		return fail(err)
	}
	apiAdminPort, err := devstack.FreePort()
	if err != nil {
		return fail(err)
	}
	env := map[string]string{
		"DATABASE_URL":     pg.URL("orderflow"),
		"TEMPORAL_ADDRESS": tmp.HostPort,
		"KAFKA_BROKERS":    strings.Join(k.Addrs(), ","),
		"HTTP_ADDR":        "127.0.0.1:" + strconv.Itoa(httpPort),
		"METRICS_ADDR":     "127.0.0.1:" + strconv.Itoa(metricsPort),
		// The API's admin listener (its METRICS_ADDR); not an orderflow setting.
		"API_METRICS_ADDR": "127.0.0.1:" + strconv.Itoa(apiAdminPort),
		"LOG_LEVEL":        "warn",
		"CANCEL_WAIT":      "3s",
		// The reconciler's schedule, often enough for a test to see it repair a run.
		"RECONCILE_INTERVAL": "2s",
		// A short retry budget, so that the parking test need not wait minutes.
		"ACTIVITY_RETRY_INITIAL":      "50ms",
		"ACTIVITY_RETRY_MAX_INTERVAL": "200ms",
		"ACTIVITY_RETRY_MAX_ATTEMPTS": "5",
		// Small steps of matching, so that a deep sweep of a few dozen orders already
		// runs in several of them.
		"MATCH_FILLS_PER_STEP": strconv.Itoa(deepBookStep),
		// The bursts and the deep book place as fast as they can; the api package tests
		// the rate limits.
		"RATE_LIMIT_TRADE": "off",
		"RATE_LIMIT_READ":  "off",
		// Admission control has a test of its own; here a refusal would read as a fault.
		"ADMISSION_MAX_DELAY": "off",
	}
	getenv := func(k string) string { return env[k] }
	if err := run(ctx, []string{"migrate"}, getenv, io.Discard); err != nil {
		return fail(err)
	}
	svcCtx, stopServices := context.WithCancel(ctx)
	var wg sync.WaitGroup
	var svcErr atomic.Value
	for _, cmd := range []string{"api", "worker"} {
		wg.Add(1)
		getenv := getenv
		if cmd == "api" { // each process has an admin listener of its own
			getenv = func(k string) string {
				if k == "METRICS_ADDR" {
					return env["API_METRICS_ADDR"]
				}
				return env[k]
			}
		}
		go func() {
			defer wg.Done()
			if err := run(svcCtx, []string{cmd}, getenv, os.Stderr); err != nil {
				svcErr.Store(fmt.Errorf("%s: %w", cmd, err))
			}
		}()
	}
	stops = append(stops, func() error {
		stopServices()
		wg.Wait()
		if err, ok := svcErr.Load().(error); ok {
			return err
		}
		return nil
	})

	s := &stack{baseURL: "http://" + env["HTTP_ADDR"], dbURL: env["DATABASE_URL"], brokers: k.Addrs(), env: env}
	if s.pool, err = pgxpool.New(ctx, s.dbURL); err != nil {
		return fail(err)
	}
	stops = append(stops, func() error { s.pool.Close(); return nil })
	s.creds = devstack.NewCredentials(s.pool)
	s.client = &http.Client{Transport: s.creds.Transport(nil)}
	if s.temporal, err = client.Dial(client.Options{HostPort: tmp.HostPort}); err != nil {
		return fail(err)
	}
	stops = append(stops, func() error { s.temporal.Close(); return nil })
	ready := func() error {
		resp, err := http.Get(s.baseURL + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("readyz: %s", resp.Status)
		}
		return nil
	}
	deadline := time.Now().Add(60 * time.Second)
	for err := ready(); err != nil; err = ready() {
		if time.Now().After(deadline) {
			return fail(fmt.Errorf("api not ready: %w", err))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s, stopAll, nil
}

// needStack returns the shared stack.
func needStack(t *testing.T) *stack {
	t.Helper()
	if testStack == nil {
		t.Fatal("the end-to-end stack is not running (these tests need it; run without -short)")
	}
	return testStack
}

// newInstrument creates an active instrument (tick 0.01, lot 1) that only the calling
// test trades on, so tests sharing the stack never match each other's orders.
func (s *stack) newInstrument(t *testing.T) int64 {
	t.Helper()
	id := 10_000 + s.instruments.Add(1)
	_, err := s.pool.Exec(context.Background(),
		`INSERT INTO instruments (id, symbol, tick_size, lot_size, min_quantity, max_quantity, status)
		 VALUES ($1, $2, 0.01, 1, 1, 1000000, 'ACTIVE')`, id, fmt.Sprintf("T%d", id))
	if err != nil {
		t.Fatalf("create instrument: %v", err)
	}
	return id
}

// orderView is the part of the API's order body the tests read.
type orderView struct {
	OrderID           int64       `json:"orderId"`
	UserID            int64       `json:"userId"`
	OrderStatus       string      `json:"orderStatus"`
	Quantity          int64       `json:"quantity"`
	RemainingQuantity int64       `json:"remainingQuantity"`
	Reason            string      `json:"reason"`
	Price             json.Number `json:"price"`
	Duplicate         bool        `json:"duplicate"`
	NeedsAttention    bool        `json:"needsAttention"`
	WorkflowID        string      `json:"workflowId"`
}

// place posts an order and returns the HTTP status and body.
func (s *stack) place(t *testing.T, body map[string]any, key string) (int, orderView) {
	t.Helper()
	if key == "" {
		key = fmt.Sprintf("k-%d-%d", time.Now().UnixNano(), s.keys.Add(1))
	}
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, s.baseURL+"/api/v1/orders", bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	return s.do(t, req)
}

// mustPlace posts an order that must be accepted and returns its id.
func (s *stack) mustPlace(t *testing.T, body map[string]any) int64 {
	t.Helper()
	code, v := s.place(t, body, "")
	if code != http.StatusCreated {
		t.Fatalf("place %v: status %d", body, code)
	}
	return v.OrderID
}

func (s *stack) get(t *testing.T, id int64) orderView {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s/api/v1/orders/%d", s.baseURL, id), nil)
	code, v := s.do(t, req)
	if code != http.StatusOK {
		t.Fatalf("get order %d: status %d", id, code)
	}
	return v
}

func (s *stack) cancel(t *testing.T, id int64) (int, orderView) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, fmt.Sprintf("%s/api/v1/orders/%d/cancel", s.baseURL, id), nil)
	return s.do(t, req)
}

func (s *stack) do(t *testing.T, req *http.Request) (int, orderView) {
	t.Helper()
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	var v orderView
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode < 300 {
		if err := json.Unmarshal(body, &v); err != nil {
			t.Fatalf("%s %s: decode %q: %v", req.Method, req.URL, body, err)
		}
	}
	return resp.StatusCode, v
}

// waitFor polls the order until cond holds, failing the test at the deadline.
func (s *stack) waitFor(t *testing.T, id int64, what string, cond func(orderView) bool) orderView {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		v := s.get(t, id)
		if cond(v) {
			return v
		}
		if time.Now().After(deadline) {
			t.Fatalf("order %d: not %s after 60s; last seen %+v", id, what, v)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitStatus waits for the order to reach status.
func (s *stack) waitStatus(t *testing.T, id int64, status string) orderView {
	t.Helper()
	return s.waitFor(t, id, status, func(v orderView) bool { return v.OrderStatus == status })
}

// The API's and the worker's PostgreSQL sessions carry their role's name, so that a DBA
// can tell them apart in pg_stat_activity (and terminate one's without the other's).
func TestEveryProcessNamesItsDatabaseSessions(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	s.mustPlace(t, limit(1, s.newInstrument(t), "BUY", "1", 1)) // both have sessions open by now
	for _, name := range []string{"orderflow-api", "orderflow-worker"} {
		var n int
		if err := s.pool.QueryRow(context.Background(),
			`SELECT count(*) FROM pg_stat_activity WHERE application_name = $1`, name).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n == 0 {
			t.Errorf("no PostgreSQL session named %s", name)
		}
	}
}
