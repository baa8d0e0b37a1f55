package bench

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Latencies collects durations and answers percentiles over them. It keeps every sample
// (a 30 s run at a few thousand orders a second is a few hundred thousand durations), so
// its percentiles are exact rather than bucketed. It is safe for concurrent use.
type Latencies struct {
	mu      sync.Mutex
	samples []time.Duration
}

// Add records one duration.
func (l *Latencies) Add(d time.Duration) {
	l.mu.Lock()
	l.samples = append(l.samples, d)
	l.mu.Unlock()
}

// Take returns the samples recorded since the last Take and forgets them.
func (l *Latencies) Take() []time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.samples
	l.samples = nil
	return s
}

// Summary is the distribution of a set of durations, in milliseconds.
type Summary struct {
	Count int     `json:"count"`
	P50   float64 `json:"p50_ms"`
	P95   float64 `json:"p95_ms"`
	P99   float64 `json:"p99_ms"`
	Max   float64 `json:"max_ms"`
}

// Summarize sorts samples in place and returns their distribution; an empty set gives
// the zero Summary.
func Summarize(samples []time.Duration) Summary {
	if len(samples) == 0 {
		return Summary{}
	}
	slices.Sort(samples)
	return Summary{
		Count: len(samples),
		P50:   ms(Percentile(samples, 50)),
		P95:   ms(Percentile(samples, 95)),
		P99:   ms(Percentile(samples, 99)),
		Max:   ms(samples[len(samples)-1]),
	}
}

// Percentile returns the p-th percentile (0 < p ≤ 100) of sorted by the nearest-rank
// method: the smallest sample such that at least p percent of the samples are at or
// below it. It is therefore always one of the samples, never an interpolation. An empty
// slice gives 0.
func Percentile(sorted []time.Duration, p float64) time.Duration {
	n := len(sorted)
	if n == 0 {
		return 0
	}
	rank := int(math.Ceil(p / 100 * float64(n)))
	rank = min(max(rank, 1), n)
	return sorted[rank-1]
}

// ms converts d to milliseconds, rounded to microseconds so the JSON stays short.
func ms(d time.Duration) float64 {
	return math.Round(float64(d)/float64(time.Microsecond)) / 1000
}

// Point is one observation of a quantity over time, in seconds from an origin.
type Point struct {
	T float64
	V float64
}

// Slope returns the least-squares slope of V over T (units of V per second). It is 0
// for fewer than two points or when every T is the same.
func Slope(points []Point) float64 {
	n := float64(len(points))
	if n < 2 {
		return 0
	}
	var st, sv float64
	for _, p := range points {
		st += p.T
		sv += p.V
	}
	mt, mv := st/n, sv/n
	var num, den float64
	for _, p := range points {
		num += (p.T - mt) * (p.V - mv)
		den += (p.T - mt) * (p.T - mt)
	}
	if den == 0 {
		return 0
	}
	return num / den
}

// Counter counts occurrences by name. It is safe for concurrent use.
type Counter struct {
	mu sync.Mutex
	m  map[string]int
}

// Add counts one occurrence of name.
func (c *Counter) Add(name string) {
	c.mu.Lock()
	if c.m == nil {
		c.m = make(map[string]int)
	}
	c.m[name]++
	c.mu.Unlock()
}

// Snapshot returns a copy of the counts.
func (c *Counter) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.m))
	for k, v := range c.m {
		out[k] = v
	}
	return out
}

// round2 rounds x to two decimals, for figures meant to be read.
func round2(x float64) float64 { return math.Round(x*100) / 100 }

// round3 rounds x to three decimals.
func round3(x float64) float64 { return math.Round(x*1000) / 1000 }
