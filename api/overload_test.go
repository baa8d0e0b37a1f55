package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"
)

func TestAnOrderBeyondTheWriteQueueIsRefusedAtOnceWith503AndRetryAfter(t *testing.T) {
	pool := newPool(t)
	cfg := testConfig()
	cfg.PlaceQueue = 1
	h := newHarnessWith(t, pool, cfg, nil)
	ctx := context.Background()
	lock, err := pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = lock.Rollback(ctx) }()
	// SHARE conflicts with the ROW EXCLUSIVE lock an INSERT takes: the writers wait.
	if _, err := lock.Exec(ctx, "LOCK TABLE orders IN SHARE MODE"); err != nil {
		t.Fatal(err)
	}
	answers := make(chan response, 4)
	post := func(user int64) { answers <- h.place(newKey(), limitBody(user, `"10"`, 1)) }
	// One order at a time, so that each writer blocks with one of them.
	for u := range int64(2) {
		go post(u + 1)
		deadline := time.Now().Add(10 * time.Second)
		for waiting := 0; waiting < int(u)+1; {
			if err := pool.QueryRow(ctx, "SELECT count(*) FROM pg_locks WHERE relation = 'orders'::regclass AND NOT granted").Scan(&waiting); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d writers did not block on the lock within 10s", u+1)
			}
			time.Sleep(5 * time.Millisecond) // poll interval
		}
	}
	// Both writers are busy: one more order fits the queue, the next does not.
	go post(3)
	go post(4)
	var refused response
	select {
	case refused = <-answers:
	case <-time.After(10 * time.Second):
		t.Fatal("no request was refused while the queue was full")
	}
	if refused.status != http.StatusServiceUnavailable || refused.header.Get("Retry-After") == "" {
		t.Fatalf("the order beyond the queue: %d, Retry-After %q, %s; want 503 with Retry-After",
			refused.status, refused.header.Get("Retry-After"), refused.body)
	}
	if err := lock.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if res := <-answers; res.status != http.StatusCreated {
			t.Errorf("a queued order: %d %s, want 201", res.status, res.body)
		}
	}
	if n := h.count("orders"); n != 3 {
		t.Errorf("%d orders written, want the 3 accepted", n)
	}
}
