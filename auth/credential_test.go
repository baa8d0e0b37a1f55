package auth_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/auth"
)

func TestBearerToken(t *testing.T) {
	key, _, _ := auth.NewKey()
	for _, h := range []string{"Bearer " + key, "bearer " + key, "BEARER abc.def-ghi_jkl~mno+p/q=="} {
		if _, err := auth.BearerToken(h); err != nil {
			t.Errorf("BearerToken(%q) = %v, want a token", h, err)
		}
	}
	if tok, _ := auth.BearerToken("Bearer " + key); tok != key {
		t.Errorf("BearerToken gave %q, want the key", tok)
	}
	if _, err := auth.BearerToken(""); !errors.Is(err, auth.ErrNoCredential) {
		t.Errorf("empty header: %v, want ErrNoCredential", err)
	}
	for _, h := range []string{
		"Bearer", "Bearer ", "Basic dXNlcjpwYXNz", "Bearer  " + key, "Bearer " + key + " x", key,
		"Bearer a\x00b", "Bearer ===", "Bearer " + strings.Repeat("a", 9000), "Bearer ü",
	} {
		if _, err := auth.BearerToken(h); !errors.Is(err, auth.ErrMalformedHeader) {
			t.Errorf("BearerToken(%q) = %v, want ErrMalformedHeader", h, err)
		}
	}
}

// FuzzBearerToken: whatever the header, BearerToken either refuses it with one of its
// two errors or returns a token68 that is exactly the header's second part.
func FuzzBearerToken(f *testing.F) {
	key, _, _ := auth.NewKey()
	for _, s := range []string{"Bearer " + key, "", "Bearer", "bearer x=", "Basic x", "Bearer a b", "Bearer \x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, h string) {
		tok, err := auth.BearerToken(h)
		if err != nil {
			if !errors.Is(err, auth.ErrNoCredential) && !errors.Is(err, auth.ErrMalformedHeader) {
				t.Fatalf("BearerToken(%q) = %v", h, err)
			}
			return
		}
		if !strings.EqualFold(h[:7], "Bearer ") || h[7:] != tok || strings.ContainsAny(tok, " \t\r\n\x00") {
			t.Fatalf("BearerToken(%q) accepted %q", h, tok)
		}
	})
}
