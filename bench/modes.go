package bench

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Which thing `orderflow bench` measures: the load (Run), a seeded database's reads
// (Scale) or a deep book's sweep (DeepBook).
const (
	ModeLoad     = "load"
	ModeScale    = "scale"
	ModeDeepBook = "deep-book"
)

// Defaults of the two modes' flags: the sizes the targets are stated for.
const (
	DefaultScaleOrders    = 1_000_000
	DefaultScaleUsers     = 1000
	DefaultScaleChunk     = 100_000
	DefaultScaleRequests  = 500
	DefaultSortRequests   = 50
	DefaultDeepBookOrders = 5000
	DefaultDeepBookInstr  = 103
	DefaultDeepBookWait   = 10 * time.Minute
)

// ModeFlags are the flags of the modes that measure something other than the load,
// --scale and --deep-book, with their own options. AddModeFlags registers them on the
// bench's flag set, so that they share --api, --database-url, --temporal and --json
// with the load.
type ModeFlags struct {
	scale, deepBook countFlag
	users           int
	chunk           int
	requests        int
	sortRequests    int
	instrument      int64
	wait            time.Duration
}

// modeOwnFlags are the flags that belong to one mode; sharedFlags apply to every mode.
var (
	modeOwnFlags = map[string][]string{
		ModeScale:    {"scale", "users", "chunk", "requests", "sort-requests"},
		ModeDeepBook: {"deep-book", "instrument", "deep-book-wait"},
	}
	sharedFlags = []string{"api", "database-url", "temporal", "json"}
)

// AddModeFlags registers the modes' flags on fs. Their help is the command's usage text.
func AddModeFlags(fs *flag.FlagSet) *ModeFlags {
	m := &ModeFlags{scale: countFlag{def: DefaultScaleOrders}, deepBook: countFlag{def: DefaultDeepBookOrders}}
	fs.Var(&m.scale, "scale", "")
	fs.Var(&m.deepBook, "deep-book", "")
	fs.IntVar(&m.users, "users", DefaultScaleUsers, "")
	fs.IntVar(&m.chunk, "chunk", DefaultScaleChunk, "")
	fs.IntVar(&m.requests, "requests", DefaultScaleRequests, "")
	fs.IntVar(&m.sortRequests, "sort-requests", DefaultSortRequests, "")
	fs.Int64Var(&m.instrument, "instrument", DefaultDeepBookInstr, "")
	fs.DurationVar(&m.wait, "deep-book-wait", DefaultDeepBookWait, "")
	return m
}

// ModeArgs rewrites "--scale N" and "--deep-book N" as "--scale=N" and "--deep-book=N".
// Both flags may also stand alone (for their default count), which the flag package only
// allows for flags that take their value after "=".
func ModeArgs(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return append(out, args[i:]...)
		}
		name := strings.TrimLeft(a, "-")
		if (name == "scale" || name == "deep-book") && a != name && i+1 < len(args) {
			if _, err := strconv.Atoi(args[i+1]); err == nil {
				out = append(out, a+"="+args[i+1])
				i++
				continue
			}
		}
		out = append(out, a)
	}
	return out
}

// Mode returns which mode the flags ask for: ModeLoad unless --scale or --deep-book.
func (m *ModeFlags) Mode() string {
	switch {
	case m.scale.set:
		return ModeScale
	case m.deepBook.set:
		return ModeDeepBook
	}
	return ModeLoad
}

// Check validates the modes' flags once fs has parsed them: one mode at most, a mode's
// flags only with it, none of the load's flags with a mode, and values in range.
func (m *ModeFlags) Check(fs *flag.FlagSet) error {
	if m.scale.set && m.deepBook.set {
		return errors.New("--scale and --deep-book are separate runs: give one")
	}
	mode := m.Mode()
	var errs []string
	fs.Visit(func(f *flag.Flag) {
		owner := ModeLoad
		for mo, names := range modeOwnFlags {
			if slices.Contains(names, f.Name) {
				owner = mo
			}
		}
		switch {
		case owner == mode, slices.Contains(sharedFlags, f.Name):
		case mode == ModeLoad:
			errs = append(errs, fmt.Sprintf("--%s applies to --%s only", f.Name, owner))
		default:
			errs = append(errs, fmt.Sprintf("--%s does not apply to --%s", f.Name, mode))
		}
	})
	switch mode {
	case ModeScale:
		if m.scale.n%seedBlock != 0 {
			errs = append(errs, fmt.Sprintf("--scale %d: the seed's size must be a multiple of %d", m.scale.n, seedBlock))
		}
		if m.chunk <= 0 || m.chunk%seedBlock != 0 {
			errs = append(errs, fmt.Sprintf("--chunk %d: must be a positive multiple of %d", m.chunk, seedBlock))
		}
		if m.users < 2 {
			errs = append(errs, "--users must be 2 or more, so that every trade has two")
		}
		if m.requests <= 0 || m.sortRequests < 0 {
			errs = append(errs, "--requests must be positive and --sort-requests not negative")
		}
	case ModeDeepBook:
		if m.instrument <= 0 || m.wait <= 0 {
			errs = append(errs, "--instrument and --deep-book-wait must be positive")
		}
	}
	if len(errs) > 0 {
		return errors.New(strings.Join(errs, "; "))
	}
	return nil
}

// ScaleOptions returns the options of --scale, at the addresses of base.
func (m *ModeFlags) ScaleOptions(base Options) ScaleOptions {
	return ScaleOptions{
		APIURL: base.APIURL, DatabaseURL: base.DatabaseURL,
		Seed:     SeedOptions{Orders: m.scale.n, Users: m.users, Chunk: m.chunk},
		Requests: m.requests, SortRequests: m.sortRequests,
		Progress: base.Progress,
	}
}

// DeepBookOptions returns the options of --deep-book, at the addresses of base.
func (m *ModeFlags) DeepBookOptions(base Options) DeepBookOptions {
	return DeepBookOptions{
		APIURL: base.APIURL, DatabaseURL: base.DatabaseURL,
		TemporalAddress: base.TemporalAddress, TemporalNamespace: base.TemporalNamespace,
		TemporalConnection: base.TemporalConnection,
		Orders:             m.deepBook.n, Instrument: m.instrument, Wait: m.wait,
		Progress: base.Progress, Logger: base.Logger,
	}
}

// countFlag is a flag given alone, for its default count, or with a positive count. It
// says it is boolean so that the flag package accepts it alone (see ModeArgs).
type countFlag struct {
	set bool
	n   int
	def int
}

func (c *countFlag) String() string {
	if c == nil {
		return ""
	}
	return strconv.Itoa(c.n)
}

func (c *countFlag) Set(s string) error {
	if s == "true" {
		c.set, c.n = true, c.def
		return nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n <= 0 {
		return fmt.Errorf("want a positive count, got %q", s)
	}
	c.set, c.n = true, n
	return nil
}

// IsBoolFlag lets the flag stand alone.
func (c *countFlag) IsBoolFlag() bool { return true }
