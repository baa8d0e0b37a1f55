package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/workflows"
)

// ConsumerGroup is the group that executes orders.
const ConsumerGroup = "orderflow-executor"

// Starter starts an order's workflow run; a run that already exists is success.
type Starter interface {
	Start(ctx context.Context, r workflows.StartRequest) (started bool, err error)
}

// Consumer turns order-execution messages into workflow runs. It commits a partition's
// offset only after every message before it started its run (or went to the DLQ), so a
// crash replays messages rather than losing them, and replays start nothing new.
type Consumer struct {
	client      *kgo.Client
	starter     Starter
	log         *slog.Logger
	concurrency int
	obs         ConsumerObserver // nil: not observed
}

// ConsumerObserver is told about the consumer's work, e.g. to export metrics. Its
// methods are called concurrently.
type ConsumerObserver interface {
	// ObserveWorkflowStart is called when a record's start is acknowledged: started
	// reports whether it made a new run (false: the run already existed). recordTime
	// is the record's timestamp.
	ObserveWorkflowStart(recordTime time.Time, started bool)
	// ObserveWorkflowStartError is called for each failed start attempt (retried).
	ObserveWorkflowStartError()
	// ObserveDeadLetter is called when a record has been sent to the dead-letter topic.
	ObserveDeadLetter()
}

// SessionTimeout is how long the group waits for a member that stopped heartbeating
// (a worker killed or cut off) before giving its partitions to the others: their
// messages wait that long. kgo's default is 45 s; heartbeats run on their own goroutine,
// every 3 s, so a busy worker is not mistaken for a dead one.
const SessionTimeout = 10 * time.Second

// ConsumerOptions returns the client options the consumer needs on top of the brokers:
// a group with manual commits that blocks rebalances while a poll's records are in hand.
func ConsumerOptions() []kgo.Opt {
	return []kgo.Opt{
		kgo.ConsumerGroup(ConsumerGroup),
		kgo.SessionTimeout(SessionTimeout),
		kgo.ConsumeTopics(TopicOrderExecution),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit(),
		kgo.BlockRebalanceOnPoll(),
	}
}

// NewConsumer returns a consumer over client, which must have been made with
// ConsumerOptions.
func NewConsumer(client *kgo.Client, starter Starter, logger *slog.Logger) *Consumer {
	return &Consumer{client: client, starter: starter, log: logger, concurrency: 32}
}

// WithObserver makes the consumer report to o and returns it; call it before Run.
func (c *Consumer) WithObserver(o ConsumerObserver) *Consumer {
	c.obs = o
	return c
}

// Run consumes until ctx ends.
func (c *Consumer) Run(ctx context.Context) error {
	// A poll blocks rebalances until AllowRebalance; leaving the group on close is one,
	// so it must be allowed however Run ends.
	defer c.client.AllowRebalance()
	for {
		fetches := c.client.PollRecords(ctx, 1000)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			c.log.Warn("fetch error", "topic", topic, "partition", p, "error", err)
		})
		if err := c.process(ctx, fetches.Records()); err != nil {
			// Only ctx ending stops process; the uncommitted records are redelivered.
			return nil
		}
		if err := c.client.CommitUncommittedOffsets(ctx); err != nil && ctx.Err() == nil {
			// The records are processed; a failed commit only means they come again.
			c.log.Warn("commit offsets", "error", err)
		}
		c.client.AllowRebalance()
	}
}

// process handles one poll's records concurrently; it returns an error only when ctx
// ends before every record is handled.
func (c *Consumer) process(ctx context.Context, records []*kgo.Record) error {
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(c.concurrency)
	for _, rec := range records {
		g.Go(func() error { return c.handle(gctx, rec) })
	}
	return g.Wait()
}

// handle starts the run for one record, retrying transient failures until ctx ends, and
// sends an undecodable record, or one whose start the server refuses for good, to the
// DLQ with the reason.
func (c *Consumer) handle(ctx context.Context, rec *kgo.Record) error {
	msg, err := DecodeExecution(rec.Value)
	if err != nil {
		return c.deadLetter(ctx, rec, err)
	}
	log := c.log.With("order_id", msg.OrderID, "workflow_id", workflows.OrderWorkflowID(msg.OrderID, msg.RunKey))
	req := workflows.StartRequest{
		OrderID: msg.OrderID, RunKey: msg.RunKey, UserID: msg.UserID, InstrumentID: msg.InstrumentID, Side: msg.Side, Kind: msg.Kind,
	}
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		started, err := c.starter.Start(ctx, req)
		if err == nil {
			log.Debug("order run started", "started", started, "partition", rec.Partition, "offset", rec.Offset)
			if c.obs != nil {
				c.obs.ObserveWorkflowStart(rec.Timestamp, started)
			}
			return nil
		}
		if c.obs != nil && ctx.Err() == nil {
			c.obs.ObserveWorkflowStartError()
		}
		if errors.Is(err, workflows.ErrStartRefused) {
			// No retry can start it: retrying would hold the partition (and, with
			// BlockRebalanceOnPoll, the group's rebalances) for ever.
			return c.deadLetter(ctx, rec, err)
		}
		log.Warn("start order run; retrying", "error", err)
		if !b.wait(ctx) {
			return ctx.Err()
		}
	}
}

// deadLetter publishes rec to the DLQ with the error and where it came from, retrying
// until the DLQ has it, so the partition can move past it without losing it.
func (c *Consumer) deadLetter(ctx context.Context, rec *kgo.Record, cause error) error {
	dlq := &kgo.Record{
		Topic: TopicDLQ,
		Key:   rec.Key,
		Value: rec.Value,
		Headers: []kgo.RecordHeader{
			{Key: "error", Value: []byte(cause.Error())},
			{Key: "source-topic", Value: []byte(rec.Topic)},
			{Key: "source-partition", Value: []byte(strconv.Itoa(int(rec.Partition)))},
			{Key: "source-offset", Value: []byte(strconv.FormatInt(rec.Offset, 10))},
			{Key: "failed-at", Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		},
	}
	c.log.Error("message sent to DLQ", "partition", rec.Partition, "offset", rec.Offset, "error", cause)
	b := newBackoff(100*time.Millisecond, 5*time.Second)
	for {
		err := c.client.ProduceSync(ctx, dlq).FirstErr()
		if err == nil {
			if c.obs != nil {
				c.obs.ObserveDeadLetter()
			}
			return nil
		}
		if errors.Is(err, context.Canceled) || !b.wait(ctx) {
			return fmt.Errorf("dead-letter: %w", err)
		}
		c.log.Warn("publish to DLQ; retrying", "error", err)
	}
}
