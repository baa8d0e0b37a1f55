package auth_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/orderflow/orderflow/auth"
)

func TestANewKeyParsesBackToItsIDAndSecretHash(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		key, id, hash := auth.NewKey()
		if !strings.HasPrefix(key, auth.KeyPrefix) || len(key) != 73 || seen[key] {
			t.Fatalf("NewKey() = %q: want a fresh ofk_ key of 73 characters", key)
		}
		seen[key] = true
		gotID, gotHash, err := auth.ParseKey(key)
		if err != nil || gotID != id || string(gotHash) != string(hash) {
			t.Fatalf("ParseKey(%q) = %q, %x, %v; want %q, %x", key, gotID, gotHash, err, id, hash)
		}
	}
}

func TestParseKeyRefusesAnythingElse(t *testing.T) {
	key, _, _ := auth.NewKey()
	for _, bad := range []string{
		"", "ofk_", key[:len(key)-1], key + "a", strings.ToUpper(key), strings.Replace(key, "ofk_", "ofx_", 1),
		key[:20] + "-" + key[21:], key[:len(key)-1] + "1", // '1' is not a base32 digit
		key[:len(key)-1] + "b", // a final digit with bits set past the 32 bytes
		"Bearer " + key, " " + key,
	} {
		if _, _, err := auth.ParseKey(bad); !errors.Is(err, auth.ErrMalformedKey) {
			t.Errorf("ParseKey(%q) = %v, want ErrMalformedKey", bad, err)
		}
	}
}

func FuzzParseKey(f *testing.F) {
	key, _, _ := auth.NewKey()
	for _, s := range []string{key, "", "ofk_", strings.Repeat("a", 73), "ofk_" + strings.Repeat("a", 16) + "_" + strings.Repeat("a", 52)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		id, hash, err := auth.ParseKey(s)
		if err != nil {
			if !errors.Is(err, auth.ErrMalformedKey) {
				t.Fatalf("ParseKey(%q) = %v, which is not ErrMalformedKey", s, err)
			}
			return
		}
		if len(id) != 16 || len(hash) != 32 || !strings.HasPrefix(s, auth.KeyPrefix+id+"_") {
			t.Fatalf("ParseKey(%q) accepted id %q, hash %x", s, id, hash)
		}
	})
}

func TestParseScopes(t *testing.T) {
	got, err := auth.ParseScopes("read, trade")
	if err != nil || len(got) != 2 || got[0] != auth.ScopeRead || got[1] != auth.ScopeTrade {
		t.Errorf("ParseScopes(read, trade) = %v, %v", got, err)
	}
	for _, bad := range []string{"", "read,", "write", "read,read", "ADMIN"} {
		if _, err := auth.ParseScopes(bad); err == nil {
			t.Errorf("ParseScopes(%q) accepted", bad)
		}
	}
}

// A key authenticates as its user with its scopes until it is revoked; nothing but the
// hash of its secret is stored, and a key with another's id and its own secret, or an id
// no key has, is unknown.
func TestAKeyAuthenticatesItsUserUntilRevoked(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	keys := auth.NewKeys(pool)
	ctx := context.Background()
	key, rec, err := keys.Create(ctx, 7, "trading bot", []auth.Scope{auth.ScopeRead, auth.ScopeTrade})
	if err != nil {
		t.Fatal(err)
	}
	p, err := keys.Authenticate(ctx, key)
	if err != nil || p.UserID != 7 || !p.Has(auth.ScopeTrade) || !p.Has(auth.ScopeRead) || p.Has(auth.ScopeAdmin) || p.KeyID != rec.ID {
		t.Fatalf("Authenticate = %+v, %v; want user 7 with read and trade", p, err)
	}
	// The row holds the secret's SHA-256, and the secret nowhere.
	secret := key[len(auth.KeyPrefix)+17:]
	var row string
	var hash []byte
	if err := pool.QueryRow(ctx, `SELECT row_to_json(k)::text, secret_hash FROM api_keys k WHERE id = $1`, rec.ID).Scan(&row, &hash); err != nil {
		t.Fatal(err)
	}
	if want := sha256.Sum256([]byte(secret)); strings.Contains(row, secret) || string(hash) != string(want[:]) {
		t.Errorf("stored %s: want only the secret's SHA-256", row)
	}
	other, _, _ := auth.NewKey()
	forged := key[:len(auth.KeyPrefix)+17] + other[len(auth.KeyPrefix)+17:]
	for _, k := range []string{forged, other} {
		if _, err := keys.Authenticate(ctx, k); !errors.Is(err, auth.ErrUnknownKey) {
			t.Errorf("Authenticate(%q) = %v, want ErrUnknownKey", k, err)
		}
	}
	if _, err := keys.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Authenticate(ctx, key); !errors.Is(err, auth.ErrRevokedKey) {
		t.Errorf("a revoked key: %v, want ErrRevokedKey", err)
	}
	if _, err := keys.Revoke(ctx, "nosuchkey"); !errors.Is(err, auth.ErrKeyNotFound) {
		t.Errorf("revoking an unknown key: %v, want ErrKeyNotFound", err)
	}
	list, err := keys.List(ctx, 7)
	if err != nil || len(list) != 1 || list[0].RevokedAt == nil || list[0].LastUsedAt == nil {
		t.Errorf("List(7) = %+v, %v; want the one key, used and revoked", list, err)
	}
}

func TestAdminIncludesReadAndNothingElseIncludesAnything(t *testing.T) {
	admin := auth.Principal{UserID: 1, Scopes: []auth.Scope{auth.ScopeAdmin}}
	trade := auth.Principal{UserID: 1, Scopes: []auth.Scope{auth.ScopeTrade}}
	if !admin.Has(auth.ScopeRead) || admin.Has(auth.ScopeTrade) || trade.Has(auth.ScopeRead) || trade.Has(auth.ScopeAdmin) {
		t.Error("scope inclusion is wrong")
	}
}

func TestACachedKeyIsReadOnceAndForgottenWhenRevokedHere(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	keys := auth.NewKeys(pool).WithCache(time.Hour)
	elsewhere := auth.NewKeys(pool) // another replica, or the CLI
	key, rec, err := keys.Create(ctx, 8, "cached", []auth.Scope{auth.ScopeTrade})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := keys.Authenticate(ctx, key); err != nil || p.UserID != 8 {
		t.Fatalf("Authenticate = %+v, %v", p, err)
	}
	// Revoked elsewhere: this store still remembers the key valid, as documented.
	if _, err := elsewhere.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if p, err := keys.Authenticate(ctx, key); err != nil || p.UserID != 8 {
		t.Fatalf("a remembered key: %+v, %v; want it answered from the cache", p, err)
	}
	// The remembered key's id with another secret is still refused.
	other, _, _ := auth.NewKey()
	forged := key[:len(auth.KeyPrefix)+17] + other[len(auth.KeyPrefix)+17:]
	if _, err := keys.Authenticate(ctx, forged); !errors.Is(err, auth.ErrUnknownKey) {
		t.Errorf("a forged secret for a cached id: %v, want ErrUnknownKey", err)
	}
	// Revoked through this store: refused at once.
	if _, err := keys.Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Authenticate(ctx, key); !errors.Is(err, auth.ErrRevokedKey) {
		t.Errorf("after Revoke here: %v, want ErrRevokedKey", err)
	}
	// A revoked key is never remembered: revoked elsewhere after one refusal, still refused.
	key2, rec2, err := keys.Create(ctx, 8, "short", []auth.Scope{auth.ScopeTrade})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := elsewhere.Revoke(ctx, rec2.ID); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if _, err := keys.Authenticate(ctx, key2); !errors.Is(err, auth.ErrRevokedKey) {
			t.Errorf("a key revoked before its first use: %v, want ErrRevokedKey", err)
		}
	}
}

func TestAnExpiredCacheEntryIsReadAgain(t *testing.T) {
	t.Parallel()
	pool := newPool(t)
	ctx := context.Background()
	keys := auth.NewKeys(pool).WithCache(time.Nanosecond)
	key, rec, err := keys.Create(ctx, 9, "expiring", []auth.Scope{auth.ScopeRead})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Authenticate(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := auth.NewKeys(pool).Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Authenticate(ctx, key); !errors.Is(err, auth.ErrRevokedKey) {
		t.Errorf("past its ttl: %v, want the key read again and refused", err)
	}
}
