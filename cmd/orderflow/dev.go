package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"

	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/kafka"
	"github.com/orderflow/orderflow/workflows"
)

// runDev starts whatever the configuration does not point at (PostgreSQL, the Temporal
// dev server, a Kafka-protocol broker), keeping their data under DATA_DIR so a restart
// finds the same orders and runs, then runs the API and the worker in this process.
func runDev(ctx context.Context, cfg Config, logger *slog.Logger, stdout io.Writer) error {
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return err
	}
	// Before anything is started (or stopped): a second stack on the folder would stop
	// the first one's PostgreSQL on its way out.
	unlock, err := devstack.LockDataDir(dataDir)
	if err != nil {
		return err
	}
	defer unlock()
	summary := []string{"OrderFlow is running:"}

	if cfg.DatabaseURL == "" {
		pg, err := devstack.StartPostgres(ctx, devstack.PostgresOptions{Dir: filepath.Join(dataDir, "pg"), Port: cfg.DevPGPort})
		if err != nil {
			return err
		}
		defer func() {
			if err := pg.Stop(); err != nil {
				logger.Error("stop postgres", "error", err)
			}
		}()
		cfg.DatabaseURL = pg.URL("orderflow")
		summary = append(summary, fmt.Sprintf("  PostgreSQL  %s (data in %s)", cfg.DatabaseURL, filepath.Join(dataDir, "pg")))
	} else {
		summary = append(summary, "  PostgreSQL  DATABASE_URL as given")
	}

	if cfg.TemporalAddress == "" {
		t, err := devstack.StartTemporal(ctx, devstack.TemporalOptions{
			CLIPath: cfg.TemporalCLI, Port: cfg.DevTemporalPort, UIPort: cfg.DevTemporalUIPort, UI: true,
			DBFile:           filepath.Join(dataDir, "temporal.db"),
			Namespace:        cfg.TemporalNamespace,
			SearchAttributes: workflows.SearchAttributeTypes(),
			Logger:           logger,
		})
		if err != nil {
			return err
		}
		defer func() {
			if err := t.Stop(); err != nil {
				logger.Error("stop temporal", "error", err)
			}
		}()
		cfg.TemporalAddress = t.HostPort
		cfg.TemporalUIURL = t.UIURL
		summary = append(summary, fmt.Sprintf("  Temporal    %s, UI %s", t.HostPort, t.UIURL))
	} else {
		summary = append(summary, fmt.Sprintf("  Temporal    %s (TEMPORAL_ADDRESS)", cfg.TemporalAddress))
	}

	if len(cfg.KafkaBrokers) == 0 {
		k, err := devstack.StartKafka(devstack.KafkaOptions{
			Port: cfg.DevKafkaPort, Dir: filepath.Join(dataDir, "kafka"),
			Topics: []string{kafka.TopicOrderExecution, kafka.TopicDLQ},
		})
		if err != nil {
			return err
		}
		defer k.Close()
		cfg.KafkaBrokers = k.Addrs()
		summary = append(summary, fmt.Sprintf("  Kafka       %s (in-process broker; topics %s, %s)", strings.Join(k.Addrs(), ","), kafka.TopicOrderExecution, kafka.TopicDLQ))
	} else {
		summary = append(summary, fmt.Sprintf("  Kafka       %s (KAFKA_BROKERS)", strings.Join(cfg.KafkaBrokers, ",")))
	}

	if err := runMigrate(ctx, cfg); err != nil {
		return err
	}
	summary = append(summary,
		fmt.Sprintf("  API         http://%s/api/v1/orders (OpenAPI: http://%s/openapi.yaml, metrics: /metrics)", cfg.HTTPAddr, cfg.HTTPAddr),
		"  Worker      outbox relay, Kafka consumer, Temporal worker on task queue "+workflows.TaskQueue,
		"Press Ctrl-C to stop.")
	fmt.Fprintln(stdout, strings.Join(summary, "\n"))
	return runServices(ctx, cfg, logger, roleAPI|roleWorker)
}
