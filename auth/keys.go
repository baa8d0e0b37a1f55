// Package auth says who is calling: API keys (random, shown once, stored as a hash of
// their secret, scoped and revocable) and the principal a credential stands for.
package auth

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Scope is what a credential may do.
type Scope string

// The scopes. trade places and cancels the caller's orders, read reads them, admin reads
// every user's and reaches the operators' routes.
const (
	ScopeRead  Scope = "read"
	ScopeTrade Scope = "trade"
	ScopeAdmin Scope = "admin"
)

// ParseScopes parses a comma-separated list of scopes ("read,trade"), refusing unknown
// ones, repeats and an empty list.
func ParseScopes(s string) ([]Scope, error) {
	var out []Scope
	for part := range strings.SplitSeq(s, ",") {
		sc := Scope(strings.TrimSpace(part))
		switch {
		case sc != ScopeRead && sc != ScopeTrade && sc != ScopeAdmin:
			return nil, fmt.Errorf("unknown scope %q: want read, trade or admin", sc)
		case slices.Contains(out, sc):
			return nil, fmt.Errorf("scope %q given twice", sc)
		}
		out = append(out, sc)
	}
	return out, nil
}

// The key format: KeyPrefix, the key's id, an underscore, its secret. The prefix makes
// a leaked key easy to recognise (secret scanners, logs); the id is public and names the
// key's row; the secret is 32 random bytes. Both are lower-case base32, no padding.
const (
	KeyPrefix    = "ofk_"
	idBytes      = 10 // 16 characters
	secretBytes  = 32 // 52 characters
	idChars      = 16
	secretChars  = 52
	keyLength    = len(KeyPrefix) + idChars + 1 + secretChars
	base32Digits = "abcdefghijklmnopqrstuvwxyz234567"
)

var encoding = base32.NewEncoding(base32Digits).WithPadding(base32.NoPadding)

// ErrMalformedKey: the string is not an API key of this format.
var ErrMalformedKey = errors.New("not an OrderFlow API key")

// NewKey returns a new API key, its id and the hash of its secret, which is what is
// stored.
func NewKey() (key, id string, secretHash []byte) {
	b := make([]byte, idBytes+secretBytes)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	id, secret := encoding.EncodeToString(b[:idBytes]), encoding.EncodeToString(b[idBytes:])
	h := sha256.Sum256([]byte(secret))
	return KeyPrefix + id + "_" + secret, id, h[:]
}

// ParseKey splits an API key into its id and the hash of its secret, or returns
// ErrMalformedKey. It looks at nothing but the string's shape.
func ParseKey(key string) (id string, secretHash []byte, err error) {
	if len(key) != keyLength || !strings.HasPrefix(key, KeyPrefix) || key[len(KeyPrefix)+idChars] != '_' {
		return "", nil, ErrMalformedKey
	}
	id, secret := key[len(KeyPrefix):len(KeyPrefix)+idChars], key[len(KeyPrefix)+idChars+1:]
	if !canonical(id, idBytes) || !canonical(secret, secretBytes) {
		return "", nil, ErrMalformedKey
	}
	h := sha256.Sum256([]byte(secret))
	return id, h[:], nil
}

// canonical reports whether s is the encoding of exactly n bytes, as NewKey writes it.
func canonical(s string, n int) bool {
	b, err := encoding.DecodeString(s)
	return err == nil && len(b) == n && encoding.EncodeToString(b) == s
}

// secretMatches compares two secret hashes in constant time.
func secretMatches(a, b []byte) bool { return subtle.ConstantTimeCompare(a, b) == 1 }
