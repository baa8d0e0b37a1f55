package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/orderflow/orderflow/devstack"
)

func TestTheAPIStartsAndPlacesOrdersWhileTemporalIsDown(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	_ = l.Close()
	port, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{}
	for k, v := range s.env {
		env[k] = v
	}
	adminPort, err := devstack.FreePort()
	if err != nil {
		t.Fatal(err)
	}
	env["TEMPORAL_ADDRESS"] = dead
	env["HTTP_ADDR"] = "127.0.0.1:" + strconv.Itoa(port)
	env["METRICS_ADDR"] = "127.0.0.1:" + strconv.Itoa(adminPort) // its own admin listener
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []string{"api"}, func(k string) string { return env[k] }, io.Discard) }()
	defer func() {
		cancel()
		select { // waitReady takes the run's error when the run ends early
		case <-done:
		case <-time.After(30 * time.Second):
		}
	}()

	base := "http://" + env["HTTP_ADDR"]
	waitReady(t, base, done, 30*time.Second)
	inst := s.newInstrument(t)
	req, _ := http.NewRequest(http.MethodPost, base+"/api/v1/orders",
		bytes.NewReader(fmt.Appendf(nil, `{"userId":1,"instrumentId":%d,"orderType":"BUY","orderKind":"LIMIT","price":"1","quantity":1}`, inst)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "no-temporal")
	resp, err := s.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var placed struct{ OrderID int64 }
	err = json.NewDecoder(resp.Body).Decode(&placed)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || err != nil {
		t.Fatalf("placing an order with Temporal down: %d, %v; want 201 (it needs only PostgreSQL)", resp.StatusCode, err)
	}
	// A cancel needs the order's run: recorded, and answered 503 so the client retries.
	resp, err = s.client.Post(fmt.Sprintf("%s/api/v1/orders/%d/cancel", base, placed.OrderID), "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("a cancel with Temporal down: %d, want 503", resp.StatusCode)
	}
	// The order's run is started by the stack's worker, which reaches Temporal.
}

// waitReady waits until the process serving base answers /readyz with 200, failing the
// test if it ends first (its run's error arrives on ended) or within is over.
func waitReady(t *testing.T, base string, ended <-chan error, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		if resp, err := http.Get(base + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case err := <-ended:
			t.Fatalf("%s ended before it was ready: %v", base, err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %s", base, within)
		}
		time.Sleep(50 * time.Millisecond) // poll interval
	}
}
