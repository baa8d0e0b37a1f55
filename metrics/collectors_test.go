package metrics_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/metrics"
)

func TestWatchConsumerLagReportsUncommittedRecordsPerPartition(t *testing.T) {
	const topic, group = "order-execution", "orderflow-executor"
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, topic))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Close)
	client, err := kgo.NewClient(kgo.SeedBrokers(cluster.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(client.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Five records on partition 0, two on partition 1; the group committed up to 2 and 2.
	var records []*kgo.Record
	for i := range 7 {
		records = append(records, &kgo.Record{Topic: topic, Partition: int32(min(i/5, 1)), Value: []byte("{}")})
	}
	if err := client.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	offsets := kadm.Offsets{}
	offsets.Add(kadm.Offset{Topic: topic, Partition: 0, At: 2, LeaderEpoch: -1})
	offsets.Add(kadm.Offset{Topic: topic, Partition: 1, At: 2, LeaderEpoch: -1})
	if _, err := kadm.NewClient(client).CommitOffsets(ctx, group, offsets); err != nil {
		t.Fatalf("commit: %v", err)
	}

	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	if err := m.WatchConsumerLag(client, group); err != nil {
		t.Fatal(err)
	}
	if err := m.WatchConsumerLag(client, group); err == nil {
		t.Error("watching the same group twice did not fail")
	}
	series := gather(t, reg)
	for partition, want := range map[string]float64{"0": 3, "1": 0} {
		labels := map[string]string{"group": group, "topic": topic, "partition": partition}
		if got := value(t, series, "orderflow_consumer_lag", labels); got != want {
			t.Errorf("lag of partition %s = %v, want %v", partition, got, want)
		}
	}
}

func TestAScrapeWithTheDatabaseDownServesEverythingElse(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://nobody@127.0.0.1:1/none?connect_timeout=1")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	if err := m.WatchDatabase(pool); err != nil {
		t.Fatal(err)
	}
	m.ObserveDeadLetter()

	rec := httptest.NewRecorder()
	m.Handler(nil).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	if rec.Code != http.StatusOK {
		t.Fatalf("status %d: %s", rec.Code, body)
	}
	if !strings.Contains(body, "orderflow_dlq_messages_total 1") {
		t.Errorf("the other metrics are missing:\n%s", body)
	}
	if strings.Contains(body, "orderflow_outbox_backlog ") || strings.Contains(body, "orderflow_parked_orders ") {
		t.Errorf("gauges served without a database:\n%s", body)
	}
}

func TestWatchEventStreamsReportsTheHubAtScrape(t *testing.T) {
	reg := prometheus.NewRegistry()
	m := metrics.New(reg)
	open, dropped := 3, int64(1)
	if err := m.WatchEventStreams(func() (int, int64) { return open, dropped }); err != nil {
		t.Fatal(err)
	}
	if got := value(t, gather(t, reg), "orderflow_event_streams", nil); got != 3 {
		t.Errorf("orderflow_event_streams = %v, want 3", got)
	}
	open, dropped = 1, 4 // read again at the next scrape
	series := gather(t, reg)
	if got := value(t, series, "orderflow_event_streams", nil); got != 1 {
		t.Errorf("orderflow_event_streams = %v, want 1", got)
	}
	if got := value(t, series, "orderflow_event_streams_dropped_total", nil); got != 4 {
		t.Errorf("orderflow_event_streams_dropped_total = %v, want 4", got)
	}
}
