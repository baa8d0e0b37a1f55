// Package audit checks OrderFlow's invariants over what the system has stored: the
// orders, their event timelines, trades and outbox in PostgreSQL, and the order runs
// Temporal's visibility knows. It only reads. Each check is one set-based query, so an
// audit of the whole database costs a handful of scans however many orders there are,
// and it is cheap enough to run after every test that writes orders.
//
// The checks, by the name a Violation carries:
//
//   - timeline: every order's events form a path through the transition table
//     (order.CanTransition), opening with ORDER_PLACED → CREATED at seq 1, seq gap-free,
//     annotation events (CANCEL_REQUESTED, EXECUTION_STALLED, OPERATOR_RETRY, AMENDED) leaving the
//     status as it was, and the last event reaching the order's status;
//   - fills: the sum of an order's trade quantities is quantity − remaining, and
//     0 ≤ remaining ≤ quantity;
//   - trades: the buy order buys and the sell order sells, on the trade's instrument;
//     the price respects both limits and is the resting order's price; no MARKET-vs-MARKET
//     trade; never two orders of one user;
//   - book: the resting book is never crossed, and only GTC LIMIT orders with quantity
//     left, a book sequence and no cancel request rest on it;
//   - priority: aggressors took resting orders in price-time priority by book sequence
//     (arrival at the book), and no order ahead of one taken was left resting;
//   - runs: every order has (or had) a workflow run, every non-terminal order has a
//     live one, and no terminal order's run is still open (see Options for the orders
//     this leaves out). An order may have had several runs one after another (one
//     terminated and its successor, a redelivered message's run that found the order
//     ended); that trades were not made twice is the trades and fills checks' to say;
//   - idempotency: no two orders share (userId, Idempotency-Key);
//   - amendments: an order that ended REPLACED (CANCELLED or PARTIALLY_CANCELLED) has the
//     order that replaced it, which is of the same user, instrument, side and time in
//     force; an order amended in place has the quantity its last AMENDED event gave it.
package audit

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/kafka"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/workflows"
)

// The checks' names, as Violation.Check carries them; the package comment says what each
// one checks.
const (
	CheckTimeline    = "timeline"
	CheckFills       = "fills"
	CheckTrades      = "trades"
	CheckBook        = "book"
	CheckPriority    = "priority"
	CheckRuns        = "runs"
	CheckIdempotency = "idempotency"
	CheckAmendments  = "amendments"
)

// checkOrder is the order in which a report lists its violations.
var checkOrder = []string{CheckTimeline, CheckFills, CheckTrades, CheckBook, CheckPriority, CheckRuns, CheckIdempotency, CheckAmendments}

// DefaultGrace is how long after it was placed an order may still be without a run: the
// outbox relay has published it, and the consumer has not yet started its run.
const DefaultGrace = 30 * time.Second

// Violation is one broken invariant.
type Violation struct {
	Check   string `json:"check"`
	OrderID int64  `json:"orderId,omitempty"` // 0 when no single order is at fault
	Detail  string `json:"detail"`
}

// Report is the outcome of one audit.
type Report struct {
	Orders     int           `json:"orders"`     // orders audited
	Trades     int           `json:"trades"`     // trades of those orders
	Violations []Violation   `json:"violations"` // by check, then order; never nil
	Duration   time.Duration `json:"-"`          // how long the audit took, Temporal included
}

// Options scope an audit.
type Options struct {
	// OrderIDs limits the audit to these orders (nil: every order). The book check then
	// covers the whole book of every instrument these orders trade on, and the trades
	// check every trade they took part in.
	OrderIDs []int64
	// Grace exempts orders placed less than Grace before the audit began from the runs
	// check: their Kafka message may still be on its way to the consumer. Zero means
	// DefaultGrace; a negative Grace exempts no order placed before the audit began (for
	// tests that have waited for their orders to settle). Orders still in the outbox are
	// always exempt: they have not reached Kafka yet.
	Grace time.Duration
	// Retention is how long Temporal keeps closed runs (the namespace's retention; zero:
	// forever). A terminal order unchanged for longer than that is exempt from the run
	// count, since its run may have been deleted.
	Retention time.Duration
}

// Runs is what Temporal's visibility knows of one order's workflow id.
type Runs struct {
	// Count is the number of runs, not counting those that continued as new: a chain of
	// continue-as-new runs is one order's one run.
	Count int
	// Live is true if one of them is running (or paused), and so can still take fills,
	// cancels and an operator's decision.
	Live bool
	// Last is the status of the latest run, for the report (e.g. "Completed").
	Last string
}

// RunLister lists the order runs Temporal knows, by workflow id. TemporalRuns is the
// production one; tests give a fake.
type RunLister interface {
	OrderRuns(ctx context.Context) (map[string]Runs, error)
}

// Run audits the orders opts selects and returns every violation found. runs may be nil,
// which skips the runs check (a database-only audit). The database checks all read one
// snapshot; Temporal is read before it, so that an order that moves on while the audit
// runs is never judged against an older view of its run than of its row. The error is
// for a failed read, never for a violation.
func Run(ctx context.Context, pool *pgxpool.Pool, runs RunLister, opts Options) (Report, error) {
	start := time.Now()
	rep := Report{Violations: []Violation{}}
	// The cut-off for "placed too recently to need a run" is taken on the database's
	// clock, the one created_at was written with, before Temporal is asked.
	var began time.Time
	if err := pool.QueryRow(ctx, `SELECT now()`).Scan(&began); err != nil {
		return rep, fmt.Errorf("audit: read the database clock: %w", err)
	}
	var known map[string]Runs
	if runs != nil {
		var err error
		if known, err = runs.OrderRuns(ctx); err != nil {
			return rep, fmt.Errorf("audit: list order runs: %w", err)
		}
	}

	tx, err := pool.BeginTx(ctx, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	if err != nil {
		return rep, fmt.Errorf("audit: begin: %w", err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // read-only: nothing to undo
	// One batch: every query goes out at once, which saves a round trip per check.
	sc := newScope(opts.OrderIDs)
	b := &pgx.Batch{}
	b.Queue(sc.sql(countSQL), sc.ids).QueryRow(func(row pgx.Row) error {
		if err := row.Scan(&rep.Orders, &rep.Trades); err != nil {
			return fmt.Errorf("audit: count: %w", err)
		}
		return nil
	})
	for _, c := range sc.checks() {
		b.Queue(c.sql, c.args...).Query(func(rows pgx.Rows) error {
			found, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Violation, error) {
				v := Violation{Check: c.name}
				return v, row.Scan(&v.OrderID, &v.Detail)
			})
			if err != nil {
				return fmt.Errorf("audit: %s: %w", c.name, err)
			}
			rep.Violations = append(rep.Violations, found...)
			return nil
		})
	}
	if runs != nil {
		queueRuns(b, sc, known, began, opts, &rep)
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return rep, err
	}
	slices.SortStableFunc(rep.Violations, func(a, b Violation) int {
		return cmp.Or(cmp.Compare(slices.Index(checkOrder, a.Check), slices.Index(checkOrder, b.Check)),
			cmp.Compare(a.OrderID, b.OrderID))
	})
	rep.Duration = time.Since(start)
	return rep, nil
}

// queueRuns queues the runs check: a query for the orders that must have a run (it
// leaves out the exempt ones, see Options), each looked up in what Temporal knows.
func queueRuns(b *pgx.Batch, sc scope, known map[string]Runs, began time.Time, opts Options, rep *Report) {
	grace := opts.Grace
	switch {
	case grace == 0:
		grace = DefaultGrace
	case grace < 0:
		grace = 0
	}
	var expired any // NULL: no terminal order is too old to have its run listed
	if opts.Retention > 0 {
		expired = began.Add(-opts.Retention)
	}
	b.Queue(sc.sql(runsSQL), sc.ids, terminalStatuses(), began.Add(-grace), kafka.TopicOrderExecution, expired).Query(func(rows pgx.Rows) error {
		var id int64
		var runKey, status string
		var terminal, settled bool
		_, err := pgx.ForEachRow(rows, []any{&id, &runKey, &status, &terminal, &settled}, func() error {
			wid := workflows.OrderWorkflowID(id, runKey)
			r := known[wid]
			var detail string
			switch {
			case r.Count == 0:
				detail = fmt.Sprintf("order is %s and has no workflow run %s", status, wid)
			case !terminal && !r.Live:
				detail = fmt.Sprintf("order is %s but its run %s is %s: nothing will move it on", status, wid, r.Last)
			case terminal && r.Live && settled:
				// A run ends within moments of its order; one that outlives it by the grace
				// missed the signal that would have ended it.
				detail = fmt.Sprintf("order is %s but its run %s is still %s: it waits for a signal that will not come", status, wid, r.Last)
			default:
				return nil
			}
			rep.Violations = append(rep.Violations, Violation{Check: CheckRuns, OrderID: id, Detail: detail})
			return nil
		})
		if err != nil {
			return fmt.Errorf("audit: %s: %w", CheckRuns, err)
		}
		return nil
	})
}

// terminalStatuses and restingStatuses come from the order package, so the queries
// follow the transition table rather than a copy of it.
func terminalStatuses() []string { return order.Names(order.TerminalStatuses()) }

func restingStatuses() []string { return order.Names(order.RestingStatuses()) }

// transitionTable returns the table as three parallel arrays: each allowed (from, to)
// move and the event type that records it.
func transitionTable() (from, to, event []string) {
	for _, f := range order.Statuses {
		for _, t := range order.Statuses {
			if order.CanTransition(f, t) {
				from, to, event = append(from, string(f)), append(to, string(t)), append(event, string(order.EventFor(t)))
			}
		}
	}
	return from, to, event
}

// eventTypes lists every event type the order package defines, so that the audit can
// tell annotations (which ChangesStatus says leave the status alone) from unknown types.
var eventTypes = []order.EventType{
	order.EventOrderPlaced, order.EventValidated, order.EventRejected, order.EventSentToExecutor,
	order.EventExecuting, order.EventPartiallyFilled, order.EventExecuted, order.EventCancelRequested,
	order.EventCancelled, order.EventPartiallyCancelled, order.EventFailed,
	order.EventExecutionStalled, order.EventOperatorRetry, order.EventAmended,
}

func annotationTypes() []string {
	var out []string
	for _, e := range eventTypes {
		if !e.ChangesStatus() {
			out = append(out, string(e))
		}
	}
	return out
}
