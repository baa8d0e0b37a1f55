package bench

import (
	"math"
	"testing"
)

func TestMixPickerKeepsTheProportionsInEveryWindow(t *testing.T) {
	mix := []MixClass{{Orders: 50}, {Rests: true, Wakeups: 0, Orders: 30}, {Rests: true, Wakeups: 1, Orders: 20}}
	p, err := newMixPicker(mix)
	if err != nil {
		t.Fatal(err)
	}
	// Every window of 200 runs, wherever it starts, is within 5 points of the mix.
	for start := int64(1); start < 2000; start += 97 {
		got := map[MixClass]int{}
		for i := start; i < start+200; i++ {
			got[p.pick(i)]++
		}
		for _, c := range mix {
			share := float64(got[c]) / 200
			want := float64(c.Orders) / 100
			if math.Abs(share-want) > 0.05 {
				t.Errorf("window at %d: class %+v took %.2f of the runs, want %.2f", start, c, share, want)
			}
		}
	}
}

func TestMixPickerNeedsOrders(t *testing.T) {
	if _, err := newMixPicker([]MixClass{{Orders: 0}}); err == nil {
		t.Error("an empty mix was accepted")
	}
	if _, err := newMixPicker(nil); err == nil {
		t.Error("no mix was accepted")
	}
}

func TestShapeOfAClassIsTheRunItsOrdersTook(t *testing.T) {
	if s := shapeOf(MixClass{Orders: 1}); s.Wakeups != 0 || s.LAs != 2 || !s.Attrs {
		t.Errorf("first-task class: shape %+v", s)
	}
	// A resting order never woken still waits (woken after the loop); one woken twice
	// waits twice; both with the resting recheck.
	for _, c := range []struct{ wakeups, waits int }{{0, 1}, {1, 1}, {2, 2}} {
		s := shapeOf(MixClass{Rests: true, Wakeups: c.wakeups, Orders: 1})
		if s.Wakeups != c.waits || !s.Recheck || s.LAs != 2 || !s.Attrs {
			t.Errorf("resting class woken %d×: shape %+v, want %d waits with the recheck", c.wakeups, s, c.waits)
		}
	}
}
