package main

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/kafka"
)

// producer returns a plain Kafka client, as any other service would use.
func (s *stack) producer(t *testing.T, opts ...kgo.Opt) *kgo.Client {
	t.Helper()
	c, err := kgo.NewClient(append([]kgo.Opt{kgo.SeedBrokers(s.brokers...)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// insertWithoutOutbox writes an order as the API would but leaves out its outbox row, as
// if the Kafka message were still on its way.
func (s *stack) insertWithoutOutbox(t *testing.T, user, instrument int64) int64 {
	t.Helper()
	ctx := context.Background()
	var id int64
	err := s.pool.QueryRow(ctx, `
		INSERT INTO orders (user_id, instrument_id, side, kind, price, quantity, remaining_quantity,
		                    status, time_in_force, idempotency_key, request_hash)
		VALUES ($1, $2, 'BUY', 'LIMIT', 10, 5, 5, 'CREATED', 'GTC', 'late-' || $2::bigint, 'x')
		RETURNING id`, user, instrument).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `INSERT INTO order_events (order_id, seq, event_type, to_status)
		VALUES ($1, 1, 'ORDER_PLACED', 'CREATED')`, id); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestACancelThatArrivesBeforeTheKafkaMessageWins(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	id := s.insertWithoutOutbox(t, 1, inst)

	code, v := s.cancel(t, id)
	if code != http.StatusOK || v.OrderStatus != "CANCELLED" {
		t.Fatalf("cancel = %d %s, want 200 CANCELLED", code, v.OrderStatus)
	}
	// The late message now arrives, twice: it starts nothing and changes nothing.
	msg := kafka.ExecutionMessage{OrderID: id, UserID: 1, InstrumentID: inst, Side: "BUY", Kind: "LIMIT"}
	rec := &kgo.Record{Topic: kafka.TopicOrderExecution, Key: []byte(msg.Key()), Value: msg.Encode()}
	p := s.producer(t)
	if err := p.ProduceSync(context.Background(), rec, rec).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s.waitConsumed(t, rec.Partition, rec.Offset)
	if got := s.get(t, id); got.OrderStatus != "CANCELLED" {
		t.Errorf("after the late message the order is %s, want CANCELLED", got.OrderStatus)
	}
	if n := s.runs(t, id); n != 1 {
		t.Errorf("%d runs, want 1", n)
	}
	want := []string{"ORDER_PLACED", "CANCEL_REQUESTED", "CANCELLED"}
	if ev := s.eventTypes(t, id); !equal(ev, want) {
		t.Errorf("events = %v, want %v", ev, want)
	}
	s.recordHistory(t, id, "cancel_before_start")
}

func TestEveryMessageDeliveredTwiceExecutesOnce(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	sell := s.mustPlace(t, limit(1, inst, "SELL", "50", 3))
	s.waitStatus(t, sell, "EXECUTING")
	buy := s.mustPlace(t, market(2, inst, "BUY", 3))
	s.waitStatus(t, buy, "EXECUTED")

	p := s.producer(t)
	var last *kgo.Record
	for _, id := range []int64{sell, buy} {
		msg := kafka.ExecutionMessage{OrderID: id, InstrumentID: inst}
		last = &kgo.Record{Topic: kafka.TopicOrderExecution, Key: []byte(msg.Key()), Value: msg.Encode()}
		if err := p.ProduceSync(context.Background(), last).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	s.waitConsumed(t, last.Partition, last.Offset)
	if tr := s.trades(t, buy); len(tr) != 1 {
		t.Errorf("%d trades after redelivery, want 1", len(tr))
	}
	for _, id := range []int64{sell, buy} {
		if n := s.runs(t, id); n != 1 {
			t.Errorf("order %d: %d runs, want 1", id, n)
		}
	}
}

func TestAnUndecodableMessageGoesToTheDLQAndThePartitionKeepsFlowing(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	p := s.producer(t, kgo.RecordPartitioner(kgo.ManualPartitioner()))
	bad := &kgo.Record{Topic: kafka.TopicOrderExecution, Partition: 0, Key: []byte("poison"), Value: []byte("{not json")}
	if err := p.ProduceSync(context.Background(), bad).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// A good message behind it on the same partition is still executed.
	id := s.insertWithoutOutbox(t, 1, inst)
	msg := kafka.ExecutionMessage{OrderID: id, UserID: 1, InstrumentID: inst, Side: "BUY", Kind: "LIMIT"}
	good := &kgo.Record{Topic: kafka.TopicOrderExecution, Partition: 0, Key: []byte(msg.Key()), Value: msg.Encode()}
	if err := p.ProduceSync(context.Background(), good).FirstErr(); err != nil {
		t.Fatal(err)
	}
	s.waitStatus(t, id, "EXECUTING")

	dlq := s.producer(t, kgo.ConsumeTopics(kafka.TopicDLQ), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for {
		fetches := dlq.PollFetches(ctx)
		if ctx.Err() != nil {
			t.Fatal("the poison message never reached the DLQ")
		}
		for _, r := range fetches.Records() {
			if string(r.Key) != "poison" {
				continue
			}
			headers := map[string]string{}
			for _, h := range r.Headers {
				headers[h.Key] = string(h.Value)
			}
			if string(r.Value) != "{not json" || headers["error"] == "" || headers["source-offset"] == "" {
				t.Errorf("DLQ record = %q with headers %v, want the original value, the error and its source", r.Value, headers)
			}
			return
		}
	}
}

// waitConsumed waits until the executor group has committed past offset on partition.
func (s *stack) waitConsumed(t *testing.T, partition int32, offset int64) {
	t.Helper()
	adm := kadm.NewClient(s.producer(t))
	deadline := time.Now().Add(30 * time.Second)
	for {
		offsets, err := adm.FetchOffsets(context.Background(), kafka.ConsumerGroup)
		if err == nil {
			if o, ok := offsets.Lookup(kafka.TopicOrderExecution, partition); ok && o.At > offset {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("partition %d offset %d not consumed after 30s (last error %v)", partition, offset, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
