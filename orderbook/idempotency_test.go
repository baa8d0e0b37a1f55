package orderbook_test

import (
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
)

// placeAnswered places a one-lot LIMIT buy under key, storing answer as its first answer.
func (b *book) placeAnswered(key, answer string) orderbook.Placed {
	b.t.Helper()
	p, err := b.svc.Place(b.ctx, orderbook.NewOrder{
		UserID: 1, InstrumentID: 101, Side: order.Buy, Kind: order.Limit,
		Price: decimal.NewNullDecimal(decimal.NewFromInt(10)), Quantity: 1, TimeInForce: order.GTC,
		IdempotencyKey: key, RequestHash: "h",
		Answer: func(o queries.Order) orderbook.Answer {
			return orderbook.Answer{Status: 201, Headers: map[string]string{"X-Order": answer}, Body: []byte(answer)}
		},
	})
	if err != nil {
		b.t.Fatalf("place %s: %v", key, err)
	}
	return p
}

func TestTheExpiryJobRemovesOnlyExpiredAnswers(t *testing.T) {
	b := newBook(t)
	old := b.placeAnswered("old", "a")
	fresh := b.placeAnswered("fresh", "b")
	b.exec(`UPDATE idempotency_keys SET expires_at = now() - interval '1 second' WHERE order_id = $1`, old.Order.ID)

	n, err := b.svc.ExpireIdempotencyKeysOnce(b.ctx)
	if err != nil || n != 1 {
		t.Fatalf("ExpireIdempotencyKeysOnce = %d, %v; want 1 removed", n, err)
	}
	var left []int64
	rows, err := b.pool.Query(b.ctx, `SELECT order_id FROM idempotency_keys ORDER BY order_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		left = append(left, id)
	}
	if len(left) != 1 || left[0] != fresh.Order.ID {
		t.Errorf("answers left = %v, want only order %d's", left, fresh.Order.ID)
	}
	// The fresh key still replays its answer, headers and all.
	p, err := b.svc.Replay(b.ctx, 1, "fresh", "h")
	if err != nil || p.Answer == nil || string(p.Answer.Body) != "b" || p.Answer.Headers["X-Order"] != "b" || p.Order.ID != fresh.Order.ID {
		t.Errorf("Replay(fresh) = %+v, %v; want order %d's answer b", p, err, fresh.Order.ID)
	}
}

func TestAPlacementStoresTheAnswerItRendersAndAReplayGetsIt(t *testing.T) {
	b := newBook(t)
	first := b.placeAnswered("k", "first")
	if !first.Created || first.Answer == nil || string(first.Answer.Body) != "first" {
		t.Fatalf("first placement = %+v", first)
	}
	again := b.placeAnswered("k", "second rendering")
	if again.Created || again.Answer == nil || string(again.Answer.Body) != "first" || again.Order.ID != first.Order.ID {
		t.Errorf("replay = %+v, want the first answer of order %d", again, first.Order.ID)
	}
}

func TestAKeyExpiresWhenTheAPIThatPlacedItSaidEvenIfAnotherIsConfiguredShorter(t *testing.T) {
	b := newBook(t)
	b.svc = orderbook.New(b.pool, nil, orderbook.Config{IdempotencyTTL: time.Hour})
	placed := b.placeAnswered("k", "first")
	var in time.Duration
	if err := b.pool.QueryRow(b.ctx, `SELECT EXTRACT(EPOCH FROM expires_at - now())::bigint * 1000000000 FROM idempotency_keys WHERE order_id = $1`, placed.Order.ID).Scan(&in); err != nil {
		t.Fatal(err)
	}
	if in < 59*time.Minute || in > time.Hour {
		t.Fatalf("the answer expires in %v, want the placing service's hour", in)
	}
	// Half an hour on, a replica configured with one minute still replays it: the stored
	// expiry decides, not each replica's own.
	b.exec(`UPDATE orders SET created_at = now() - interval '30 minutes' WHERE id = $1`, placed.Order.ID)
	short := orderbook.New(b.pool, nil, orderbook.Config{IdempotencyTTL: time.Minute})
	p, err := short.Replay(b.ctx, 1, "k", "h")
	if err != nil || p.Answer == nil || string(p.Answer.Body) != "first" {
		t.Errorf("the short-TTL replica's replay = %+v, %v; want the first answer", p, err)
	}
}
