package bench

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// settledStatuses are the statuses in which an order has gone all the way through the
// system: terminal, or resting on the book (EXECUTING, PARTIALLY_FILLED), which the
// Execute step only ever commits together with its matching.
var settledStatuses = []string{
	"EXECUTING", "PARTIALLY_FILLED",
	"EXECUTED", "REJECTED", "CANCELLED", "PARTIALLY_CANCELLED", "FAILED", "EXPIRED",
}

// restingStatuses are the settled statuses in which a LIMIT order rests on the book.
var restingStatuses = []string{"EXECUTING", "PARTIALLY_FILLED"}

// settleQuery reads which of the given orders have settled, and when: the created_at of
// the first event that moved each one into a settled status. That timestamp is
// PostgreSQL's now() of the transaction that settled it, so end-to-end latency does not
// depend on how often the bench polls. It also reads when the order's workflow wrote its
// first event (seq 2, after ORDER_PLACED), which splits the latency in two: getting the
// order to its workflow (outbox relay, Kafka, consumer, workflow start), and the
// workflow's steps.
const settleQuery = `
SELECT o.id, o.status,
       (SELECT e.created_at FROM order_events e
         WHERE e.order_id = o.id AND e.to_status = ANY($2::text[])
         ORDER BY e.seq LIMIT 1),
       (SELECT e.created_at FROM order_events e WHERE e.order_id = o.id AND e.seq = 2)
FROM orders o
WHERE o.id = ANY($1::bigint[]) AND o.status = ANY($2::text[])`

// pendingOrder is an accepted order not yet seen settled.
type pendingOrder struct {
	acceptedAt time.Time // when the client received the 201
	measured   bool      // accepted inside the measured window: its latency counts
}

// Settlement is an order seen settled.
type Settlement struct {
	ID        int64
	Status    string
	SettledAt time.Time
	Latency   time.Duration // from the client's 201 to SettledAt
	Pickup    time.Duration // from the client's 201 to the workflow's first event
	Steps     time.Duration // from the workflow's first event to SettledAt
	Measured  bool
}

// Tracker follows accepted orders until they settle, reading PostgreSQL directly rather
// than polling the API per order (which at these rates would load the system it
// measures): one set-based query per poll for the orders still pending.
type Tracker struct {
	pool *pgxpool.Pool

	mu      sync.Mutex
	pending map[int64]pendingOrder
}

// pollBatch bounds how many pending orders one regular poll asks about: the oldest ones,
// which are the ones most likely to have settled. Every sweepEvery-th poll asks about
// all of them, sweepChunk at a time, so nothing is missed when the system does not settle
// in order. These queries run on the measured system's PostgreSQL, and a sweep's cost
// grows with the backlog, so both are kept rare and small: at 150 ms a poll, a sweep
// every 6 s. Latency does not depend on them (Poll reads when each order settled).
const (
	pollBatch  = 500
	sweepEvery = 40
	sweepChunk = 10000
)

// NewTracker returns a Tracker reading through pool.
func NewTracker(pool *pgxpool.Pool) *Tracker {
	return &Tracker{pool: pool, pending: make(map[int64]pendingOrder)}
}

// Add starts following order id, accepted at acceptedAt.
func (t *Tracker) Add(id int64, acceptedAt time.Time, measured bool) {
	t.mu.Lock()
	t.pending[id] = pendingOrder{acceptedAt: acceptedAt, measured: measured}
	t.mu.Unlock()
}

// Pending returns how many orders are accepted and not yet seen settled.
func (t *Tracker) Pending() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.pending)
}

// PendingMeasured returns how many orders accepted in the measured window are not yet
// seen settled.
func (t *Tracker) PendingMeasured() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, p := range t.pending {
		if p.measured {
			n++
		}
	}
	return n
}

// PendingMeasuredAges returns, for each order accepted in the measured window and not
// yet seen settled, how long ago its 201 came: a lower bound of its latency.
func (t *Tracker) PendingMeasuredAges(now time.Time) []time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	var out []time.Duration
	for _, p := range t.pending {
		if p.measured {
			out = append(out, now.Sub(p.acceptedAt))
		}
	}
	return out
}

// ids returns the pending ids, lowest (oldest) first, at most limit of them (0: all).
func (t *Tracker) ids(limit int) []int64 {
	t.mu.Lock()
	ids := make([]int64, 0, len(t.pending))
	for id := range t.pending {
		ids = append(ids, id)
	}
	t.mu.Unlock()
	slices.Sort(ids)
	if limit > 0 && len(ids) > limit {
		ids = ids[:limit]
	}
	return ids
}

// Poll asks PostgreSQL about the pending orders (the oldest pollBatch of them, or all
// when full is set) and returns those that settled, forgetting them.
func (t *Tracker) Poll(ctx context.Context, full bool) ([]Settlement, error) {
	limit := pollBatch
	if full {
		limit = 0
	}
	ids := t.ids(limit)
	var out []Settlement
	for len(ids) > 0 {
		chunk := ids[:min(len(ids), sweepChunk)]
		ids = ids[len(chunk):]
		s, err := t.poll(ctx, chunk)
		if err != nil {
			return out, err
		}
		out = append(out, s...)
	}
	return out, nil
}

func (t *Tracker) poll(ctx context.Context, ids []int64) ([]Settlement, error) {
	rows, err := t.pool.Query(ctx, settleQuery, ids, settledStatuses)
	if err != nil {
		return nil, fmt.Errorf("bench: poll orders: %w", err)
	}
	type row struct {
		id        int64
		status    string
		at, first *time.Time
	}
	var got []row
	for rows.Next() {
		var r row
		if err := rows.Scan(&r.id, &r.status, &r.at, &r.first); err != nil {
			rows.Close()
			return nil, fmt.Errorf("bench: poll orders: %w", err)
		}
		got = append(got, r)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("bench: poll orders: %w", err)
	}
	now := time.Now()
	out := make([]Settlement, 0, len(got))
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, r := range got {
		p, ok := t.pending[r.id]
		if !ok {
			continue
		}
		delete(t.pending, r.id)
		s := Settlement{ID: r.id, Status: r.status, SettledAt: now, Measured: p.measured}
		if r.at != nil {
			s.SettledAt = *r.at
		}
		s.Latency = max(s.SettledAt.Sub(p.acceptedAt), 0)
		if r.first != nil && !r.first.After(s.SettledAt) {
			s.Pickup = min(max(r.first.Sub(p.acceptedAt), 0), s.Latency)
			s.Steps = s.Latency - s.Pickup
		}
		out = append(out, s)
	}
	return out, nil
}

// inFlightQuery counts the orders anywhere in the database that have not reached the
// book or an end, using the (status, updated_at) index.
const inFlightQuery = `SELECT count(*) FROM orders WHERE status IN ('CREATED', 'VALIDATED', 'SENT_TO_EXECUTOR')`

// InFlight counts the orders of any client that are still on their way through the
// system: a bench started while it is not idle measures leftovers too.
func InFlight(ctx context.Context, pool *pgxpool.Pool) (int64, error) {
	var n int64
	if err := pool.QueryRow(ctx, inFlightQuery).Scan(&n); err != nil {
		return 0, fmt.Errorf("bench: count in-flight orders: %w", err)
	}
	return n, nil
}
