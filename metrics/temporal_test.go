package metrics_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"

	"github.com/orderflow/orderflow/metrics"
)

func TestTemporalMetricsHandler(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := metrics.New(reg).TemporalMetricsHandler().WithTags(map[string]string{"namespace": "default"})
	tq := h.WithTags(map[string]string{"task_queue": "orders", "worker-type": "ActivityWorker"})

	t.Run("counters, gauges and timers appear with their tags as labels", func(t *testing.T) {
		tq.Counter("temporal_request").Inc(2)
		tq.Counter("temporal_request").Inc(1)
		tq.Gauge("temporal_worker_task_slots_available").Update(7)
		tq.Timer("temporal_workflow_task_execution_latency").Record(150 * time.Millisecond)

		series := gather(t, reg)
		labels := map[string]string{"namespace": "default", "task_queue": "orders", "worker_type": "ActivityWorker"}
		if got := value(t, series, "temporal_request", labels); got != 3 {
			t.Errorf("temporal_request = %v, want 3", got)
		}
		if got := value(t, series, "temporal_worker_task_slots_available", labels); got != 7 {
			t.Errorf("gauge = %v, want 7", got)
		}
		if got := value(t, series, "temporal_workflow_task_execution_latency", labels); got != 1 {
			t.Errorf("timer samples = %v, want 1", got)
		}
		families, _ := reg.Gather()
		for _, f := range families {
			if f.GetName() == "temporal_workflow_task_execution_latency" {
				if sum := f.GetMetric()[0].GetHistogram().GetSampleSum(); sum < 0.149 || sum > 0.151 {
					t.Errorf("timer recorded %v, want 0.15 (seconds)", sum)
				}
			}
		}
	})

	t.Run("a later use with other tags fits the first use's labels", func(t *testing.T) {
		// fewer tags: the missing label is empty; an extra tag is dropped.
		h.Counter("temporal_request").Inc(1)
		h.WithTags(map[string]string{"task_queue": "orders", "operation": "StartWorkflowExecution"}).Counter("temporal_request").Inc(1)

		series := gather(t, reg)
		if got := value(t, series, "temporal_request", map[string]string{"namespace": "default", "task_queue": "", "worker_type": ""}); got != 1 {
			t.Errorf("missing labels: got %v, want 1", got)
		}
		if got := value(t, series, "temporal_request", map[string]string{"namespace": "default", "task_queue": "orders", "worker_type": ""}); got != 1 {
			t.Errorf("extra tag: got %v, want 1", got)
		}
	})

	t.Run("names are sanitised and prefixed, clashes are dropped, not panics", func(t *testing.T) {
		h.Counter("my-custom.metric").Inc(1)
		h.Gauge("temporal_request").Update(1)              // a counter already has that name
		h.Timer("orderflow_http_requests_total").Record(1) // becomes temporal_orderflow_…: no clash
		h.Counter("temporal_request").Inc(-5)              // counters never go down

		series := gather(t, reg)
		if got := value(t, series, "temporal_my_custom_metric", map[string]string{"namespace": "default"}); got != 1 {
			t.Errorf("sanitised counter = %v, want 1", got)
		}
		if got := value(t, series, "temporal_request", map[string]string{"namespace": "default", "task_queue": "", "worker_type": ""}); got != 1 {
			t.Errorf("temporal_request changed to %v by a negative increment or a gauge", got)
		}
	})
}

// failingActivities are activities whose failures the interceptor counts.
type failingActivities struct{}

func (*failingActivities) Validate(context.Context) (string, error) { return "ok", nil }

func (*failingActivities) Execute(context.Context) error {
	return temporal.NewNonRetryableApplicationError("instrument halted", "InstrumentHalted", nil)
}

func (*failingActivities) Dispatch(context.Context) error { return errors.New("connection reset") }

func TestWorkerInterceptorCountsActivityFailures(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestActivityEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{m.WorkerInterceptor()}})
	acts := &failingActivities{}
	env.RegisterActivity(acts)

	if _, err := env.ExecuteActivity(acts.Validate); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	for range 2 {
		if _, err := env.ExecuteActivity(acts.Execute); err == nil {
			t.Fatal("Execute succeeded")
		}
	}
	if _, err := env.ExecuteActivity(acts.Dispatch); err == nil {
		t.Fatal("Dispatch succeeded")
	}

	series := gather(t, reg)
	if got := value(t, series, "orderflow_activity_failures_total", map[string]string{"activity": "Execute", "error_type": "InstrumentHalted"}); got != 2 {
		t.Errorf("Execute failures = %v, want 2", got)
	}
	if got := value(t, series, "orderflow_activity_failures_total", map[string]string{"activity": "Dispatch", "error_type": "error"}); got != 1 {
		t.Errorf("Dispatch failures = %v, want 1", got)
	}
	if n := len(series["orderflow_activity_failures_total"]); n != 2 {
		t.Errorf("%d failure series, want 2 (a success is not a failure)", n)
	}
}

func TestErrorType(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"an application error is its type", temporal.NewApplicationError("stale", "StaleVersion"), "StaleVersion"},
		{"a wrapped application error is its type", fmt.Errorf("execute: %w", temporal.NewNonRetryableApplicationError("x", "Invalid", nil)), "Invalid"},
		{"an application error without a type is an error", temporal.NewApplicationError("x", ""), "error"},
		{"a cancellation is canceled", fmt.Errorf("query: %w", context.Canceled), "canceled"},
		{"anything else is an error", errors.New("boom"), "error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := metrics.ErrorType(tt.err); got != tt.want {
				t.Errorf("ErrorType(%v) = %q, want %q", tt.err, got, tt.want)
			}
		})
	}
}
