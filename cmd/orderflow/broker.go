package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"

	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/kafka"
)

// runBroker is `orderflow broker`: the Kafka-protocol broker `orderflow dev` embeds
// (franz-go's kfake), alone in its own process on 127.0.0.1:DEV_KAFKA_PORT, with the
// topics order-execution and order-execution.dlq. It keeps its topics, messages and the
// consumer groups' committed offsets in DATA_DIR/kafka, so a restarted broker carries on
// where it stopped; the chaos suite restarts it that way. It serves until ctx ends
// (SIGINT or SIGTERM), then closes, which flushes its state to disk.
func runBroker(ctx context.Context, cfg Config, logger *slog.Logger, stdout io.Writer) error {
	dir, err := filepath.Abs(filepath.Join(cfg.DataDir, "kafka"))
	if err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("broker: data folder: %w", err)
	}
	k, err := devstack.StartKafka(devstack.KafkaOptions{
		Port:   cfg.DevKafkaPort,
		Dir:    dir,
		Topics: []string{kafka.TopicOrderExecution, kafka.TopicDLQ},
	})
	if err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	defer k.Close()
	addrs := strings.Join(k.Addrs(), ",")
	logger.Info("kafka broker listening", "addr", addrs, "data", dir)
	if _, err := fmt.Fprintf(stdout, "Kafka broker listening on %s (topics %s, %s; data in %s)\n",
		addrs, kafka.TopicOrderExecution, kafka.TopicDLQ, dir); err != nil {
		return err
	}
	<-ctx.Done()
	logger.Info("kafka broker stopping")
	return nil
}
