package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/shopspring/decimal"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
	"golang.org/x/sync/errgroup"

	"github.com/orderflow/orderflow/order"
)

// Targets of a deep sweep (issue 10): a MARKET order that takes N resting orders is
// EXECUTED, with N trades, within TargetSweepMs of reaching the book, and no step of its
// matching (one transaction each) takes longer than TargetStepMs.
const (
	TargetSweepMs = 5000.0
	TargetStepMs  = 1000.0
)

// The deep book's users: the sells are spread over deepBookSellers users from
// deepBookFirstSeller, and the buy is another user's, so self-trade prevention never
// stops the sweep. They are far from the load's users (1–50) and the seed's.
const (
	deepBookFirstSeller = 900_001
	deepBookSellers     = 10
	deepBookBuyer       = 900_100
)

// deepBookPrice is the sells' price when the instrument has no resting sells: a level
// far above the load's prices (about 100), which no resting buy reaches.
const deepBookPrice = "10000"

// preMatchStatuses are the statuses of an order on its way to the book.
var preMatchStatuses = []string{string(order.Created), string(order.Validated), string(order.SentToExecutor)}

// Polling of the waits: the buy often, because its end is timed by when a poll sees it;
// the rest gently, since they load the system being measured.
const (
	buyPollInterval  = 10 * time.Millisecond
	slowPollInterval = 250 * time.Millisecond
)

// placeWorkers are the concurrent clients placing the sells.
const placeWorkers = 16

// DeepBookOptions configure a deep-book run.
type DeepBookOptions struct {
	APIURL            string
	DatabaseURL       string
	TemporalAddress   string
	TemporalNamespace string
	// TemporalConnection is how the visibility client connects (see Options).
	TemporalConnection client.ConnectionOptions
	Orders             int           // N: resting one-lot sells, and the buy's quantity
	Instrument         int64         // the instrument whose book is used
	Wait               time.Duration // deadline of each wait: the sells resting, the buy ending, the runs completing
	Progress           io.Writer     // progress lines; nil discards them
	Logger             *slog.Logger  // the Temporal SDK's log; nil discards it
}

// DeepBookReport is what a deep-book run found. Its JSON form is one object with stable
// names; times measured by the database (event created_at) and by the bench are compared
// on the assumption that both run on one machine, as `make run` does.
type DeepBookReport struct {
	Mode       string `json:"mode"` // "deep-book"
	Orders     int    `json:"orders"`
	Instrument int64  `json:"instrument"`
	Price      string `json:"price"`
	// PlaceS is how long the N POSTs took; RestS how long from the first POST until the
	// bench saw all N resting.
	PlaceS            float64 `json:"place_s"`
	RestS             float64 `json:"rest_s"`
	RunsWaitingBefore int64   `json:"runs_waiting_before"` // the sells' runs that visibility showed running before the buy
	BuyOrderID        int64   `json:"buy_order_id"`
	BuyStatus         string  `json:"buy_status"`
	BuyPickupMs       float64 `json:"buy_pickup_ms"` // from the buy's 201 to its EXECUTING event
	Trades            int     `json:"trades"`
	TradesWithSells   int     `json:"trades_with_sells"` // of which with the bench's sells
	FilledQuantity    int64   `json:"filled_quantity"`
	// ToLastStepMs is from the buy's EXECUTING event (it reached the book) to the start of
	// its last step (for an EXECUTED buy, its EXECUTED event); SweepMs is to when the
	// bench saw it ended, so it includes the last step and is at most buyPollInterval late.
	ToLastStepMs float64   `json:"to_last_step_ms"`
	SweepMs      float64   `json:"sweep_ms"`
	Steps        int       `json:"steps"`          // transactions that wrote the buy's matching events
	StepStartsMs []float64 `json:"step_starts_ms"` // each one's start, from the first
	// MaxStepMs bounds the longest step: the largest gap between consecutive step starts,
	// or the last step (LastStepMs: from its start to when the bench saw the buy ended, or
	// stopped waiting for it).
	MaxStepMs  float64 `json:"max_step_ms"`
	LastStepMs float64 `json:"last_step_ms"`
	// CounterpartiesDoneMs is from when the bench saw the buy ended until visibility
	// showed none of the sells' runs running; null if that was not seen, or not waited
	// for because some sells were not taken.
	CounterpartiesDoneMs *float64        `json:"counterparties_done_ms"`
	Targets              map[string]bool `json:"targets_met"`
	Notes                []string        `json:"notes,omitempty"`
}

// DeepBook measures a sweep through a deep book: it rests opts.Orders one-lot LIMIT
// sells at one price on opts.Instrument through the API, waits until all of them rest,
// places one MARKET buy for all of them, and measures how its matching went (from its
// events: each step is one transaction, and every event a transaction writes carries
// that transaction's start as created_at) and how long the sells' runs took to complete
// after it. The price is one no resting buy reaches, with no other sell at or below it
// (see restingPrice), so that the buy trades with the bench's sells and nothing else.
func DeepBook(ctx context.Context, opts DeepBookOptions) (*DeepBookReport, error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	d := &deepBook{opts: opts, out: &lineWriter{w: opts.Progress}}
	if opts.Orders <= 0 || opts.Wait <= 0 {
		return nil, errors.New("bench: the deep book needs a positive number of orders and wait")
	}
	d.base = strings.TrimRight(opts.APIURL, "/")
	d.http = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: placeWorkers + 2}}
	defer d.http.CloseIdleConnections()
	if err := (&runner{opts: Options{APIURL: d.base}, http: d.http}).checkAPI(ctx); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(opts.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("bench: database URL: %w", err)
	}
	pcfg.MaxConns = 2
	if d.pool, err = pgxpool.NewWithConfig(ctx, pcfg); err != nil {
		return nil, fmt.Errorf("bench: database: %w", err)
	}
	defer d.pool.Close()
	d.creds = newCredentials(d.pool)
	defer func() {
		if err := d.creds.revoke(); err != nil {
			d.out.printf("%v", err)
		}
	}()
	if d.temporal, err = client.DialContext(ctx, client.Options{
		HostPort: opts.TemporalAddress, Namespace: opts.TemporalNamespace,
		Logger: tlog.NewStructuredLogger(opts.Logger), ConnectionOptions: opts.TemporalConnection,
	}); err != nil {
		return nil, fmt.Errorf("bench: temporal at %s: %w", opts.TemporalAddress, err)
	}
	defer d.temporal.Close()
	d.runID = strconv.FormatInt(time.Now().UnixNano(), 36)
	d.rep = &DeepBookReport{Mode: ModeDeepBook, Orders: opts.Orders, Instrument: opts.Instrument}
	if err := d.run(ctx); err != nil {
		return nil, err
	}
	d.rep.finish()
	return d.rep, nil
}

// deepBook is one deep-book run's state.
type deepBook struct {
	opts     DeepBookOptions
	out      *lineWriter
	base     string
	http     *http.Client
	pool     *pgxpool.Pool
	creds    *credentials
	temporal client.Client
	runID    string
	rep      *DeepBookReport
	sells    []int64 // the sells' ids, ascending
}

// run places the sells, then the buy, and fills the report in.
func (d *deepBook) run(ctx context.Context) error {
	o, rep := d.opts, d.rep
	price, err := d.choosePrice(ctx)
	if err != nil {
		return err
	}
	rep.Price = price.String()

	d.out.printf("deep book: placing %d one-lot SELL LIMIT orders at %s on instrument %d…", o.Orders, rep.Price, o.Instrument)
	start := time.Now()
	if err := d.placeSells(ctx, price); err != nil {
		return err
	}
	rep.PlaceS = round2(time.Since(start).Seconds())
	d.out.printf("deep book: placed in %.1f s; waiting for all of them to rest (up to %s)…", rep.PlaceS, o.Wait)
	if err := d.waitResting(ctx); err != nil {
		return err
	}
	rep.RestS = round2(time.Since(start).Seconds())
	if rep.RunsWaitingBefore, err = d.waitRuns(ctx, func(n int64) bool { return n >= int64(o.Orders) }); err != nil {
		rep.Notes = append(rep.Notes, fmt.Sprintf("before the buy, visibility showed %d of the sells' %d runs running: %v", rep.RunsWaitingBefore, o.Orders, err))
	}
	d.out.printf("deep book: all %d resting after %.1f s; placing a MARKET BUY for %d…", o.Orders, rep.RestS, o.Orders)

	buy := OrderRequest{UserID: deepBookBuyer, InstrumentID: o.Instrument, Side: string(order.Buy), Kind: string(order.Market), Quantity: int64(o.Orders)}
	id, accepted, err := d.place(ctx, buy, fmt.Sprintf("deep-book-%s-buy", d.runID))
	if err != nil {
		return err
	}
	rep.BuyOrderID = id
	end, err := d.waitBuy(ctx, id)
	if err != nil {
		return err
	}
	// A buy that did not end is reported as far as it went, rather than failing the run:
	// where a sweep stops is what this measurement is for.
	switch {
	case end.parked != "":
		rep.Notes = append(rep.Notes, fmt.Sprintf("the buy was parked (it needs an operator): %s; the figures are of its steps until then", end.parked))
	case !end.ended:
		rep.Notes = append(rep.Notes, fmt.Sprintf("the buy had not ended %s after it was placed; the figures are of its steps until then", o.Wait))
	}
	if err := d.readSweep(ctx, accepted, end.seen); err != nil {
		return err
	}
	d.out.printf("deep book: the buy is %s with %d trades, %.1f ms after reaching the book, in %s",
		rep.BuyStatus, rep.Trades, rep.SweepMs, quantity(rep.Steps, "step"))

	if rep.TradesWithSells < o.Orders {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the sells' runs were not waited for: %d of the sells were not taken, so their runs go on",
			o.Orders-rep.TradesWithSells))
		return nil
	}
	d.out.printf("deep book: waiting for the sells' runs to complete…")
	if _, err := d.waitRuns(ctx, func(n int64) bool { return n == 0 }); err != nil {
		rep.Notes = append(rep.Notes, "the sells' runs were not seen completed: "+err.Error())
	} else {
		rep.CounterpartiesDoneMs = ptr(ms(time.Since(end.seen)))
	}
	return nil
}

// choosePrice reads the instrument and its book and picks the sells' price (restingPrice).
func (d *deepBook) choosePrice(ctx context.Context) (decimal.Decimal, error) {
	var tick decimal.Decimal
	var status string
	err := d.pool.QueryRow(ctx, `SELECT tick_size, status FROM instruments WHERE id = $1`, d.opts.Instrument).Scan(&tick, &status)
	if errors.Is(err, pgx.ErrNoRows) {
		return decimal.Zero, fmt.Errorf("bench: instrument %d does not exist", d.opts.Instrument)
	}
	if err != nil {
		return decimal.Zero, fmt.Errorf("bench: read instrument %d: %w", d.opts.Instrument, err)
	}
	if status != "ACTIVE" {
		return decimal.Zero, fmt.Errorf("bench: instrument %d is %s; the deep book needs an active one", d.opts.Instrument, status)
	}
	// The book, and the orders mid-sweep that may rest on it again: LIMIT orders in a
	// resting status with quantity left.
	var bid, ask decimal.NullDecimal
	var coming int64
	if err := d.pool.QueryRow(ctx, `
		SELECT max(price) FILTER (WHERE side = 'BUY' AND status = ANY($2) AND kind = 'LIMIT' AND remaining_quantity > 0),
		       min(price) FILTER (WHERE side = 'SELL' AND status = ANY($2) AND kind = 'LIMIT' AND remaining_quantity > 0),
		       count(*) FILTER (WHERE status = ANY($3))
		FROM orders WHERE instrument_id = $1`,
		d.opts.Instrument, restingStatuses, preMatchStatuses).Scan(&bid, &ask, &coming); err != nil {
		return decimal.Zero, fmt.Errorf("bench: read the book of instrument %d: %w", d.opts.Instrument, err)
	}
	if coming > 0 {
		d.rep.Notes = append(d.rep.Notes, fmt.Sprintf("%d orders were on their way to instrument %d's book at the start; one that sells at or below the price would take a share of the buy", coming, d.opts.Instrument))
	}
	p, err := restingPrice(bid, ask, tick)
	if err != nil {
		return decimal.Zero, fmt.Errorf("bench: instrument %d: %w", d.opts.Instrument, err)
	}
	return p, nil
}

// restingPrice picks the deep book's price given the best resting bid and ask: one the
// bid does not reach, so the sells rest, and with no resting sell at or below it, so the
// MARKET buy takes the bench's sells and only them. With no ask that is deepBookPrice
// (or higher, above a bid beyond it); with one, one tick under it, if the bid leaves
// room.
func restingPrice(bid, ask decimal.NullDecimal, tick decimal.Decimal) (decimal.Decimal, error) {
	if !ask.Valid {
		p := decimal.RequireFromString(deepBookPrice)
		if bid.Valid && bid.Decimal.GreaterThanOrEqual(p) {
			p = bid.Decimal.Add(tick.Mul(decimal.NewFromInt(1000)))
		}
		return p, nil
	}
	p := ask.Decimal.Sub(tick)
	if !p.IsPositive() || (bid.Valid && p.LessThanOrEqual(bid.Decimal)) {
		bidText := "none"
		if bid.Valid {
			bidText = bid.Decimal.String()
		}
		return decimal.Zero, fmt.Errorf("no free price level: sells rest from %s and buys up to %s, so the deep book's sells would either cross a buy or queue behind other sells; use another --instrument or cancel the resting sells", ask.Decimal, bidText)
	}
	return p, nil
}

// placeSells posts the N sells from placeWorkers clients and keeps their ids.
func (d *deepBook) placeSells(ctx context.Context, price decimal.Decimal) error {
	g, ctx := errgroup.WithContext(ctx)
	var next atomic.Int64
	var mu sync.Mutex
	ids := make([]int64, 0, d.opts.Orders)
	for range placeWorkers {
		g.Go(func() error {
			for {
				i := next.Add(1) - 1
				if i >= int64(d.opts.Orders) {
					return nil
				}
				sell := OrderRequest{UserID: deepBookFirstSeller + i%deepBookSellers, InstrumentID: d.opts.Instrument,
					Side: string(order.Sell), Kind: string(order.Limit), Price: price.String(), Quantity: 1}
				id, _, err := d.place(ctx, sell, fmt.Sprintf("deep-book-%s-%d", d.runID, i))
				if err != nil {
					return err
				}
				mu.Lock()
				ids = append(ids, id)
				mu.Unlock()
			}
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	slices.Sort(ids)
	d.sells = ids
	return nil
}

// place posts one order and returns its id and when the 201 came. An answer that asks
// the client to come back (429, 503) is retried with the same key after its Retry-After
// (1 s without one, at most 10 s); any other answer but 201 fails the run.
func (d *deepBook) place(ctx context.Context, o OrderRequest, key string) (int64, time.Time, error) {
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.base+"/api/v1/orders", bytes.NewReader(o.Body()))
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("bench: %w", err)
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", key)
		if err := d.creds.authorize(ctx, req, o.UserID); err != nil {
			return 0, time.Time{}, err
		}
		resp, err := d.http.Do(req)
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("bench: place an order: %w", err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		at := time.Now()
		if err != nil {
			return 0, time.Time{}, fmt.Errorf("bench: place an order: %w", err)
		}
		switch resp.StatusCode {
		case http.StatusCreated:
			var placed placedBody
			if err := json.Unmarshal(body, &placed); err != nil || placed.OrderID <= 0 {
				return 0, time.Time{}, fmt.Errorf("bench: place an order: 201 without an orderId: %.200s", body)
			}
			return placed.OrderID, at, nil
		case http.StatusTooManyRequests, http.StatusServiceUnavailable:
			wait := time.Second
			if s, err := strconv.Atoi(resp.Header.Get("Retry-After")); err == nil && s >= 0 {
				wait = min(time.Duration(s)*time.Second, 10*time.Second)
			}
			if !sleepUntil(ctx, time.Now().Add(wait)) {
				return 0, time.Time{}, fmt.Errorf("bench: interrupted: %w", context.Cause(ctx))
			}
		default:
			return 0, time.Time{}, fmt.Errorf("bench: place an order: %s: %.300s", resp.Status, body)
		}
	}
}

// errWaitedTooLong is wrapped by the error of a wait that reached its deadline.
var errWaitedTooLong = errors.New("deadline passed")

// poll calls check every interval until it reports done, fails, or opts.Wait passes
// (an error wrapping errWaitedTooLong).
func (d *deepBook) poll(ctx context.Context, interval time.Duration, what string, check func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, d.opts.Wait)
	defer cancel()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		done, err := check()
		if done || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return fmt.Errorf("bench: %s after %s: %w", what, d.opts.Wait, errWaitedTooLong)
			}
			return fmt.Errorf("bench: interrupted: %w", context.Cause(ctx))
		case <-tick.C:
		}
	}
}

// waitResting waits until every sell rests (EXECUTING, nothing filled); a sell that
// went anywhere else means the book was not as choosePrice saw it, and fails the run.
func (d *deepBook) waitResting(ctx context.Context) error {
	last := time.Now()
	var resting int64
	err := d.poll(ctx, slowPollInterval, "not every sell was resting", func() (bool, error) {
		var other int64
		if err := d.pool.QueryRow(ctx, `
			SELECT count(*) FILTER (WHERE status = 'EXECUTING' AND remaining_quantity = quantity),
			       count(*) FILTER (WHERE status <> ALL($2) AND NOT (status = 'EXECUTING' AND remaining_quantity = quantity))
			FROM orders WHERE id = ANY($1)`, d.sells, preMatchStatuses).Scan(&resting, &other); err != nil {
			return false, fmt.Errorf("bench: read the sells: %w", err)
		}
		if other > 0 {
			return false, fmt.Errorf("bench: %d of the sells traded or ended instead of resting: the book of instrument %d changed", other, d.opts.Instrument)
		}
		if time.Since(last) >= 5*time.Second {
			d.out.printf("deep book: %d of %d sells resting", resting, d.opts.Orders)
			last = time.Now()
		}
		return resting == int64(len(d.sells)), nil
	})
	if err != nil {
		return fmt.Errorf("%w (%d of %d resting)", err, resting, d.opts.Orders)
	}
	return nil
}

// waitRuns counts the sells' runs that visibility shows running until done accepts the
// count, and returns the last count.
func (d *deepBook) waitRuns(ctx context.Context, done func(int64) bool) (int64, error) {
	query := fmt.Sprintf(`OrderId >= %d AND OrderId <= %d AND UserId >= %d AND UserId < %d AND ExecutionStatus = "Running"`,
		d.sells[0], d.sells[len(d.sells)-1], deepBookFirstSeller, deepBookFirstSeller+deepBookSellers)
	var n int64
	err := d.poll(ctx, slowPollInterval, "the sells' runs did not reach the expected count", func() (bool, error) {
		resp, err := d.temporal.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
		if err != nil {
			return false, fmt.Errorf("bench: count the sells' runs (%s): %w", query, err)
		}
		n = resp.GetCount()
		return done(n), nil
	})
	return n, err
}

// buyEnd is how the wait for the buy ended.
type buyEnd struct {
	seen   time.Time // when the bench last read the buy
	ended  bool      // it reached a terminal status
	parked string    // the step it is parked at and why, when it waits for an operator
}

// waitBuy polls the buy until it ends, is parked, or opts.Wait passes, and says which.
func (d *deepBook) waitBuy(ctx context.Context, id int64) (buyEnd, error) {
	var end buyEnd
	err := d.poll(ctx, buyPollInterval, fmt.Sprintf("the buy (order %d) had not ended", id), func() (bool, error) {
		var status, step, lastErr string
		var parked bool
		if err := d.pool.QueryRow(ctx, `SELECT status, needs_attention, stalled_step, last_error FROM orders WHERE id = $1`, id).
			Scan(&status, &parked, &step, &lastErr); err != nil {
			return false, fmt.Errorf("bench: read the buy: %w", err)
		}
		end.seen = time.Now()
		d.rep.BuyStatus = status
		end.ended = order.Status(status).Terminal()
		if parked {
			end.parked = fmt.Sprintf("%s at step %s: %s", status, step, lastErr)
		}
		return end.ended || parked, nil
	})
	if errors.Is(err, errWaitedTooLong) {
		return end, nil
	}
	return end, err
}

// buyEvent is one event of the buy's timeline.
type buyEvent struct {
	Type string
	At   time.Time
}

// readSweep reads the buy's events and trades into the report: accepted is when its 201
// came, seen when the bench saw it ended.
func (d *deepBook) readSweep(ctx context.Context, accepted, seen time.Time) error {
	rep := d.rep
	rows, err := d.pool.Query(ctx, `SELECT event_type, created_at FROM order_events WHERE order_id = $1 ORDER BY seq`, rep.BuyOrderID)
	if err != nil {
		return fmt.Errorf("bench: read the buy's events: %w", err)
	}
	events, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (buyEvent, error) {
		var e buyEvent
		return e, row.Scan(&e.Type, &e.At)
	})
	if err != nil {
		return fmt.Errorf("bench: read the buy's events: %w", err)
	}
	if err := d.pool.QueryRow(ctx, `
		SELECT count(*), count(*) FILTER (WHERE sell_order_id = ANY($2)), coalesce(sum(quantity), 0)
		FROM trades WHERE buy_order_id = $1`, rep.BuyOrderID, d.sells).Scan(&rep.Trades, &rep.TradesWithSells, &rep.FilledQuantity); err != nil {
		return fmt.Errorf("bench: read the buy's trades: %w", err)
	}
	s, ok := sweepSteps(events, seen)
	if !ok {
		rep.Notes = append(rep.Notes, "the buy never reached the book (no EXECUTING event)")
		return nil
	}
	rep.BuyPickupMs = ms(max(s.reached.Sub(accepted), 0))
	rep.SweepMs = ms(max(seen.Sub(s.reached), 0))
	rep.ToLastStepMs = ms(s.starts[len(s.starts)-1].Sub(s.reached))
	rep.Steps = len(s.starts)
	for _, t := range s.starts {
		rep.StepStartsMs = append(rep.StepStartsMs, ms(t.Sub(s.reached)))
	}
	rep.MaxStepMs, rep.LastStepMs = ms(s.longest), ms(s.last)
	return nil
}

// sweep is a sweep's steps as its events show them.
type sweep struct {
	reached time.Time     // the EXECUTING event: the order reached the book
	starts  []time.Time   // each step's start, ascending; the first is reached
	last    time.Duration // the last step, from its start to seen
	longest time.Duration // the longest step's bound: a gap between starts, or last
}

// sweepSteps derives the steps of a sweep from the order's events (in seq order) and
// seen, a time at which the order was seen ended. Every event a transaction writes has
// that transaction's start as its time, so the distinct times from the EXECUTING event
// on are the starts of the steps; a step lasts at most until the next one starts, and
// the last at most until seen. ok is false if the order never reached the book.
func sweepSteps(events []buyEvent, seen time.Time) (s sweep, ok bool) {
	from := slices.IndexFunc(events, func(e buyEvent) bool { return e.Type == string(order.EventExecuting) })
	if from < 0 {
		return sweep{}, false
	}
	s.reached = events[from].At
	for _, e := range events[from:] {
		if !slices.ContainsFunc(s.starts, e.At.Equal) {
			s.starts = append(s.starts, e.At)
		}
	}
	slices.SortFunc(s.starts, func(a, b time.Time) int { return a.Compare(b) })
	for i := 1; i < len(s.starts); i++ {
		s.longest = max(s.longest, s.starts[i].Sub(s.starts[i-1]))
	}
	s.last = max(seen.Sub(s.starts[len(s.starts)-1]), 0)
	s.longest = max(s.longest, s.last)
	return s, true
}

// finish sets the targets.
func (rep *DeepBookReport) finish() {
	rep.Targets = map[string]bool{
		"sweep_within_5s": rep.BuyStatus == string(order.Executed) && rep.Trades == rep.Orders &&
			rep.TradesWithSells == rep.Orders && rep.SweepMs <= TargetSweepMs,
		"no_step_over_1s": rep.Steps > 0 && rep.MaxStepMs <= TargetStepMs,
	}
	if rep.TradesWithSells < rep.Trades {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d of the buy's trades were with orders other than the bench's sells", rep.Trades-rep.TradesWithSells))
	}
}

// quantity says n things, in the singular for one.
func quantity(n int, thing string) string {
	if n == 1 {
		return "1 " + thing
	}
	return fmt.Sprintf("%d %ss", n, thing)
}

// WriteJSON writes the report as one line of JSON.
func (rep *DeepBookReport) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("bench: encode report: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// WriteTable writes the report for people.
func (rep *DeepBookReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	p("")
	p("OrderFlow bench --deep-book: %d one-lot SELL LIMIT orders at %s on instrument %d, swept by one MARKET BUY for %d",
		rep.Orders, rep.Price, rep.Instrument, rep.Orders)
	p("")
	p("sells\tplaced in %.1f s; all resting %.1f s after the first POST; %d runs waiting", rep.PlaceS, rep.RestS, rep.RunsWaitingBefore)
	p("buy\torder %d %s: %d trades (%d with the sells), %d filled; 201 → the book %.1f ms",
		rep.BuyOrderID, rep.BuyStatus, rep.Trades, rep.TradesWithSells, rep.FilledQuantity, rep.BuyPickupMs)
	p("sweep\tthe book → seen %s %.1f ms (the last step began at %.1f ms)\t%s", rep.BuyStatus, rep.SweepMs, rep.ToLastStepMs,
		target(rep.Targets, "sweep_within_5s", fmt.Sprintf("EXECUTED with %d trades within %g s", rep.Orders, TargetSweepMs/1000)))
	p("steps\t%s (one transaction each), the longest at most %.1f ms (the last %.1f ms)\t%s", quantity(rep.Steps, "step"), rep.MaxStepMs, rep.LastStepMs,
		target(rep.Targets, "no_step_over_1s", fmt.Sprintf("each ≤ %g s", TargetStepMs/1000)))
	if len(rep.StepStartsMs) > 0 {
		starts := make([]string, len(rep.StepStartsMs))
		for i, v := range rep.StepStartsMs {
			starts[i] = strconv.FormatFloat(v, 'f', 1, 64)
		}
		p("  step starts\t%s ms", strings.Join(starts, ", "))
	}
	done := "not seen completed"
	if rep.CounterpartiesDoneMs != nil {
		done = fmt.Sprintf("all completed %.1f s after the buy was seen EXECUTED", *rep.CounterpartiesDoneMs/1000)
	}
	p("sells' runs\t%s\t(reported, no target)", done)
	if len(rep.Notes) > 0 {
		p("")
		for _, n := range rep.Notes {
			p("note: %s", n)
		}
	}
	return tw.Flush()
}
