package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/interceptor"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/eventstream"
	"github.com/orderflow/orderflow/kafka"
	"github.com/orderflow/orderflow/metrics"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/reconcile"
	"github.com/orderflow/orderflow/schema"
	"github.com/orderflow/orderflow/workflows"
)

// role selects what runServices runs; dev runs both.
type role int

// sessionName names the process's PostgreSQL sessions by its roles.
func (r role) sessionName() string {
	switch r {
	case roleAPI:
		return "orderflow-api"
	case roleWorker:
		return "orderflow-worker"
	}
	return "orderflow-dev"
}

const (
	roleAPI role = 1 << iota
	roleWorker
)

const (
	defaultTemporalAddress = "127.0.0.1:7233"
	defaultKafkaBroker     = "127.0.0.1:9092"
)

// openPool opens the pool of DATABASE_URL. Its sessions are named name in
// pg_stat_activity (application_name), unless the URL names them, so that a DBA can
// tell the API's from the workers' and the operators' tools'.
func openPool(ctx context.Context, cfg Config, name string) (*pgxpool.Pool, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("DATABASE_URL is not set: give the PostgreSQL URL, or run this next to `make run` (whose DATA_DIR tells where its database is)")
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pcfg.MaxConns = cfg.DBMaxConns
	if _, named := pcfg.ConnConfig.RuntimeParams["application_name"]; !named {
		pcfg.ConnConfig.RuntimeParams["application_name"] = name
	}
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return pool, nil
}

func runMigrate(ctx context.Context, cfg Config) error {
	pool, err := openPool(ctx, cfg, "orderflow-migrate")
	if err != nil {
		return err
	}
	defer pool.Close()
	return schema.Migrate(ctx, pool)
}

// runServices runs the API and/or the worker until ctx ends, then shuts them down in
// order: stop taking work, finish what is in hand, close connections.
func runServices(ctx context.Context, cfg Config, logger *slog.Logger, roles role) error {
	if cfg.TemporalAddress == "" {
		cfg.TemporalAddress = defaultTemporalAddress
	}
	if len(cfg.KafkaBrokers) == 0 {
		cfg.KafkaBrokers = []string{defaultKafkaBroker}
	}
	pool, err := openPool(ctx, cfg, roles.sessionName())
	if err != nil {
		return err
	}
	defer pool.Close()
	// A binary and a schema of different releases would fail later, and less clearly.
	if err := schema.Check(ctx, pool); err != nil {
		return err
	}
	// One registry per process (dev's API and worker share it), never the default one.
	m := metrics.New(prometheus.NewRegistry())
	if err := m.WatchDatabase(pool); err != nil {
		return err
	}
	topts := cfg.temporalOptions()
	topts.Logger, topts.MetricsHandler = tlog.NewStructuredLogger(logger), m.TemporalMetricsHandler()
	var tc client.Client
	if roles&roleWorker == 0 {
		// Placing and reading orders need only PostgreSQL: the API starts while Temporal is
		// down and connects on first use (cancels and operator decisions answer 503 until
		// it is back).
		tc, err = client.NewLazyClient(topts)
	} else {
		tc, err = client.DialContext(ctx, topts)
	}
	if err != nil {
		return fmt.Errorf("temporal at %s: %w", cfg.TemporalAddress, err)
	}
	defer tc.Close()
	starter := workflows.NewStarter(tc, cfg.Retry)

	g, gctx := errgroup.WithContext(ctx)
	// The worker starts first so that in dev the API's listener can serve the worker's
	// readiness, which needs the worker's Kafka producer.
	var workerReady http.Handler
	if roles&roleWorker != 0 {
		producer, err := runWorker(gctx, g, cfg, logger, pool, tc, starter, m)
		if err != nil {
			return err
		}
		workerReady = metrics.Readiness(logger,
			metrics.Check{Name: "postgres", Ping: pool.Ping},
			metrics.Check{Name: "temporal", Ping: func(ctx context.Context) error {
				_, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{})
				return err
			}},
			metrics.Check{Name: "kafka", Ping: producer.Ping},
		)
	}
	// The admin listener (METRICS_ADDR): /metrics, and the process's health with what it
	// checks; never on the public listener, which serves the API alone.
	admin := withMetrics(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		// /healthz (and any other path) answers 200 while the process serves.
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}), m.Handler(logger))
	if workerReady != nil {
		admin.Handle("GET /readyz", workerReady)
	}
	serveHTTP(gctx, g, logger, cfg.MetricsAddr, admin, cfg.ShutdownTimeout)
	if roles&roleAPI != 0 {
		acfg := api.Config{
			AllowedOrigins: cfg.CORSOrigins, CancelWait: cfg.CancelWait,
			TemporalUIURL: cfg.TemporalUIURL, Namespace: cfg.TemporalNamespace,
			Batches: m, Limits: cfg.Limits, IdempotencyTTL: cfg.IdempotencyTTL, DayEnd: cfg.DayEnd,
			Amends: starter,
		}
		if cfg.Admission.MaxDelay >= 0 {
			acfg.Admission = orderbook.NewAdmission(pool, logger, cfg.Admission)
			if err := m.WatchAdmission(acfg.Admission.Backlog); err != nil {
				return err
			}
			g.Go(func() error { acfg.Admission.Run(gctx); return nil })
		}
		if acfg.Auth, acfg.TrustBody, err = authenticator(ctx, cfg, pool, logger); err != nil {
			return err
		}
		// The event streams' hub ends its streams when gctx ends, so that the HTTP
		// server's shutdown is not kept waiting by connections that never go idle.
		acfg.Streams = eventstream.New(pool, logger.With("component", "eventstream"), eventstream.Config{MaxSubscribers: cfg.EventStreamsMax})
		if err := m.WatchEventStreams(func() (int, int64) { st := acfg.Streams.Stats(); return st.Subscribers, st.Dropped }); err != nil {
			return err
		}
		g.Go(func() error { return acfg.Streams.Run(gctx) })
		srv := newHTTPServer(cfg.HTTPAddr, m.HTTP(api.NewServer(pool, starter, logger, acfg)))
		if cfg.HTTPTLSCertFile != "" {
			certs, err := newCertFiles(cfg.HTTPTLSCertFile, cfg.HTTPTLSKeyFile, logger)
			if err != nil {
				return err
			}
			srv.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: certs.GetCertificate}
		}
		serve(gctx, g, logger, srv, cfg.ShutdownTimeout)
	}
	if cfg.DebugAddr != "" {
		srv := newHTTPServer(cfg.DebugAddr, debugMux())
		srv.WriteTimeout = 0 // a CPU profile takes 30s by default
		serve(gctx, g, logger, srv, cfg.ShutdownTimeout)
	}
	return g.Wait()
}

// authenticator is how the API checks credentials in cfg's AUTH_MODE: API keys, and JWTs
// when a provider is configured; or, in trust-body mode, not at all (trust true).
func authenticator(ctx context.Context, cfg Config, pool *pgxpool.Pool, logger *slog.Logger) (a *auth.Authenticator, trust bool, err error) {
	if cfg.AuthMode == authTrustBody {
		logger.Warn("AUTH_MODE=trust-body: the API authenticates nobody; anyone who reaches it acts as any user and as an operator. For local experiments only")
		return nil, true, nil
	}
	a = &auth.Authenticator{Keys: auth.NewKeys(pool).WithCache(cfg.KeyCacheTTL)}
	if cfg.JWT.JWKSURL != "" {
		if a.JWT, err = auth.NewJWTVerifier(ctx, cfg.JWT); err != nil {
			return nil, false, fmt.Errorf("OIDC: %w", err)
		}
	}
	return a, false, nil
}

// debugMux serves Go's profiler (go tool pprof http://DEBUG_ADDR/debug/pprof/profile) on
// a listener of its own, off by default, so it is never exposed with the API.
func debugMux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// withMetrics serves metricsHandler at /metrics and h at every other path.
func withMetrics(h, metricsHandler http.Handler) *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metricsHandler)
	mux.Handle("/", h)
	return mux
}

// newHTTPServer is the server every listener uses: slow or idle clients are cut off
// (headers within 5s, the whole request within 15s, the answer within 30s, idle
// keep-alive connections after 2 minutes) and headers are capped at 64 KiB, so slow
// clients cannot hold the server's connections.
func newHTTPServer(addr string, h http.Handler) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
	}
}

// serveHTTP serves h on addr in g until ctx ends, then drains in-flight requests for at
// most grace.
func serveHTTP(ctx context.Context, g *errgroup.Group, logger *slog.Logger, addr string, h http.Handler, grace time.Duration) {
	serve(ctx, g, logger, newHTTPServer(addr, h), grace)
}

func serve(ctx context.Context, g *errgroup.Group, logger *slog.Logger, srv *http.Server, grace time.Duration) {
	srv.BaseContext = func(net.Listener) context.Context { return context.WithoutCancel(ctx) }
	g.Go(func() error {
		logger.Info("http listening", "addr", srv.Addr, "tls", srv.TLSConfig != nil)
		listen := srv.ListenAndServe
		if srv.TLSConfig != nil {
			listen = func() error { return srv.ListenAndServeTLS("", "") } // the certificate is TLSConfig's
		}
		if err := listen(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http %s: %w", srv.Addr, err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), grace)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
}

// runWorker adds the outbox relay, the Kafka consumer and the Temporal worker to g,
// observed by m, and returns the Kafka producer (for readiness checks; g closes it).
func runWorker(ctx context.Context, g *errgroup.Group, cfg Config, logger *slog.Logger, pool *pgxpool.Pool, tc client.Client, starter *workflows.Starter, m *metrics.Metrics) (*kgo.Client, error) {
	klog := kslog.New(logger.With("component", "kafka"))
	// A delivery timeout, so a publish during a Kafka outage fails and is retried rather
	// than wait for ever; the relay's lease on its rows outlasts it.
	producer, err := kgo.NewClient(append(cfg.kafkaOptions(), kgo.WithLogger(klog),
		kgo.ProducerLinger(0), kgo.AllowAutoTopicCreation(), kgo.RecordDeliveryTimeout(30*time.Second))...)
	if err != nil {
		return nil, fmt.Errorf("kafka producer: %w", err)
	}
	if err := ensureTopics(ctx, producer); err != nil {
		producer.Close()
		return nil, err
	}
	consumer, err := kafka.NewConsumer(starter, logger.With("component", "consumer"), append(cfg.kafkaOptions(), kgo.WithLogger(klog))...)
	if err != nil {
		producer.Close()
		return nil, fmt.Errorf("kafka consumer: %w", err)
	}
	w := worker.New(tc, workflows.TaskQueue, worker.Options{
		Interceptors: []interceptor.WorkerInterceptor{m.WorkerInterceptor()},
		// The drain: on SIGTERM the worker stops polling and lets running tasks finish
		// before cancelling them. The SDK waits this long up to three times over: for the
		// workflow tasks, for the local activities they wait on (our steps), then for
		// regular activities (bookkeeping, the reconciler), so a third of SHUTDOWN_TIMEOUT
		// keeps the whole drain within it. A step's result that comes after its workflow
		// task was given up is dropped, and the next worker runs the step again once the
		// server times the task out: a no-op if it had committed.
		WorkerStopTimeout:          cfg.ShutdownTimeout / 3,
		WorkflowTaskPollerBehavior: workflows.WorkflowTaskPollers(),
	})
	w.RegisterWorkflowWithOptions(orderWorkflow(), workflow.RegisterOptions{Name: "OrderWorkflow"})
	w.RegisterWorkflow(workflows.ReconcileWorkflow)
	// The waker: an amendment that replaces an order places the new one from here.
	book := orderbook.New(pool, logger, orderbook.Config{Observer: m, MaxFillsPerStep: cfg.MatchFillsPerStep, IdempotencyTTL: cfg.IdempotencyTTL,
		MarketMaxAge: cfg.MarketMaxAge, Waker: kafka.NewOutboxWaker(pool, logger)})
	w.RegisterActivity(activities.New(book, logger, starter))
	w.RegisterActivity(reconcile.NewActivities(reconcile.New(tc, starter, book, logger.With("component", "reconcile"))))
	if err := w.Start(); err != nil {
		producer.Close()
		consumer.Close()
		return nil, fmt.Errorf("temporal worker: %w", err)
	}
	if err := m.WatchConsumerLag(producer, kafka.ConsumerGroup); err != nil {
		w.Stop()
		producer.Close()
		consumer.Close()
		return nil, err
	}
	relay := kafka.NewRelay(pool, producer, logger.With("component", "relay")).WithObserver(m)
	g.Go(func() error {
		defer producer.Close()
		return relay.Run(ctx)
	})
	g.Go(func() error { return consumer.WithObserver(m).Run(ctx) })
	g.Go(func() error { return book.FoldOrderCountsEvery(ctx, time.Minute) })
	g.Go(func() error { return book.ExpireIdempotencyKeys(ctx, time.Minute) })
	g.Go(func() error { return book.DeliverFillNotices(ctx, starter) })
	g.Go(func() error { ensureReconcileSchedule(ctx, tc, cfg.ReconcileInterval, logger); return nil })
	g.Go(func() error {
		<-ctx.Done()
		w.Stop()
		return nil
	})
	return producer, nil
}

// ensureReconcileSchedule creates or updates the reconciler's schedule, trying again
// every few seconds while Temporal refuses, until it succeeds or ctx ends: the worker
// serves its orders meanwhile, and a schedule another worker made keeps running.
func ensureReconcileSchedule(ctx context.Context, tc client.Client, every time.Duration, logger *slog.Logger) {
	for {
		err := reconcile.EnsureSchedule(ctx, tc, every)
		if err == nil || ctx.Err() != nil {
			return
		}
		logger.Warn("reconciler schedule not set up yet; trying again", "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(5 * time.Second):
		}
	}
}

// ensureTopics creates the topics if the cluster lacks them, so a fresh broker works.
func ensureTopics(ctx context.Context, c *kgo.Client) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	resp, err := kadm.NewClient(c).CreateTopics(ctx, -1, -1, nil, kafka.TopicOrderExecution, kafka.TopicDLQ)
	if err != nil {
		return fmt.Errorf("kafka: create topics: %w", err)
	}
	for _, t := range resp.Sorted() {
		if t.Err != nil && !errors.Is(t.Err, kerr.TopicAlreadyExists) {
			return fmt.Errorf("kafka: create topic %s: %w", t.Topic, t.Err)
		}
	}
	return nil
}

// healthcheck exits non-zero unless url answers 2xx: container images have no curl.
func healthcheck(ctx context.Context, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s answered %s", url, resp.Status)
	}
	return nil
}
