package bench

import (
	"math"
	"slices"
	"sync"
	"testing"
	"time"
)

func durations(ms ...int) []time.Duration {
	out := make([]time.Duration, len(ms))
	for i, m := range ms {
		out[i] = time.Duration(m) * time.Millisecond
	}
	return out
}

func TestPercentileIsTheNearestRankSample(t *testing.T) {
	// 1..100 ms: the p-th percentile of 100 samples is the p-th smallest.
	var hundred []time.Duration
	for i := 1; i <= 100; i++ {
		hundred = append(hundred, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{hundred, 50, 50 * time.Millisecond},
		{hundred, 95, 95 * time.Millisecond},
		{hundred, 99, 99 * time.Millisecond},
		{hundred, 100, 100 * time.Millisecond},
		{hundred, 0.1, 1 * time.Millisecond},
		{durations(7), 50, 7 * time.Millisecond},
		{durations(7), 99, 7 * time.Millisecond},
		// Nearest rank never interpolates: of 1,2,3,4 the median is 2, not 2.5.
		{durations(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{durations(1, 2, 3, 4), 51, 3 * time.Millisecond},
		// Of ten samples, p99 is the largest: one slow request in ten shows.
		{durations(1, 1, 1, 1, 1, 1, 1, 1, 1, 900), 99, 900 * time.Millisecond},
		{durations(1, 1, 1, 1, 1, 1, 1, 1, 1, 900), 90, 1 * time.Millisecond},
		{nil, 99, 0},
	} {
		if got := Percentile(c.sorted, c.p); got != c.want {
			t.Errorf("Percentile(%v, %g) = %v, want %v", c.sorted, c.p, got, c.want)
		}
	}
}

func TestSummarizeSortsAndReportsMilliseconds(t *testing.T) {
	s := Summarize([]time.Duration{3 * time.Millisecond, 1500 * time.Microsecond, 10 * time.Millisecond, 2 * time.Millisecond})
	want := Summary{Count: 4, P50: 2, P95: 10, P99: 10, Max: 10}
	if s != want {
		t.Errorf("Summarize = %+v, want %+v", s, want)
	}
	if s := Summarize(durations(4, 1, 3, 2)); s.P50 != 2 {
		t.Errorf("p50 of 1..4 = %v, want 2 (nearest rank)", s.P50)
	}
	if s := Summarize(nil); s != (Summary{}) {
		t.Errorf("Summarize(nil) = %+v, want zero", s)
	}
	if got := Summarize([]time.Duration{1234567 * time.Nanosecond}).Max; got != 1.235 {
		t.Errorf("1.234567ms rounds to %v, want 1.235", got)
	}
}

func TestLatenciesCollectConcurrentlyAndTakeEmpties(t *testing.T) {
	var l Latencies
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 1000 {
				l.Add(time.Duration(g*1000 + i))
			}
		}()
	}
	wg.Wait()
	got := l.Take()
	if len(got) != 8000 {
		t.Fatalf("took %d samples, want 8000", len(got))
	}
	slices.Sort(got)
	for i, d := range got {
		if d != time.Duration(i) {
			t.Fatalf("sample %d = %v: samples lost or duplicated", i, d)
		}
	}
	if again := l.Take(); len(again) != 0 {
		t.Errorf("second Take = %d samples, want 0", len(again))
	}
}

func TestSlopeIsTheLeastSquaresFit(t *testing.T) {
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	line := []Point{{0, 10}, {1, 13}, {2, 16}, {3, 19}}
	if got := Slope(line); !near(got, 3) {
		t.Errorf("slope of a line rising 3/s = %v", got)
	}
	flat := []Point{{0, 500}, {1, 510}, {2, 490}, {3, 500}, {4, 500}}
	if got := Slope(flat); math.Abs(got) > 3 {
		t.Errorf("slope of a noisy flat backlog = %v, want about 0", got)
	}
	falling := []Point{{10, 100}, {11, 80}, {12, 60}}
	if got := Slope(falling); !near(got, -20) {
		t.Errorf("slope of a draining backlog = %v, want -20", got)
	}
	for _, degenerate := range [][]Point{nil, {{1, 5}}, {{2, 1}, {2, 9}}} {
		if got := Slope(degenerate); got != 0 {
			t.Errorf("Slope(%v) = %v, want 0", degenerate, got)
		}
	}
}

func TestCounterSnapshotIsACopy(t *testing.T) {
	var c Counter
	c.Add("500")
	c.Add("500")
	c.Add("transport")
	snap := c.Snapshot()
	c.Add("500")
	if snap["500"] != 2 || snap["transport"] != 1 || len(snap) != 2 {
		t.Errorf("snapshot = %v", snap)
	}
	if empty := (&Counter{}).Snapshot(); empty == nil || len(empty) != 0 {
		t.Errorf("empty snapshot = %#v, want an empty map (JSON {})", empty)
	}
}
