package auth_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/auth/oidctest"
)

const (
	issuer   = oidctest.Issuer
	audience = oidctest.Audience
)

func TestAJWTIsAcceptedOnlyAsItsProviderSignedIt(t *testing.T) {
	p := oidctest.NewProvider(t)
	v, err := auth.NewJWTVerifier(context.Background(), p.Config())
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	claims := func(mod func(map[string]any)) map[string]any {
		c := oidctest.Claims(42, "read trade")
		if mod != nil {
			mod(c)
		}
		return c
	}

	pr, err := v.Verify(ctx, p.Token(t, claims(nil)))
	if err != nil || pr.UserID != 42 || !pr.Has(auth.ScopeTrade) || !pr.Has(auth.ScopeRead) || pr.Has(auth.ScopeAdmin) {
		t.Fatalf("a good token: %+v, %v; want user 42 with read and trade", pr, err)
	}
	// Another provider's claims: the user id a number in a claim of its own, the scopes
	// an array.
	cfg := p.Config()
	cfg.UserClaim, cfg.ScopesClaim, cfg.AllowAdmin = "uid", "roles", true
	uid, err := auth.NewJWTVerifier(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	arr := p.Token(t, claims(func(c map[string]any) { c["roles"] = []string{"admin", "write"}; c["uid"] = 7 }))
	if pr, err := uid.Verify(ctx, arr); err != nil || pr.UserID != 7 || len(pr.Scopes) != 1 || pr.Scopes[0] != auth.ScopeAdmin {
		t.Errorf("scopes as an array, the user id as a number: %+v, %v; want user 7 with admin only", pr, err)
	}
	// Unless told to, a verifier does not believe a token's admin scope: many providers
	// grant whatever a client asks for.
	if pr, err := v.Verify(ctx, p.Token(t, claims(func(c map[string]any) { c["scope"] = "read admin" }))); err != nil || pr.Admin() || !pr.Has(auth.ScopeRead) {
		t.Errorf("a token asking for admin without AllowAdmin: %+v, %v; want read alone", pr, err)
	}
	within := p.Token(t, claims(func(c map[string]any) { c["exp"] = time.Now().Add(-30 * time.Second).Unix() }))
	if _, err := v.Verify(ctx, within); err != nil {
		t.Errorf("a token expired 30s ago, within the clock skew: %v", err)
	}

	refused := p.Forgeries(t, claims(nil))
	refused["expired beyond the skew"] = p.Token(t, claims(func(c map[string]any) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() }))
	refused["no user id"] = p.Token(t, claims(func(c map[string]any) { delete(c, "sub") }))
	refused["a user id that is not a number"] = p.Token(t, claims(func(c map[string]any) { c["sub"] = "alice" }))
	refused["not a JWT"] = "ofk_notatoken"
	for name, tok := range refused {
		if _, err := v.Verify(ctx, tok); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", name, err)
		}
	}

	// The provider rotates to a new key: tokens it signs with it are accepted, and the
	// old key's are refused once it is no longer published.
	old := p.Token(t, claims(nil))
	p.Rotate(t)
	if pr, err := v.Verify(ctx, p.Token(t, claims(nil))); err != nil || pr.UserID != 42 {
		t.Errorf("a token signed with the rotated key: %+v, %v", pr, err)
	}
	if _, err := v.Verify(ctx, old); !errors.Is(err, auth.ErrInvalidToken) {
		t.Errorf("a token of the key rotated out: %v, want ErrInvalidToken", err)
	}
}

// Forged tokens make go-oidc fetch the key set again; the verifier lets it do so no more
// than MinRefetch allows, so forgeries cannot flood the provider.
func TestForgedTokensCannotFloodTheProvider(t *testing.T) {
	p := oidctest.NewProvider(t)
	cfg := p.Config()
	cfg.MinRefetch = time.Hour
	v, err := auth.NewJWTVerifier(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	forged := p.Forgeries(t, oidctest.Claims(1, "read"))["signed by a key not published"]
	for range 20 {
		if _, err := v.Verify(context.Background(), forged); !errors.Is(err, auth.ErrInvalidToken) {
			t.Fatalf("a forgery: %v", err)
		}
	}
	if n := p.Fetches(); n > 2 {
		t.Errorf("20 forgeries fetched the key set %d times, want at most the burst of 2", n)
	}
}

func TestAJWTVerifierRefusesSymmetricAlgorithmsAndMissingSettings(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]auth.JWTConfig{
		"HS256":             {JWKSURL: "http://x", Issuer: issuer, Audience: audience, Algorithms: []string{"HS256"}},
		"none":              {JWKSURL: "http://x", Issuer: issuer, Audience: audience, Algorithms: []string{"none"}},
		"a skew of an hour": {JWKSURL: "http://x", Issuer: issuer, Audience: audience, ClockSkew: time.Hour},
		"no JWKS URL":       {Issuer: issuer, Audience: audience},
		"no issuer":         {JWKSURL: "http://x", Audience: audience},
		"no audience":       {JWKSURL: "http://x", Issuer: issuer},
	} {
		if _, err := auth.NewJWTVerifier(ctx, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
