package bench_test

import (
	"flag"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/orderflow/orderflow/bench"
)

// parseModes parses args as `orderflow bench` does: a few of the load's flags, the
// shared ones, and the modes'.
func parseModes(args ...string) (*bench.ModeFlags, error) {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.String("api", "", "")
	fs.String("database-url", "", "")
	fs.Bool("json", false, "")
	fs.String("mode", "closed", "")
	fs.Duration("duration", time.Second, "")
	m := bench.AddModeFlags(fs)
	if err := fs.Parse(bench.ModeArgs(args)); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	return m, m.Check(fs)
}

func TestModeFlagsParseWithAndWithoutACount(t *testing.T) {
	t.Parallel()
	base := bench.Options{APIURL: "http://api", DatabaseURL: "postgres://db", TemporalAddress: "temporal:7233"}
	for _, c := range []struct {
		name  string
		args  []string
		mode  string
		scale bench.ScaleOptions
		deep  bench.DeepBookOptions
	}{
		{name: "no mode flag is the load", args: []string{"--mode", "open"}, mode: bench.ModeLoad},
		{name: "--scale alone seeds a million orders over a thousand users", args: []string{"--scale"}, mode: bench.ModeScale,
			scale: bench.ScaleOptions{Seed: bench.SeedOptions{Orders: 1_000_000, Users: 1000, Chunk: 100_000}, Requests: 500, SortRequests: 50}},
		{name: "--scale takes a count after a space", args: []string{"--scale", "2000", "--users", "50", "--json"}, mode: bench.ModeScale,
			scale: bench.ScaleOptions{Seed: bench.SeedOptions{Orders: 2000, Users: 50, Chunk: 100_000}, Requests: 500, SortRequests: 50}},
		{name: "--scale takes a count after =", args: []string{"-scale=40", "--chunk", "20", "--requests", "7", "--sort-requests", "0"}, mode: bench.ModeScale,
			scale: bench.ScaleOptions{Seed: bench.SeedOptions{Orders: 40, Users: 1000, Chunk: 20}, Requests: 7}},
		{name: "--scale followed by another flag keeps its default", args: []string{"--scale", "--api", "http://api"}, mode: bench.ModeScale,
			scale: bench.ScaleOptions{Seed: bench.SeedOptions{Orders: 1_000_000, Users: 1000, Chunk: 100_000}, Requests: 500, SortRequests: 50}},
		{name: "--deep-book alone rests 5000 orders on instrument 103", args: []string{"--deep-book"}, mode: bench.ModeDeepBook,
			deep: bench.DeepBookOptions{Orders: 5000, Instrument: 103, Wait: 10 * time.Minute}},
		{name: "--deep-book takes a count, an instrument and a wait", args: []string{"--deep-book", "100", "--instrument", "101", "--deep-book-wait", "2m"},
			mode: bench.ModeDeepBook, deep: bench.DeepBookOptions{Orders: 100, Instrument: 101, Wait: 2 * time.Minute}},
	} {
		t.Run(c.name, func(t *testing.T) {
			m, err := parseModes(c.args...)
			if err != nil {
				t.Fatalf("parse %q: %v", c.args, err)
			}
			if m.Mode() != c.mode {
				t.Fatalf("mode = %s, want %s", m.Mode(), c.mode)
			}
			switch c.mode {
			case bench.ModeScale:
				got := m.ScaleOptions(base)
				want := c.scale
				want.APIURL, want.DatabaseURL = base.APIURL, base.DatabaseURL
				if fmt.Sprint(got) != fmt.Sprint(want) {
					t.Errorf("scale options = %+v, want %+v", got, want)
				}
			case bench.ModeDeepBook:
				got := m.DeepBookOptions(base)
				if got.Orders != c.deep.Orders || got.Instrument != c.deep.Instrument || got.Wait != c.deep.Wait ||
					got.APIURL != base.APIURL || got.DatabaseURL != base.DatabaseURL || got.TemporalAddress != base.TemporalAddress {
					t.Errorf("deep-book options = %+v, want %+v at the base's addresses", got, c.deep)
				}
			}
		})
	}
}

func TestModeFlagsRejectWhatCannotRun(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		name string
		args []string
	}{
		{"both modes at once", []string{"--scale", "--deep-book"}},
		{"a seed that splits the pattern", []string{"--scale", "30"}},
		{"a zero count", []string{"--scale", "0"}},
		{"a negative count", []string{"--deep-book", "-5"}},
		{"a count that is not a number", []string{"--scale=many"}},
		{"a chunk that splits the pattern", []string{"--scale", "--chunk", "30"}},
		{"one user", []string{"--scale", "--users", "1"}},
		{"no requests", []string{"--scale", "--requests", "0"}},
		{"a mode's flag without the mode", []string{"--users", "5"}},
		{"a load flag with a mode", []string{"--scale", "--mode", "open"}},
		{"another mode's flag", []string{"--deep-book", "--users", "5"}},
		{"instrument zero", []string{"--deep-book", "--instrument", "0"}},
		{"no wait", []string{"--deep-book", "--deep-book-wait", "0s"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := parseModes(c.args...); err == nil {
				t.Errorf("parse %q did not fail", c.args)
			}
		})
	}
}

func TestModeArgsJoinsOnlyTheModesCounts(t *testing.T) {
	t.Parallel()
	for _, c := range []struct{ in, want []string }{
		{[]string{"--scale", "20", "--users", "5"}, []string{"--scale=20", "--users", "5"}},
		{[]string{"-deep-book", "7"}, []string{"-deep-book=7"}},
		{[]string{"--scale", "--json"}, []string{"--scale", "--json"}},
		{[]string{"--duration", "20"}, []string{"--duration", "20"}},
		{[]string{"--", "--scale", "20"}, []string{"--", "--scale", "20"}},
	} {
		if got := bench.ModeArgs(c.in); fmt.Sprint(got) != fmt.Sprint(c.want) {
			t.Errorf("ModeArgs(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}
