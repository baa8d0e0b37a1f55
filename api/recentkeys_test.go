package api

import (
	"strconv"
	"testing"
)

// Keys are remembered for at least a generation after theirs, per user, and forgotten
// after two; a false positive (a key never added thought seen) is rare.
func TestRecentKeysRememberAGenerationBack(t *testing.T) {
	const perGen = 100
	k := newRecentKeys(perGen)
	addAll := func(prefix string) {
		for i := range perGen {
			k.add(1, prefix+strconv.Itoa(i))
		}
	}
	seen := func(user int64, prefix string) (n int) {
		for i := range perGen {
			if k.mayHave(user, prefix+strconv.Itoa(i)) {
				n++
			}
		}
		return n
	}
	addAll("a-") // the first generation, full
	if n := seen(1, "a-"); n != perGen {
		t.Fatalf("%d of %d keys just added are remembered", n, perGen)
	}
	if n := seen(2, "a-"); n > perGen/10 {
		t.Errorf("%d of another user's keys of the same names are thought seen", n)
	}
	addAll("b-") // the second, full: the first is now the older generation
	if n := seen(1, "a-"); n != perGen {
		t.Errorf("%d of %d keys of the older generation are remembered", n, perGen)
	}
	addAll("c-") // the third replaces the first
	if n := seen(1, "a-"); n > perGen/10 {
		t.Errorf("%d of %d keys two generations back are still thought seen", n, perGen)
	}
	if n := seen(1, "never-"); n > perGen/10 {
		t.Errorf("%d of %d keys never added are thought seen; want about 1%%", n, perGen)
	}
}
