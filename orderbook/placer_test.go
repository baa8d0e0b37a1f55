package orderbook_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/orderbook"
)

// placed is what one Place call returned.
type placed struct {
	id      int64
	created bool
	err     error
}

// placerRig holds a placer's writers on a lock on the orders table, so that the orders
// placed meanwhile queue, and lets them go.
type placerRig struct {
	t      *testing.T
	pool   *pgxpool.Pool
	placer *orderbook.TestPlacer
	lock   pgx.Tx
	wg     sync.WaitGroup
	mu     sync.Mutex
	got    map[string][]placed // by the caller's label
}

// newPlacerRig returns a rig whose writers are both busy, each with one order of user 1
// blocked on the lock, so that whatever is placed next queues.
func newPlacerRig(t *testing.T) *placerRig { return newPlacerRigWith(t, 30*time.Second, 1000) }

// newPlacerRigWith is newPlacerRig with a placer whose statements time out after timeout
// and whose queue holds maxQueue orders.
func newPlacerRigWith(t *testing.T, timeout time.Duration, maxQueue int) *placerRig {
	t.Helper()
	pool := newPool(t)
	ctx := context.Background()
	// A trigger refuses user 666's orders, as a database fault would.
	if _, err := pool.Exec(ctx, `
		CREATE FUNCTION refuse_user_666() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.user_id = 666 THEN RAISE EXCEPTION 'user 666 is refused'; END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_user_666 BEFORE INSERT ON orders FOR EACH ROW EXECUTE FUNCTION refuse_user_666();`); err != nil {
		t.Fatal(err)
	}
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// SHARE conflicts with the ROW EXCLUSIVE lock an INSERT takes.
	if _, err := lock.Exec(ctx, "LOCK TABLE orders IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	rig := &placerRig{t: t, pool: pool, placer: orderbook.NewTestPlacer(pool, timeout, maxQueue), lock: lock, got: map[string][]placed{}}
	t.Cleanup(func() { _ = lock.Rollback(context.Background()) })
	for i := range orderbook.Writers {
		rig.place("held", 1, 1, fmt.Sprintf("held-%d", i))
		rig.waitFor(fmt.Sprintf("%d writers blocked on the lock", i+1), func() bool { return rig.lockWaiters() == i+1 })
	}
	return rig
}

// place places an order in the background, filing its result under label.
func (r *placerRig) place(label string, user, quantity int64, key string) {
	r.placeWithin(context.Background(), label, user, quantity, key)
}

// placeWithin is place for a request whose context is ctx.
func (r *placerRig) placeWithin(ctx context.Context, label string, user, quantity int64, key string) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		id, created, err := r.placer.Place(ctx, user, quantity, key)
		r.mu.Lock()
		r.got[label] = append(r.got[label], placed{id, created, err})
		r.mu.Unlock()
	}()
}

// release lets the writers go and waits for every Place call to return.
func (r *placerRig) release() {
	r.t.Helper()
	if err := r.lock.Rollback(context.Background()); err != nil {
		r.t.Fatal(err)
	}
	r.wg.Wait()
}

// lockWaiters returns how many sessions wait for a lock on the orders table.
func (r *placerRig) lockWaiters() int {
	r.t.Helper()
	var n int
	if err := r.pool.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_locks WHERE relation = 'orders'::regclass AND NOT granted").Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}

// waitFor polls cond until it holds, failing the test after 10s.
func (r *placerRig) waitFor(what string, cond func() bool) {
	r.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			r.t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// intQuery runs a query returning one integer.
func (r *placerRig) intQuery(sql string) int {
	r.t.Helper()
	var n int
	if err := r.pool.QueryRow(context.Background(), sql).Scan(&n); err != nil {
		r.t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func TestOrdersQueuedWhileTheWritersAreBusyShareOneStatement(t *testing.T) {
	t.Parallel()
	rig := newPlacerRig(t)
	const queued = 40
	for i := range queued {
		rig.place("queued", int64(2+i%5), int64(1+i), fmt.Sprintf("queued-%d", i))
	}
	rig.waitFor("the orders to queue", func() bool { return rig.placer.Queued() == queued })
	rig.release()

	ids := map[int64]bool{}
	for _, p := range append(rig.got["held"], rig.got["queued"]...) {
		if p.err != nil || !p.created {
			t.Fatalf("Place = created %v, error %v; want a new order", p.created, p.err)
		}
		ids[p.id] = true
	}
	if len(ids) != queued+orderbook.Writers {
		t.Fatalf("%d distinct order ids, want %d", len(ids), queued+orderbook.Writers)
	}
	// Rows written by one statement share its transaction id.
	if n := rig.intQuery("SELECT count(DISTINCT xmin::text) FROM orders"); n != orderbook.Writers+1 {
		t.Errorf("orders were written by %d transactions, want %d: one per held writer and one for the queue", n, orderbook.Writers+1)
	}
	// Every order has its ORDER_PLACED event and its outbox message, in the same transaction.
	if n := rig.intQuery(`SELECT count(*) FROM orders o
		JOIN order_events e ON e.order_id = o.id AND e.seq = 1 AND e.event_type = 'ORDER_PLACED' AND e.xmin = o.xmin
		JOIN outbox m ON m.key = o.id::text AND (m.payload->>'orderId')::bigint = o.id AND m.xmin = o.xmin`); n != queued+orderbook.Writers {
		t.Errorf("%d orders have their event and message in their own transaction, want %d", n, queued+orderbook.Writers)
	}
}

func TestARepeatedKeyInOneBatchWritesOneOrder(t *testing.T) {
	t.Parallel()
	rig := newPlacerRig(t)
	for range 5 {
		rig.place("same", 7, 10, "one-key")
	}
	rig.place("same", 7, 11, "one-key") // the key reused for a different order
	rig.place("other user", 8, 10, "one-key")
	rig.waitFor("the orders to queue", func() bool { return rig.placer.Queued() == 7 })
	rig.release()

	created := 0
	for _, p := range rig.got["same"] {
		if p.err != nil {
			t.Fatalf("Place: %v", p.err)
		}
		if p.created {
			created++
		}
	}
	if created != 1 {
		t.Errorf("%d of 6 placements with one user and key created an order, want 1", created)
	}
	if p := rig.got["other user"][0]; !p.created {
		t.Errorf("another user's order under the same key: created %v, error %v; want created", p.created, p.err)
	}
	if n := rig.intQuery("SELECT count(*) FROM orders WHERE idempotency_key = 'one-key'"); n != 2 {
		t.Errorf("%d orders under the key, want 2 (one per user)", n)
	}
	// The repeats were left out of the batch, not retried one by one after it failed.
	if n := rig.intQuery("SELECT count(DISTINCT xmin::text) FROM orders WHERE idempotency_key = 'one-key'"); n != 1 {
		t.Errorf("the two orders under the key were written by %d transactions, want 1", n)
	}
	if n := rig.intQuery("SELECT count(*) FROM outbox"); n != 2+orderbook.Writers {
		t.Errorf("%d outbox messages, want %d", n, 2+orderbook.Writers)
	}
}

func TestAnOrderTheDatabaseRefusesFailsAloneInItsBatch(t *testing.T) {
	t.Parallel()
	rig := newPlacerRig(t)
	for i := range 3 {
		rig.place("good", 9, 1, fmt.Sprintf("good-%d", i))
	}
	rig.place("refused", 666, 1, "refused")
	rig.waitFor("the orders to queue", func() bool { return rig.placer.Queued() == 4 })
	rig.release()

	for _, p := range rig.got["good"] {
		if p.err != nil || !p.created {
			t.Errorf("good order: created %v, error %v; want created", p.created, p.err)
		}
	}
	if p := rig.got["refused"][0]; p.err == nil {
		t.Errorf("refused order: created %v with no error; want the database's error", p.created)
	}
	if n := rig.intQuery("SELECT count(*) FROM orders WHERE user_id = 9"); n != 3 {
		t.Errorf("%d good orders written, want 3", n)
	}
	if n := rig.intQuery("SELECT count(*) FROM outbox"); n != 3+orderbook.Writers {
		t.Errorf("%d outbox messages, want %d", n, 3+orderbook.Writers)
	}
}

// answered waits until every Place call has returned, failing the test after 10s.
func (r *placerRig) answered() {
	r.t.Helper()
	done := make(chan struct{})
	go func() { r.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		r.t.Fatalf("requests still unanswered after 10s: %d answered", r.answers())
	}
}

func (r *placerRig) answers() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, ps := range r.got {
		n += len(ps)
	}
	return n
}

func TestEveryRequestOfABatchThatTimesOutIsAnswered(t *testing.T) {
	t.Parallel()
	rig := newPlacerRigWith(t, time.Second, 1000)
	for i := range 5 {
		rig.place("queued", 2, 1, fmt.Sprintf("queued-%d", i))
	}
	// The held writers' statements time out, their writers take the queue as one batch,
	// and that one times out too: not an error of PostgreSQL's, so no order is retried
	// alone, and every one of them must hear of it.
	rig.answered()
	for label, ps := range rig.got {
		for _, p := range ps {
			if p.err == nil || p.created {
				t.Errorf("%s: created %v, error %v; want the timeout", label, p.created, p.err)
			}
		}
	}
	if n := rig.answers(); n != 5+orderbook.Writers {
		t.Errorf("%d answers, want %d", n, 5+orderbook.Writers)
	}
	rig.release()
	if n := rig.intQuery("SELECT count(*) FROM orders"); n != 0 {
		t.Errorf("%d orders written by statements that timed out, want 0", n)
	}
}

func TestARequestWhoseDeadlinePassesWhileQueuedIsNotPlaced(t *testing.T) {
	t.Parallel()
	rig := newPlacerRig(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, created, err := rig.placer.Place(ctx, 3, 1, "late")
	if waited := time.Since(start); err == nil || created || !errors.Is(err, orderbook.ErrNotPlaced) || waited > 5*time.Second {
		t.Fatalf("Place after %s: created %v, %v; want ErrNotPlaced at its deadline", waited, created, err)
	}
	if q := rig.placer.Queued(); q != 0 {
		t.Errorf("%d orders still queued, want the late one gone", q)
	}
	rig.release()
	if n := rig.intQuery("SELECT count(*) FROM orders WHERE idempotency_key = 'late'"); n != 0 {
		t.Errorf("the order whose request gave up was written (%d)", n)
	}
}

func TestAFullQueueRefusesAtOnceAndWritesNothing(t *testing.T) {
	t.Parallel()
	rig := newPlacerRigWith(t, 30*time.Second, 3)
	for i := range 3 {
		rig.place("queued", 4, 1, fmt.Sprintf("queued-%d", i))
	}
	rig.waitFor("the queue to fill", func() bool { return rig.placer.Queued() == 3 })
	_, created, err := rig.placer.Place(context.Background(), 5, 1, "one-too-many")
	if !errors.Is(err, orderbook.ErrBusy) || created {
		t.Fatalf("Place on a full queue: created %v, %v; want ErrBusy", created, err)
	}
	rig.release()
	if n := rig.intQuery("SELECT count(*) FROM orders WHERE user_id = 5"); n != 0 {
		t.Errorf("the refused order was written (%d)", n)
	}
	if n := rig.intQuery("SELECT count(*) FROM orders WHERE user_id = 4"); n != 3 {
		t.Errorf("%d of the 3 queued orders written, want 3", n)
	}
}

// A request that finds a writer free, and so leads a batch, is answered by its own
// deadline too, however long the batch's statement takes.
func TestARequestLeadingABatchIsAnsweredByItsDeadline(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(ctx) }()
	if _, err := lock.Exec(ctx, "LOCK TABLE orders IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	p := orderbook.NewTestPlacer(pool, 30*time.Second, 1000)
	reqCtx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, created, err := p.Place(reqCtx, 1, 1, "leader")
	if waited := time.Since(start); !errors.Is(err, orderbook.ErrUnconfirmed) || created || waited > 5*time.Second {
		t.Fatalf("the leading request, its statement held on a lock: answered after %s with created %v, %v; want ErrUnconfirmed by its deadline",
			waited, created, err)
	}
}

// A batch whose session is terminated under it (pg_terminate_backend, a failover) fails
// as a whole, at once: a lost connection is no fault of one order, and writing the
// orders again one by one would only multiply the wait.
func TestABatchWhoseSessionIsTerminatedFailsAsAWhole(t *testing.T) {
	t.Parallel()
	rig := newPlacerRig(t)
	for i := range 3 {
		rig.place("queued", 2, 1, fmt.Sprintf("queued-%d", i))
	}
	rig.waitFor("the orders to queue", func() bool { return rig.placer.Queued() == 3 })
	held := rig.terminateInserts() // the held writers' sessions: one takes the queue as one batch
	// A terminated session lingers in pg_locks for a moment after its client hears of it,
	// so the batch's statement is told apart by its session, not by the count alone.
	rig.waitFor("the queued batch's statement to wait on the lock", func() bool {
		return rig.answers() == orderbook.Writers && rig.placer.Queued() == 0 && rig.lockWaitersBesides(held) == 1
	})
	rig.terminateInserts()
	rig.waitFor("every request to be answered", func() bool { return rig.answers() == 3+orderbook.Writers })
	rig.release()
	for _, p := range rig.got["queued"] {
		if p.err == nil || p.created {
			t.Errorf("a queued order of the terminated batch: created %v, %v; want the batch's error", p.created, p.err)
		}
	}
	if n := rig.intQuery("SELECT count(*) FROM orders"); n != 0 {
		t.Errorf("%d orders written after their sessions were terminated, want 0 (the clients retry)", n)
	}
}

// terminateInserts terminates the sessions whose statements wait for the orders lock and
// returns their process ids.
func (r *placerRig) terminateInserts() []int32 {
	r.t.Helper()
	rows, err := r.pool.Query(context.Background(), `
		WITH waiting AS MATERIALIZED (
			SELECT pid FROM pg_locks WHERE relation = 'orders'::regclass AND NOT granted)
		SELECT pid FROM waiting WHERE pg_terminate_backend(pid)`)
	if err != nil {
		r.t.Fatal(err)
	}
	pids, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		r.t.Fatal(err)
	}
	return pids
}

// lockWaitersBesides is lockWaiters leaving out the sessions pids.
func (r *placerRig) lockWaitersBesides(pids []int32) int {
	r.t.Helper()
	var n int
	if err := r.pool.QueryRow(context.Background(),
		"SELECT count(*) FROM pg_locks WHERE relation = 'orders'::regclass AND NOT granted AND pid <> ALL($1)", pids).Scan(&n); err != nil {
		r.t.Fatal(err)
	}
	return n
}
