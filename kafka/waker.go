package kafka

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
)

// OutboxChannel is the PostgreSQL notification channel the relay listens on.
const OutboxChannel = "outbox"

// notifySQL sends the wake-up. A NOTIFY needs a transaction of its own, and committing it
// would wait for a WAL flush like any other; a wake-up is only a hint (the relay also
// sweeps), so its transaction does not wait. The two statements go as one simple query,
// which PostgreSQL runs as one implicit transaction, so SET LOCAL applies to it alone.
const notifySQL = "SET LOCAL synchronous_commit = off; SELECT pg_notify('" + OutboxChannel + "', '')"

// OutboxWaker wakes the outbox relays after outbox rows have committed. Wakes that come
// while a notification is in flight are folded into the next one, so a burst of orders
// costs a handful of NOTIFYs, and the orders' own transactions never notify (a NOTIFY
// serialises the commits of the transactions that send it). Its zero value is not
// usable; it needs no Close: its goroutine ends whenever nothing is pending.
type OutboxWaker struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu      sync.Mutex
	pending bool // a wake has come since the last notification was sent
	running bool // a goroutine is sending notifications
}

// NewOutboxWaker returns a waker that notifies through pool.
func NewOutboxWaker(pool *pgxpool.Pool, logger *slog.Logger) *OutboxWaker {
	return &OutboxWaker{pool: pool, log: logger}
}

// Wake asks for a notification after the caller's committed outbox rows. It does not
// block.
func (w *OutboxWaker) Wake() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.pending = true
	if !w.running {
		w.running = true
		go w.notifyWhilePending()
	}
}

func (w *OutboxWaker) notifyWhilePending() {
	for {
		w.mu.Lock()
		if !w.pending {
			w.running = false
			w.mu.Unlock()
			return
		}
		w.pending = false
		w.mu.Unlock()

		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := w.pool.Exec(ctx, notifySQL)
		cancel()
		if err != nil {
			// The rows are committed; the relay's periodic sweep publishes them.
			w.log.Warn("wake the outbox relay", "error", err)
		}
	}
}
