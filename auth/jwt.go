package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// JWTConfig says how to verify the bearer tokens of an OIDC provider. JWKSURL, Issuer
// and Audience are required. The zero value of the others is their default:
//
//   - UserClaim: the claim that carries the user id, a positive integer (as a JSON
//     number or a string of digits); default "sub";
//   - ScopesClaim: the claim that carries the scopes, a space-separated string or an
//     array of strings (names other than read, trade and admin are ignored); default
//     "scope";
//   - ClockSkew: how long after its expiry a token is still accepted; default 1 minute;
//   - Algorithms: the signing algorithms accepted, asymmetric ones only; default RS256,
//     RS384, RS512, PS256, PS384, PS512, ES256, ES384, ES512 and EdDSA.
type JWTConfig struct {
	JWKSURL     string
	Issuer      string
	Audience    string
	UserClaim   string
	ScopesClaim string
	ClockSkew   time.Duration
	Algorithms  []string
}

// asymmetric are the JOSE algorithms a token may be signed with: never "none", and never
// an HMAC, whose key would be whatever the verifier holds (a public key, say).
var asymmetric = []string{
	oidc.RS256, oidc.RS384, oidc.RS512, oidc.PS256, oidc.PS384, oidc.PS512,
	oidc.ES256, oidc.ES384, oidc.ES512, oidc.EdDSA,
}

// ErrInvalidToken: the bearer token is not one this verifier accepts.
var ErrInvalidToken = errors.New("invalid bearer token")

// JWTVerifier verifies bearer tokens against the provider's JSON Web Key Set, which it
// fetches when it first needs it and again whenever a token names a key it does not
// hold (so a key rotation needs nothing from OrderFlow).
type JWTVerifier struct {
	v   *oidc.IDTokenVerifier
	cfg JWTConfig
}

// NewJWTVerifier returns a verifier for cfg, or an error saying which setting is wrong.
// ctx bounds the key set's fetches for as long as the verifier is used.
func NewJWTVerifier(ctx context.Context, cfg JWTConfig) (*JWTVerifier, error) {
	switch {
	case cfg.JWKSURL == "":
		return nil, errors.New("the JWKS URL is required")
	case cfg.Issuer == "":
		return nil, errors.New("the token issuer is required")
	case cfg.Audience == "":
		return nil, errors.New("the token audience is required")
	case cfg.ClockSkew < 0:
		return nil, errors.New("the clock skew must not be negative")
	}
	if cfg.UserClaim == "" {
		cfg.UserClaim = "sub"
	}
	if cfg.ScopesClaim == "" {
		cfg.ScopesClaim = "scope"
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = time.Minute
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = asymmetric
	}
	for _, alg := range cfg.Algorithms {
		if !slices.Contains(asymmetric, alg) {
			return nil, fmt.Errorf("signing algorithm %q is not accepted: only asymmetric ones (%s)", alg, strings.Join(asymmetric, ", "))
		}
	}
	skew := cfg.ClockSkew
	v := oidc.NewVerifier(cfg.Issuer, oidc.NewRemoteKeySet(ctx, cfg.JWKSURL), &oidc.Config{
		ClientID:             cfg.Audience,
		SupportedSigningAlgs: cfg.Algorithms,
		Now:                  func() time.Time { return time.Now().Add(-skew) },
	})
	return &JWTVerifier{v: v, cfg: cfg}, nil
}

// Verify returns the principal of a bearer token: its signature checked against the
// provider's keys with an accepted algorithm, its issuer, audience and expiry checked,
// its user id and scopes read from the configured claims. Any failure wraps
// ErrInvalidToken.
func (j *JWTVerifier) Verify(ctx context.Context, token string) (Principal, error) {
	t, err := j.v.Verify(ctx, token)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrInvalidToken, err)
	}
	var claims map[string]json.RawMessage
	if err := t.Claims(&claims); err != nil {
		return Principal{}, fmt.Errorf("%w: claims: %v", ErrInvalidToken, err)
	}
	user, err := userID(claims[j.cfg.UserClaim])
	if err != nil {
		return Principal{}, fmt.Errorf("%w: claim %q: %v", ErrInvalidToken, j.cfg.UserClaim, err)
	}
	return Principal{UserID: user, Scopes: scopes(claims[j.cfg.ScopesClaim])}, nil
}

// userID reads a positive integer given as a JSON number or a string of digits.
func userID(raw json.RawMessage) (int64, error) {
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, errors.New("missing, or neither a number nor a string")
		}
		n = json.Number(s)
	}
	id, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || id <= 0 {
		return 0, fmt.Errorf("%q is not a positive integer user id", n)
	}
	return id, nil
}

// scopes reads the known scopes of a space-separated string or an array of strings.
func scopes(raw json.RawMessage) []Scope {
	var list []string
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		list = strings.Fields(s)
	} else if err := json.Unmarshal(raw, &list); err != nil {
		return nil
	}
	var out []Scope
	for _, name := range list {
		if sc := Scope(name); (sc == ScopeRead || sc == ScopeTrade || sc == ScopeAdmin) && !slices.Contains(out, sc) {
			out = append(out, sc)
		}
	}
	return out
}
