package api_test

import (
	"bytes"
	"context"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/orderbook"
)

// newAdmissionHarness is a harness with admission control whose refusals wait up to
// lookup for their keys' look-ups. Nothing executes here (no worker), so the drain rate
// is the floor, 5 orders/s, and the bound, 1s, holds 5 orders.
func newAdmissionHarness(t *testing.T, lookup time.Duration) (*pgxpool.Pool, *orderbook.Admission, *harness) {
	t.Helper()
	pool := newPool(t)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	adm := orderbook.NewAdmission(pool, nil, orderbook.AdmissionConfig{MaxDelay: time.Second, Every: 10 * time.Millisecond, MinDrain: 5})
	go adm.Run(ctx)
	cfg := testConfig()
	cfg.Admission = adm
	cfg.RefusalLookup = lookup
	return pool, adm, newHarnessWith(t, pool, cfg, nil)
}

// While the orders already accepted could not be executed within the bound, a new order
// is refused at once with 503 OVERLOADED and Retry-After and nothing is written; a replay
// of an accepted order is still answered; once the backlog drains, orders are accepted
// again. Parked orders wait for an operator, not the engine, and do not count.
func TestNewOrdersAreRefusedWhileTheBacklogCannotDrainInTime(t *testing.T) {
	t.Parallel()
	// The replay below must be looked up, however slow the test box.
	pool, adm, h := newAdmissionHarness(t, 5*time.Second)

	parked := h.mustPlace(limitBody(1, `"10"`, 1))
	h.exec(`UPDATE orders SET needs_attention = true WHERE id = $1`, parked.OrderID)
	waitFor(t, "the parked order to be left out of the backlog", func() bool { n, _ := adm.Backlog(); return n == 0 })

	first := h.mustPlace(limitBody(1, `"10"`, 1))
	accepted := []int64{first.OrderID}
	var refused response
	var firstAnswer []byte // k-0's
	for i := 0; i < 20; i++ {
		res := h.place("k-"+strconv.Itoa(i), limitBody(1, `"10"`, 1))
		if res.status == http.StatusServiceUnavailable {
			refused = res
			break
		}
		if res.status != http.StatusCreated {
			t.Fatalf("placement %d: %d %s", i, res.status, res.body)
		}
		if i == 0 {
			firstAnswer = res.body
		}
		accepted = append(accepted, decode[orderBody](t, res).OrderID)
	}
	// The count and this replica's own tally may overlap for a moment (an order counted
	// and still tallied), which errs towards refusing; never towards accepting more.
	if n := len(accepted); n < 3 || n > 5 {
		t.Errorf("%d orders accepted before the first refusal, want 3 to 5 (the bound holds 5 at 5 orders/s)", n)
	}
	wantProblem(t, refused, http.StatusServiceUnavailable, "OVERLOADED", "")
	if ra, err := strconv.Atoi(refused.header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After = %q, want whole seconds", refused.header.Get("Retry-After"))
	}
	// Another replica (no admission control of its own here) adds to the backlog, which
	// this one sees at its next count.
	other := newHarnessWith(t, pool, testConfig(), nil)
	for range 5 {
		accepted = append(accepted, other.mustPlace(limitBody(2, `"10"`, 1)).OrderID)
	}
	waitFor(t, "the count to see the other replica's orders", func() bool { n, _ := adm.Backlog(); return n >= int64(len(accepted)) })
	before := h.orderRows()
	for i := range 3 {
		wantProblem(t, h.place("refused-"+strconv.Itoa(i), limitBody(1, `"10"`, 1)), http.StatusServiceUnavailable, "OVERLOADED", "")
	}
	if after := h.orderRows(); after != before {
		t.Errorf("refused orders wrote %v → %v", before, after)
	}
	if res := h.place("k-0", limitBody(1, `"10"`, 1)); res.status != http.StatusCreated || res.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(res.body, firstAnswer) {
		t.Errorf("a replay of an accepted order while overloaded: %d %s, want its first answer replayed: %s", res.status, res.body, firstAnswer)
	}
	wantProblem(t, h.place("k-0", limitBody(1, `"11"`, 1)), http.StatusUnprocessableEntity, "IDEMPOTENCY_KEY_REUSED", "")

	// The backlog executes: orders are accepted again.
	h.exec(`UPDATE orders SET status = 'REJECTED' WHERE id = ANY($1)`, accepted)
	waitFor(t, "a new order to be accepted once the backlog drained", func() bool {
		return h.place(newKey(), limitBody(1, `"10"`, 1)).status == http.StatusCreated
	})
}

// A refusal does not wait for a slow look-up of its key: it answers without it, saying
// that a retry returns the answer of an order the key placed, and the retry does.
func TestARefusalDoesNotWaitForASlowKeyLookUp(t *testing.T) {
	t.Parallel()
	pool, adm, h := newAdmissionHarness(t, 50*time.Millisecond)
	ctx := context.Background()

	first := h.place("k-0", limitBody(1, `"10"`, 1))
	if first.status != http.StatusCreated {
		t.Fatalf("first order: %d %s", first.status, first.body)
	}
	tx := overloadAndLockKeys(t, pool, adm, 11)
	refused := h.place("k-0", limitBody(1, `"10"`, 1)) // answered while the lock is held
	p := wantProblem(t, refused, http.StatusServiceUnavailable, "OVERLOADED", "")
	if !strings.Contains(p.Message, "a retry returns its answer") {
		t.Errorf("message %q: want it to say a retry returns the answer of an accepted order", p.Message)
	}
	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the retry to get the first answer", func() bool {
		res := h.place("k-0", limitBody(1, `"10"`, 1))
		return res.status == http.StatusCreated && res.header.Get("Idempotent-Replayed") == "true" && bytes.Equal(res.body, first.body)
	})
}

// overloadAndLockKeys puts the backlog well over the bound (5 orders at 5 orders/s) by
// a replica without admission control, waits until the count sees at least want orders,
// and locks idempotency_keys, so that every look-up of a key waits while the returned
// transaction is open (rolled back at the test's end if not before).
func overloadAndLockKeys(t *testing.T, pool *pgxpool.Pool, adm *orderbook.Admission, want int64) pgx.Tx {
	t.Helper()
	ctx := context.Background()
	other := newHarnessWith(t, pool, testConfig(), nil)
	for range 10 {
		other.mustPlace(limitBody(2, `"10"`, 1))
	}
	waitFor(t, "the count to see the backlog", func() bool { n, _ := adm.Backlog(); return n >= want })
	tx, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = tx.Rollback(ctx) })
	if _, err := tx.Exec(ctx, `LOCK TABLE idempotency_keys IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	return tx
}

// waitFor polls cond until it holds, failing the test after 10s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A refusal of a key this API never placed an order with answers from memory: it reads
// nothing (its look-up would wait here behind a lock), and says, as a refusal without a
// look-up does, that an order an earlier request with the key placed stands.
func TestARefusalOfAKeyThisAPINeverPlacedReadsNothing(t *testing.T) {
	t.Parallel()
	// A look-up would be waited for, however long it took.
	pool, adm, h := newAdmissionHarness(t, 10*time.Second)
	ctx := context.Background()
	overloadAndLockKeys(t, pool, adm, 10)
	answered := make(chan response, 1)
	go func() { answered <- h.place("never-placed", limitBody(1, `"10"`, 1)) }()
	// Until the refusal is answered, no look-up may wait for the lock.
	deadline := time.Now().Add(30 * time.Second)
	var refused response
	for done := false; !done; {
		select {
		case refused = <-answered:
			done = true
		case <-time.After(5 * time.Millisecond):
			var waiting int
			if err := pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE NOT granted AND relation = 'idempotency_keys'::regclass`).Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			if waiting != 0 {
				t.Fatalf("the refusal looked its key up in the database (%d waiting for the lock)", waiting)
			}
			if time.Now().After(deadline) {
				t.Fatal("no answer to the refused order")
			}
		}
	}
	p := wantProblem(t, refused, http.StatusServiceUnavailable, "OVERLOADED", "")
	if !strings.Contains(p.Message, "a retry returns its answer") {
		t.Errorf("message %q: want it to say a retry returns the answer of an accepted order", p.Message)
	}
}
