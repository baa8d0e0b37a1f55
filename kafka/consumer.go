package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/workflows"
)

// ConsumerGroup is the group that executes orders.
const ConsumerGroup = "orderflow-executor"

// Starter starts an order's workflow run; a run that already exists is success.
type Starter interface {
	Start(ctx context.Context, r workflows.StartRequest) (started bool, err error)
}

// Consumer turns order-execution messages into workflow runs. It keeps fetching while
// starts are in flight, so one slow start holds up no other record, and it commits a
// partition's offset only past records whose run started (or that went to the DLQ): a
// crash replays messages rather than losing them, and replays start nothing new.
type Consumer struct {
	client      *kgo.Client
	starter     Starter
	log         *slog.Logger
	concurrency int
	obs         ConsumerObserver // nil: not observed

	mu      sync.Mutex
	changed *sync.Cond // signalled when a record is done or a partition is dropped
	parts   map[topicPartition]*partitionProgress
	pending int // records tracked and not yet committable, over every partition
	// maxPending bounds the records held in memory behind a start that has not finished
	// (the oldest of its partition, so nothing after it can be committed): past it the
	// consumer fetches nothing more until that start ends.
	maxPending int
}

type topicPartition struct {
	topic     string
	partition int32
}

// partitionProgress is what a partition's records in flight have reached in one
// assignment. A partition that is revoked and assigned again gets a new one, so a start
// that finishes late cannot mark offsets in the new assignment.
type partitionProgress struct {
	pending []*kgo.Record      // in offset order, not yet committable
	done    map[int64]struct{} // offsets of pending records whose start finished
	running int                // records whose start is under way
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

// commitInterval is how often finished records' offsets are committed. A crash replays
// at most this much besides what was in flight, and a replay starts nothing new.
const commitInterval = time.Second

// NewConsumer returns a consumer in the group over a client made with opts (the
// brokers, TLS, SASL, a logger). Run closes the client; Close it only if Run is never
// called.
func NewConsumer(starter Starter, logger *slog.Logger, opts ...kgo.Opt) (*Consumer, error) {
	c := &Consumer{starter: starter, log: logger, concurrency: 32, parts: map[topicPartition]*partitionProgress{}, maxPending: 4096}
	c.changed = sync.NewCond(&c.mu)
	client, err := kgo.NewClient(append(opts,
		kgo.ConsumerGroup(ConsumerGroup),
		kgo.SessionTimeout(SessionTimeout),
		kgo.ConsumeTopics(TopicOrderExecution),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		// Only offsets the consumer marks are committed, every commitInterval and when a
		// partition is revoked, after its records in flight are done.
		kgo.AutoCommitMarks(),
		kgo.AutoCommitInterval(commitInterval),
		// Between a poll and the bookkeeping of its records no rebalance may run, or a
		// revoke could commit past records it did not know were in flight.
		kgo.BlockRebalanceOnPoll(),
		kgo.OnPartitionsRevoked(c.revoked),
		kgo.OnPartitionsLost(c.lost),
	)...)
	if err != nil {
		return nil, err
	}
	c.client = client
	return c, nil
}

// Close closes the client of a consumer whose Run was never called.
func (c *Consumer) Close() { c.client.Close() }

// WithObserver makes the consumer report to o and returns it; call it before Run.
func (c *Consumer) WithObserver(o ConsumerObserver) *Consumer {
	c.obs = o
	return c
}

// Run consumes until ctx ends, then waits for the starts in flight, commits what they
// reached and leaves the group.
func (c *Consumer) Run(ctx context.Context) error {
	defer c.client.Close()
	slots := make(chan struct{}, c.concurrency)
	var inFlight sync.WaitGroup
	defer inFlight.Wait()
	// A poll blocks rebalances until AllowRebalance; leaving the group on close is one,
	// so it must be allowed however Run ends.
	defer c.client.AllowRebalance()
	for {
		if !c.waitForRoom(ctx) {
			return nil
		}
		// Wait for a free slot, then take at most as many records as there are free.
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return nil
		}
		fetches := c.client.PollRecords(ctx, c.concurrency-len(slots)+1)
		if fetches.IsClientClosed() || ctx.Err() != nil {
			<-slots
			return nil
		}
		fetches.EachError(func(topic string, p int32, err error) {
			c.log.Warn("fetch error", "topic", topic, "partition", p, "error", err)
		})
		records := fetches.Records()
		progress := c.track(records)
		c.client.AllowRebalance()
		if len(records) == 0 {
			<-slots
		}
		for i, rec := range records {
			if i > 0 {
				slots <- struct{}{} // never blocks: the poll took no more than were free
			}
			inFlight.Add(1)
			go func() {
				defer inFlight.Done()
				defer func() { <-slots }()
				c.finish(progress[i], rec, c.handle(ctx, rec) == nil)
			}()
		}
	}
}

// track records records as in flight, in their partitions' offset order, and returns
// each one's partition progress.
func (c *Consumer) track(records []*kgo.Record) []*partitionProgress {
	c.mu.Lock()
	defer c.mu.Unlock()
	progress := make([]*partitionProgress, len(records))
	for i, rec := range records {
		tp := topicPartition{rec.Topic, rec.Partition}
		p := c.parts[tp]
		if p == nil {
			p = &partitionProgress{done: map[int64]struct{}{}}
			c.parts[tp] = p
		}
		p.pending = append(p.pending, rec)
		p.running++
		c.pending++
		progress[i] = p
	}
	return progress
}

// finish notes that rec's start is over, and if it started (ok) marks for commit the
// partition's offsets up to the first record not started. A record given up when Run
// stops is never marked, so nothing after it is committed and it comes again.
func (c *Consumer) finish(p *partitionProgress, rec *kgo.Record, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	defer c.changed.Broadcast()
	p.running--
	if !ok {
		return
	}
	p.done[rec.Offset] = struct{}{}
	var last *kgo.Record
	for len(p.pending) > 0 {
		head := p.pending[0]
		if _, ok := p.done[head.Offset]; !ok {
			break
		}
		delete(p.done, head.Offset)
		p.pending, last = p.pending[1:], head
		c.pending--
	}
	if last == nil || c.parts[topicPartition{rec.Topic, rec.Partition}] != p {
		return // nothing new is committable, or the partition is no longer ours
	}
	c.client.MarkCommitOffsets(map[string]map[int32]kgo.EpochOffset{
		last.Topic: {last.Partition: {Epoch: last.LeaderEpoch, Offset: last.Offset + 1}},
	})
}

// revoked waits until the revoked partitions' records in flight are done, so the commit
// that follows covers them, then commits every marked offset. Starts retry until they
// succeed, so while Temporal is down a rebalance waits, as it must for nothing to be
// started twice at once or committed unstarted.
func (c *Consumer) revoked(ctx context.Context, cl *kgo.Client, revoked map[string][]int32) {
	c.mu.Lock()
	for topic, partitions := range revoked {
		for _, partition := range partitions {
			tp := topicPartition{topic, partition}
			for c.parts[tp] != nil && c.parts[tp].running > 0 {
				c.changed.Wait()
			}
			c.drop(tp)
		}
	}
	c.mu.Unlock()
	if err := cl.CommitMarkedOffsets(ctx); err != nil {
		// The records are started; a failed commit only means they come again.
		c.log.Warn("commit offsets of revoked partitions", "error", err)
	}
}

// lost forgets partitions taken from the member without a revoke (it was thrown out of
// the group): their offsets can no longer be committed, so their records come again to
// whoever has them now, and starts still in flight here are no-ops there.
func (c *Consumer) lost(_ context.Context, _ *kgo.Client, lost map[string][]int32) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for topic, partitions := range lost {
		for _, partition := range partitions {
			c.drop(topicPartition{topic, partition})
		}
	}
}

// drop forgets a partition's progress; c.mu is held.
func (c *Consumer) drop(tp topicPartition) {
	if p := c.parts[tp]; p != nil {
		c.pending -= len(p.pending)
		delete(c.parts, tp)
		c.changed.Broadcast()
	}
}

// waitForRoom waits while c.maxPending records are held, reporting false if ctx ended.
// Every record's end broadcasts, and once ctx ends every start in flight ends.
func (c *Consumer) waitForRoom(ctx context.Context) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.pending >= c.maxPending && ctx.Err() == nil {
		c.changed.Wait()
	}
	return ctx.Err() == nil
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
