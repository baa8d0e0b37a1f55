package bench

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/auth"
)

// benchOperator is the user of the bench's operator key, which cancels and reads (an
// operator cancels and reads any user's orders).
const benchOperator = 0

// credentials are the API keys the bench acts with: one per user it places orders for
// (read and trade) and an operator's (admin), made in the system's database when first
// needed and revoked when the run ends, so a bench leaves no live key behind.
type credentials struct {
	keys *auth.Keys

	mu     sync.Mutex
	byUser map[int64]string
	ids    []string
}

func newCredentials(pool *pgxpool.Pool) *credentials {
	return &credentials{keys: auth.NewKeys(pool), byUser: map[int64]string{}}
}

// operatorUserID is the operator key's user id; the key store wants a positive one.
const operatorUserID = 9_999_999

// authorize sets req's Authorization to user's key (benchOperator: the operator's).
func (c *credentials) authorize(ctx context.Context, req *http.Request, user int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	key, ok := c.byUser[user]
	if !ok {
		id, scopes := user, []auth.Scope{auth.ScopeRead, auth.ScopeTrade}
		if user == benchOperator {
			id, scopes = operatorUserID, []auth.Scope{auth.ScopeAdmin}
		}
		k, rec, err := c.keys.Create(ctx, id, "orderflow bench", scopes)
		if err != nil {
			return fmt.Errorf("bench: make an API key: %w", err)
		}
		key, c.byUser[user], c.ids = k, k, append(c.ids, rec.ID)
	}
	req.Header.Set("Authorization", "Bearer "+key)
	return nil
}

// revoke revokes every key the run made, each whatever became of the others. A run
// killed before it leaves its keys live: they are named "orderflow bench".
func (c *credentials) revoke() error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c.mu.Lock()
	defer c.mu.Unlock()
	var errs []error
	for _, id := range c.ids {
		if _, err := c.keys.Revoke(ctx, id); err != nil {
			errs = append(errs, fmt.Errorf("bench: revoke its API key %s: %w", id, err))
		}
	}
	c.ids = nil
	return errors.Join(errs...)
}
