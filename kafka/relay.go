package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/queries"
)

// Relay publishes the outbox to Kafka. Several relays may run at once: each claims rows
// with a lease (SKIP LOCKED) and deletes them only when the publish succeeded, so a
// message is published at least once and never lost; consumers treat duplicates as
// no-ops.
type Relay struct {
	pool   *pgxpool.Pool
	client *kgo.Client
	log    *slog.Logger
	batch  int32
	// sweep is how long the relay waits for a notification before looking anyway; it
	// bounds the delay of rows whose wake-up was lost (the LISTEN connection was down, or
	// the API stopped between its commit and its NOTIFY).
	sweep time.Duration
	obs   RelayObserver // nil: not observed
}

// RelayObserver is told about the relay's work, e.g. to export metrics.
type RelayObserver interface {
	// ObserveOutboxPublished is called once per outbox row published and deleted, with
	// the row's created_at.
	ObserveOutboxPublished(createdAt time.Time)
}

// NewRelay returns a relay that publishes with client.
func NewRelay(pool *pgxpool.Pool, client *kgo.Client, logger *slog.Logger) *Relay {
	return &Relay{pool: pool, client: client, log: logger, batch: 500, sweep: time.Second}
}

// WithObserver makes the relay report to o and returns it; call it before Run.
func (r *Relay) WithObserver(o RelayObserver) *Relay {
	r.obs = o
	return r
}

// Run publishes until ctx ends. It wakes on the outbox's NOTIFY, so a committed order is
// on the topic within milliseconds, and backs off while Kafka or PostgreSQL is down.
func (r *Relay) Run(ctx context.Context) error {
	backoff := newBackoff(100*time.Millisecond, 5*time.Second)
	for ctx.Err() == nil {
		err := r.listen(ctx)
		if ctx.Err() != nil {
			break
		}
		r.log.Warn("outbox relay interrupted; retrying", "error", err)
		if !backoff.wait(ctx) {
			break
		}
	}
	return nil
}

// listen holds one connection with LISTEN outbox and drains the outbox whenever it is
// notified, returning on the first error.
func (r *Relay) listen(ctx context.Context) error {
	conn, err := r.pool.Acquire(ctx)
	if err != nil {
		return fmt.Errorf("acquire: %w", err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, "LISTEN "+OutboxChannel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	defer func() {
		// A pooled connection must not keep listening after we give it back.
		_, _ = conn.Exec(context.WithoutCancel(ctx), "UNLISTEN "+OutboxChannel)
	}()
	for {
		// Drain before waiting: rows committed before LISTEN took effect had no one to
		// notify.
		for {
			n, err := r.PublishBatch(ctx)
			if err != nil {
				return err
			}
			if n < int(r.batch) {
				break
			}
		}
		waitCtx, cancel := context.WithTimeout(ctx, r.sweep)
		_, err := conn.Conn().WaitForNotification(waitCtx)
		cancel()
		if err != nil && !errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("wait for notification: %w", err)
		}
	}
}

// outboxLease is how long a claimed outbox row is its relay's. It must outlast the
// producer's delivery timeout (RecordDeliveryTimeout, 30s in the worker), so a row is
// not published by two relays at once while the first still waits for Kafka.
const outboxLease = time.Minute

// PublishBatch publishes up to one batch of the oldest outbox rows and deletes them,
// returning how many it published. It claims the rows with a lease in one statement and
// holds no transaction while it waits for Kafka. On a publish error it releases them, so
// the next attempt takes them again; rows whose deletion fails after the publish are
// published again once their lease runs out (at least once).
func (r *Relay) PublishBatch(ctx context.Context) (int, error) {
	q := queries.New(r.pool)
	rows, err := q.ClaimOutbox(ctx, queries.ClaimOutboxParams{LeaseSeconds: outboxLease.Seconds(), MaxMessages: r.batch})
	if err != nil {
		return 0, fmt.Errorf("claim outbox: %w", err)
	}
	if len(rows) == 0 {
		return 0, nil
	}
	slices.SortFunc(rows, func(a, b queries.Outbox) int { return cmp.Compare(a.ID, b.ID) })
	records := make([]*kgo.Record, len(rows))
	ids := make([]int64, len(rows))
	for i, row := range rows {
		records[i] = &kgo.Record{Topic: row.Topic, Key: []byte(row.Key), Value: row.Payload}
		ids[i] = row.ID
	}
	if err := r.client.ProduceSync(ctx, records...).FirstErr(); err != nil {
		releaseCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
		defer cancel()
		if rerr := q.ReleaseOutbox(releaseCtx, ids); rerr != nil {
			r.log.Warn("outbox rows not released; they wait for their lease to run out", "error", rerr)
		}
		return 0, fmt.Errorf("publish: %w", err)
	}
	if err := q.DeleteOutbox(ctx, ids); err != nil {
		return 0, fmt.Errorf("delete published outbox rows: %w", err)
	}
	if r.obs != nil {
		for _, row := range rows {
			r.obs.ObserveOutboxPublished(row.CreatedAt)
		}
	}
	return len(rows), nil
}

// backoff waits exponentially longer between attempts, up to max.
type backoff struct {
	next, max time.Duration
}

func newBackoff(initial, max time.Duration) *backoff {
	return &backoff{next: initial, max: max}
}

// wait sleeps for the next interval, reporting false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.next)
	defer t.Stop()
	b.next = min(2*b.next, b.max)
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
