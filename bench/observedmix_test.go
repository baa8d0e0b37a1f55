package bench_test

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/orderflow/orderflow/bench"
)

func TestObservedMixClassifiesRunsByTheirTimelines(t *testing.T) {
	t.Parallel()
	db, _ := newDB(t)
	ctx := context.Background()
	// Each order's steps after ORDER_PLACED, one transaction each, as its events record
	// them: the statuses each transaction moved it through.
	timelines := map[string][][]string{
		"market, filled at once":       {{"VALIDATED"}, {"SENT_TO_EXECUTOR"}, {"EXECUTING", "EXECUTED"}},
		"crossing, filled in parts":    {{"VALIDATED"}, {"SENT_TO_EXECUTOR"}, {"EXECUTING", "PARTIALLY_FILLED", "PARTIALLY_FILLED", "EXECUTED"}},
		"rejected":                     {{"REJECTED"}},
		"rests, still resting":         {{"VALIDATED"}, {"SENT_TO_EXECUTOR"}, {"EXECUTING"}},
		"partly filled, rests":         {{"VALIDATED"}, {"SENT_TO_EXECUTOR"}, {"EXECUTING", "PARTIALLY_FILLED"}},
		"rests, then filled":           {{"VALIDATED"}, {"SENT_TO_EXECUTOR"}, {"EXECUTING"}, {"EXECUTED"}},
		"rests, cancel requested":      {{"VALIDATED"}, {"SENT_TO_EXECUTOR"}, {"EXECUTING"}, {"EXECUTING"}, {"CANCELLED"}},
		"rests, two fills in one step": {{"VALIDATED"}, {"SENT_TO_EXECUTOR"}, {"EXECUTING"}, {"PARTIALLY_FILLED", "EXECUTED"}},
		"rests, partial, then filled":  {{"VALIDATED"}, {"SENT_TO_EXECUTOR"}, {"EXECUTING"}, {"PARTIALLY_FILLED"}, {"PARTIALLY_FILLED"}, {"EXECUTED"}},
		"rests, woken five times":      {{"VALIDATED"}, {"SENT_TO_EXECUTOR"}, {"EXECUTING"}, {"PARTIALLY_FILLED"}, {"EXECUTING"}, {"PARTIALLY_FILLED"}, {"EXECUTING"}, {"PARTIALLY_FILLED"}},
	}
	var ids []int64
	for name, steps := range timelines {
		var id int64
		if err := db.QueryRow(ctx, `
			INSERT INTO orders (user_id, instrument_id, side, kind, price, quantity, remaining_quantity, status,
			                    time_in_force, idempotency_key, request_hash)
			VALUES (1, 101, 'SELL', 'LIMIT', 50.00, 5, 5, 'CREATED', 'GTC', $1, 'h') RETURNING id`, name).Scan(&id); err != nil {
			t.Fatal(err)
		}
		at := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
		if _, err := db.Exec(ctx, `INSERT INTO order_events (order_id, seq, event_type, to_status, created_at) VALUES ($1, 1, 'ORDER_PLACED', 'CREATED', $2)`, id, at); err != nil {
			t.Fatal(err)
		}
		from, seq := "CREATED", 2
		for _, step := range steps {
			at = at.Add(time.Millisecond)
			for _, to := range step {
				if _, err := db.Exec(ctx, `INSERT INTO order_events (order_id, seq, event_type, from_status, to_status, created_at) VALUES ($1, $2, 'STEP', $3, $4, $5)`,
					id, seq, from, to, at); err != nil {
					t.Fatal(err)
				}
				from, seq = to, seq+1
			}
		}
		ids = append(ids, id)
	}
	mix, err := bench.ObservedMix(ctx, db, append(ids, 999999)) // an id with no order counts nowhere
	if err != nil {
		t.Fatal(err)
	}
	want := []bench.MixClass{
		{Rests: false, Orders: 3},
		{Rests: true, Wakeups: 0, Orders: 2},
		{Rests: true, Wakeups: 1, Orders: 3},
		{Rests: true, Wakeups: 2, Orders: 1},
		{Rests: true, Wakeups: 3, Orders: 1}, // five wake-ups, counted at the cap
	}
	if !slices.Equal(mix, want) {
		t.Errorf("mix = %+v\nwant  %+v", mix, want)
	}
}
