// Package orderbook is OrderFlow's order-book service: every state change of an order
// and of an instrument's book happens here, each in one PostgreSQL transaction (or, for
// a single order's change, one statement), in the
// domain's words. Read it to learn what can happen to an order:
//
//   - Place writes a new order (CREATED), its ORDER_PLACED event and the outbox message
//     that starts its execution, sharing statements and commits between concurrent
//     callers (group commit).
//   - RecordCancel records a client's cancel request and takes the order off the book at
//     once; Cancel applies it (CANCELLED or PARTIALLY_CANCELLED).
//   - Validate checks the instrument's rules and hands a valid order to matching in the
//     same write (VALIDATED, then SENT_TO_EXECUTOR), or rejects it (REJECTED); Dispatch
//     moves on an order an earlier release left VALIDATED.
//   - Match runs one step of matching under the instrument's lock: it draws the order's
//     book sequence (its time priority) on the first step, trades with the book in
//     price-time priority and leaves the order resting, done, or mid-sweep (More) when
//     the sweep is deeper than one step may go. Its fills leave notices for the resting
//     orders' runs, which Deliver and DeliverFillNotices send.
//   - Park and Resume record that a step is stalled and that an operator retries it;
//     Fail ends an order FAILED.
//   - HaltInstrument and ResumeInstrument stop and restart an instrument's matching.
//
// The service speaks pgx and the sqlc queries, returns its own errors (ErrNotFound,
// ErrTerminal, ErrStale, …) and knows nothing of HTTP or Temporal; the api and
// activities packages adapt it to those.
package orderbook

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/queries"
)

// Errors the service returns; check them with errors.Is.
var (
	// ErrNotFound: no order has the id.
	ErrNotFound = errors.New("order not found")
	// ErrInstrumentNotFound: no instrument has the id.
	ErrInstrumentNotFound = errors.New("instrument not found")
	// ErrTerminal: the order has ended and the request no longer applies to it.
	ErrTerminal = errors.New("order is terminal")
	// ErrClientOrderIDInUse: another of the user's orders has the client order id.
	ErrClientOrderIDInUse = errors.New("client order id already used by another of the user's orders")
	// ErrPrecondition: the order is not in the state the request was conditional on (its
	// If-Match); nothing was done.
	ErrPrecondition = errors.New("order does not match the request's precondition")
	// ErrNotParked: an operator's decision was asked for an order that is not parked.
	ErrNotParked = errors.New("order is not parked")
	// ErrStale: the order changed since it was read (optimistic lock); the caller
	// retries against the fresh row.
	ErrStale = errors.New("order changed concurrently (stale version)")
	// ErrKeyReused: the user's Idempotency-Key was used for a different order.
	ErrKeyReused = errors.New("idempotency key already used for a different order")
	// ErrKeyInFlight: another request with the user's Idempotency-Key is being placed
	// (or has just failed); nothing of this one was written.
	ErrKeyInFlight = errors.New("another request with this idempotency key is in flight")
	// ErrInvalidTransition: the transition table forbids the move (a bug, never a
	// client's fault); it wraps order.ErrInvalidTransition.
	ErrInvalidTransition = order.ErrInvalidTransition
	// ErrForeignRun: the workflow run acting on the order is not the order's own. It was
	// started for an order with the same id in another history of the database (before
	// a restore, or in another database against the same Temporal namespace), or by
	// hand; nothing was changed.
	ErrForeignRun = errors.New("the run acting on the order is not the order's")
)

// actingRun is the context key of the run on whose behalf a method acts.
type actingRun struct{}

type runIdentity struct {
	orderID int64
	runKey  string
}

// ActingFor returns ctx saying that what is done with it is done by the run of order
// orderID with runKey (the activities take both from their run's workflow id): the
// service's methods then refuse, with ErrForeignRun, to act on that order unless it has
// that run key, or on any other order by its id. Without it (the API, operators' tools)
// no run is checked.
func ActingFor(ctx context.Context, orderID int64, runKey string) context.Context {
	return context.WithValue(ctx, actingRun{}, runIdentity{orderID: orderID, runKey: runKey})
}

// checkRun returns ErrForeignRun if ctx acts for a run that is not o's.
func checkRun(ctx context.Context, o queries.Order) error {
	r, ok := ctx.Value(actingRun{}).(runIdentity)
	if !ok || (r.orderID == o.ID && r.runKey == o.RunKey) {
		return nil
	}
	return fmt.Errorf("order %d (run %s) is not the order of run %s: %w",
		o.ID, order.WorkflowID(o.ID, o.RunKey), order.WorkflowID(r.orderID, r.runKey), ErrForeignRun)
}

// StatusError is an error about an order in a given status (ErrTerminal, ErrNotParked).
type StatusError struct {
	OrderID int64
	Status  order.Status
	Err     error
}

func (e *StatusError) Error() string {
	return fmt.Sprintf("order %d is %s: %v", e.OrderID, e.Status, e.Err)
}

// Unwrap returns the sentinel error.
func (e *StatusError) Unwrap() error { return e.Err }

// TransitionObserver learns of every committed status change (for metrics).
type TransitionObserver interface {
	ObserveTransition(from, to string)
}

// Service is the order-book service over one connection pool.
type Service struct {
	pool     *pgxpool.Pool
	q        *queries.Queries
	log      *slog.Logger
	observer TransitionObserver
	placer   *placer
	counts   countCompactor
	maxFills int
	// noticeLease is how long a claimed fill notice is its sender's; noticeWake wakes
	// DeliverFillNotices.
	noticeLease time.Duration
	noticeWake  chan struct{}
	keyTTL      time.Duration // how long an Idempotency-Key keeps its first answer
	// marketMaxAge: a MARKET order reaching matching later than this after it was
	// placed expires (STALE); 0, never.
	marketMaxAge time.Duration
}

// Config tunes the service; the zero value of a field means its default.
//
//   - Waker is woken after new orders commit, so the outbox relay publishes them at once;
//     nil, no one (the relay's periodic sweep still finds them).
//   - Observer learns of every committed status change; nil, no one.
//   - Batches is told the size of every statement of the group commit; nil, no one.
//   - PlaceTimeout bounds one group-commit statement, whoever waits for it; default 10s.
//   - MaxFillsPerStep bounds the fills of one step of matching (one transaction under
//     the instrument's lock); default DefaultMaxFillsPerStep.
//   - NoticeLease is how long a claimed fill notice is left to its sender before another
//     may send it; default 10s.
//   - MarketMaxAge: a MARKET order that reaches matching later than this after it was
//     placed ends EXPIRED (reason STALE) instead of filling; 0, never.
//   - IdempotencyTTL is how long an Idempotency-Key answers replays with its first
//     answer; after it, the key places a new order. Default DefaultIdempotencyTTL.
//   - PlaceQueue bounds the new orders waiting to be written; Place refuses more with
//     ErrBusy; default 1024.
type Config struct {
	PlaceQueue      int
	Waker           Waker
	Observer        TransitionObserver
	Batches         BatchObserver
	PlaceTimeout    time.Duration
	MaxFillsPerStep int
	NoticeLease     time.Duration
	IdempotencyTTL  time.Duration
	MarketMaxAge    time.Duration
}

// New returns the service over pool; a nil logger discards logs.
func New(pool *pgxpool.Pool, logger *slog.Logger, cfg Config) *Service {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.PlaceTimeout <= 0 {
		cfg.PlaceTimeout = 10 * time.Second
	}
	if cfg.MaxFillsPerStep <= 0 {
		cfg.MaxFillsPerStep = DefaultMaxFillsPerStep
	}
	if cfg.NoticeLease <= 0 {
		cfg.NoticeLease = 10 * time.Second
	}
	if cfg.IdempotencyTTL <= 0 {
		cfg.IdempotencyTTL = DefaultIdempotencyTTL
	}
	q := queries.New(pool)
	return &Service{pool: pool, q: q, log: logger, observer: cfg.Observer, maxFills: cfg.MaxFillsPerStep,
		noticeLease: cfg.NoticeLease, noticeWake: make(chan struct{}, 1), keyTTL: cfg.IdempotencyTTL, marketMaxAge: cfg.MarketMaxAge,
		placer: newPlacer(pool, cfg.Waker, cfg.PlaceTimeout, cfg.Batches, cfg.PlaceQueue, cfg.IdempotencyTTL)}
}

// txn is one method's transaction: its queries, and the status changes it made, which
// are reported to the observer only once the transaction has committed.
type txn struct {
	*queries.Queries
	changes [][2]order.Status
	// autocommit: no transaction around the statements (inStatement), so apply takes one
	// order's change, once: that one statement writes all or nothing without a rollback.
	// Locking reads are refused too (their locks would end with the statement).
	autocommit bool
	applied    int
}

// inStatement runs fn on the pool, each statement committing on its own, for a step
// whose only write is one order's change: apply checks it against the version the step
// read, so it is written whole or not at all, as in a transaction, for two round trips
// (BEGIN, COMMIT) fewer.
func (s *Service) inStatement(ctx context.Context, fn func(tx *txn) error) error {
	tx := &txn{Queries: s.q, autocommit: true}
	if err := fn(tx); err != nil {
		return err
	}
	s.observe(tx)
	return nil
}

func (s *Service) observe(tx *txn) {
	if s.observer != nil {
		for _, c := range tx.changes {
			s.observer.ObserveTransition(string(c[0]), string(c[1]))
		}
	}
}

// inTx runs fn in one transaction and commits it if fn succeeds.
func (s *Service) inTx(ctx context.Context, fn func(tx *txn) error) error {
	pgtx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer pgtx.Rollback(ctx) //nolint:errcheck // a no-op after Commit
	tx := &txn{Queries: s.q.WithTx(pgtx)}
	if err := fn(tx); err != nil {
		return err
	}
	if err := pgtx.Commit(ctx); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	s.observe(tx)
	return nil
}

// getOrder reads order id in tx, or returns ErrNotFound.
func (tx *txn) getOrder(ctx context.Context, id int64, forUpdate bool) (queries.Order, error) {
	get := tx.GetOrder
	if forUpdate && tx.autocommit {
		return queries.Order{}, errors.New("orderbook: a locking read needs a transaction")
	}
	if forUpdate {
		get = tx.GetOrderForUpdate
	}
	o, err := get(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, fmt.Errorf("order %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return o, fmt.Errorf("get order %d: %w", id, err)
	}
	return o, checkRun(ctx, o)
}

// lockInstrument takes the instrument's lock, which serialises everything that changes
// its book. found is false for an instrument that does not exist.
func (tx *txn) lockInstrument(ctx context.Context, id int64) (inst queries.Instrument, found bool, err error) {
	inst, err = tx.LockInstrument(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return inst, false, nil
	}
	if err != nil {
		return inst, false, fmt.Errorf("lock instrument %d: %w", id, err)
	}
	return inst, true, nil
}

// Order returns order id, or ErrNotFound.
func (s *Service) Order(ctx context.Context, id int64) (queries.Order, error) {
	o, err := s.q.GetOrder(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return o, fmt.Errorf("order %d: %w", id, ErrNotFound)
	}
	if err != nil {
		return o, fmt.Errorf("get order %d: %w", id, err)
	}
	return o, nil
}
