package auth

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/queries"
)

// Errors of the key store. A caller answering a client says no more than "invalid
// credential" for any of the first three.
var (
	ErrUnknownKey  = errors.New("no such API key")
	ErrRevokedKey  = errors.New("the API key was revoked")
	ErrKeyNotFound = errors.New("API key not found")
)

// Principal is who a credential stands for: the user whose orders it reaches and what it
// may do. KeyID names the API key it came from ("" for other credentials).
type Principal struct {
	UserID int64
	Scopes []Scope
	KeyID  string
}

// Has reports whether p may act with scope s. admin includes read (of every user's
// orders); nothing else includes anything.
func (p Principal) Has(s Scope) bool {
	return slices.Contains(p.Scopes, s) || (s == ScopeRead && slices.Contains(p.Scopes, ScopeAdmin))
}

// String names p in audit records: "user:<id>/key:<key id>" for an API key,
// "user:<id>/token" for a provider's token.
func (p Principal) String() string {
	if p.KeyID != "" {
		return fmt.Sprintf("user:%d/key:%s", p.UserID, p.KeyID)
	}
	return fmt.Sprintf("user:%d/token", p.UserID)
}

// Admin reports whether p holds the admin scope: every user's orders, and the operators'
// routes.
func (p Principal) Admin() bool { return slices.Contains(p.Scopes, ScopeAdmin) }

// Key is an API key as stored: everything but its secret.
type Key struct {
	ID         string
	UserID     int64
	Name       string
	Scopes     []Scope
	CreatedAt  time.Time
	LastUsedAt *time.Time
	RevokedAt  *time.Time
}

func keyOf(k queries.ApiKey) Key {
	scopes := make([]Scope, len(k.Scopes))
	for i, s := range k.Scopes {
		scopes[i] = Scope(s)
	}
	return Key{ID: k.ID, UserID: k.UserID, Name: k.Name, Scopes: scopes, CreatedAt: k.CreatedAt, LastUsedAt: k.LastUsedAt, RevokedAt: k.RevokedAt}
}

// Keys is the API key store, in PostgreSQL.
type Keys struct {
	q *queries.Queries
	// fetch reads a key's row and now tells the time: q's and the clock's, but for tests.
	fetch func(context.Context, string) (queries.ApiKey, error)
	now   func() time.Time

	// A cache of keys found valid, so that a busy client's every request does not read
	// its key (see WithCache); nil, or a zero ttl: none.
	ttl time.Duration
	mu  sync.Mutex
	hot map[string]cachedKey
	// revokes counts Revoke calls: a lookup that began before one may have read a key
	// that is revoked now, so it is not remembered.
	revokes uint64
}

// cachedKey is a key found valid, until a time; refreshing while a read of it runs
// ahead of that time.
type cachedKey struct {
	hash       []byte
	principal  Principal
	until      time.Time
	refreshing bool
}

// maxCachedKeys bounds the cache: past it, it starts again empty.
const maxCachedKeys = 10000

// NewKeys returns the key store over pool.
func NewKeys(pool *pgxpool.Pool) *Keys {
	q := queries.New(pool)
	return &Keys{q: q, fetch: q.GetAPIKey, now: time.Now}
}

// WithCache makes Authenticate remember a key it found valid for ttl, and answer from
// memory meanwhile: a key revoked elsewhere (another replica, the CLI) keeps working here
// for up to ttl. Revoke through this store forgets the key at once. Unknown, wrong and
// revoked keys are never remembered, so a guesser's every attempt is read (and charged
// by the API's throttle). 0 keeps no cache.
//
// A key used in the second half of its ttl is read again in the background, and
// remembered anew from when that read began (or forgotten, if it is revoked now): a key in
// steady use is never read in a request's path, and none is answered from a read older
// than ttl.
func (k *Keys) WithCache(ttl time.Duration) *Keys {
	k.ttl = ttl
	k.hot = map[string]cachedKey{}
	return k
}

// cached returns the principal of a remembered key; refresh is true (once per read) when
// it is time to read the key again ahead of its ttl.
func (k *Keys) cached(id string, hash []byte, now time.Time) (p Principal, ok, refresh bool) {
	if k.ttl <= 0 {
		return Principal{}, false, false
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	c, ok := k.hot[id]
	if !ok || now.After(c.until) || !secretMatches(c.hash, hash) {
		return Principal{}, false, false
	}
	if !c.refreshing && now.After(c.until.Add(-k.ttl/2)) {
		c.refreshing, refresh = true, true
		k.hot[id] = c
	}
	return c.principal, true, refresh
}

// refresh reads a remembered key again (cached asked for it): remembered anew if still
// valid, forgotten if not; left to expire if the read fails.
func (k *Keys) refresh(id string, hash []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gen, start := k.generation(), k.now()
	p, err := k.lookup(ctx, id, hash)
	switch {
	case err == nil:
		k.remember(id, hash, p, start, gen)
	case errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrRevokedKey):
		k.mu.Lock()
		delete(k.hot, id)
		k.mu.Unlock()
	default:
		k.mu.Lock()
		if c, ok := k.hot[id]; ok {
			c.refreshing = false
			k.hot[id] = c
		}
		k.mu.Unlock()
	}
}

// generation returns how many revokes this store has begun.
func (k *Keys) generation() uint64 {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.revokes
}

// remember caches a key read valid by a lookup that began at generation gen, unless a
// revoke began since.
func (k *Keys) remember(id string, hash []byte, p Principal, now time.Time, gen uint64) {
	if k.ttl <= 0 {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.revokes != gen {
		return
	}
	if len(k.hot) >= maxCachedKeys {
		clear(k.hot)
	}
	k.hot[id] = cachedKey{hash: hash, principal: p, until: now.Add(k.ttl)}
}

func (k *Keys) forget(id string) {
	k.mu.Lock()
	k.revokes++
	delete(k.hot, id)
	k.mu.Unlock()
}

// KeyError is a key that cannot be created as asked: Field (userId, scopes or name) is
// wrong as Message says.
type KeyError struct{ Field, Message string }

func (e *KeyError) Error() string { return fmt.Sprintf("API key: %s %s", e.Field, e.Message) }

// maxNameLen bounds a key's name.
const maxNameLen = 100

// Create makes a key for user with scopes and returns it: the key itself, which is
// never stored and cannot be shown again, and its record.
func (k *Keys) Create(ctx context.Context, user int64, name string, scopes []Scope) (string, Key, error) {
	switch {
	case user <= 0:
		return "", Key{}, &KeyError{"userId", "must be a positive integer"}
	case len(scopes) == 0:
		return "", Key{}, &KeyError{"scopes", "must name at least one scope"}
	case len(name) > maxNameLen || strings.ContainsFunc(name, func(r rune) bool { return r < ' ' || r == 0x7f }):
		return "", Key{}, &KeyError{"name", fmt.Sprintf("must be at most %d printable characters", maxNameLen)}
	}
	names := make([]string, len(scopes))
	for i, s := range scopes {
		names[i] = string(s)
	}
	key, id, hash := NewKey()
	row, err := k.q.InsertAPIKey(ctx, queries.InsertAPIKeyParams{ID: id, UserID: user, Name: name, Scopes: names, SecretHash: hash})
	if err != nil {
		return "", Key{}, fmt.Errorf("auth: create key: %w", err)
	}
	return key, keyOf(row), nil
}

// List returns the keys of user, or every key when user is 0, oldest first.
func (k *Keys) List(ctx context.Context, user int64) ([]Key, error) {
	var filter *int64
	if user != 0 {
		filter = &user
	}
	rows, err := k.q.ListAPIKeys(ctx, filter)
	if err != nil {
		return nil, fmt.Errorf("auth: list keys: %w", err)
	}
	out := make([]Key, len(rows))
	for i, r := range rows {
		out[i] = keyOf(r)
	}
	return out, nil
}

// Revoke revokes key id at once: the next request with it is refused. Revoking it again
// changes nothing; an id no key has is ErrKeyNotFound.
func (k *Keys) Revoke(ctx context.Context, id string) (Key, error) {
	k.forget(id) // before: a lookup under way does not remember the key afterwards
	row, err := k.q.RevokeAPIKey(ctx, id)
	k.forget(id) // and after: nor one that began while the revoke was on its way
	if errors.Is(err, pgx.ErrNoRows) {
		return Key{}, fmt.Errorf("key %q: %w", id, ErrKeyNotFound)
	}
	if err != nil {
		return Key{}, fmt.Errorf("auth: revoke key %q: %w", id, err)
	}
	return keyOf(row), nil
}

// Authenticate returns the principal of an API key, or ErrMalformedKey, ErrUnknownKey
// (no key has its id, or its secret is not that key's) or ErrRevokedKey.
func (k *Keys) Authenticate(ctx context.Context, key string) (Principal, error) {
	id, hash, err := ParseKey(key)
	if err != nil {
		return Principal{}, err
	}
	now := k.now()
	if p, ok, refresh := k.cached(id, hash, now); ok {
		if refresh {
			go k.refresh(id, hash)
		}
		return p, nil
	}
	gen := k.generation()
	p, err := k.lookup(ctx, id, hash)
	if err != nil {
		return Principal{}, err
	}
	k.remember(id, hash, p, now, gen)
	return p, nil
}

// lookup reads key id and checks its secret (hash) and that it is not revoked.
func (k *Keys) lookup(ctx context.Context, id string, hash []byte) (Principal, error) {
	row, err := k.fetch(ctx, id)
	if errors.Is(err, pgx.ErrNoRows) {
		return Principal{}, ErrUnknownKey
	}
	if err != nil {
		return Principal{}, fmt.Errorf("auth: look up key: %w", err)
	}
	if !secretMatches(row.SecretHash, hash) {
		return Principal{}, ErrUnknownKey
	}
	if row.RevokedAt != nil {
		return Principal{}, ErrRevokedKey
	}
	// Last use is for operators reviewing keys; losing one to a failed write is harmless,
	// and a minute's precision spares a round trip on nearly every request.
	if row.LastUsedAt == nil || k.now().Sub(*row.LastUsedAt) > time.Minute {
		_ = k.q.TouchAPIKey(ctx, id)
	}
	return Principal{UserID: row.UserID, Scopes: keyOf(row).Scopes, KeyID: row.ID}, nil
}
