package api

import (
	"strconv"
	"sync"

	"github.com/bits-and-blooms/bloom/v3"
)

// recentKeys remembers, approximately, the users' Idempotency-Keys this API process has
// seen placed: in Bloom filters, so that admission control's refusal of a new order (all
// but a few of its refusals) is answered from memory, and only a key that may have placed
// an order is looked up for its replay. A key it does not know may still have been placed
// through another replica, or before this process started: the refusal says so (an order
// an earlier request with the key placed stands, and a retry returns its answer).
//
// Two generations of keysPerGeneration keys each: when the newer fills it replaces the
// older, so between the last keysPerGeneration and twice as many keys are remembered, in
// about 2.4 MB, and a false positive (1%) costs only a look-up.
type recentKeys struct {
	mu       sync.Mutex
	cur, old *bloom.BloomFilter
	n        uint // keys added to cur
	perGen   uint
}

const keysPerGeneration = 1 << 20

func newRecentKeys(perGen uint) *recentKeys {
	return &recentKeys{cur: bloom.NewWithEstimates(perGen, 0.01), old: bloom.NewWithEstimates(perGen, 0.01), perGen: perGen}
}

func recentKey(user int64, key string) []byte {
	b := strconv.AppendInt(make([]byte, 0, 24+len(key)), user, 10)
	return append(append(b, 0), key...)
}

// add records that the user's key placed an order (or is being placed).
func (k *recentKeys) add(user int64, key string) {
	b := recentKey(user, key)
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.n >= k.perGen {
		k.old, k.cur, k.n = k.cur, k.old, 0
		k.cur.ClearAll()
	}
	k.cur.Add(b)
	k.n++
}

// mayHave reports whether the user's key may have placed an order through this process.
// False is certain for the keys it remembers.
func (k *recentKeys) mayHave(user int64, key string) bool {
	b := recentKey(user, key)
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.cur.Test(b) || k.old.Test(b)
}
