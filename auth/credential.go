package auth

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// ErrNoCredential: the request carries no Authorization header.
var ErrNoCredential = errors.New("no credential")

// ErrMalformedHeader: the Authorization header is not "Bearer <token>".
var ErrMalformedHeader = errors.New(`the Authorization header must be "Bearer <token>"`)

// maxTokenLen bounds a bearer token: an API key is 73 characters, a provider's JWT a few
// kilobytes at most.
const maxTokenLen = 8 << 10

// BearerToken returns the token of an Authorization header value (RFC 6750: the scheme
// "Bearer", case-insensitive, one space, a token68), ErrNoCredential for an empty one or
// ErrMalformedHeader.
func BearerToken(header string) (string, error) {
	if header == "" {
		return "", ErrNoCredential
	}
	scheme, token, ok := strings.Cut(header, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") || token == "" || len(token) > maxTokenLen || !token68(token) {
		return "", ErrMalformedHeader
	}
	return token, nil
}

// token68 reports whether s is an RFC 7235 token68: ALPHA / DIGIT / "-" / "." / "_" /
// "~" / "+" / "/", then any number of "=".
func token68(s string) bool {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("-._~+/", c) >= 0) {
			return false
		}
	}
	return true
}

// Authenticator tells who a bearer token stands for: an API key (recognised by its
// prefix) from the key store, anything else as a JWT of the configured provider.
type Authenticator struct {
	Keys *Keys        // required
	JWT  *JWTVerifier // nil: bearer tokens other than API keys are refused
}

// ErrInvalidCredential wraps every refusal of a token that was well formed: unknown,
// revoked, malformed key or invalid JWT. A client is told no more than that.
var ErrInvalidCredential = errors.New("invalid credential")

// Authenticate returns the principal of token, an error wrapping ErrInvalidCredential,
// or another error when the credential could not be checked (the database is down).
func (a *Authenticator) Authenticate(ctx context.Context, token string) (Principal, error) {
	if strings.HasPrefix(token, KeyPrefix) {
		p, err := a.Keys.Authenticate(ctx, token)
		if errors.Is(err, ErrMalformedKey) || errors.Is(err, ErrUnknownKey) || errors.Is(err, ErrRevokedKey) {
			return Principal{}, fmt.Errorf("%w: %w", ErrInvalidCredential, err)
		}
		return p, err
	}
	if a.JWT == nil {
		return Principal{}, fmt.Errorf("%w: not an API key, and no token provider is configured", ErrInvalidCredential)
	}
	p, err := a.JWT.Verify(ctx, token)
	if err != nil {
		return Principal{}, fmt.Errorf("%w: %w", ErrInvalidCredential, err)
	}
	return p, nil
}
