// Package metrics is OrderFlow's observability: the Prometheus metrics of the HTTP API,
// the order lifecycle, the outbox relay, the Kafka consumer, the Temporal SDK and worker,
// and the readiness checks that tell an orchestrator whether a process can do its work.
//
// Everything registers on a *prometheus.Registry that the caller creates and passes in,
// never on the default registry, so two processes in one test binary (or two calls of
// run) each keep their own metrics.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Route labels for requests that matched no route, so that scanning for random paths
// cannot create one series per path.
const routeUnmatched = "unmatched"

// latencyBuckets (seconds) span a fast in-process hop to a minute-long backlog.
var latencyBuckets = []float64{0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}

// Metrics holds OrderFlow's metrics. Its methods are safe for concurrent use.
type Metrics struct {
	reg *prometheus.Registry

	httpRequests     *prometheus.CounterVec
	httpDuration     *prometheus.HistogramVec
	ordersPlaced     prometheus.Counter
	orderBatches     prometheus.Histogram
	transitions      *prometheus.CounterVec
	outboxLatency    prometheus.Histogram
	startLatency     prometheus.Histogram
	starts           *prometheus.CounterVec
	deadLetters      prometheus.Counter
	activityFailures *prometheus.CounterVec

	temporal *temporalVecs
}

// New registers OrderFlow's metrics, and the Go runtime and process collectors, on reg.
// Calling it twice with one registry returns metrics sharing the same series.
func New(reg *prometheus.Registry) *Metrics {
	register(reg, collectors.NewGoCollector())
	register(reg, collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return &Metrics{
		reg: reg,
		httpRequests: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_http_requests_total",
			Help: "HTTP requests answered, by method, chi route pattern and status code.",
		}, []string{"method", "route", "status"})),
		httpDuration: register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "orderflow_http_request_duration_seconds",
			Help:    "Time to answer HTTP requests, by method and chi route pattern.",
			Buckets: latencyBuckets,
		}, []string{"method", "route"})),
		ordersPlaced: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_orders_placed_total",
			Help: "Orders accepted by POST /api/v1/orders (201; idempotent replays excluded).",
		})),
		orderBatches: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderflow_order_write_batch_size",
			Help:    "New orders written per PostgreSQL statement by the API's group commit: 1 while requests do not overlap, larger as they queue for a commit.",
			Buckets: []float64{1, 2, 4, 8, 16, 32, 64},
		})),
		transitions: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_order_transitions_total",
			Help: "Committed order status changes, by from and to status.",
		}, []string{"from", "to"})),
		outboxLatency: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderflow_outbox_publish_latency_seconds",
			Help:    "Time from an outbox row's creation to its successful publish to Kafka.",
			Buckets: latencyBuckets,
		})),
		startLatency: register(reg, prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "orderflow_workflow_start_latency_seconds",
			Help:    "Time from a Kafka record's timestamp to Temporal acknowledging the start of its new workflow run.",
			Buckets: latencyBuckets,
		})),
		starts: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_workflow_starts_total",
			Help: "Workflow start attempts by the consumer: started, duplicate (run already existed) or error (retried).",
		}, []string{"result"})),
		deadLetters: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "orderflow_dlq_messages_total",
			Help: "Undecodable messages sent to the dead-letter topic.",
		})),
		activityFailures: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "orderflow_activity_failures_total",
			Help: "Failed activity attempts, by activity and error type (the application error's type, or \"error\").",
		}, []string{"activity", "error_type"})),
		temporal: newTemporalVecs(reg),
	}
}

// register registers c on reg, or returns the collector already registered in its
// place. Any other error is a mistake in this package's metric definitions, which the
// tests exercise, so it panics like prometheus.MustRegister.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	err := reg.Register(c)
	if err == nil {
		return c
	}
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if existing, ok := already.ExistingCollector.(C); ok {
			return existing
		}
	}
	panic(err)
}

// Handler serves the registry in the Prometheus text format. A collector that fails (the
// database is down, say) only drops its own series: the rest are still served, the
// error is logged, and promhttp_metric_handler_errors_total counts it.
func (m *Metrics) Handler(logger *slog.Logger) http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		ErrorLog:      slogPrintln{logger},
		ErrorHandling: promhttp.ContinueOnError,
		Registry:      m.reg,
		Timeout:       10 * time.Second,
	})
}

// slogPrintln adapts slog to promhttp's Println logger.
type slogPrintln struct{ log *slog.Logger }

func (l slogPrintln) Println(v ...any) {
	if l.log != nil {
		l.log.Warn("metrics: " + strings.TrimSpace(fmt.Sprintln(v...)))
	}
}

// HTTP counts and times the requests next answers, labelled with the chi route pattern
// (e.g. /api/v1/orders/{id}) rather than the raw path, so the number of series is
// bounded by the number of routes. next must be a chi router (or lead to one): the
// middleware installs the route context that chi then fills in instead of its own, and
// reads the pattern after next returns. Requests no route matched are labelled
// "unmatched".
func (m *Metrics) HTTP(next http.Handler) http.Handler {
	routes, _ := next.(chi.Routes)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		// chi's Mux.ServeHTTP reuses a route context it finds in the request's context
		// (that is how subrouters share one), so the pattern it records stays readable
		// here after it returns; chi would otherwise pool and reset its own.
		rctx := chi.NewRouteContext()
		rctx.Routes = routes // as chi sets it; middleware such as GetHead reads it
		r = r.WithContext(context.WithValue(r.Context(), chi.RouteCtxKey, rctx))
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)

		status := ww.Status()
		if status == 0 {
			status = http.StatusOK // the handler wrote nothing: net/http answers 200
		}
		route := routeLabel(rctx, status)
		m.httpRequests.WithLabelValues(r.Method, route, strconv.Itoa(status)).Inc()
		m.httpDuration.WithLabelValues(r.Method, route).Observe(time.Since(start).Seconds())
		if r.Method == http.MethodPost && route == "/api/v1/orders" && status == http.StatusCreated {
			m.ordersPlaced.Inc()
		}
	})
}

// routeLabel returns the route pattern chi matched, or "unmatched". A request that
// reached a mounted subrouter (chi.Router.Route) but matched nothing in it ends with
// the mount's "/*" pattern and a 404 or 405; that is unmatched too.
func routeLabel(rctx *chi.Context, status int) string {
	route := rctx.RoutePattern()
	if route == "" {
		return routeUnmatched
	}
	if n := len(rctx.RoutePatterns); n > 0 && strings.HasSuffix(rctx.RoutePatterns[n-1], "/*") &&
		(status == http.StatusNotFound || status == http.StatusMethodNotAllowed) {
		return routeUnmatched
	}
	return route
}

// ObserveOrderBatch records one statement of the API's group commit that wrote n orders.
func (m *Metrics) ObserveOrderBatch(n int) {
	m.orderBatches.Observe(float64(n))
}

// ObserveTransition counts one committed order status change. Call it after the
// transaction that made the change commits, so rolled-back attempts are not counted.
func (m *Metrics) ObserveTransition(from, to string) {
	m.transitions.WithLabelValues(from, to).Inc()
}

// ObserveOutboxPublished records the latency of one outbox row the relay published;
// createdAt is the row's created_at.
func (m *Metrics) ObserveOutboxPublished(createdAt time.Time) {
	m.outboxLatency.Observe(sinceSeconds(createdAt))
}

// ObserveWorkflowStart records a start the consumer made for a record with timestamp
// recordTime: started reports whether it made a new run (false: the run already
// existed, a duplicate). Only new runs add to the latency histogram, since a duplicate's
// age measures how long ago the record was first handled, not the pipeline's speed.
func (m *Metrics) ObserveWorkflowStart(recordTime time.Time, started bool) {
	if !started {
		m.starts.WithLabelValues("duplicate").Inc()
		return
	}
	m.starts.WithLabelValues("started").Inc()
	m.startLatency.Observe(sinceSeconds(recordTime))
}

// ObserveWorkflowStartError counts a failed start attempt (the consumer retries it).
func (m *Metrics) ObserveWorkflowStartError() {
	m.starts.WithLabelValues("error").Inc()
}

// ObserveDeadLetter counts a message sent to the dead-letter topic.
func (m *Metrics) ObserveDeadLetter() {
	m.deadLetters.Inc()
}

// sinceSeconds is the time since t in seconds, never negative: t may come from another
// machine's clock (PostgreSQL's now(), a Kafka producer's).
func sinceSeconds(t time.Time) float64 {
	return max(time.Since(t).Seconds(), 0)
}
