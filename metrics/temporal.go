package metrics

import (
	"context"
	"errors"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/temporal"
)

// TemporalMetricsHandler returns the Temporal SDK's metrics handler, to be set as
// client.Options.MetricsHandler: the SDK's counters, gauges and timers become Prometheus
// counters, gauges and histograms (in seconds) on the same registry, named as the SDK
// names them (temporal_request, temporal_workflow_task_execution_latency, …).
func (m *Metrics) TemporalMetricsHandler() client.MetricsHandler {
	return &temporalHandler{vecs: m.temporal}
}

// temporalHandler is one node of the SDK's tag tree: the shared vectors plus the tags
// WithTags gave it, keys already sanitised.
type temporalHandler struct {
	vecs *temporalVecs
	tags map[string]string
}

var _ client.MetricsHandler = (*temporalHandler)(nil)

// WithTags returns a handler with tags added to (and overriding) h's.
func (h *temporalHandler) WithTags(tags map[string]string) client.MetricsHandler {
	merged := make(map[string]string, len(h.tags)+len(tags))
	maps.Copy(merged, h.tags)
	for k, v := range tags {
		merged[sanitize(k)] = v
	}
	return &temporalHandler{vecs: h.vecs, tags: merged}
}

// Counter returns the counter name with h's tags.
func (h *temporalHandler) Counter(name string) client.MetricsCounter {
	v := h.vecs.get(name, kindCounter, h.tags)
	vec, ok := v.collector.(*prometheus.CounterVec)
	if !ok {
		return nopMetric{}
	}
	c, err := vec.GetMetricWithLabelValues(v.values(h.tags)...)
	if err != nil { // a value that is not UTF-8
		return nopMetric{}
	}
	return counterFunc(func(d int64) {
		if d > 0 { // a Prometheus counter only goes up
			c.Add(float64(d))
		}
	})
}

// Gauge returns the gauge name with h's tags.
func (h *temporalHandler) Gauge(name string) client.MetricsGauge {
	v := h.vecs.get(name, kindGauge, h.tags)
	vec, ok := v.collector.(*prometheus.GaugeVec)
	if !ok {
		return nopMetric{}
	}
	g, err := vec.GetMetricWithLabelValues(v.values(h.tags)...)
	if err != nil {
		return nopMetric{}
	}
	return gaugeFunc(g.Set)
}

// Timer returns the timer name with h's tags, recorded in seconds.
func (h *temporalHandler) Timer(name string) client.MetricsTimer {
	v := h.vecs.get(name, kindTimer, h.tags)
	vec, ok := v.collector.(*prometheus.HistogramVec)
	if !ok {
		return nopMetric{}
	}
	o, err := vec.GetMetricWithLabelValues(v.values(h.tags)...)
	if err != nil {
		return nopMetric{}
	}
	return timerFunc(func(d time.Duration) { o.Observe(d.Seconds()) })
}

type metricKind int

const (
	kindCounter metricKind = iota
	kindGauge
	kindTimer
)

// temporalVecs creates one Prometheus vector per SDK metric name, on first use.
// Prometheus needs a fixed label set per name, so a vector takes the sorted tag keys of
// its first use; later uses are fitted to it (see temporalVec.values).
type temporalVecs struct {
	reg    prometheus.Registerer
	mu     sync.Mutex
	byName map[string]temporalVec
}

// temporalVec is one SDK metric: its vector (nil if dropped) and its label names.
type temporalVec struct {
	kind      metricKind
	collector prometheus.Collector
	labels    []string
}

// values returns tags' values in the order of v's labels: labels tags lacks are "", tags
// v has no label for are dropped.
func (v temporalVec) values(tags map[string]string) []string {
	values := make([]string, len(v.labels))
	for i, l := range v.labels {
		values[i] = tags[l]
	}
	return values
}

func newTemporalVecs(reg prometheus.Registerer) *temporalVecs {
	return &temporalVecs{reg: reg, byName: map[string]temporalVec{}}
}

// get returns the vector for name, creating it with tags' keys as labels. Its collector
// is nil if name was first used as another kind of metric, or cannot be registered (it
// clashes with another metric of the registry): that metric is dropped, never a panic in
// the SDK's goroutines.
func (vs *temporalVecs) get(name string, kind metricKind, tags map[string]string) temporalVec {
	name = sanitize(name)
	if !strings.HasPrefix(name, "temporal_") {
		name = "temporal_" + name
	}
	vs.mu.Lock()
	defer vs.mu.Unlock()
	if v, ok := vs.byName[name]; ok {
		if v.kind != kind {
			return temporalVec{}
		}
		return v
	}
	v := temporalVec{kind: kind, labels: slices.Sorted(maps.Keys(tags))}
	help := "Temporal SDK metric " + name + "."
	switch kind {
	case kindCounter:
		v.collector = prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, v.labels)
	case kindGauge:
		v.collector = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: name, Help: help}, v.labels)
	default:
		v.collector = prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: name, Help: help + " In seconds.", Buckets: latencyBuckets,
		}, v.labels)
	}
	if err := vs.reg.Register(v.collector); err != nil {
		v.collector = nil
	}
	vs.byName[name] = v
	return v
}

// sanitize maps s onto Prometheus' name alphabet [a-zA-Z0-9_], not starting with a digit
// and not with the reserved "__".
func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			b[i] = '_'
		}
	}
	out := string(b)
	if out == "" || out[0] >= '0' && out[0] <= '9' || strings.HasPrefix(out, "__") {
		out = "x" + out
	}
	return out
}

type counterFunc func(int64)

func (f counterFunc) Inc(d int64) { f(d) }

type gaugeFunc func(float64)

func (f gaugeFunc) Update(v float64) { f(v) }

type timerFunc func(time.Duration)

func (f timerFunc) Record(d time.Duration) { f(d) }

// nopMetric is what a dropped metric records into.
type nopMetric struct{}

func (nopMetric) Inc(int64)            {}
func (nopMetric) Update(float64)       {}
func (nopMetric) Record(time.Duration) {}

// WorkerInterceptor returns a Temporal worker interceptor that counts failed activity
// attempts in orderflow_activity_failures_total{activity,error_type}. Set it in
// worker.Options.Interceptors.
func (m *Metrics) WorkerInterceptor() interceptor.WorkerInterceptor {
	return &workerInterceptor{m: m}
}

type workerInterceptor struct {
	interceptor.WorkerInterceptorBase
	m *Metrics
}

func (w *workerInterceptor) InterceptActivity(ctx context.Context, next interceptor.ActivityInboundInterceptor) interceptor.ActivityInboundInterceptor {
	a := &activityInterceptor{m: w.m}
	a.Next = next
	return a
}

type activityInterceptor struct {
	interceptor.ActivityInboundInterceptorBase
	m *Metrics
}

func (a *activityInterceptor) ExecuteActivity(ctx context.Context, in *interceptor.ExecuteActivityInput) (any, error) {
	result, err := a.Next.ExecuteActivity(ctx, in)
	if err != nil && !errors.Is(err, activity.ErrResultPending) {
		a.m.activityFailures.WithLabelValues(activity.GetInfo(ctx).ActivityType.Name, ErrorType(err)).Inc()
	}
	return result, err
}

// ErrorType classifies an activity error for the error_type label: the type of the
// *temporal.ApplicationError it wraps (as set by temporal.NewApplicationError or
// NewNonRetryableApplicationError), "canceled" for a cancellation, else "error".
func ErrorType(err error) string {
	var app *temporal.ApplicationError
	if errors.As(err, &app) && app.Type() != "" {
		return app.Type()
	}
	var canceled *temporal.CanceledError
	if errors.As(err, &canceled) || errors.Is(err, context.Canceled) {
		return "canceled"
	}
	return "error"
}
