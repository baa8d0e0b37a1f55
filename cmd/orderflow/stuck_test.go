package main

import (
	"context"
	"strings"
	"testing"
)

func TestOrdersStuckListsAnOrderThatStoppedBeforeMatching(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	// An order whose run never moved it past VALIDATED, an hour ago, as a lost message
	// or a dead run would leave it. It is written here, not placed, so no run moves it.
	var id int64
	if err := s.pool.QueryRow(context.Background(), `
		INSERT INTO orders (user_id, instrument_id, side, kind, price, quantity, remaining_quantity, status,
		                    time_in_force, idempotency_key, request_hash, updated_at)
		VALUES (1, $1, 'BUY', 'LIMIT', 10, 1, 1, 'VALIDATED', 'GTC', 'stuck-test', 'h', now() - interval '1 hour')
		RETURNING id`, inst).Scan(&id); err != nil {
		t.Fatal(err)
	}
	// It has no events and no run, which the audit after the tests would report.
	t.Cleanup(func() {
		if _, err := s.pool.Exec(context.Background(), `DELETE FROM orders WHERE id = $1`, id); err != nil {
			t.Error(err)
		}
	})
	out := s.command(t, "orders", "stuck", "--older-than", "30m")
	if !strings.Contains(out, s.get(t, id).WorkflowID) {
		t.Errorf("orders stuck does not list order %d, unchanged for an hour before matching:\n%s", id, out)
	}
}
