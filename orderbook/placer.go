package orderbook

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/queries"
)

// Group commit limits. Two writers keep PostgreSQL busy while one waits for its commit's
// WAL flush, and leave the rest of the pool to reads, cancels and the worker; on 2 cores
// four or eight writers made smaller batches and accepted fewer orders per second
// (BENCHMARKS.md). 64 orders keep a batch's statement small enough that the orders in it
// barely wait for each other.
const (
	placeWriters  = 2
	placeMaxBatch = 64
)

// placer writes new orders in batches: group commit. A request queues its order and waits;
// a writer takes what is queued (up to placeMaxBatch) and writes it with one PlaceOrders
// statement and one statement storing the orders' answers, in one transaction, so one
// commit for the batch. Under light load a writer is
// free and an order is written alone as soon as it arrives; under heavy load the orders
// that arrive while the writers wait for their commits share the next one, which is what
// lets ingestion outgrow one transaction per order.
//
// At most placeWriters write at once. A request that finds a writer free starts one, a
// goroutine that writes until the queue is empty. Taking and giving up the role both
// happen under mu, so an order is never queued with no writer to take it, and an idle
// API runs no goroutine. It needs no Close.
type placer struct {
	pool    *pgxpool.Pool
	waker   Waker // nil: none
	timeout time.Duration
	batches BatchObserver // nil: none
	keyTTL  time.Duration // how long the answers it stores replay

	mu       sync.Mutex
	queue    []*placement
	maxQueue int
	writers  int // requests and goroutines writing now, at most placeWriters
}

// Errors of Place beyond the database's.
var (
	// ErrBusy: the queue of orders waiting to be written is full; nothing was written.
	ErrBusy = errors.New("too many orders are waiting to be written")
	// ErrNotPlaced: the request's deadline passed while its order waited in the queue;
	// nothing was written.
	ErrNotPlaced = errors.New("the order was not written before the request's deadline")
	// ErrUnconfirmed: the request's deadline passed while its order's statement ran; the
	// order may have been written, and a replay of its Idempotency-Key tells.
	ErrUnconfirmed = errors.New("the order's write was not confirmed before the request's deadline")
)

// defaultMaxQueue bounds the orders waiting for a writer: at the ~1,300 orders/s one
// box writes (BENCHMARKS.md), under a second's worth.
const defaultMaxQueue = 1024

// ExecutionTopic is the Kafka topic of the outbox messages that start new orders'
// execution; they must decode as kafka.ExecutionMessage.
const ExecutionTopic = "order-execution"

// Waker is told when new orders have committed, so that whoever publishes their outbox
// messages does so at once (kafka.OutboxWaker is one).
type Waker interface{ Wake() }

// BatchObserver is told the size of every batch of new orders written in one statement.
type BatchObserver interface {
	ObserveOrderBatch(n int)
}

// NewOrder is a validated order to place. RequestHash fingerprints the request that
// asked for it, so that a replay of the same IdempotencyKey can be told apart from a
// different order reusing it. Details are the ORDER_PLACED event's details (JSON).
type NewOrder struct {
	UserID         int64
	InstrumentID   int64
	Side           order.Side
	Kind           order.Kind
	Price          decimal.NullDecimal // Valid only for LIMIT orders
	Quantity       int64
	TimeInForce    order.TimeInForce
	IdempotencyKey string
	RequestHash    string
	ClientOrderID  string     // "" for none; unique among the user's orders
	ExpireAt       *time.Time // a DAY or GTD order's expiry; nil for the others
	Details        []byte
	// Answer renders the answer to the request that placed the order, which is stored
	// with it, in its transaction, for replays of the key; nil stores none.
	Answer func(queries.Order) Answer
}

// Placed is what Place did: Created is false when the order is the one an earlier
// request with the same Idempotency-Key placed. Answer is the answer stored for the
// order: rendered now if Created, else the first request's (nil for an order placed
// before answers were stored; Order is then the order as it is now).
type Placed struct {
	Order   queries.Order
	Created bool
	Answer  *Answer
}

// Place writes a new order (CREATED) with its ORDER_PLACED event, the outbox message
// that starts its execution and its answer, in one transaction shared with concurrent
// callers and committed before Place returns. Of concurrent requests with one key
// exactly one writes: UNIQUE (user_id, idempotency_key) decides, and a request whose key
// another transaction is writing at that moment gets ErrKeyInFlight without waiting. A
// later one gets the first answer, or ErrKeyReused when its request differs; once the
// key has expired, it places a new order. A new order whose ClientOrderID another of the
// user's orders has gets ErrClientOrderIDInUse, and nothing is written. Once queued, the order is written or fails
// with its batch whatever becomes of ctx, as a statement already sent would be; ctx
// bounds the look-up of the first answer.
func (s *Service) Place(ctx context.Context, no NewOrder) (Placed, error) {
	// The second round is for a key that had expired: released, it places anew (a third
	// would only mean another request is racing for the same released key).
	for range 2 {
		res := s.placer.place(ctx, no)
		if res.err != nil {
			return Placed{}, fmt.Errorf("place order: %w", res.err)
		}
		if res.created {
			return Placed{Order: res.order, Created: true, Answer: res.answer}, nil
		}
		p, err := s.replay(ctx, no.UserID, no.IdempotencyKey, no.RequestHash)
		switch {
		case errors.Is(err, ErrNotFound) && no.ClientOrderID != "":
			// Not written, and not for its key: perhaps for its client order id.
			o, err := s.OrderByClientOrderID(ctx, no.UserID, no.ClientOrderID)
			switch {
			case err == nil && o.IdempotencyKey == no.IdempotencyKey:
				continue // the key's own order, committed since the look-up: replay it
			case err == nil:
				return Placed{}, ErrClientOrderIDInUse
			}
			return Placed{}, ErrKeyInFlight
		case errors.Is(err, ErrNotFound):
			// The key is taken, yet nothing with it has committed: its request is in flight.
			return Placed{}, ErrKeyInFlight
		case errors.Is(err, errKeyExpired):
			if _, err := s.q.ReleaseIdempotencyKey(ctx, queries.ReleaseIdempotencyKeyParams{
				OrderID: p.Order.ID, UsedKey: no.IdempotencyKey, TtlSeconds: s.keyTTL.Seconds(),
			}); err != nil {
				return Placed{}, fmt.Errorf("place order: release expired idempotency key: %w", err)
			}
			continue
		}
		return p, err
	}
	return Placed{}, ErrKeyInFlight
}

// placement is one order waiting to be written.
type placement struct {
	req  NewOrder
	done chan placeResult
}

// idempotencyLockClass is the first half of the advisory lock of a key being placed
// (PlaceOrders), so that those locks cannot collide with any other advisory lock.
const idempotencyLockClass = 0x1de7

// clientOrderLockClass is the same for a client order id being placed.
const clientOrderLockClass = 0x1de8

// placeResult is what became of a placement. created is false, with no error, when the
// user's Idempotency-Key was already taken, by an earlier order or by another request in
// the same batch; nothing of this request was written then.
type placeResult struct {
	order   queries.Order
	created bool
	answer  *Answer
	err     error
}

// newPlacer returns a placer writing through q and telling batches (if not nil) the size
// of every statement it ran. A batch's statement gets timeout, whoever waits for it: one
// client giving up must not abort the other orders in its batch.
//
// At most maxQueue orders wait for a writer (0: defaultMaxQueue); beyond that, place
// refuses at once with ErrBusy.
func newPlacer(pool *pgxpool.Pool, waker Waker, timeout time.Duration, batches BatchObserver, maxQueue int, keyTTL time.Duration) *placer {
	if maxQueue <= 0 {
		maxQueue = defaultMaxQueue
	}
	if keyTTL <= 0 {
		keyTTL = DefaultIdempotencyTTL
	}
	return &placer{pool: pool, waker: waker, timeout: timeout, batches: batches, maxQueue: maxQueue, keyTTL: keyTTL}
}

// place writes the order of req and returns what became of it, or, once ctx is done,
// ErrNotPlaced (the order was still queued, and now never will be written) or
// ErrUnconfirmed (its statement is running: it commits or fails with its batch, whoever
// waits, as a statement already sent would). A full queue is ErrBusy at once.
func (p *placer) place(ctx context.Context, req NewOrder) placeResult {
	pl := &placement{req: req, done: make(chan placeResult, 1)}
	p.mu.Lock()
	if len(p.queue) >= p.maxQueue {
		p.mu.Unlock()
		return placeResult{err: ErrBusy}
	}
	p.queue = append(p.queue, pl)
	lead := p.writers < placeWriters
	if lead {
		p.writers++
	}
	p.mu.Unlock()
	if lead {
		// A free writer: a goroutine writes the batch (this order and whatever queued with
		// it), so that this request, like every other, waits no longer than its deadline;
		// the statement runs to its own timeout whoever gives up.
		go p.writeWhileQueued()
	}
	select {
	case r := <-pl.done:
		return r
	case <-ctx.Done():
	}
	p.mu.Lock()
	if i := slices.Index(p.queue, pl); i >= 0 {
		p.queue = slices.Delete(p.queue, i, i+1)
		p.mu.Unlock()
		return placeResult{err: fmt.Errorf("%w: %w", ErrNotPlaced, ctx.Err())}
	}
	p.mu.Unlock()
	select {
	case r := <-pl.done: // answered meanwhile
		return r
	default:
		return placeResult{err: fmt.Errorf("%w: %w", ErrUnconfirmed, ctx.Err())}
	}
}

// writeWhileQueued writes batches as a writer until the queue is empty.
func (p *placer) writeWhileQueued() {
	for p.writeNext() {
	}
}

// writeNext writes the next batch and reports true, or, finding the queue empty, stops
// the caller being a writer and reports false.
func (p *placer) writeNext() bool {
	p.mu.Lock()
	n := min(len(p.queue), placeMaxBatch)
	if n == 0 {
		p.writers--
		p.mu.Unlock()
		return false
	}
	batch := slices.Clone(p.queue[:n])
	p.queue = slices.Delete(p.queue, 0, n)
	p.mu.Unlock()
	p.write(batch)
	return true
}

// idemKey is the unique (user, Idempotency-Key) pair of an order.
type idemKey struct {
	userID int64
	key    string
}

// write writes batch in one transaction and gives every placement its result. If the
// statement fails, each order is written again on its own, so a fault of one order fails
// that order alone.
func (p *placer) write(batch []*placement) {
	// One row per (user, key): a repeat within the batch is a duplicate of the first,
	// told so after the commit, exactly as if it had come just after it. Rows go in
	// (user, key) order so that two batches racing on the same keys take their unique
	// index entries in the same order and cannot deadlock; the orders of one batch are
	// concurrent requests, so no order among them is owed to anyone.
	first := make(map[idemKey]*placement, len(batch))
	unique := make([]*placement, 0, len(batch))
	for _, pl := range batch {
		k := idemKey{pl.req.UserID, pl.req.IdempotencyKey}
		if _, seen := first[k]; !seen {
			first[k] = pl
			unique = append(unique, pl)
		}
	}
	slices.SortFunc(unique, func(a, b *placement) int {
		return cmp.Or(cmp.Compare(a.req.UserID, b.req.UserID), cmp.Compare(a.req.IdempotencyKey, b.req.IdempotencyKey))
	})

	written, err := p.insert(unique)
	if err != nil {
		if len(batch) > 1 && refusedStatement(err) {
			// PostgreSQL refused the statement, perhaps for one order's sake. An error
			// short of that (a timeout, a lost connection) would hit every order alike, and
			// retrying them one by one would only multiply the wait.
			for _, pl := range batch {
				p.write([]*placement{pl})
			}
			return
		}
		// Every request of the batch hears of it (done is buffered: none of them blocks
		// the writer, whether or not its request still waits). Unless PostgreSQL refused
		// the statement, or the failure came before anything was sent, the commit may have
		// happened (a connection lost during COMMIT): the client must replay to learn.
		switch {
		case refusedStatement(err):
		case pgconn.SafeToRetry(err):
			err = fmt.Errorf("%w: %w", ErrNotPlaced, err)
		default:
			err = fmt.Errorf("%w: %w", ErrUnconfirmed, err)
		}
		for _, pl := range batch {
			pl.done <- placeResult{err: err}
		}
		return
	}
	if len(written) > 0 && p.waker != nil {
		p.waker.Wake()
	}
	for _, pl := range batch {
		k := idemKey{pl.req.UserID, pl.req.IdempotencyKey}
		w, ok := written[k]
		if ok && first[k] == pl {
			pl.done <- w
		} else {
			pl.done <- placeResult{}
		}
	}
}

// refusedStatement reports whether err is PostgreSQL refusing the statement for what it
// says, as opposed to the session failing under it: a connection exception (class 08),
// or the server terminating the session (57P01 admin_shutdown, as pg_terminate_backend
// or a failover does, 57P02 crash_shutdown, 57P03 cannot_connect_now).
func refusedStatement(err error) bool {
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) {
		return false
	}
	return !strings.HasPrefix(pgErr.Code, "08") && !slices.Contains([]string{"57P01", "57P02", "57P03"}, pgErr.Code)
}

// placeParams are PlaceOrders' arguments for the orders, in their order.
func placeParams(orders []NewOrder) queries.PlaceOrdersParams {
	arg := queries.PlaceOrdersParams{EventType: string(order.EventOrderPlaced), Topic: ExecutionTopic, IdempotencyLockClass: idempotencyLockClass, ClientOrderLockClass: clientOrderLockClass}
	for _, r := range orders {
		price := ""
		if r.Price.Valid {
			price = r.Price.Decimal.String()
		}
		details := string(r.Details)
		if details == "" {
			details = "{}"
		}
		arg.UserIds = append(arg.UserIds, r.UserID)
		arg.InstrumentIds = append(arg.InstrumentIds, r.InstrumentID)
		arg.Sides = append(arg.Sides, string(r.Side))
		arg.Kinds = append(arg.Kinds, string(r.Kind))
		arg.Prices = append(arg.Prices, price)
		arg.Quantities = append(arg.Quantities, r.Quantity)
		arg.TimeInForces = append(arg.TimeInForces, string(r.TimeInForce))
		arg.IdempotencyKeys = append(arg.IdempotencyKeys, r.IdempotencyKey)
		arg.RequestHashes = append(arg.RequestHashes, r.RequestHash)
		arg.EventDetails = append(arg.EventDetails, details)
		arg.ClientOrderIds = append(arg.ClientOrderIds, r.ClientOrderID)
		expireAt := ""
		if r.ExpireAt != nil {
			expireAt = r.ExpireAt.UTC().Format(time.RFC3339Nano)
		}
		arg.ExpireAts = append(arg.ExpireAts, expireAt)
	}
	return arg
}

// insert runs PlaceOrders for the placements, in their order, and stores the answers of
// the orders it wrote, in one transaction. It returns what each written order's
// placement gets, by its key.
func (p *placer) insert(pls []*placement) (map[idemKey]placeResult, error) {
	reqs := make([]NewOrder, len(pls))
	for i, pl := range pls {
		reqs[i] = pl.req
	}
	arg := placeParams(reqs)
	ctx, cancel := context.WithTimeout(context.Background(), p.timeout)
	defer cancel()
	if p.batches != nil {
		p.batches.ObserveOrderBatch(len(pls))
	}
	var written map[idemKey]placeResult
	err := pgx.BeginFunc(ctx, p.pool, func(tx pgx.Tx) error {
		q := queries.New(tx)
		rows, err := q.PlaceOrders(ctx, arg)
		if err != nil {
			return err
		}
		byKey := make(map[idemKey]*placement, len(pls))
		for _, pl := range pls {
			byKey[idemKey{pl.req.UserID, pl.req.IdempotencyKey}] = pl
		}
		written = make(map[idemKey]placeResult, len(rows))
		answers := queries.StoreIdempotentAnswersParams{TtlSeconds: p.keyTTL.Seconds()}
		for _, row := range rows {
			k := idemKey{row.UserID, row.IdempotencyKey}
			res := placeResult{order: queries.Order(row), created: true} // sqlc types a CTE's rows apart, but they are the orders row
			if render := byKey[k].req.Answer; render != nil {
				a := render(res.order)
				headers, err := json.Marshal(a.Headers)
				if err != nil {
					return fmt.Errorf("encode the answer's headers: %w", err)
				}
				res.answer = &a
				answers.UserIds = append(answers.UserIds, row.UserID)
				answers.IdempotencyKeys = append(answers.IdempotencyKeys, row.IdempotencyKey)
				answers.RequestHashes = append(answers.RequestHashes, row.RequestHash)
				answers.OrderIds = append(answers.OrderIds, row.ID)
				answers.StatusCodes = append(answers.StatusCodes, int32(a.Status))
				answers.Headers = append(answers.Headers, headers)
				answers.Bodies = append(answers.Bodies, a.Body)
			}
			written[k] = res
		}
		if len(answers.OrderIds) == 0 {
			return nil
		}
		return q.StoreIdempotentAnswers(ctx, answers)
	})
	if err != nil {
		return nil, fmt.Errorf("place %d orders: %w", len(pls), err)
	}
	return written, nil
}
