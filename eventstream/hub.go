// Package eventstream streams order events to subscribers as their transactions commit:
// the live feed behind GET /api/v1/orders/events/stream. One Hub per API process listens
// for the order_events notifications of schema 0016, reads what committed in stream
// order and fans each event out to the subscribers of its user and of its order, each
// with a bounded queue; a subscriber that falls behind is dropped, never waited for.
//
// A position in the stream is (xact, id): the event's inserting transaction and its id.
// Transactions commit out of id order, so the hub emits only events whose xact is below
// the xmin of its read's snapshot: every transaction below xmin has ended, and any still
// to commit has a larger xact. Emitted in (xact, id) order from a cursor, the stream
// never skips an event nor repeats one, and the cursor, being in the database's terms,
// survives a lost LISTEN connection: the hub re-reads from it on reconnect.
package eventstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/queries"
)

// Channel is the PostgreSQL notification channel order_events' statement trigger
// notifies (schema 0016).
const Channel = "order_events"

// Position is a place in the stream: events are in (Xact, ID) order.
type Position struct {
	Xact uint64
	ID   int64
}

// After reports whether p comes after q in the stream.
func (p Position) After(q Position) bool {
	return p.Xact > q.Xact || p.Xact == q.Xact && p.ID > q.ID
}

// Event is one committed order event and the user whose order it is.
type Event struct {
	queries.OrderEvent
	UserID int64
}

// Position is where e is in the stream.
func (e *Event) Position() Position { return Position{Xact: e.Xact, ID: e.ID} }

// Filter selects the events of one stream: those of OrderID if it is not zero (which
// must be an order of UserID), otherwise every event of UserID's orders.
type Filter struct {
	UserID  int64
	OrderID int64
}

// Errors of Subscribe, and the reasons a subscription ends (Subscription.Err).
var (
	ErrTooMany = errors.New("eventstream: this replica serves as many streams as it may")
	ErrClosed  = errors.New("eventstream: the hub has stopped")
	ErrTooSlow = errors.New("eventstream: the subscriber fell too far behind")
)

// Config tunes a hub. The zero value of every field means its default:
//
//   - Buffer: how many events may wait for one subscriber before it is dropped; default
//     1024. The queue is allocated as it fills, so an idle stream costs nothing of it,
//     and it holds two pages of the hub's reads, so a burst (a bulk cancel, a sweep) does
//     not drop a client that reads.
//   - MaxSubscribers: how many subscriptions may be open at once; default 5000.
//   - PageSize: how many events one read fetches; default 500.
type Config struct {
	Buffer         int
	MaxSubscribers int
	PageSize       int32
}

func (c Config) withDefaults() Config {
	if c.Buffer <= 0 {
		c.Buffer = 1024
	}
	if c.MaxSubscribers <= 0 {
		c.MaxSubscribers = 5000
	}
	if c.PageSize <= 0 {
		c.PageSize = 500
	}
	return c
}

// Backoffs: after a failure (the database, the LISTEN connection), and while committed
// events wait behind an older open transaction (a bounded catch-up, not steady polling:
// it ends once they are out).
const (
	minRetry    = 100 * time.Millisecond
	maxRetry    = 5 * time.Second
	minHeldBack = 20 * time.Millisecond
	maxHeldBack = time.Second
)

// Hub fans committed order events out to subscribers. Create it with New and run it with
// Run; Subscribe waits until it has found where "now" is.
type Hub struct {
	pool *pgxpool.Pool
	q    *queries.Queries
	log  *slog.Logger
	cfg  Config
	wake chan struct{} // size 1: notifications coalesce into one read

	ready     chan struct{} // closed once cursor is set
	readyOnce sync.Once

	mu     sync.Mutex
	cursor Position // every event up to here has been fanned out
	// idle: with no subscriber the hub reads nothing, and the cursor falls behind; the
	// next Subscribe moves it to the database's present first.
	idle    bool
	skipped int64
	closed  bool
	byUser  map[int64]map[*Subscription]struct{}
	byOrder map[int64]map[*Subscription]struct{}
	subs    int
	dropped int64
	reads   int64
}

// New returns a hub reading from pool; nil logger discards logs. It does nothing until
// Run.
func New(pool *pgxpool.Pool, logger *slog.Logger, cfg Config) *Hub {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Hub{
		pool: pool, q: queries.New(pool), log: logger, cfg: cfg.withDefaults(),
		wake:    make(chan struct{}, 1),
		ready:   make(chan struct{}),
		byUser:  map[int64]map[*Subscription]struct{}{},
		byOrder: map[int64]map[*Subscription]struct{}{},
	}
}

// Stats is a snapshot of a hub's subscriptions.
type Stats struct {
	Subscribers int
	Dropped     int64 // subscriptions dropped for falling behind, since the hub started
	Reads       int64 // reads of what committed that ended, since the hub started
	Skipped     int64 // wake-ups it read nothing for, having no subscriber
	Cursor      Position
}

// Stats returns how many subscriptions are open and how many were dropped.
func (h *Hub) Stats() Stats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return Stats{Subscribers: h.subs, Dropped: h.dropped, Reads: h.reads, Skipped: h.skipped, Cursor: h.cursor}
}

// Ready is closed once the hub serves subscriptions (or has stopped).
func (h *Hub) Ready() <-chan struct{} { return h.ready }

// Run feeds the hub until ctx ends, then ends every subscription (ErrClosed) and
// returns nil. Database failures are logged and retried with backoff; nothing committed
// meanwhile is lost, since the hub reads again from its cursor.
func (h *Hub) Run(ctx context.Context) error {
	defer h.close()
	if !h.start(ctx) {
		return nil
	}
	var wg sync.WaitGroup
	wg.Go(func() { h.listen(ctx) })
	h.read(ctx)
	wg.Wait()
	return nil
}

// start sets the cursor at the database's present: the stream starts now, not with the
// whole history. It reports false if ctx ended first.
func (h *Hub) start(ctx context.Context) bool {
	retry := newBackoff(minRetry, maxRetry)
	for {
		xmin, err := h.q.StreamHorizon(ctx)
		if err == nil {
			h.mu.Lock()
			// Every event below xmin has committed (or never will); events of xmin itself
			// and later are ahead: (xmin, 0) sits between them, ids being positive.
			h.cursor = Position{Xact: xmin}
			h.mu.Unlock()
			h.readyOnce.Do(func() { close(h.ready) })
			return true
		}
		if ctx.Err() != nil {
			return false
		}
		h.log.Warn("event stream: cannot read the database's horizon; retrying", "error", err)
		if !retry.wait(ctx) {
			return false
		}
	}
}

// listen holds a connection of its own with LISTEN order_events and wakes the reader on
// every notification, reconnecting with backoff when the connection is lost. After each
// (re)connection it wakes the reader once, for what committed while nobody listened.
func (h *Hub) listen(ctx context.Context) {
	retry := newBackoff(minRetry, maxRetry)
	for ctx.Err() == nil {
		err := h.listenOnce(ctx, retry)
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("event stream: LISTEN connection lost; reconnecting", "error", err)
		if !retry.wait(ctx) {
			return
		}
	}
}

func (h *Hub) listenOnce(ctx context.Context, retry *backoff) error {
	// Not a pooled connection: it is held for the process's life, and a pool's size is
	// sized for queries.
	conn, err := pgx.ConnectConfig(ctx, h.pool.Config().ConnConfig.Copy())
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer func() { _ = conn.Close(context.WithoutCancel(ctx)) }()
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	retry.reset()
	h.poke()
	for {
		if _, err := conn.WaitForNotification(ctx); err != nil {
			return fmt.Errorf("wait for notification: %w", err)
		}
		h.poke()
	}
}

// poke wakes the reader; a wake-up already pending covers this one.
func (h *Hub) poke() {
	select {
	case h.wake <- struct{}{}:
	default:
	}
}

// read fans out what committed each time it is woken, until ctx ends. While committed
// events wait behind an older open transaction it reads again after a short backoff,
// since that transaction's end may notify nobody (it may have written no event).
func (h *Hub) read(ctx context.Context) {
	failed := newBackoff(minRetry, maxRetry)
	held := newBackoff(minHeldBack, maxHeldBack)
	var again <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-h.wake:
		case <-again:
		}
		again = nil
		// No one to tell: reading what committed would only move the cursor, which the
		// next Subscribe sets to the present anyway.
		h.mu.Lock()
		skip := h.subs == 0
		if skip {
			h.idle = true
			h.skipped++
		}
		h.mu.Unlock()
		if skip {
			continue
		}
		heldBack, err := h.catchUp(ctx)
		h.mu.Lock()
		h.reads++
		h.mu.Unlock()
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			h.log.Warn("event stream: read failed; retrying", "error", err)
			again = time.After(failed.next())
		case heldBack:
			failed.reset()
			again = time.After(held.next())
		default:
			failed.reset()
			held.reset()
		}
	}
}

// catchUp fans out, page by page, every event after the cursor below its snapshot's
// xmin, all in one snapshot, and reports whether committed events remain held back
// beyond that xmin.
func (h *Hub) catchUp(ctx context.Context) (heldBack bool, err error) {
	err = pgx.BeginTxFunc(ctx, h.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		q := h.q.WithTx(tx)
		for {
			from := h.position()
			rows, err := q.ReadEventStream(ctx, queries.ReadEventStreamParams{AfterXact: from.Xact, AfterID: from.ID, MaxRows: h.cfg.PageSize})
			if err != nil {
				return fmt.Errorf("read events: %w", err)
			}
			events := make([]*Event, len(rows))
			for i, r := range rows {
				events[i] = &Event{OrderEvent: r.OrderEvent, UserID: r.UserID}
			}
			h.fanOut(events)
			if len(rows) < int(h.cfg.PageSize) {
				break
			}
		}
		heldBack, err = q.EventsHeldBack(ctx)
		if err != nil {
			return fmt.Errorf("look for held-back events: %w", err)
		}
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("eventstream: %w", err)
	}
	return heldBack, nil
}

func (h *Hub) position() Position {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.cursor
}

// fanOut offers each event to its user's and its order's subscribers and moves the
// cursor past it, under the lock that Subscribe takes, so a subscriber gets exactly the
// events after the cursor it registered at.
func (h *Hub) fanOut(events []*Event) {
	if len(events) == 0 {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, e := range events {
		for s := range h.byUser[e.UserID] {
			h.offer(s, e)
		}
		for s := range h.byOrder[e.OrderID] {
			h.offer(s, e)
		}
		h.cursor = e.Position()
	}
}

// offer queues e for s, or drops s if its queue is full. Called with h.mu held.
func (h *Hub) offer(s *Subscription, e *Event) {
	s.mu.Lock()
	full := len(s.queue) >= h.cfg.Buffer
	if !full {
		s.queue = append(s.queue, e)
	}
	s.mu.Unlock()
	if full {
		h.dropped++
		h.remove(s, ErrTooSlow)
		return
	}
	select {
	case s.pending <- struct{}{}:
	default:
	}
}

// remove unregisters s and ends it with err. Called with h.mu held.
func (h *Hub) remove(s *Subscription, err error) {
	index, key := h.byUser, s.filter.UserID
	if s.filter.OrderID != 0 {
		index, key = h.byOrder, s.filter.OrderID
	}
	if _, ok := index[key][s]; !ok {
		return
	}
	delete(index[key], s)
	if len(index[key]) == 0 {
		delete(index, key)
	}
	h.subs--
	s.err = err
	close(s.done)
}

// close ends every subscription with ErrClosed and refuses new ones, also to callers
// waiting for a hub that never became ready.
func (h *Hub) close() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.closed = true
	h.readyOnce.Do(func() { close(h.ready) })
	for _, index := range []map[int64]map[*Subscription]struct{}{h.byUser, h.byOrder} {
		for _, subs := range index {
			for s := range subs {
				h.remove(s, ErrClosed)
			}
		}
	}
}

// Subscribe registers a subscription to f's events at the hub's cursor, waiting until
// the hub is ready or ctx ends. It returns ErrTooMany when MaxSubscribers are open and
// ErrClosed once the hub has stopped. The caller must Close it.
func (h *Hub) Subscribe(ctx context.Context, f Filter) (*Subscription, error) {
	select {
	case <-h.ready:
	case <-ctx.Done():
		return nil, fmt.Errorf("eventstream: wait for the hub: %w", ctx.Err())
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.idle {
		// The hub read nothing while no one subscribed: its cursor is where it stopped.
		// The database's present starts the stream (as at start), so the subscription
		// is not handed what committed before it.
		h.mu.Unlock()
		xmin, err := h.q.StreamHorizon(ctx)
		h.mu.Lock()
		if err != nil {
			return nil, fmt.Errorf("eventstream: read the database's horizon: %w", err)
		}
		if h.idle {
			if p := (Position{Xact: xmin}); p.After(h.cursor) {
				h.cursor = p
			}
			h.idle = false
			// Events that committed at or above the horizon before now notified no
			// read: read them now, and follow them while they are held back.
			h.poke()
		}
	}
	switch {
	case h.closed:
		return nil, ErrClosed
	case h.subs >= h.cfg.MaxSubscribers:
		return nil, ErrTooMany
	}
	s := &Subscription{hub: h, filter: f, start: h.cursor, pending: make(chan struct{}, 1), done: make(chan struct{})}
	index, key := h.byUser, f.UserID
	if f.OrderID != 0 {
		index, key = h.byOrder, f.OrderID
	}
	if index[key] == nil {
		index[key] = map[*Subscription]struct{}{}
	}
	index[key][s] = struct{}{}
	h.subs++
	return s, nil
}

// Subscription is one subscriber's view of the stream: the events after Start, in
// stream order, until it is closed or dropped.
type Subscription struct {
	hub     *Hub
	filter  Filter
	start   Position
	pending chan struct{} // size 1: the queue is not empty
	done    chan struct{} // closed when the hub ends the subscription
	err     error         // why, set before done is closed (under hub.mu)

	mu    sync.Mutex
	queue []*Event
}

// Start is the cursor the subscription registered at: it receives exactly the events
// after it.
func (s *Subscription) Start() Position { return s.start }

// Pending receives a value when events are waiting to be taken.
func (s *Subscription) Pending() <-chan struct{} { return s.pending }

// Take returns the waiting events, oldest first, and empties the queue. Events are
// shared between subscribers: read them, never change them.
func (s *Subscription) Take() []*Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.queue
	s.queue = nil // a fresh queue grows as needed; an idle one holds nothing
	return q
}

// Done is closed when the hub ends the subscription: it fell behind (ErrTooSlow) or the
// hub stopped (ErrClosed). Err says which.
func (s *Subscription) Done() <-chan struct{} { return s.done }

// Err is why the subscription ended, once Done is closed; nil before.
func (s *Subscription) Err() error {
	select {
	case <-s.done:
		return s.err
	default:
		return nil
	}
}

// Close unregisters the subscription; it may be called more than once, and after the
// hub ended it.
func (s *Subscription) Close() {
	s.hub.mu.Lock()
	defer s.hub.mu.Unlock()
	s.hub.remove(s, ErrClosed)
}

// Replay returns up to limit of f's events after from up to and including upto, in
// stream order: what a reconnecting subscriber missed before its subscription's Start.
// Every such event is committed and visible, upto being a cursor the hub has passed.
func (h *Hub) Replay(ctx context.Context, f Filter, from, upto Position, limit int32) ([]*Event, error) {
	var events []*Event
	if f.OrderID != 0 {
		rows, err := h.q.ReplayOrderEvents(ctx, queries.ReplayOrderEventsParams{OrderID: f.OrderID,
			AfterXact: from.Xact, AfterID: from.ID, UptoXact: upto.Xact, UptoID: upto.ID, MaxRows: limit})
		if err != nil {
			return nil, fmt.Errorf("eventstream: replay order %d: %w", f.OrderID, err)
		}
		for _, r := range rows {
			events = append(events, &Event{OrderEvent: r.OrderEvent, UserID: r.UserID})
		}
		return events, nil
	}
	rows, err := h.q.ReplayUserEvents(ctx, queries.ReplayUserEventsParams{UserID: f.UserID,
		AfterXact: from.Xact, AfterID: from.ID, UptoXact: upto.Xact, UptoID: upto.ID, MaxRows: limit})
	if err != nil {
		return nil, fmt.Errorf("eventstream: replay user %d: %w", f.UserID, err)
	}
	for _, r := range rows {
		events = append(events, &Event{OrderEvent: r.OrderEvent, UserID: r.UserID})
	}
	return events, nil
}

// ErrUnknownEvent is Locate's answer for an event id that does not exist.
var ErrUnknownEvent = errors.New("eventstream: no such event")

// Located is where an event is in the stream and whose it is.
type Located struct {
	Position
	OrderID int64
	UserID  int64
}

// Locate finds event id in the stream (a client's Last-Event-ID), or ErrUnknownEvent.
func (h *Hub) Locate(ctx context.Context, id int64) (Located, error) {
	row, err := h.q.GetEventPosition(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return Located{}, ErrUnknownEvent
	}
	if err != nil {
		return Located{}, fmt.Errorf("eventstream: locate event %d: %w", id, err)
	}
	return Located{Position: Position{Xact: row.Xact, ID: id}, OrderID: row.OrderID, UserID: row.UserID}, nil
}

// backoff is an exponential delay from min to max.
type backoff struct{ lo, hi, cur time.Duration }

func newBackoff(lo, hi time.Duration) *backoff { return &backoff{lo: lo, hi: hi} }

func (b *backoff) next() time.Duration {
	if b.cur == 0 {
		b.cur = b.lo
	} else {
		b.cur = min(2*b.cur, b.hi)
	}
	return b.cur
}

func (b *backoff) reset() { b.cur = 0 }

// wait sleeps for the next delay; false if ctx ended first.
func (b *backoff) wait(ctx context.Context) bool {
	t := time.NewTimer(b.next())
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
