package auth_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"

	"github.com/orderflow/orderflow/auth"
)

// provider is an OIDC provider's JWKS endpoint whose keys a test can rotate.
type provider struct {
	mu   sync.Mutex
	keys []jose.JSONWebKey // public
	srv  *httptest.Server
}

func newProvider(t *testing.T) *provider {
	p := &provider{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: p.keys})
	}))
	t.Cleanup(p.srv.Close)
	return p
}

// publish makes key (kid) the provider's only key.
func (p *provider) publish(kid string, key any, alg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.keys = []jose.JSONWebKey{{Key: key, KeyID: kid, Algorithm: alg, Use: "sig"}}
}

const (
	issuer   = "https://idp.example.test"
	audience = "orderflow"
)

func sign(t *testing.T, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
	t.Helper()
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(s).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func claims(mod func(map[string]any)) map[string]any {
	c := map[string]any{
		"iss": issuer, "aud": audience, "sub": "42", "scope": "read trade",
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}
	if mod != nil {
		mod(c)
	}
	return c
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func TestAJWTIsAcceptedOnlyAsItsProviderSignedIt(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := newProvider(t)
	p.publish("k1", rsaKey.Public(), "RS256")
	v, err := auth.NewJWTVerifier(context.Background(), auth.JWTConfig{JWKSURL: p.srv.URL, Issuer: issuer, Audience: audience})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()

	good := sign(t, jose.RS256, rsaKey, "k1", claims(nil))
	pr, err := v.Verify(ctx, good)
	if err != nil || pr.UserID != 42 || !pr.Has(auth.ScopeTrade) || !pr.Has(auth.ScopeRead) || pr.Has(auth.ScopeAdmin) {
		t.Fatalf("a good token: %+v, %v; want user 42 with read and trade", pr, err)
	}
	// Another provider's claims: the user id a number in a claim of its own, the scopes
	// an array.
	uid, err := auth.NewJWTVerifier(ctx, auth.JWTConfig{JWKSURL: p.srv.URL, Issuer: issuer, Audience: audience, UserClaim: "uid", ScopesClaim: "roles"})
	if err != nil {
		t.Fatal(err)
	}
	arr := sign(t, jose.RS256, rsaKey, "k1", claims(func(c map[string]any) { c["roles"] = []string{"admin", "write"}; c["uid"] = 7 }))
	if pr, err := uid.Verify(ctx, arr); err != nil || pr.UserID != 7 || len(pr.Scopes) != 1 || pr.Scopes[0] != auth.ScopeAdmin {
		t.Errorf("scopes as an array, the user id as a number: %+v, %v; want user 7 with admin only", pr, err)
	}
	within := sign(t, jose.RS256, rsaKey, "k1", claims(func(c map[string]any) { c["exp"] = time.Now().Add(-30 * time.Second).Unix() }))
	if _, err := v.Verify(ctx, within); err != nil {
		t.Errorf("a token expired 30s ago, within the clock skew: %v", err)
	}

	pubDER, err := x509.MarshalPKIXPublicKey(rsaKey.Public())
	if err != nil {
		t.Fatal(err)
	}
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	header := func(alg string) string { return b64([]byte(`{"alg":"` + alg + `","kid":"k1","typ":"JWT"}`)) }
	body, _ := json.Marshal(claims(nil))
	hs := header("HS256") + "." + b64(body)
	mac := hmac.New(sha256.New, pubPEM)
	mac.Write([]byte(hs))
	parts := strings.Split(good, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[0] ^= 1
	ecKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)

	for name, tok := range map[string]string{
		"expired":                         sign(t, jose.RS256, rsaKey, "k1", claims(func(c map[string]any) { c["exp"] = time.Now().Add(-2 * time.Minute).Unix() })),
		"wrong issuer":                    sign(t, jose.RS256, rsaKey, "k1", claims(func(c map[string]any) { c["iss"] = "https://evil.test" })),
		"wrong audience":                  sign(t, jose.RS256, rsaKey, "k1", claims(func(c map[string]any) { c["aud"] = "someone-else" })),
		"alg none":                        header("none") + "." + b64(body) + ".",
		"HS256 keyed with the public key": hs + "." + b64(mac.Sum(nil)),
		"tampered signature":              parts[0] + "." + parts[1] + "." + b64(sig),
		"tampered claims":                 parts[0] + "." + b64([]byte(strings.Replace(string(body), `"42"`, `"43"`, 1))) + "." + parts[2],
		"signed by a key not published":   sign(t, jose.ES256, ecKey, "k1", claims(nil)),
		"no user id":                      sign(t, jose.RS256, rsaKey, "k1", claims(func(c map[string]any) { delete(c, "sub") })),
		"a user id that is not a number":  sign(t, jose.RS256, rsaKey, "k1", claims(func(c map[string]any) { c["sub"] = "alice" })),
		"not a JWT":                       "ofk_notatoken",
	} {
		if _, err := v.Verify(ctx, tok); !errors.Is(err, auth.ErrInvalidToken) {
			t.Errorf("%s: %v, want ErrInvalidToken", name, err)
		}
	}

	// The provider rotates to a new key: tokens it signs with it are accepted.
	next, _ := rsa.GenerateKey(rand.Reader, 2048)
	p.publish("k2", next.Public(), "RS256")
	if pr, err := v.Verify(ctx, sign(t, jose.RS256, next, "k2", claims(nil))); err != nil || pr.UserID != 42 {
		t.Errorf("a token signed with the rotated key: %+v, %v", pr, err)
	}
}

func TestAJWTVerifierRefusesSymmetricAlgorithmsAndMissingSettings(t *testing.T) {
	ctx := context.Background()
	for name, cfg := range map[string]auth.JWTConfig{
		"HS256":       {JWKSURL: "http://x", Issuer: issuer, Audience: audience, Algorithms: []string{"HS256"}},
		"none":        {JWKSURL: "http://x", Issuer: issuer, Audience: audience, Algorithms: []string{"none"}},
		"no JWKS URL": {Issuer: issuer, Audience: audience},
		"no issuer":   {JWKSURL: "http://x", Audience: audience},
		"no audience": {JWKSURL: "http://x", Issuer: issuer},
	} {
		if _, err := auth.NewJWTVerifier(ctx, cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
