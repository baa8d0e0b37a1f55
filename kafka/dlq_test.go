package kafka_test

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/orderflow/orderflow/kafka"
)

// newCluster starts an in-process broker with both topics on two partitions and returns
// a client that produces to chosen partitions.
func newCluster(t *testing.T) *kgo.Client {
	t.Helper()
	_, cl := newControlledCluster(t)
	return cl
}

// newControlledCluster is newCluster that also returns the broker, to control it.
func newControlledCluster(t *testing.T) (*kfake.Cluster, *kgo.Client) {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(2, kafka.TopicOrderExecution, kafka.TopicDLQ))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	return c, cl
}

// deadLetter builds a DLQ record as the consumer writes it.
func deadLetter(partition int32, key, value, cause string, srcPartition int32, srcOffset int64, at time.Time) *kgo.Record {
	return &kgo.Record{
		Topic: kafka.TopicDLQ, Partition: partition, Key: []byte(key), Value: []byte(value),
		Headers: []kgo.RecordHeader{
			{Key: "error", Value: []byte(cause)},
			{Key: "source-topic", Value: []byte(kafka.TopicOrderExecution)},
			{Key: "source-partition", Value: []byte(strconv.Itoa(int(srcPartition)))},
			{Key: "source-offset", Value: []byte(strconv.FormatInt(srcOffset, 10))},
			{Key: "failed-at", Value: []byte(at.Format(time.RFC3339Nano))},
		},
	}
}

func produce(t *testing.T, cl *kgo.Client, records ...*kgo.Record) {
	t.Helper()
	if err := cl.ProduceSync(context.Background(), records...).FirstErr(); err != nil {
		t.Fatal(err)
	}
}

// list lists with a deadline, so a listing that never ends fails instead of hanging.
func list(t *testing.T, cl *kgo.Client) []kafka.DeadLetter {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	letters, err := kafka.ListDeadLetters(ctx, cl)
	if err != nil {
		t.Fatalf("ListDeadLetters: %v", err)
	}
	return letters
}

func TestListDeadLettersOnAnEmptyTopicReturnsNone(t *testing.T) {
	cl := newCluster(t)
	if letters := list(t, cl); len(letters) != 0 {
		t.Errorf("got %d letters from an empty DLQ, want none", len(letters))
	}
}

func TestListDeadLettersReadsEveryPartitionWithItsHeaders(t *testing.T) {
	cl := newCluster(t)
	at := time.Date(2026, 11, 25, 8, 10, 20, 791289412, time.UTC)
	produce(t, cl,
		deadLetter(0, "a", "not json", "bad a", 3, 1, at),
		deadLetter(1, "b", "{", "bad b", 2, 7, at),
		deadLetter(1, "c", "[]", "bad c", 2, 9, at.Add(time.Second)),
	)
	letters := list(t, cl)
	if len(letters) != 3 {
		t.Fatalf("got %d letters, want 3: %+v", len(letters), letters)
	}
	want := []kafka.DeadLetter{
		{Partition: 0, Offset: 0, Key: []byte("a"), Value: []byte("not json"), Error: "bad a",
			SourceTopic: kafka.TopicOrderExecution, SourcePartition: 3, SourceOffset: 1, FailedAt: at},
		{Partition: 1, Offset: 0, Key: []byte("b"), Value: []byte("{"), Error: "bad b",
			SourceTopic: kafka.TopicOrderExecution, SourcePartition: 2, SourceOffset: 7, FailedAt: at},
		{Partition: 1, Offset: 1, Key: []byte("c"), Value: []byte("[]"), Error: "bad c",
			SourceTopic: kafka.TopicOrderExecution, SourcePartition: 2, SourceOffset: 9, FailedAt: at.Add(time.Second)},
	}
	for i, w := range want {
		g := letters[i]
		if g.Partition != w.Partition || g.Offset != w.Offset || string(g.Key) != string(w.Key) ||
			string(g.Value) != string(w.Value) || g.Error != w.Error || g.SourceTopic != w.SourceTopic ||
			g.SourcePartition != w.SourcePartition || g.SourceOffset != w.SourceOffset || !g.FailedAt.Equal(w.FailedAt) {
			t.Errorf("letter %d = %+v, want %+v", i, g, w)
		}
	}
}

func TestListDeadLettersEndsWhenSomePartitionsAreEmpty(t *testing.T) {
	cl := newCluster(t)
	// Partition 0 stays empty; a letter without headers (written by hand) is still listed.
	produce(t, cl, &kgo.Record{Topic: kafka.TopicDLQ, Partition: 1, Key: []byte("k"), Value: []byte("v")})
	letters := list(t, cl)
	if len(letters) != 1 {
		t.Fatalf("got %d letters, want 1: %+v", len(letters), letters)
	}
	if d := letters[0]; d.Partition != 1 || d.Offset != 0 || d.SourcePartition != -1 || d.SourceOffset != -1 || !d.FailedAt.IsZero() {
		t.Errorf("letter = %+v, want partition 1 offset 0 with unknown source and time", d)
	}
}

func TestListDeadLettersStopsWhenTheContextEnds(t *testing.T) {
	c, cl := newControlledCluster(t)
	produce(t, cl, deadLetter(0, "a", "x", "bad", 0, 0, time.Now()))
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	// The broker holds every fetch until the context ends, as a stalled broker would:
	// the offsets are listed, but the records never come.
	c.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		c.KeepControl()
		c.SleepControl(func() { <-ctx.Done() })
		return nil, nil, false
	})
	done := make(chan error, 1)
	go func() {
		_, err := kafka.ListDeadLetters(ctx, cl)
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("ListDeadLetters = %v, want the context's deadline", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("ListDeadLetters still running 10s after its context ended")
	}
}

func TestReplayDeadLettersPublishesKeyAndValueToOrderExecution(t *testing.T) {
	cl := newCluster(t)
	msg := kafka.ExecutionMessage{OrderID: 42, UserID: 1, InstrumentID: 101, Side: "BUY", Kind: "LIMIT"}
	produce(t, cl,
		deadLetter(0, "x", "not json", "bad", 0, 5, time.Now()),
		deadLetter(1, msg.Key(), string(msg.Encode()), "temporal unavailable", 1, 8, time.Now()),
	)
	letters := list(t, cl)
	if len(letters) != 2 {
		t.Fatalf("got %d letters, want 2", len(letters))
	}
	replay := letters[1:] // only the valid one
	// The replaying client partitions by key, as the relay does.
	producer, err := kgo.NewClient(kgo.SeedBrokers(cl.OptValue(kgo.SeedBrokers).([]string)...))
	if err != nil {
		t.Fatal(err)
	}
	defer producer.Close()
	replayed, err := kafka.ReplayDeadLetters(context.Background(), producer, replay)
	if err != nil {
		t.Fatalf("ReplayDeadLetters: %v", err)
	}
	if len(replayed) != 1 || replayed[0].Letter.Offset != replay[0].Offset {
		t.Fatalf("replayed = %+v, want the one letter", replayed)
	}

	consumer, err := kgo.NewClient(kgo.SeedBrokers(cl.OptValue(kgo.SeedBrokers).([]string)...),
		kgo.ConsumeTopics(kafka.TopicOrderExecution), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	fetches := consumer.PollFetches(ctx)
	if err := fetches.Err0(); err != nil {
		t.Fatalf("consume order-execution: %v", err)
	}
	records := fetches.Records()
	if len(records) != 1 {
		t.Fatalf("order-execution holds %d records, want the 1 replayed", len(records))
	}
	r := records[0]
	if string(r.Key) != msg.Key() || string(r.Value) != string(msg.Encode()) {
		t.Errorf("replayed record = key %q value %q, want key %q value %q", r.Key, r.Value, msg.Key(), msg.Encode())
	}
	if r.Partition != replayed[0].Partition || r.Offset != replayed[0].Offset {
		t.Errorf("record at %d/%d, ReplayDeadLetters said %d/%d", r.Partition, r.Offset, replayed[0].Partition, replayed[0].Offset)
	}
	wantHeader := "order-execution.dlq/1/0"
	if len(r.Headers) != 1 || r.Headers[0].Key != "replayed-from" || string(r.Headers[0].Value) != wantHeader {
		t.Errorf("headers = %v, want replayed-from: %s", r.Headers, wantHeader)
	}
}
