// Package oidctest is a fake OIDC provider for tests, as net/http/httptest is a fake
// server: a JWKS endpoint whose signing key can rotate, tokens signed with it, and the
// forgeries a verifier must refuse.
package oidctest

import (
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
	"fmt"
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

// The issuer and audience of the provider's tokens.
const (
	Issuer   = "https://idp.example.test"
	Audience = "orderflow"
)

// Provider publishes one RSA signing key at a time on its JWKS endpoint.
type Provider struct {
	srv *httptest.Server

	mu      sync.Mutex
	kid     string
	key     *rsa.PrivateKey
	n       int
	fetches int
}

// NewProvider starts a provider, closed when t ends, with a first key published.
func NewProvider(t testing.TB) *Provider {
	t.Helper()
	p := &Provider{}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		p.mu.Lock()
		defer p.mu.Unlock()
		p.fetches++
		set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: p.key.Public(), KeyID: p.kid, Algorithm: "RS256", Use: "sig"}}}
		_ = json.NewEncoder(w).Encode(set)
	}))
	t.Cleanup(p.srv.Close)
	p.Rotate(t)
	return p
}

// Fetches is how many times the key set was fetched.
func (p *Provider) Fetches() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fetches
}

// Config is a verifier configuration for the provider, which may fetch its key set as
// often as it likes (tests rotate keys right after forgeries).
func (p *Provider) Config() auth.JWTConfig {
	return auth.JWTConfig{JWKSURL: p.srv.URL, Issuer: Issuer, Audience: Audience, MinRefetch: time.Nanosecond}
}

// Rotate replaces the published key with a new one (and a new key id): tokens signed
// with the old one no longer verify.
func (p *Provider) Rotate(t testing.TB) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	p.kid, p.key = fmt.Sprintf("k%d", p.n), key
}

// Claims are a token's claims for user with scopes (space-separated), valid for an hour.
func Claims(user int64, scopes string) map[string]any {
	return map[string]any{
		"iss": Issuer, "aud": Audience, "sub": fmt.Sprint(user), "scope": scopes,
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(),
	}
}

// Token signs claims with the published key.
func (p *Provider) Token(t testing.TB, claims map[string]any) string {
	t.Helper()
	p.mu.Lock()
	key, kid := p.key, p.kid
	p.mu.Unlock()
	return Sign(t, jose.RS256, key, kid, claims)
}

// Sign signs claims with key under alg, naming kid.
func Sign(t testing.TB, alg jose.SignatureAlgorithm, key any, kid string, claims map[string]any) string {
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

// with returns a copy of claims changed by mod.
func with(claims map[string]any, mod func(map[string]any)) map[string]any {
	c := make(map[string]any, len(claims))
	for k, v := range claims {
		c[k] = v
	}
	mod(c)
	return c
}

// Forgeries are tokens for claims that a verifier of this provider must refuse, by what
// is wrong with them: expired beyond any skew, another issuer, another audience, alg
// none, HS256 keyed with the provider's public key, a tampered signature, tampered
// claims, and a key the provider never published.
func (p *Provider) Forgeries(t testing.TB, claims map[string]any) map[string]string {
	t.Helper()
	p.mu.Lock()
	key, kid := p.key, p.kid
	p.mu.Unlock()
	good := p.Token(t, claims)
	b64 := base64.RawURLEncoding.EncodeToString
	header := func(alg string) string { return b64([]byte(`{"alg":"` + alg + `","kid":"` + kid + `","typ":"JWT"}`)) }
	body, _ := json.Marshal(claims)

	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	hs := header("HS256") + "." + b64(body)
	mac := hmac.New(sha256.New, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}))
	mac.Write([]byte(hs))

	parts := strings.Split(good, ".")
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sig[0] ^= 1
	var other map[string]any
	_ = json.Unmarshal(body, &other)
	other["sub"] = "1" + fmt.Sprint(other["sub"])
	otherBody, _ := json.Marshal(other)
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]string{
		"expired JWT":                     p.Token(t, with(claims, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Hour).Unix() })),
		"wrong issuer":                    p.Token(t, with(claims, func(c map[string]any) { c["iss"] = "https://evil.test" })),
		"wrong audience":                  p.Token(t, with(claims, func(c map[string]any) { c["aud"] = "someone-else" })),
		"alg none":                        header("none") + "." + b64(body) + ".",
		"HS256 keyed with the public key": hs + "." + b64(mac.Sum(nil)),
		"tampered signature":              parts[0] + "." + parts[1] + "." + b64(sig),
		"tampered claims":                 parts[0] + "." + b64(otherBody) + "." + parts[2],
		"signed by a key not published":   Sign(t, jose.ES256, ecKey, kid, claims),
	}
}
