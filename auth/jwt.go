package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/time/rate"
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
//   - MinRefetch: the least time between two fetches of the key set (beyond a burst of
//     two); default 10s. go-oidc fetches the set again for every token whose signature no
//     held key verifies, forged ones included, so this bounds what forgeries cost the
//     provider; a genuine rotation is seen at most this late.
//   - AllowAdmin: believe a token's admin scope. Off by default, since many providers
//     grant a client whatever scopes it asks for; turn it on only for a provider that
//     grants admin to operators alone.
//
// ClockSkew is at most maxClockSkew.
type JWTConfig struct {
	JWKSURL     string
	Issuer      string
	Audience    string
	UserClaim   string
	ScopesClaim string
	ClockSkew   time.Duration
	Algorithms  []string
	MinRefetch  time.Duration
	AllowAdmin  bool
}

// maxClockSkew bounds the skew: more would accept tokens long expired.
const maxClockSkew = 5 * time.Minute

// A fetch of the key set gives up after jwksTimeout.
const jwksTimeout = 10 * time.Second

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
	case cfg.ClockSkew < 0 || cfg.ClockSkew > maxClockSkew:
		return nil, fmt.Errorf("the clock skew must be from 0 to %s", maxClockSkew)
	}
	if cfg.UserClaim == "" {
		cfg.UserClaim = "sub"
	}
	if cfg.ScopesClaim == "" {
		cfg.ScopesClaim = "scope"
	}
	if cfg.MinRefetch <= 0 {
		cfg.MinRefetch = 10 * time.Second
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
	fetch := &http.Client{Timeout: jwksTimeout, Transport: &throttled{base: http.DefaultTransport, limit: rate.NewLimiter(rate.Every(cfg.MinRefetch), 2)}}
	keys := oidc.NewRemoteKeySet(oidc.ClientContext(ctx, fetch), cfg.JWKSURL)
	v := oidc.NewVerifier(cfg.Issuer, keys, &oidc.Config{
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
	sc := scopes(claims[j.cfg.ScopesClaim])
	if !j.cfg.AllowAdmin {
		sc = slices.DeleteFunc(sc, func(s Scope) bool { return s == ScopeAdmin })
	}
	return Principal{UserID: user, Scopes: sc}, nil
}

// throttled is a transport that refuses requests beyond its limit at once.
type throttled struct {
	base  http.RoundTripper
	limit *rate.Limiter
}

// errThrottled: the key set was fetched too recently to fetch it again.
var errThrottled = errors.New("the key set was fetched moments ago; not fetching it again yet")

func (t *throttled) RoundTrip(req *http.Request) (*http.Response, error) {
	if !t.limit.Allow() {
		return nil, errThrottled
	}
	return t.base.RoundTrip(req)
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
