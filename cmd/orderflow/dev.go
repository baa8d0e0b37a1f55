package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"time"

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
	var embedded []embeddedCheck

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
		embedded = append(embedded, embeddedCheck{"PostgreSQL (" + filepath.Join(dataDir, "pg") + ")", pg.Alive})
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
		embedded = append(embedded, embeddedCheck{"Temporal dev server (" + t.HostPort + ")", func() bool { return listening(t.HostPort) }})
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
	removeStackEnv, err := writeStackEnv(dataDir, map[string]string{
		"DATABASE_URL": cfg.DatabaseURL, "TEMPORAL_ADDRESS": cfg.TemporalAddress, "TEMPORAL_NAMESPACE": cfg.TemporalNamespace,
		"KAFKA_BROKERS": strings.Join(cfg.KafkaBrokers, ","), "HTTP_ADDR": cfg.HTTPAddr, "TEMPORAL_UI_URL": cfg.TemporalUIURL,
	})
	if err != nil {
		return err
	}
	defer removeStackEnv()
	summary = append(summary,
		fmt.Sprintf("  API         http://%s/api/v1/orders (OpenAPI: http://%s/openapi.yaml)", cfg.HTTPAddr, cfg.HTTPAddr))
	if cfg.AuthMode == authTrustBody {
		summary = append(summary, "  Auth        NONE (AUTH_MODE=trust-body): the body's userId is believed, every route is open")
	} else {
		keys, err := ensureDevKeys(ctx, cfg, dataDir)
		if err != nil {
			return err
		}
		summary = append(summary,
			fmt.Sprintf("  Keys        demo user %d (read,trade): %s", devDemoUser, keys[devDemoKeyVar]),
			fmt.Sprintf("              operator user %d (admin,read): %s", devOperatorUser, keys[devOperatorKeyVar]),
			fmt.Sprintf("              kept in %s; in a shell: . %[1]s", filepath.Join(dataDir, devKeysFile)))
	}
	summary = append(summary,
		fmt.Sprintf("  Admin       http://%s/metrics, /readyz (METRICS_ADDR; not the public listener)", cfg.MetricsAddr),
		"  Worker      outbox relay, Kafka consumer, Temporal worker on task queue "+workflows.TaskQueue,
		"Press Ctrl-C to stop.")
	fmt.Fprintln(stdout, strings.Join(summary, "\n"))
	ctx, stop := context.WithCancelCause(ctx)
	defer stop(nil)
	go watchEmbedded(ctx, stop, embedded)
	err = runServices(ctx, cfg, logger, roleAPI|roleWorker)
	if cause := context.Cause(ctx); errors.Is(cause, errEmbeddedStopped) {
		return cause
	}
	return err
}

// errEmbeddedStopped ends `orderflow dev` when a service it started has died: serving
// 503s for ever without saying why helps no one.
var errEmbeddedStopped = errors.New("an embedded service stopped")

// embeddedCheck says whether one service dev started is still up.
type embeddedCheck struct {
	name  string
	alive func() bool
}

// watchEmbedded checks the embedded services every 2 seconds and stops dev, with the
// name of the one that died, as soon as one has.
func watchEmbedded(ctx context.Context, stop context.CancelCauseFunc, checks []embeddedCheck) {
	t := time.NewTicker(2 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for _, c := range checks {
			if !c.alive() {
				stop(fmt.Errorf("%w: the embedded %s is no longer running; OrderFlow stops (start it again with make run)", errEmbeddedStopped, c.name))
				return
			}
		}
	}
}

// listening reports whether something accepts connections at hostPort.
func listening(hostPort string) bool {
	conn, err := net.DialTimeout("tcp", hostPort, time.Second)
	if err != nil {
		return false
	}
	_ = conn.Close()
	return true
}
