package orderbook

import (
	"context"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/queries"
)

// AdmissionConfig tunes admission control. The zero value of a field is its default:
//
//   - MaxDelay: the longest the orders already accepted may take to execute, at the
//     rate they have been executing, for a new one to be accepted; default 1s (so that
//     an order executes within about a second of its 201 however hard clients push).
//     Negative: no admission control.
//   - Every: how often the backlog is counted; default 200ms.
//   - MinDrain: the execution rate assumed when less has been seen (after a quiet spell
//     nothing drains, which says nothing of what could); default 20 orders/s, about what
//     one box executes (BENCHMARKS.md).
type AdmissionConfig struct {
	MaxDelay time.Duration
	Every    time.Duration
	MinDrain float64
}

// drainWindow is the time constant of the drain rate's moving average.
const drainWindow = 5 * time.Second

// Admission refuses new orders that the system could not execute in bounded time. It
// counts, every Every, the orders accepted and not yet executed (the execution backlog:
// open, off the book, not parked) and how many orders were accepted meanwhile (the order
// id sequence's growth, every replica's), which together give the rate the backlog
// drains at. A new order is refused while the backlog, plus what this replica accepted
// since the count, would take longer than MaxDelay to drain at that rate.
//
// It looks at the whole system's backlog, so every API replica refuses alike; the count
// reads a partial index of the pending orders (schema 0009), a few rows at any moment.
type Admission struct {
	q      *queries.Queries
	cfg    AdmissionConfig
	logger *slog.Logger

	mu       sync.Mutex
	sampled  bool
	pending  int64     // the backlog at the last count
	accepted int64     // accepted by this replica since the last count
	lastID   int64     // the id sequence at the last count
	at       time.Time // when the last count was taken
	drain    float64   // orders/s, moving average
}

// NewAdmission returns admission control over pool; Run must run for it to refuse
// anything.
func NewAdmission(pool *pgxpool.Pool, logger *slog.Logger, cfg AdmissionConfig) *Admission {
	if cfg.MaxDelay == 0 {
		cfg.MaxDelay = time.Second
	}
	if cfg.Every <= 0 {
		cfg.Every = 200 * time.Millisecond
	}
	if cfg.MinDrain <= 0 {
		cfg.MinDrain = 20
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Admission{q: queries.New(pool), cfg: cfg, logger: logger}
}

// Run counts the backlog every Every until ctx ends. A count that fails (the database is
// unreachable) keeps the last one: placing fails then anyway.
func (a *Admission) Run(ctx context.Context) {
	if a.cfg.MaxDelay < 0 {
		return
	}
	t := time.NewTicker(a.cfg.Every)
	defer t.Stop()
	for {
		a.sample(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (a *Admission) sample(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	// Orders this replica accepted before the count began have committed, so the count
	// holds them; those accepted while it runs may or may not be in it, and are kept.
	a.mu.Lock()
	counted := a.accepted
	a.mu.Unlock()
	row, err := a.q.ExecutionBacklog(ctx)
	if err != nil {
		if ctx.Err() == nil {
			a.logger.Debug("admission: count the backlog", "error", err)
		}
		return
	}
	now := time.Now()
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.sampled {
		dt := now.Sub(a.at).Seconds()
		// What left the backlog: what was accepted meanwhile (by any replica), less what
		// the backlog grew by.
		drained := float64((row.LastID - a.lastID) - (row.Pending - a.pending))
		if dt > 0 && drained >= 0 {
			w := 1 - math.Exp(-dt/drainWindow.Seconds())
			a.drain += w * (drained/dt - a.drain)
		}
	}
	a.sampled, a.pending, a.lastID, a.at = true, row.Pending, row.LastID, now
	a.accepted -= counted
}

// Accepted tells admission control that this replica accepted n orders, which the next
// count will see.
func (a *Admission) Accepted(n int) {
	a.mu.Lock()
	a.accepted += int64(n)
	a.mu.Unlock()
}

// Admit reports whether a new order may be accepted now and, if not, when to retry.
func (a *Admission) Admit() (ok bool, retryAfter time.Duration) {
	if a.cfg.MaxDelay < 0 {
		return true, 0
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	backlog := float64(a.pending + a.accepted)
	rate := max(a.drain, a.cfg.MinDrain)
	over := backlog - rate*a.cfg.MaxDelay.Seconds()
	if over < 0 {
		return true, 0
	}
	return false, time.Duration((over + 1) / rate * float64(time.Second))
}

// Backlog reports the last count with what this replica accepted since, and the drain
// rate in orders per second, for metrics.
func (a *Admission) Backlog() (orders int64, drainPerSecond float64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.pending + a.accepted, a.drain
}
