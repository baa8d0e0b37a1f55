package orderbook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/queries"
)

// DefaultIdempotencyTTL is how long an Idempotency-Key answers replays with its first
// answer unless configured: a day, as Stripe keeps keys.
const DefaultIdempotencyTTL = 24 * time.Hour

// Answer is the answer to the request that placed an order: its status, the headers that
// belong to it (not per-request ones such as X-Request-ID) and its body, byte for byte.
type Answer struct {
	Status  int
	Headers map[string]string
	Body    []byte
}

// errKeyExpired: the key's order was placed longer ago than the TTL; the key is free to
// place a new order once released.
var errKeyExpired = errors.New("idempotency key expired")

// Replay returns what the request that placed the user's key's order was answered (the
// order's id in Order, the answer in Answer), or, for an order placed before answers
// were stored, the order as it is now with no Answer. It returns ErrKeyReused, with the
// order's id, when hash is not that request's, and ErrNotFound when no order with the
// key has committed or its key has expired.
func (s *Service) Replay(ctx context.Context, user int64, key, hash string) (Placed, error) {
	p, err := s.replay(ctx, user, key, hash)
	if errors.Is(err, errKeyExpired) {
		return Placed{}, ErrNotFound
	}
	return p, err
}

// replay is Replay, telling an expired key (errKeyExpired, with its order's id) from none.
func (s *Service) replay(ctx context.Context, user int64, key, hash string) (Placed, error) {
	r, err := s.q.GetIdempotentReplay(ctx, queries.GetIdempotentReplayParams{UserID: user, IdempotencyKey: key, TtlSeconds: s.keyTTL.Seconds()})
	switch {
	case errors.Is(err, pgx.ErrNoRows):
		return Placed{}, ErrNotFound
	case err != nil:
		return Placed{}, fmt.Errorf("replay: read the key's order and answer: %w", err)
	}
	p := Placed{Order: queries.Order{ID: r.OrderID, UserID: user}}
	switch {
	case r.Expired:
		return p, errKeyExpired
	case r.RequestHash != hash:
		return p, ErrKeyReused
	case r.StatusCode == nil:
		// Placed before answers were stored: the order as it is now.
		o, err := s.Order(ctx, r.OrderID)
		if err != nil {
			return Placed{}, fmt.Errorf("replay: %w", err)
		}
		return Placed{Order: o}, nil
	}
	ans := Answer{Status: int(*r.StatusCode), Body: r.Body}
	if err := json.Unmarshal(r.Headers, &ans.Headers); err != nil {
		return Placed{}, fmt.Errorf("replay: decode the stored headers of order %d: %w", r.OrderID, err)
	}
	p.Answer = &ans
	return p, nil
}

// expireBatch bounds the answers one statement of ExpireIdempotencyKeys removes, so no
// statement holds many row locks or runs long.
const expireBatch = 5000

// ExpireIdempotencyKeys removes the stored answers of expired keys, every interval
// until ctx ends. Expiry does not wait for it (a replay ignores an expired answer); it
// keeps the table to about a TTL's worth of orders. Several workers may run it at once.
func (s *Service) ExpireIdempotencyKeys(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, err := s.ExpireIdempotencyKeysOnce(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn("remove expired idempotency keys", "error", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// ExpireIdempotencyKeysOnce removes every stored answer of an expired key, a batch at a
// time, and returns how many it removed.
func (s *Service) ExpireIdempotencyKeysOnce(ctx context.Context) (int64, error) {
	var total int64
	for {
		n, err := s.q.DeleteExpiredIdempotentAnswers(ctx, expireBatch)
		total += n
		if err != nil {
			return total, fmt.Errorf("delete expired idempotency answers: %w", err)
		}
		if n < expireBatch {
			return total, nil
		}
	}
}
