package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/kafka"
	"github.com/orderflow/orderflow/workflows"
)

// refusingStarter starts every run but those of the orders in refuse, whose start the
// server refuses for good.
type refusingStarter struct {
	mu      sync.Mutex
	refuse  map[int64]bool
	started map[int64]bool
}

func (s *refusingStarter) Start(_ context.Context, r workflows.StartRequest) (bool, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.refuse[r.OrderID] {
		return false, fmt.Errorf("start order-%d: %w: search attribute OrderId is not defined", r.OrderID, workflows.ErrStartRefused)
	}
	s.started[r.OrderID] = true
	return true, nil
}

func (s *refusingStarter) has(id int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.started[id]
}

func TestARunTheServerRefusesGoesToTheDLQAndThePartitionFlows(t *testing.T) {
	c, producer := newControlledCluster(t)
	for id := int64(1); id <= 3; id++ {
		msg := kafka.ExecutionMessage{OrderID: id, UserID: 1, InstrumentID: 101, Side: "BUY", Kind: "LIMIT"}
		produce(t, producer, &kgo.Record{Topic: kafka.TopicOrderExecution, Partition: 0, Key: []byte(msg.Key()), Value: msg.Encode()})
	}
	consumerClient, err := kgo.NewClient(append(kafka.ConsumerOptions(), kgo.SeedBrokers(c.ListenAddrs()...))...)
	if err != nil {
		t.Fatal(err)
	}
	defer consumerClient.Close()
	starter := &refusingStarter{refuse: map[int64]bool{2: true}, started: map[int64]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- kafka.NewConsumer(consumerClient, starter, slog.New(slog.DiscardHandler)).Run(ctx) }()
	defer func() { cancel(); <-done }()

	deadline := time.Now().Add(15 * time.Second)
	for !starter.has(1) || !starter.has(3) {
		if time.Now().After(deadline) {
			t.Fatal("the orders after the refused one were not started within 15s")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	var letters []kafka.DeadLetter
	for len(letters) == 0 {
		letters = list(t, producer)
		if time.Now().After(deadline) {
			t.Fatal("the refused order did not reach the DLQ within 15s")
		}
	}
	if len(letters) != 1 || string(letters[0].Key) != "2" {
		t.Fatalf("dead letters = %+v, want order 2's message alone", letters)
	}
	if got := letters[0].Error; !strings.Contains(got, "not defined") {
		t.Errorf("dead letter's error = %q, want the server's reason", got)
	}
}
