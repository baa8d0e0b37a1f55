package kafka_test

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
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
	starter := &refusingStarter{refuse: map[int64]bool{2: true}, started: map[int64]bool{}}
	defer runConsumer(t, c, starter)()

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

// runConsumer runs a consumer over c's broker with starter and returns the function that
// stops it and waits for Run to return.
func runConsumer(t *testing.T, c *kfake.Cluster, starter kafka.Starter, limits ...int) (stop func()) {
	t.Helper()
	consumer, err := kafka.NewConsumer(starter, slog.New(slog.DiscardHandler), kgo.SeedBrokers(c.ListenAddrs()...))
	if err != nil {
		t.Fatal(err)
	}
	if len(limits) == 2 {
		consumer.SetLimits(limits[0], limits[1])
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- consumer.Run(ctx) }()
	return func() {
		cancel()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			t.Error("the consumer did not stop within 15s of its context ending")
		}
	}
}

// holdingStarter starts every run, but holds the start of the order in hold until
// release is closed or the start's context ends.
type holdingStarter struct {
	hold    int64
	release chan struct{}
	mu      sync.Mutex
	tried   map[int64]bool
	started map[int64]bool
}

func newHoldingStarter(hold int64) *holdingStarter {
	return &holdingStarter{hold: hold, release: make(chan struct{}), tried: map[int64]bool{}, started: map[int64]bool{}}
}

func (s *holdingStarter) Start(ctx context.Context, r workflows.StartRequest) (bool, error) {
	s.mu.Lock()
	s.tried[r.OrderID] = true
	s.mu.Unlock()
	if r.OrderID == s.hold {
		select {
		case <-s.release:
		case <-ctx.Done():
			return false, ctx.Err()
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.started[r.OrderID] = true
	return true, nil
}

func (s *holdingStarter) has(m func(*holdingStarter) map[int64]bool, ids ...int64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, id := range ids {
		if !m(s)[id] {
			return false
		}
	}
	return true
}

func tried(s *holdingStarter) map[int64]bool   { return s.tried }
func started(s *holdingStarter) map[int64]bool { return s.started }

// waitFor fails t if cond is not true within 15s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 15s", what)
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
}

func produceOrders(t *testing.T, producer *kgo.Client, ids ...int64) {
	t.Helper()
	for _, id := range ids {
		msg := kafka.ExecutionMessage{OrderID: id, UserID: 1, InstrumentID: 101, Side: "BUY", Kind: "LIMIT"}
		produce(t, producer, &kgo.Record{Topic: kafka.TopicOrderExecution, Partition: 0, Key: []byte(msg.Key()), Value: msg.Encode()})
	}
}

func TestASlowStartHoldsUpNoLaterRecordAndNoCommitPassesIt(t *testing.T) {
	c, producer := newControlledCluster(t)
	first := newHoldingStarter(1)
	stop := runConsumer(t, c, first)
	produceOrders(t, producer, 1)
	waitFor(t, "order 1's start was not tried", func() bool { return first.has(tried, 1) })
	// Records that arrive while order 1's start is held, on the same partition.
	produceOrders(t, producer, 2, 3, 4, 5)
	waitFor(t, "orders 2-5 were not started while order 1's start was held", func() bool { return first.has(started, 2, 3, 4, 5) })
	// A worker that stops (or dies) now must leave order 1 uncommitted, although every
	// record after it started and the commit interval may have passed.
	stop()
	if first.has(started, 1) {
		t.Fatal("order 1 started although its start was held")
	}
	second := newHoldingStarter(0)
	defer runConsumer(t, c, second)()
	waitFor(t, "order 1 did not come again to the next consumer", func() bool { return second.has(started, 1) })
}

func TestAConsumerThatStopsCommitsWhatItStarted(t *testing.T) {
	c, producer := newControlledCluster(t)
	first := newHoldingStarter(0)
	stop := runConsumer(t, c, first)
	produceOrders(t, producer, 1, 2, 3)
	waitFor(t, "orders 1-3 were not started", func() bool { return first.has(started, 1, 2, 3) })
	stop()
	second := newHoldingStarter(0)
	defer runConsumer(t, c, second)()
	produceOrders(t, producer, 4)
	waitFor(t, "order 4 was not started", func() bool { return second.has(started, 4) })
	if second.has(tried, 1) || second.has(tried, 2) || second.has(tried, 3) {
		t.Error("the next consumer was given orders the first had started: their offsets were not committed on leaving")
	}
}

func TestAConsumerHoldsABoundedNumberOfRecordsBehindAnUnfinishedStart(t *testing.T) {
	c, producer := newControlledCluster(t)
	s := newHoldingStarter(1)
	defer runConsumer(t, c, s, 2, 4)()
	produceOrders(t, producer, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10)
	waitFor(t, "orders 2-4 were not started behind held order 1", func() bool { return s.has(started, 2, 3, 4) })
	// Order 1 and three finished ones are held (4): nothing more is fetched. A wait that
	// proves a negative needs time to pass; the poll loop has had many chances.
	deadline := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(deadline) {
		if s.has(tried, 6) {
			t.Fatal("order 6 was fetched while 4 records were held behind order 1")
		}
		time.Sleep(10 * time.Millisecond) // poll interval
	}
	close(s.release)
	waitFor(t, "every order started once order 1 was", func() bool { return s.has(started, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10) })
}
