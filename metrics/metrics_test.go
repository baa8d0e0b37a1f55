package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/orderflow/orderflow/metrics"
)

// sample is one gathered series: its labels and value (a histogram's sample count).
type sample struct {
	labels map[string]string
	value  float64
}

// gather returns the registry's series by metric name.
func gather(t *testing.T, reg *prometheus.Registry) map[string][]sample {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	out := map[string][]sample{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			s := sample{labels: map[string]string{}}
			for _, l := range m.GetLabel() {
				s.labels[l.GetName()] = l.GetValue()
			}
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				s.value = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				s.value = m.GetGauge().GetValue()
			case dto.MetricType_HISTOGRAM:
				s.value = float64(m.GetHistogram().GetSampleCount())
			}
			out[f.GetName()] = append(out[f.GetName()], s)
		}
	}
	return out
}

// value returns the value of the series of name with exactly labels, failing the test
// if there is none.
func value(t *testing.T, series map[string][]sample, name string, labels map[string]string) float64 {
	t.Helper()
	for _, s := range series[name] {
		if fmt.Sprint(s.labels) == fmt.Sprint(labels) {
			return s.value
		}
	}
	var seen []string
	for _, s := range series[name] {
		seen = append(seen, fmt.Sprint(s.labels))
	}
	sort.Strings(seen)
	t.Fatalf("no %s%v; have %v", name, labels, seen)
	return 0
}

func TestNewRegistersRuntimeCollectorsAndIsIdempotent(t *testing.T) {
	reg := prometheus.NewRegistry()
	m1 := metrics.New(reg)
	m2 := metrics.New(reg) // same registry: shares the series instead of panicking
	m1.ObserveDeadLetter()
	m2.ObserveDeadLetter()
	series := gather(t, reg)
	if got := value(t, series, "orderflow_dlq_messages_total", map[string]string{}); got != 2 {
		t.Errorf("dlq messages = %v, want 2", got)
	}
	if _, ok := series["go_goroutines"]; !ok {
		t.Error("the Go collector is not registered")
	}
	if _, ok := series["process_start_time_seconds"]; !ok && runtime.GOOS == "linux" {
		t.Error("the process collector is not registered")
	}
}

func TestObservers(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	m.ObserveTransition("CREATED", "VALIDATED")
	m.ObserveTransition("CREATED", "VALIDATED")
	m.ObserveOutboxPublished(time.Now().Add(-50 * time.Millisecond))
	m.ObserveOutboxPublished(time.Now().Add(time.Hour)) // another clock ahead: clamped to 0
	m.ObserveWorkflowStart(time.Now().Add(-10*time.Millisecond), true)
	m.ObserveWorkflowStart(time.Now(), false)
	m.ObserveWorkflowStartError()

	series := gather(t, reg)
	checks := []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"orderflow_order_transitions_total", map[string]string{"from": "CREATED", "to": "VALIDATED"}, 2},
		{"orderflow_outbox_publish_latency_seconds", map[string]string{}, 2},
		{"orderflow_workflow_start_latency_seconds", map[string]string{}, 1}, // duplicates are not timed
		{"orderflow_workflow_starts_total", map[string]string{"result": "started"}, 1},
		{"orderflow_workflow_starts_total", map[string]string{"result": "duplicate"}, 1},
		{"orderflow_workflow_starts_total", map[string]string{"result": "error"}, 1},
	}
	for _, c := range checks {
		if got := value(t, series, c.name, c.labels); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
}

func TestHTTPLabelsRequestsWithTheChiRoutePattern(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	router := chi.NewRouter()
	router.Use(func(next http.Handler) http.Handler { // middleware sees the shared route context
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { next.ServeHTTP(w, r) })
	})
	router.Get("/healthz", func(http.ResponseWriter, *http.Request) {}) // writes nothing: 200
	router.Route("/api/v1", func(r chi.Router) {
		r.Post("/orders", func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Idempotency-Key") == "replay" {
				w.WriteHeader(http.StatusOK)
				return
			}
			w.WriteHeader(http.StatusCreated)
		})
		r.Get("/orders/{id}", func(w http.ResponseWriter, r *http.Request) {
			if chi.URLParam(r, "id") == "404" {
				w.WriteHeader(http.StatusNotFound)
				return
			}
			_, _ = w.Write([]byte("{}"))
		})
	})
	srv := httptest.NewServer(m.HTTP(router))
	defer srv.Close()

	requests := []struct {
		method, path, key string
		want              int
	}{
		{http.MethodPost, "/api/v1/orders", "", http.StatusCreated},
		{http.MethodPost, "/api/v1/orders", "", http.StatusCreated},
		{http.MethodPost, "/api/v1/orders", "replay", http.StatusOK},
		{http.MethodGet, "/api/v1/orders/1", "", http.StatusOK},
		{http.MethodGet, "/api/v1/orders/2", "", http.StatusOK},
		{http.MethodGet, "/api/v1/orders/404", "", http.StatusNotFound},
		{http.MethodGet, "/healthz", "", http.StatusOK},
		{http.MethodGet, "/nope/1", "", http.StatusNotFound},
		{http.MethodGet, "/api/v1/nope", "", http.StatusNotFound},
		{http.MethodDelete, "/api/v1/orders/1", "", http.StatusMethodNotAllowed},
	}
	for _, r := range requests {
		req, _ := http.NewRequest(r.method, srv.URL+r.path, nil)
		if r.key != "" {
			req.Header.Set("Idempotency-Key", r.key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != r.want {
			t.Fatalf("%s %s: status %d, want %d", r.method, r.path, resp.StatusCode, r.want)
		}
	}

	series := gather(t, reg)
	counts := []struct {
		method, route, status string
		want                  float64
	}{
		{"POST", "/api/v1/orders", "201", 2},
		{"POST", "/api/v1/orders", "200", 1},
		{"GET", "/api/v1/orders/{id}", "200", 2},
		{"GET", "/api/v1/orders/{id}", "404", 1},
		{"GET", "/healthz", "200", 1},
		{"GET", "unmatched", "404", 2},
		{"DELETE", "unmatched", "405", 1},
	}
	for _, c := range counts {
		labels := map[string]string{"method": c.method, "route": c.route, "status": c.status}
		if got := value(t, series, "orderflow_http_requests_total", labels); got != c.want {
			t.Errorf("requests%v = %v, want %v", labels, got, c.want)
		}
	}
	if n := len(series["orderflow_http_requests_total"]); n != len(counts) {
		t.Errorf("%d request series, want %d (raw paths must not become labels)", n, len(counts))
	}
	if got := value(t, series, "orderflow_http_request_duration_seconds", map[string]string{"method": "GET", "route": "/api/v1/orders/{id}"}); got != 3 {
		t.Errorf("duration samples of GET /api/v1/orders/{id} = %v, want 3", got)
	}
	if got := value(t, series, "orderflow_orders_placed_total", map[string]string{}); got != 2 {
		t.Errorf("orders placed = %v, want 2 (replays are not placements)", got)
	}
}

func TestReadiness(t *testing.T) {
	ok := func(context.Context) error { return nil }
	down := func(context.Context) error { return errors.New("connection refused") }
	slow := func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }
	tests := []struct {
		name       string
		checks     []metrics.Check
		wantStatus int
		wantBody   string
	}{
		{"all dependencies answering is ready", []metrics.Check{{"postgres", ok}, {"temporal", ok}, {"kafka", ok}},
			http.StatusOK, `{"kafka":"ok","postgres":"ok","temporal":"ok"}`},
		{"a dependency down is named and not ready", []metrics.Check{{"postgres", ok}, {"temporal", ok}, {"kafka", down}},
			http.StatusServiceUnavailable, `{"kafka":"unavailable","postgres":"ok","temporal":"ok"}`},
		{"a dependency too slow to answer is not ready", []metrics.Check{{"postgres", slow}, {"temporal", ok}},
			http.StatusServiceUnavailable, `{"postgres":"unavailable","temporal":"ok"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			start := time.Now()
			metrics.Readiness(nil, tt.checks...).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tt.wantStatus || strings.TrimSpace(rec.Body.String()) != tt.wantBody {
				t.Errorf("got %d %s, want %d %s", rec.Code, rec.Body, tt.wantStatus, tt.wantBody)
			}
			if rec.Header().Get("Content-Type") != "application/json" {
				t.Errorf("Content-Type %q", rec.Header().Get("Content-Type"))
			}
			if d := time.Since(start); d > 5*time.Second {
				t.Errorf("took %v; checks must time out", d)
			}
		})
	}
}
