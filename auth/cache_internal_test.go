package auth

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/queries"
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
	if _, ok, _ := k.cached("k", hash, now); ok {
		t.Fatal("a key read before a revoke was remembered")
	}

	gen = k.generation() // a lookup with no revoke meanwhile is remembered
	k.remember("k", hash, p, now, gen)
	if got, ok, _ := k.cached("k", hash, now); !ok || got.UserID != 1 {
		t.Fatalf("cached = %+v, %v; want the key remembered", got, ok)
	}
}

// fakeKeyRows is a key table of one row and a clock, for the cache's tests.
type fakeKeyRows struct {
	mu    sync.Mutex
	row   queries.ApiKey
	reads int
	now   time.Time
}

func (f *fakeKeyRows) fetch(context.Context, string) (queries.ApiKey, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads++
	return f.row, nil
}

func (f *fakeKeyRows) clock() time.Time { f.mu.Lock(); defer f.mu.Unlock(); return f.now }

func (f *fakeKeyRows) set(do func(*fakeKeyRows)) { f.mu.Lock(); defer f.mu.Unlock(); do(f) }

func (f *fakeKeyRows) readCount() int { f.mu.Lock(); defer f.mu.Unlock(); return f.reads }

// A key in steady use is read again in the background in the second half of its ttl,
// so no request after the first waits for a read; a key revoked meanwhile is forgotten
// by that read, and refused by the next request.
func TestAKeyInUseIsReadAheadOfItsExpiry(t *testing.T) {
	const ttl = 10 * time.Second
	key, id, hash := NewKey()
	t0 := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	f := &fakeKeyRows{now: t0, row: queries.ApiKey{ID: id, UserID: 3, Scopes: []string{"read"}, SecretHash: hash, LastUsedAt: &t0}}
	k := (&Keys{fetch: f.fetch, now: f.clock}).WithCache(ttl)
	ctx := context.Background()
	auth := func(at time.Duration) (Principal, error) {
		f.set(func(f *fakeKeyRows) { f.now = t0.Add(at) })
		return k.Authenticate(ctx, key)
	}
	waitReads := func(n int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for f.readCount() < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d reads, want %d", f.readCount(), n)
			}
			time.Sleep(time.Millisecond)
		}
	}

	if _, err := auth(0); err != nil || f.readCount() != 1 {
		t.Fatalf("first use: %v, %d reads", err, f.readCount())
	}
	if _, err := auth(2 * time.Second); err != nil || f.readCount() != 1 {
		t.Fatalf("in the first half of its ttl: %v, %d reads; want it answered from memory", err, f.readCount())
	}
	if _, err := auth(6 * time.Second); err != nil { // answered from memory; a read starts
		t.Fatal(err)
	}
	waitReads(2)
	if _, err := auth(7 * time.Second); err != nil || f.readCount() != 2 {
		t.Fatalf("while the read ahead is done: %v, %d reads; want no other", err, f.readCount())
	}
	// Past the first read's ttl, the key is answered from the second read.
	if p, err := auth(12 * time.Second); err != nil || p.UserID != 3 || f.readCount() != 2 {
		t.Fatalf("past the first read's ttl: %+v, %v, %d reads; want it answered from the read ahead", p, err, f.readCount())
	}

	// Revoked elsewhere: the next read ahead finds it and forgets the key.
	revoked := t0.Add(12 * time.Second)
	f.set(func(f *fakeKeyRows) { f.row.RevokedAt = &revoked })
	if _, err := auth(13 * time.Second); err != nil { // second half of the read at 6s
		t.Fatal(err)
	}
	waitReads(3)
	waitFor := time.Now().Add(10 * time.Second)
	for {
		if _, err := auth(13 * time.Second); err == ErrRevokedKey {
			break
		} else if time.Now().After(waitFor) {
			t.Fatalf("a key revoked elsewhere, after a read ahead found it: %v, want ErrRevokedKey", err)
		}
		time.Sleep(time.Millisecond)
	}
}
