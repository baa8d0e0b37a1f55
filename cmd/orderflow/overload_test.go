package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/devstack"
)

// Under more load than the system executes, an API with admission control refuses what it
// could not execute in bounded time, at once and with Retry-After, and writes nothing of
// it; every order it answered 201 executes. The stack's worker does the executing.
//
// Not parallel: admission control looks at the whole system's backlog, which the other
// tests' orders are part of; run apart from them, the backlog is what this test makes.
func TestOverloadIsRefusedAndEveryAcceptedOrderExecutes(t *testing.T) {
	s := needStack(t)
	env := map[string]string{}
	for k, v := range s.env {
		env[k] = v
	}
	for _, k := range []string{"HTTP_ADDR", "METRICS_ADDR"} {
		port, err := devstack.FreePort()
		if err != nil {
			t.Fatal(err)
		}
		env[k] = "127.0.0.1:" + strconv.Itoa(port)
	}
	// A tight bound over what the stack already has in flight (orders of the tests
	// before, still executing), so that a burst is sure to pass it: room for about five
	// orders at the floor rate of 50/s, which is more than this box executes.
	pending := s.pendingOrders(t)
	env["ADMISSION_MAX_DELAY"] = (time.Duration(pending+5) * 20 * time.Millisecond).String()
	env["ADMISSION_MIN_DRAIN"] = "50"
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"api"}, func(k string) string { return env[k] }, io.Discard) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + env["HTTP_ADDR"]
	waitReady(t, base, done, 30*time.Second)

	inst := s.newInstrument(t)
	const clients, each = 16, 10
	var mu sync.Mutex
	var accepted []int64
	refused := 0
	var slowestRefusal time.Duration
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				body, _ := json.Marshal(limit(int64(500+c), inst, "BUY", strconv.Itoa(1+i), 1))
				req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/orders", bytes.NewReader(body))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Idempotency-Key", fmt.Sprintf("overload-%d-%d-%d", inst, c, i))
				start := time.Now()
				resp, err := s.client.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var v orderView
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				took := time.Since(start)
				mu.Lock()
				switch {
				case resp.StatusCode == http.StatusCreated && json.Unmarshal(b, &v) == nil:
					accepted = append(accepted, v.OrderID)
				case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "" && bytes.Contains(b, []byte(`"OVERLOADED"`)):
					refused++
					slowestRefusal = max(slowestRefusal, took)
				default:
					t.Errorf("placement answered %d: %s", resp.StatusCode, b)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if refused == 0 || len(accepted) == 0 {
		t.Fatalf("%d accepted, %d refused of %d (%d orders in flight before): want both", len(accepted), refused, clients*each, pending)
	}
	t.Logf("%d accepted, %d refused; slowest refusal %s", len(accepted), refused, slowestRefusal)
	var written int
	if err := s.pool.QueryRow(context.Background(), "SELECT count(*) FROM orders WHERE instrument_id = $1", inst).Scan(&written); err != nil {
		t.Fatal(err)
	}
	if written != len(accepted) {
		t.Errorf("%d orders written for %d accepted: a refused order was written", written, len(accepted))
	}
	for _, id := range accepted {
		s.waitFor(t, id, "executed (resting on the book)", func(v orderView) bool { return v.OrderStatus == "EXECUTING" })
	}
}

// pendingOrders counts the orders accepted and not yet executed, as admission control does.
func (s *stack) pendingOrders(t *testing.T) int64 {
	t.Helper()
	var n int64
	if err := s.pool.QueryRow(context.Background(), `SELECT count(*) FROM orders
		WHERE status IN ('CREATED', 'VALIDATED', 'SENT_TO_EXECUTOR', 'EXECUTING', 'PARTIALLY_FILLED')
		  AND NOT on_book AND NOT needs_attention`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
