package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/order"
)

// The scale seed writes orders straight into PostgreSQL, as if the system had run them
// long ago: every one terminal, with the event timeline, trades and fill figures the
// real code would have left, and no outbox row, so nothing is executed and the auditor
// finds nothing to report. The orders follow a pattern of seedBlock positions (seedPattern),
// repeated; a pair of neighbouring positions is a resting SELL LIMIT order (the maker)
// and the BUY that took it one second later (the taker), trading one lot at the maker's
// price.

// SeedKeyPrefix tags the seeded orders: order i of the seed has the Idempotency-Key
// SeedKeyPrefix + i, which is how a later run finds what an earlier one wrote.
const SeedKeyPrefix = "scale-seed-"

// seedBlock is the length of the seed's pattern: counts and chunks are multiples of it,
// so that no pair of orders is split.
const seedBlock = 20

// The seed's timeline: consecutive orders are seedSpacing apart, an order's last event
// comes at most seedTail after it was placed, and the seed's last change is seedAge
// before the seed ran. A week is longer than the dev server's namespace retention (24
// hours), so the audit's runs check, which exempts terminal orders unchanged for longer
// than the retention, expects no run of theirs.
const (
	seedSpacing = time.Second
	seedAge     = 7 * 24 * time.Hour
	seedTail    = 2 * time.Second
)

// seedBookSeqBase is subtracted from a seeded order's index to make its book sequence.
// The seeded orders reached their books a week and more ago, before any order the system
// sequenced (order_book_seq starts at 1), so their sequences are below every real one:
// the audit's priority check compares an aggressor's sequence with those of the orders
// resting when it came, and a seeded taker must not look as if it had arrived after
// orders the system placed later and jumped them.
const seedBookSeqBase = 1 << 62

// seedRole is an order's part in its pair.
type seedRole string

const (
	single seedRole = "single" // trades with nobody
	maker  seedRole = "maker"  // rests, and the next order takes it
	taker  seedRole = "taker"  // takes the order before it
)

// seedEvent is one entry of a seeded order's timeline.
type seedEvent struct {
	Type order.EventType
	To   order.Status
	// At is when, after the order was placed. A maker's fill comes at the taker's
	// matching, seedSpacing + fillAt after the maker was placed.
	At     time.Duration
	Fill   bool   // the event records the pair's trade (its details name it)
	Reason string // the details' reason, if any
	ByUser bool   // the details name the order's user as who asked (placing, cancelling)
}

// seedShape is one kind of seeded order: what it is, where it ended and how it got there.
type seedShape struct {
	Side order.Side
	Kind order.Kind
	Role seedRole
	Lots int64 // quantity, in the pair's lots (1 + k mod 20 each)
	// PriceOffset is added to the pair's price (90.00–110.00); empty for MARKET.
	PriceOffset     string
	Status          order.Status
	Reason          string
	CancelRequested bool
	Events          []seedEvent
}

// fillAt is when, after it was placed, a taker (and its first event after reaching the
// book) matched: its EXECUTING event and its fills share a transaction, so a time.
const fillAt = 30 * time.Millisecond

// toBook is the timeline's start for every order that reached matching.
func toBook(then ...seedEvent) []seedEvent {
	return append([]seedEvent{
		{Type: order.EventOrderPlaced, To: order.Created, ByUser: true},
		{Type: order.EventValidated, To: order.Validated, At: 10 * time.Millisecond},
		{Type: order.EventSentToExecutor, To: order.SentToExecutor, At: 20 * time.Millisecond},
		{Type: order.EventExecuting, To: order.Executing, At: fillAt},
	}, then...)
}

// The shapes of the pattern. Makers sell and takers buy, so every trade's resting order
// is the SELL and its price is the sell's.
var (
	shapeMakerFilled = seedShape{Side: order.Sell, Kind: order.Limit, Role: maker, Lots: 1, PriceOffset: "0",
		Status: order.Executed, Events: toBook(
			seedEvent{Type: order.EventExecuted, To: order.Executed, At: seedSpacing + fillAt, Fill: true})}
	// A maker twice the taker's size, half filled, whose client then cancelled the rest.
	shapeMakerPartCancelled = seedShape{Side: order.Sell, Kind: order.Limit, Role: maker, Lots: 2, PriceOffset: "0",
		Status: order.PartiallyCancelled, Reason: order.ReasonCancelledByClient, CancelRequested: true, Events: toBook(
			seedEvent{Type: order.EventPartiallyFilled, To: order.PartiallyFilled, At: seedSpacing + fillAt, Fill: true},
			seedEvent{Type: order.EventCancelRequested, To: order.PartiallyFilled, At: seedSpacing + 500*time.Millisecond, ByUser: true},
			seedEvent{Type: order.EventPartiallyCancelled, To: order.PartiallyCancelled, At: seedSpacing + 510*time.Millisecond,
				Reason: order.ReasonCancelledByClient, ByUser: true})}
	shapeTakerMarket = seedShape{Side: order.Buy, Kind: order.Market, Role: taker, Lots: 1,
		Status: order.Executed, Events: toBook(
			seedEvent{Type: order.EventExecuted, To: order.Executed, At: fillAt, Fill: true})}
	shapeTakerLimit = seedShape{Side: order.Buy, Kind: order.Limit, Role: taker, Lots: 1, PriceOffset: "0.02",
		Status: order.Executed, Events: toBook(
			seedEvent{Type: order.EventExecuted, To: order.Executed, At: fillAt, Fill: true})}
	// A MARKET buy twice the maker's size: it takes the maker, finds nothing else and its
	// remainder is cancelled in the same match.
	shapeTakerMarketRemainder = seedShape{Side: order.Buy, Kind: order.Market, Role: taker, Lots: 2,
		Status: order.PartiallyCancelled, Reason: order.ReasonMarketRemainder, Events: toBook(
			seedEvent{Type: order.EventPartiallyFilled, To: order.PartiallyFilled, At: fillAt, Fill: true},
			seedEvent{Type: order.EventPartiallyCancelled, To: order.PartiallyCancelled, At: fillAt, Reason: order.ReasonMarketRemainder})}
	// Limits far from the pairs' prices that rested until their clients cancelled them.
	shapeRestedCancelledBuy  = restedCancelled(order.Buy, "-5.00")
	shapeRestedCancelledSell = restedCancelled(order.Sell, "5.00")
	// A price off the 0.01 tick, refused by validation.
	shapeRejected = seedShape{Side: order.Sell, Kind: order.Limit, Role: single, Lots: 1, PriceOffset: "0.005",
		Status: order.Rejected, Reason: order.ReasonTickSize, Events: []seedEvent{
			{Type: order.EventOrderPlaced, To: order.Created, ByUser: true},
			{Type: order.EventRejected, To: order.Rejected, At: 10 * time.Millisecond, Reason: order.ReasonTickSize}}}
	shapeNoLiquidity = seedShape{Side: order.Buy, Kind: order.Market, Role: single, Lots: 1,
		Status: order.Failed, Reason: order.ReasonNoLiquidity, Events: toBook(
			seedEvent{Type: order.EventFailed, To: order.Failed, At: fillAt, Reason: order.ReasonNoLiquidity})}
)

func restedCancelled(side order.Side, offset string) seedShape {
	return seedShape{Side: side, Kind: order.Limit, Role: single, Lots: 1, PriceOffset: offset,
		Status: order.Cancelled, Reason: order.ReasonCancelledByClient, CancelRequested: true, Events: toBook(
			seedEvent{Type: order.EventCancelRequested, To: order.Executing, At: 600 * time.Millisecond, ByUser: true},
			seedEvent{Type: order.EventCancelled, To: order.Cancelled, At: 610 * time.Millisecond,
				Reason: order.ReasonCancelledByClient, ByUser: true})}
}

// seedPattern is the shape of each position of a block: eight pairs and four singles,
// which makes 60% EXECUTED, 20% PARTIALLY_CANCELLED, 10% CANCELLED, 5% REJECTED and 5%
// FAILED, and eight trades per block.
var seedPattern = [seedBlock]seedShape{
	shapeMakerFilled, shapeTakerMarket,
	shapeMakerFilled, shapeTakerLimit,
	shapeMakerPartCancelled, shapeTakerMarket,
	shapeMakerFilled, shapeTakerMarketRemainder,
	shapeRestedCancelledBuy, shapeRejected,
	shapeMakerFilled, shapeTakerMarket,
	shapeMakerFilled, shapeTakerLimit,
	shapeMakerPartCancelled, shapeTakerMarket,
	shapeMakerFilled, shapeTakerMarketRemainder,
	shapeRestedCancelledSell, shapeNoLiquidity,
}

// seedShapeRow and seedEventRow are the pattern as the seed's statement reads it
// (jsonb_to_recordset): one row per position, and one per event of each position.
type seedShapeRow struct {
	Pos             int     `json:"pos"`
	Side            string  `json:"side"`
	Kind            string  `json:"kind"`
	TIF             string  `json:"tif"`
	Role            string  `json:"role"`
	Lots            int64   `json:"lots"`
	FilledLots      int64   `json:"filled_lots"`
	PriceOffset     *string `json:"price_offset"`
	Status          string  `json:"status"`
	Reason          string  `json:"reason"`
	CancelRequested bool    `json:"cancel_requested"`
	ReachesBook     bool    `json:"reaches_book"`
	Version         int     `json:"version"`
	UpdatedMs       int64   `json:"updated_ms"`
}

type seedEventRow struct {
	Pos       int     `json:"pos"`
	Seq       int     `json:"seq"`
	EventType string  `json:"event_type"`
	From      *string `json:"from_status"`
	To        string  `json:"to_status"`
	AtMs      int64   `json:"at_ms"`
	Fill      bool    `json:"fill"`
	Reason    string  `json:"reason"`
	ByUser    bool    `json:"by_user"`
}

// patternRows turns seedPattern into the statement's two parameters. An event's
// from_status is the status the event before it left: annotations (CANCEL_REQUESTED)
// keep it, status changes leave it for their own.
func patternRows() (shapes []seedShapeRow, events []seedEventRow) {
	for pos, s := range seedPattern {
		row := seedShapeRow{Pos: pos, Side: string(s.Side), Kind: string(s.Kind), TIF: string(order.DefaultTimeInForce(s.Kind)),
			Role: string(s.Role), Lots: s.Lots, Status: string(s.Status), Reason: s.Reason,
			CancelRequested: s.CancelRequested, Version: len(s.Events) - 1}
		if s.Role != single {
			row.FilledLots = 1
		}
		if s.PriceOffset != "" {
			row.PriceOffset = &s.PriceOffset
		}
		var from *string
		for i, e := range s.Events {
			events = append(events, seedEventRow{Pos: pos, Seq: i + 1, EventType: string(e.Type), From: from, To: string(e.To),
				AtMs: e.At.Milliseconds(), Fill: e.Fill, Reason: e.Reason, ByUser: e.ByUser})
			to := string(e.To)
			from = &to
			row.ReachesBook = row.ReachesBook || e.Type == order.EventExecuting
			row.UpdatedMs = max(row.UpdatedMs, e.At.Milliseconds())
		}
		shapes = append(shapes, row)
	}
	return shapes, events
}

// seedSQL writes seed orders $1 … $1 + $2 − 1 (their index in the seed) for $3 users,
// order i placed at $4 + i × seedSpacing ($5 seconds), in one statement: the orders,
// then their trades, then their events, which name the trades. $6 and $7 are the
// pattern (patternRows), $8 its length, $9 SeedKeyPrefix and $10 fillAt in
// milliseconds. Of order i:
//
//   - k = i / 2 is its pair; both orders of a pair are on instrument 101 + k mod 3, trade
//     one lot of 1 + k mod 20, at the maker's price, 90.00 + (37k mod 2001) × 0.01 plus
//     the maker's offset (zero);
//   - its user is 1 + (k + i mod 2) mod $3, so the two orders of a pair have different
//     users (given two or more);
//   - its book sequence, for the orders that reached matching, is i − $11
//     (seedBookSeqBase), growing with i like the ids.
//
// The rows are inserted in the seed's order, so ids grow with i.
const seedSQL = `
WITH shape AS (
    SELECT * FROM jsonb_to_recordset($6::jsonb) AS s(pos int, side text, kind text, tif text, role text,
        lots bigint, filled_lots bigint, price_offset numeric, status text, reason text,
        cancel_requested boolean, reaches_book boolean, version bigint, updated_ms bigint)
), step AS (
    SELECT * FROM jsonb_to_recordset($7::jsonb) AS e(pos int, seq int, event_type text, from_status text,
        to_status text, at_ms bigint, fill boolean, reason text, by_user boolean)
), spec AS (
    SELECT g.i, s.*,
           1 + ((g.i / 2 + g.i % 2) % $3::bigint) AS user_id,
           101 + (g.i / 2) % 3 AS instrument_id,
           1 + (g.i / 2) % 20 AS lot,
           (9000 + (g.i / 2 * 37) % 2001) * 0.01 AS pair_price,
           $4::timestamptz + (g.i * $5::bigint) * interval '1 second' AS placed_at
    FROM generate_series($1::bigint, $1::bigint + $2::bigint - 1) AS g(i)
    JOIN shape s ON s.pos = g.i % $8::bigint
), placed AS (
    INSERT INTO orders (user_id, instrument_id, side, kind, price, quantity, remaining_quantity, status,
                        time_in_force, version, idempotency_key, request_hash, reason, cancel_requested,
                        created_at, updated_at, book_seq, on_book)
    SELECT sp.user_id, sp.instrument_id, sp.side, sp.kind, sp.pair_price + sp.price_offset,
           sp.lots * sp.lot, (sp.lots - sp.filled_lots) * sp.lot, sp.status, sp.tif, sp.version,
           $9::text || sp.i, 'scale-seed', sp.reason, sp.cancel_requested,
           sp.placed_at, sp.placed_at + sp.updated_ms * interval '1 millisecond',
           CASE WHEN sp.reaches_book THEN sp.i - $11::bigint END, false
    FROM spec sp
    ORDER BY sp.i
    RETURNING id, substr(idempotency_key, length($9::text) + 1)::bigint AS i, price, quantity, remaining_quantity
), seeded AS MATERIALIZED (
    SELECT sp.*, p.id, p.price, p.quantity, p.remaining_quantity FROM spec sp JOIN placed p USING (i)
), traded AS (
    INSERT INTO trades (instrument_id, buy_order_id, sell_order_id, aggressor_side, price, quantity, executed_at)
    SELECT m.instrument_id,
           CASE WHEN m.side = 'BUY' THEN m.id ELSE t.id END,
           CASE WHEN m.side = 'SELL' THEN m.id ELSE t.id END,
           t.side, m.price, m.lot, t.placed_at + $10::bigint * interval '1 millisecond'
    FROM seeded m JOIN seeded t ON t.i = m.i + 1
    WHERE m.role = 'maker' AND t.role = 'taker'
    ORDER BY m.i
    RETURNING id, buy_order_id, sell_order_id, price, quantity
), fill AS (
    SELECT id AS trade_id, buy_order_id AS order_id, sell_order_id AS counterparty, price, quantity FROM traded
    UNION ALL
    SELECT id, sell_order_id, buy_order_id, price, quantity FROM traded
), written AS (
    INSERT INTO order_events (order_id, seq, event_type, from_status, to_status, details, created_at)
    SELECT o.id, e.seq, e.event_type, e.from_status, e.to_status,
           jsonb_strip_nulls(jsonb_build_object(
               'requestedBy', CASE WHEN e.by_user THEN 'user:' || o.user_id END,
               'reason', NULLIF(e.reason, ''),
               'fillQuantity', CASE WHEN e.fill THEN f.quantity END,
               'fillPrice', CASE WHEN e.fill THEN trim_scale(f.price)::text END,
               'counterpartyOrderId', CASE WHEN e.fill THEN f.counterparty END,
               'remainingQuantity', CASE WHEN e.fill THEN o.remaining_quantity END,
               'tradeId', CASE WHEN e.fill THEN f.trade_id END)),
           o.placed_at + e.at_ms * interval '1 millisecond'
    FROM seeded o
    JOIN step e ON e.pos = o.pos
    LEFT JOIN fill f ON e.fill AND f.order_id = o.id
    ORDER BY o.i, e.seq
    RETURNING 1
)
SELECT (SELECT count(*) FROM seeded), (SELECT count(*) FROM traded), (SELECT count(*) FROM written)`

// seedStateSQL finds what earlier seeds wrote: how many orders, the highest index, and
// when the first was placed (the seed's time origin); $1 is SeedKeyPrefix. One scan of orders: the key has no
// index of its own, and this runs once per bench.
const seedStateSQL = `
SELECT count(*), coalesce(max(substr(idempotency_key, length($1::text) + 1)::bigint), -1),
       min(created_at), now()
FROM orders WHERE idempotency_key LIKE $1::text || '%'`

// SeedOptions say how many orders to seed and how.
type SeedOptions struct {
	Orders int // the seed's target size, a multiple of 20
	Users  int // users the orders are spread over, 2 or more
	Chunk  int // orders per transaction, a multiple of 20
	// Progress, if set, is called after each chunk with the orders seeded so far (those of
	// earlier runs included) and the time the chunk took.
	Progress func(done, total int, took time.Duration)
}

// SeedResult is what Seed found and did.
type SeedResult struct {
	Existing int // seed orders already there, from earlier runs
	Inserted int // orders this run wrote
	Trades   int // trades this run wrote
	Events   int // events this run wrote
	Took     time.Duration
}

// ErrSeedMismatch is returned when the orders an earlier seed wrote cannot be completed
// to the size asked: they are not a whole number of blocks from index 0 (so Seed cannot
// tell what is missing), or their timeline has no room for more.
var ErrSeedMismatch = errors.New("bench: the orders seeded earlier cannot be completed to this size")

// Seed brings the database to opts.Orders seeded orders: it counts those already there
// (tagged with SeedKeyPrefix) and writes the rest, opts.Chunk orders per transaction, so
// that a rerun after a complete seed writes nothing and one after an interrupted seed
// continues where it stopped. Afterwards it refreshes the planner's statistics of the
// tables it wrote, so that what is measured next is planned for their new size.
func Seed(ctx context.Context, pool *pgxpool.Pool, opts SeedOptions) (SeedResult, error) {
	if err := opts.validate(); err != nil {
		return SeedResult{}, err
	}
	start := time.Now()
	var res SeedResult
	var maxIndex int64
	var origin *time.Time
	var now time.Time
	if err := pool.QueryRow(ctx, seedStateSQL, SeedKeyPrefix).Scan(&res.Existing, &maxIndex, &origin, &now); err != nil {
		return res, fmt.Errorf("bench: read the seed's state: %w", err)
	}
	if int64(res.Existing) != maxIndex+1 || res.Existing%seedBlock != 0 {
		return res, fmt.Errorf("%w: %d orders are tagged %q, the highest index is %d", ErrSeedMismatch, res.Existing, SeedKeyPrefix, maxIndex)
	}
	if res.Existing >= opts.Orders {
		res.Took = time.Since(start)
		return res, nil
	}
	// The seed's last change is seedAge ago.
	base := now.Add(-seedAge - seedTail - time.Duration(opts.Orders-1)*seedSpacing)
	if origin != nil {
		// Continue the earlier seed's timeline, as long as it stays older than seedAge.
		base = *origin
		if last := base.Add(time.Duration(opts.Orders-1)*seedSpacing + seedTail); last.After(now.Add(-seedAge)) {
			room := int(now.Add(-seedAge-seedTail).Sub(base)/seedSpacing) + 1
			return res, fmt.Errorf("%w: its %d orders leave room in their timeline for at most %d before it reaches the last %g days; ask for no more, or seed a fresh database",
				ErrSeedMismatch, res.Existing, room-room%seedBlock, seedAge.Hours()/24)
		}
	}
	shapes, events := patternRows()
	shapeJSON, err := json.Marshal(shapes)
	if err != nil {
		return res, fmt.Errorf("bench: encode the seed's pattern: %w", err)
	}
	eventJSON, err := json.Marshal(events)
	if err != nil {
		return res, fmt.Errorf("bench: encode the seed's pattern: %w", err)
	}
	for from := res.Existing; from < opts.Orders; from += opts.Chunk {
		n := min(opts.Chunk, opts.Orders-from)
		began := time.Now()
		var orders, trades, evs int
		err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			// The chunk's joins and sorts then fit in memory rather than spilling to
			// temporary files (a 100,000-order chunk sorts about 100 MB).
			if _, err := tx.Exec(ctx, `SET LOCAL work_mem = '256MB'`); err != nil {
				return err
			}
			return tx.QueryRow(ctx, seedSQL, from, n, opts.Users, base, int64(seedSpacing/time.Second),
				string(shapeJSON), string(eventJSON), seedBlock, SeedKeyPrefix, fillAt.Milliseconds(), int64(seedBookSeqBase)).Scan(&orders, &trades, &evs)
		})
		if err != nil {
			return res, fmt.Errorf("bench: seed orders %d–%d: %w", from, from+n-1, err)
		}
		res.Inserted += orders
		res.Trades += trades
		res.Events += evs
		if opts.Progress != nil {
			opts.Progress(from+n, opts.Orders, time.Since(began))
		}
	}
	if _, err := pool.Exec(ctx, `ANALYZE orders, order_events, trades`); err != nil {
		return res, fmt.Errorf("bench: analyze the seeded tables: %w", err)
	}
	res.Took = time.Since(start)
	return res, nil
}

func (o SeedOptions) validate() error {
	switch {
	case o.Orders <= 0 || o.Orders%seedBlock != 0:
		return fmt.Errorf("bench: the seed's size (%d) must be a positive multiple of %d", o.Orders, seedBlock)
	case o.Users < 2:
		return fmt.Errorf("bench: the seed needs at least 2 users (got %d), so that every trade has two", o.Users)
	case o.Chunk <= 0 || o.Chunk%seedBlock != 0:
		return fmt.Errorf("bench: the seed's chunk (%d) must be a positive multiple of %d", o.Chunk, seedBlock)
	}
	return nil
}
