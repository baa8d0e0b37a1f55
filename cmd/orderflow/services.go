package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/plugin/kslog"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"go.temporal.io/sdk/worker"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/activities"
	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/kafka"
	"github.com/orderflow/orderflow/schema"
	"github.com/orderflow/orderflow/workflows"
)

// role selects what runServices runs; dev runs both.
type role int

const (
	roleAPI role = 1 << iota
	roleWorker
)

const (
	defaultTemporalAddress = "127.0.0.1:7233"
	defaultKafkaBroker     = "127.0.0.1:9092"
)

func openPool(ctx context.Context, cfg Config) (*pgxpool.Pool, error) {
	if cfg.DatabaseURL == "" {
		return nil, errors.New("DATABASE_URL is not set: give the PostgreSQL URL, or use `orderflow dev` to start a local cluster")
	}
	pcfg, err := pgxpool.ParseConfig(cfg.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	pcfg.MaxConns = cfg.DBMaxConns
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	return pool, nil
}

func runMigrate(ctx context.Context, cfg Config) error {
	pool, err := openPool(ctx, cfg)
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
	pool, err := openPool(ctx, cfg)
	if err != nil {
		return err
	}
	defer pool.Close()
	tc, err := client.DialContext(ctx, client.Options{
		HostPort:  cfg.TemporalAddress,
		Namespace: cfg.TemporalNamespace,
		Logger:    tlog.NewStructuredLogger(logger),
	})
	if err != nil {
		return fmt.Errorf("temporal at %s: %w", cfg.TemporalAddress, err)
	}
	defer tc.Close()
	starter := workflows.NewStarter(tc)

	g, gctx := errgroup.WithContext(ctx)
	if roles&roleAPI != 0 {
		handler := api.NewServer(pool, starter, logger, api.Config{
			AllowedOrigins: cfg.CORSOrigins, CancelWait: cfg.CancelWait,
			TemporalUIURL: cfg.TemporalUIURL, Namespace: cfg.TemporalNamespace,
		})
		serveHTTP(gctx, g, logger, cfg.HTTPAddr, withMetrics(handler))
	}
	if roles&roleWorker != 0 {
		if err := runWorker(gctx, g, cfg, logger, pool, tc, starter); err != nil {
			return err
		}
		if roles&roleAPI == 0 {
			serveHTTP(gctx, g, logger, cfg.MetricsAddr, withMetrics(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write([]byte(`{"status":"ok"}`))
			})))
		}
	}
	return g.Wait()
}

// withMetrics serves Prometheus' /metrics beside h.
func withMetrics(h http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.Handle("/", h)
	return mux
}

// serveHTTP serves h on addr in g until ctx ends, then drains in-flight requests.
func serveHTTP(ctx context.Context, g *errgroup.Group, logger *slog.Logger, addr string, h http.Handler) {
	srv := &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       15 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		BaseContext:       func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
	}
	g.Go(func() error {
		logger.Info("http listening", "addr", addr)
		if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("http %s: %w", addr, err)
		}
		return nil
	})
	g.Go(func() error {
		<-ctx.Done()
		shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return srv.Shutdown(shutdownCtx)
	})
}

// runWorker adds the outbox relay, the Kafka consumer and the Temporal worker to g.
func runWorker(ctx context.Context, g *errgroup.Group, cfg Config, logger *slog.Logger, pool *pgxpool.Pool, tc client.Client, starter *workflows.Starter) error {
	klog := kslog.New(logger.With("component", "kafka"))
	producer, err := kgo.NewClient(kgo.SeedBrokers(cfg.KafkaBrokers...), kgo.WithLogger(klog),
		kgo.ProducerLinger(0), kgo.AllowAutoTopicCreation())
	if err != nil {
		return fmt.Errorf("kafka producer: %w", err)
	}
	if err := ensureTopics(ctx, producer); err != nil {
		producer.Close()
		return err
	}
	consumerClient, err := kgo.NewClient(append(kafka.ConsumerOptions(), kgo.SeedBrokers(cfg.KafkaBrokers...), kgo.WithLogger(klog))...)
	if err != nil {
		producer.Close()
		return fmt.Errorf("kafka consumer: %w", err)
	}
	w := worker.New(tc, workflows.TaskQueue, worker.Options{})
	w.RegisterWorkflow(workflows.OrderWorkflow)
	w.RegisterActivity(activities.New(pool, logger))
	if err := w.Start(); err != nil {
		producer.Close()
		consumerClient.Close()
		return fmt.Errorf("temporal worker: %w", err)
	}
	relay := kafka.NewRelay(pool, producer, logger.With("component", "relay"))
	consumer := kafka.NewConsumer(consumerClient, starter, logger.With("component", "consumer"))
	g.Go(func() error {
		defer producer.Close()
		return relay.Run(ctx)
	})
	g.Go(func() error {
		defer consumerClient.Close()
		return consumer.Run(ctx)
	})
	g.Go(func() error {
		<-ctx.Done()
		w.Stop()
		return nil
	})
	return nil
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
