package main

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestMetricsAndReadinessOfTheRunningServices(t *testing.T) {
	s := needStack(t)
	inst := s.newInstrument(t)
	sell := s.mustPlace(t, limit(1, inst, "SELL", "10.00", 5))
	s.waitStatus(t, sell, "EXECUTING")
	buy := s.mustPlace(t, market(2, inst, "BUY", 5))
	s.waitStatus(t, buy, "EXECUTED")
	s.get(t, buy) // a GET /api/v1/orders/{id} of our own, whatever the helpers do
	// A cancel is the API's first use of its Temporal client, which connects lazily (the
	// API starts without Temporal), and so starts its temporal_ metrics.
	resting := s.mustPlace(t, limit(3, inst, "BUY", "1.00", 1))
	s.waitStatus(t, resting, "EXECUTING")
	if code, _ := s.cancel(t, resting); code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("cancel: %d", code)
	}

	workerURL := "http://" + s.env["METRICS_ADDR"]

	t.Run("the API's metrics label requests by route and count placed orders", func(t *testing.T) {
		api := scrape(t, "http://"+s.env["API_METRICS_ADDR"]+"/metrics")
		if got := api.sum("orderflow_http_requests_total", `method="POST"`, `route="/api/v1/orders"`, `status="201"`); got < 2 {
			t.Errorf("POST /api/v1/orders answered 201: %v requests counted, want ≥ 2", got)
		}
		if got := api.sum("orderflow_http_requests_total", `route="/api/v1/orders/{id}"`); got < 1 {
			t.Errorf("GET /api/v1/orders/{id}: %v requests counted, want ≥ 1", got)
		}
		if api.has("orderflow_http_requests_total", `route="/api/v1/orders/`+strconv.FormatInt(buy, 10)+`"`) {
			t.Error("a raw path became a route label")
		}
		if got := api.sum("orderflow_orders_placed_total"); got < 2 {
			t.Errorf("orderflow_orders_placed_total = %v, want ≥ 2", got)
		}
		if got := api.sum("orderflow_order_write_batch_size_sum"); got < 2 {
			t.Errorf("orderflow_order_write_batch_size_sum = %v, want ≥ 2 (orders written by the group commit)", got)
		}
		if !api.has("orderflow_outbox_backlog") || !api.has("orderflow_parked_orders") {
			t.Error("the database gauges are missing")
		}
		if !api.hasPrefix("temporal_") {
			t.Error("the API's Temporal client reports no temporal_ metrics")
		}
		if !api.has("go_goroutines") {
			t.Error("the Go runtime metrics are missing")
		}
	})

	t.Run("the worker's metrics cover the relay, the consumer, the lifecycle and the Temporal worker", func(t *testing.T) {
		worker := scrape(t, workerURL+"/metrics")
		if got := worker.sum("orderflow_outbox_publish_latency_seconds_count"); got < 2 {
			t.Errorf("outbox publishes timed: %v, want ≥ 2", got)
		}
		if got := worker.sum("orderflow_workflow_starts_total", `result="started"`); got < 2 {
			t.Errorf("workflow starts: %v, want ≥ 2", got)
		}
		if got := worker.sum("orderflow_workflow_start_latency_seconds_count"); got < 2 {
			t.Errorf("workflow starts timed: %v, want ≥ 2", got)
		}
		// Transitions are counted where the activities run: in the worker.
		if got := worker.sum("orderflow_order_transitions_total", `from="EXECUTING"`, `to="EXECUTED"`); got < 2 {
			t.Errorf("EXECUTING → EXECUTED transitions: %v, want ≥ 2", got)
		}
		if !worker.has("orderflow_consumer_lag", `topic="order-execution"`) {
			t.Error("orderflow_consumer_lag is missing")
		}
		for _, name := range []string{"temporal_request", "temporal_workflow_task_execution_latency_count", "temporal_local_activity_execution_latency_count"} {
			if !worker.has(name) {
				t.Errorf("%s is missing", name)
			}
		}
	})

	t.Run("the worker is ready when PostgreSQL, Temporal and Kafka answer", func(t *testing.T) {
		resp, err := http.Get(workerURL + "/readyz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		want := map[string]string{"postgres": "ok", "temporal": "ok", "kafka": "ok"}
		if resp.StatusCode != http.StatusOK || len(body) != len(want) {
			t.Fatalf("readyz: %s %v, want 200 %v", resp.Status, body, want)
		}
		for k, v := range want {
			if body[k] != v {
				t.Errorf("readyz %s = %q, want %q", k, body[k], v)
			}
		}
		health, err := http.Get(workerURL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		health.Body.Close()
		if health.StatusCode != http.StatusOK {
			t.Errorf("healthz: %s", health.Status)
		}
	})
}

// exposition is a scraped Prometheus text exposition.
type exposition []string

// scrape fetches url's metrics.
func scrape(t *testing.T, url string) exposition {
	t.Helper()
	client := http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatalf("scrape %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape %s: %s %v", url, resp.Status, err)
	}
	var lines exposition
	for _, l := range strings.Split(string(b), "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// samples returns the values of the series of name whose labels contain every one of
// labels (each `key="value"`).
func (e exposition) samples(name string, labels ...string) []float64 {
	var out []float64
	for _, l := range e {
		i := strings.LastIndexByte(l, ' ') // the value is last: label values may hold spaces
		if i < 0 {
			continue
		}
		series, val := l[:i], l[i+1:]
		n, lbls, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		match := true
		for _, want := range labels {
			match = match && strings.Contains(lbls, want)
		}
		if v, err := strconv.ParseFloat(val, 64); match && err == nil {
			out = append(out, v)
		}
	}
	return out
}

func (e exposition) has(name string, labels ...string) bool {
	return len(e.samples(name, labels...)) > 0
}

func (e exposition) sum(name string, labels ...string) float64 {
	var total float64
	for _, v := range e.samples(name, labels...) {
		total += v
	}
	return total
}

func (e exposition) hasPrefix(prefix string) bool {
	for _, l := range e {
		if strings.HasPrefix(l, prefix) {
			return true
		}
	}
	return false
}

// /metrics is served on the admin listener only: the public listener, which serves the
// API to its clients, answers 404 there.
func TestMetricsAreNotOnThePublicListener(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	resp, err := http.Get(s.baseURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /metrics on the API's public listener = %d, want 404", resp.StatusCode)
	}
}
