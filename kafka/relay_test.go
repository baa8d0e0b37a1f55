package kafka_test

import (
	"context"
	"log/slog"
	"net"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/kafka"
	"github.com/orderflow/orderflow/queries"
)

// postgres is started by the first test that needs it; TestMain stops it.
var postgres struct {
	once sync.Once
	pg   *devstack.Postgres
	stop func() error
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if postgres.stop != nil {
		_ = postgres.stop()
	}
	os.Exit(code)
}

func newDatabase(t *testing.T) *pgxpool.Pool {
	t.Helper()
	postgres.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		postgres.pg, postgres.stop, postgres.err = devstack.StartTempPostgres(ctx, "orderflow-kafka-test-")
	})
	if postgres.err != nil {
		t.Fatalf("start PostgreSQL: %v", postgres.err)
	}
	pool, err := postgres.pg.NewDatabase(context.Background(), "kafka_", 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// deadBroker returns an address where no broker listens.
func deadBroker(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	_ = l.Close()
	return addr
}

func TestTheRelayHoldsNoTransactionWhileKafkaIsDown(t *testing.T) {
	pool := newDatabase(t)
	ctx := context.Background()
	msg := kafka.ExecutionMessage{OrderID: 42, UserID: 1, InstrumentID: 101, Side: "BUY", Kind: "LIMIT"}
	if err := queries.New(pool).InsertOutbox(ctx, queries.InsertOutboxParams{Topic: kafka.TopicOrderExecution, Key: msg.Key(), Payload: msg.Encode()}); err != nil {
		t.Fatal(err)
	}
	down, err := kgo.NewClient(kgo.SeedBrokers(deadBroker(t)), kgo.RecordDeliveryTimeout(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer down.Close()
	relay := kafka.NewRelay(pool, down, slog.New(slog.DiscardHandler))

	done := make(chan error, 1)
	go func() {
		_, err := relay.PublishBatch(ctx)
		done <- err
	}()
	idle := 0
	for waiting := true; waiting; {
		select {
		case err = <-done:
			waiting = false
		default:
			var n int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
				WHERE datname = current_database() AND state LIKE 'idle in transaction%'`).Scan(&n); err != nil {
				t.Fatal(err)
			}
			idle = max(idle, n)
			time.Sleep(20 * time.Millisecond) // poll interval
		}
	}
	if err == nil {
		t.Fatal("PublishBatch succeeded with Kafka down")
	}
	if idle > 0 {
		t.Errorf("%d sessions idle in a transaction while the publish waited for Kafka, want none", idle)
	}

	// Kafka is back: the message is published and leaves the outbox.
	up := newCluster(t)
	n, err := kafka.NewRelay(pool, up, slog.New(slog.DiscardHandler)).PublishBatch(ctx)
	if err != nil || n != 1 {
		t.Fatalf("PublishBatch with Kafka back: %d, %v; want the message published", n, err)
	}
	var left int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&left); err != nil || left != 0 {
		t.Errorf("%d outbox rows left (%v), want none", left, err)
	}
}
