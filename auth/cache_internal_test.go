package auth

import (
	"testing"
	"time"
)

// A lookup that read a key before a revoke through this store began does not remember
// it afterwards, however its steps interleave with the revoke's.
func TestALookupOverlappingARevokeDoesNotRememberTheKey(t *testing.T) {
	k := (&Keys{}).WithCache(time.Hour)
	hash, now := []byte("h"), time.Now()
	p := Principal{UserID: 1, KeyID: "k"}

	gen := k.generation() // the lookup begins, and reads the key still valid
	k.forget("k")         // a revoke begins
	k.remember("k", hash, p, now, gen)
	if _, ok := k.cached("k", hash, now); ok {
		t.Fatal("a key read before a revoke was remembered")
	}

	gen = k.generation() // a lookup with no revoke meanwhile is remembered
	k.remember("k", hash, p, now, gen)
	if got, ok := k.cached("k", hash, now); !ok || got.UserID != 1 {
		t.Fatalf("cached = %+v, %v; want the key remembered", got, ok)
	}
}
