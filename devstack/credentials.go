package devstack

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/auth"
)

// OperatorUser is the user of the operator (admin) key Credentials hands out.
const OperatorUser = 900_000

// Credentials gives the tests' API clients the credential a request needs, so that the
// tests of what the API does run with authentication on: API keys made on first use in
// the system's database, one per user and set of scopes.
type Credentials struct {
	keys *auth.Keys
	pool *pgxpool.Pool

	mu     sync.Mutex
	issued map[string]string // "user [scopes]" → key
}

// NewCredentials returns Credentials keeping its keys in pool's database.
func NewCredentials(pool *pgxpool.Pool) *Credentials {
	return &Credentials{keys: auth.NewKeys(pool), pool: pool, issued: map[string]string{}}
}

// Keys is the key store the credentials are made in.
func (c *Credentials) Keys() *auth.Keys { return c.keys }

// Key returns an API key of user with scopes, made on first use.
func (c *Credentials) Key(ctx context.Context, user int64, scopes ...auth.Scope) (string, error) {
	id := fmt.Sprint(user, scopes)
	c.mu.Lock()
	defer c.mu.Unlock()
	if k, ok := c.issued[id]; ok {
		return k, nil
	}
	k, _, err := c.keys.Create(ctx, user, "test", scopes)
	if err != nil {
		return "", err
	}
	c.issued[id] = k
	return k, nil
}

// Trader returns user's read and trade key.
func (c *Credentials) Trader(ctx context.Context, user int64) (string, error) {
	return c.Key(ctx, user, auth.ScopeRead, auth.ScopeTrade)
}

// Operator returns OperatorUser's admin key.
func (c *Credentials) Operator(ctx context.Context) (string, error) {
	return c.Key(ctx, OperatorUser, auth.ScopeAdmin)
}

// Authorize gives req, if it has no Authorization header, the credential of whom it is
// about: a placement that of the user its body names (user 1 if none), a request about
// an order that of the order's owner, anything else the operator's. A body is looked at
// only when its length is known and at most 64 KiB (tests of huge bodies count what the
// server reads). "Authorization: none" sends none.
func (c *Credentials) Authorize(req *http.Request) error {
	switch a := req.Header.Get("Authorization"); {
	case a == "none":
		req.Header.Del("Authorization")
		return nil
	case a != "" || !strings.HasPrefix(req.URL.Path, "/api/"):
		return nil
	}
	ctx := req.Context()
	key, err := c.credentialFor(ctx, req)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+key)
	return nil
}

func (c *Credentials) credentialFor(ctx context.Context, req *http.Request) (string, error) {
	if req.Method == http.MethodPost && req.URL.Path == "/api/v1/orders" {
		var user int64 = 1
		if req.Body != nil && req.ContentLength > 0 && req.ContentLength <= 64<<10 {
			body, err := io.ReadAll(req.Body)
			if err != nil {
				return "", err
			}
			req.Body = io.NopCloser(bytes.NewReader(body))
			var b struct {
				UserID json.RawMessage `json:"userId"`
			}
			if json.Unmarshal(body, &b) == nil {
				if n, err := strconv.ParseInt(strings.Trim(string(b.UserID), `"`), 10, 64); err == nil && n > 0 {
					user = n
				}
			}
		}
		return c.Trader(ctx, user)
	}
	if rest, ok := strings.CutPrefix(req.URL.Path, "/api/v1/orders/"); ok {
		id, _, _ := strings.Cut(rest, "/")
		var user int64
		if n, err := strconv.ParseInt(id, 10, 64); err == nil &&
			c.pool.QueryRow(ctx, "SELECT user_id FROM orders WHERE id = $1", n).Scan(&user) == nil {
			return c.Trader(ctx, user)
		}
	}
	return c.Operator(ctx)
}

// Transport is an http.RoundTripper that authorizes every request with c (see
// Authorize) before base (nil: http.DefaultTransport) sends it.
func (c *Credentials) Transport(base http.RoundTripper) http.RoundTripper {
	if base == nil {
		base = http.DefaultTransport
	}
	return roundTripper(func(req *http.Request) (*http.Response, error) {
		req = req.Clone(req.Context())
		if err := c.Authorize(req); err != nil {
			return nil, fmt.Errorf("authorize %s %s: %w", req.Method, req.URL.Path, err)
		}
		return base.RoundTrip(req)
	})
}

type roundTripper func(*http.Request) (*http.Response, error)

func (f roundTripper) RoundTrip(req *http.Request) (*http.Response, error) { return f(req) }
