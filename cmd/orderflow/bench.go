package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strconv"
	"strings"

	"github.com/orderflow/orderflow/bench"
)

const benchUsage = `usage: orderflow bench [flags]

Loads a running OrderFlow (make run, or the addresses given) and reports ingestion,
end-to-end throughput and latency, CPU and memory per process, and the database and
Temporal ceilings measured in the same run, as a table and (--json) as one line of JSON.

  --api URL[,URL…]       the API, or its replicas, used in turn (default http://HTTP_ADDR, i.e.
                         http://127.0.0.1:8080; make cluster: http://127.0.0.1:18080,http://127.0.0.1:18081)
  --database-url URL     the system's PostgreSQL (default DATABASE_URL, else make run's)
  --temporal HOST:PORT   the Temporal frontend (default TEMPORAL_ADDRESS, else make run's)
  --mode open|closed     open loop at --rate, or closed loop with --concurrency (default closed)
  --rate N               open loop: orders per second offered
  --concurrency N        closed loop: clients placing orders back to back (default 32)
  --max-pending N        closed loop: pause while N accepted orders are unsettled (default 0, no bound)
  --duration D           measured window (default 30s)
  --warmup D             load before the window, not counted (default 5s)
  --drain D              wait after the window for its orders to settle (default 10s)
  --instruments IDS      comma-separated instrument ids (default 101,102,103)
  --cancel-ratio R       share of the orders seen resting that are cancelled (default 0.1)
  --skip-ceilings        do not measure the database and engine ceilings
  --topology NAME        what is measured, for the report: run (make run) or cluster (default run)
  --ceiling-duration D   measured window of each ceiling (default 5s)
  --engine-concurrency N concurrent empty workflows of the engine ceiling (default 50)
  --engine-shapes N      after the ceilings, also measure the Temporal server's CPU per
                         run of the order workflow's shapes, N runs each (default 0, not
                         measured; needs the ceilings)
  --pids LIST            api=PID,worker=PID,temporal=PID,postgres=PID (default: found in /proc)
  --json                 end the output with the report as one line of JSON

Instead of the load, one of two other measurements (they take --api, --database-url,
--temporal and --json, and none of the load's flags):

  --scale [N]            seed N orders (default 1000000, a multiple of 20) straight into the
                         system's PostgreSQL, all terminal, with their events and trades,
                         unless an earlier run did; then time, one request at a time, the
                         order list's default page (target p99 ≤ 50 ms), a random user's
                         orders (≤ 10 ms), a random seeded order's events (≤ 5 ms) and the
                         list sorted by each of the original client's fields, both ways
  --users N              --scale: users the seeded orders are spread over (default 1000)
  --chunk N              --scale: orders per seed transaction (default 100000)
  --requests N           --scale: timed requests per endpoint, after 20 untimed (default 500)
  --sort-requests N      --scale: timed requests per sort field and direction (default 50)
  --deep-book [N]        rest N one-lot LIMIT sells at one price (default 5000) through the API,
                         sweep them with one MARKET buy for N, and report its matching steps
                         (target: EXECUTED with N trades within 5 s of reaching the book, no
                         step over 1 s) and how long the sells' runs took to complete
  --instrument ID        --deep-book: the instrument whose book is used (default 103)
  --deep-book-wait D     --deep-book: deadline of each wait (default 10m)`

// errBenchHelp is returned by parseBenchFlags for -h and --help.
var errBenchHelp = errors.New("help requested")

// benchReport is what every mode of the bench reports.
type benchReport interface {
	WriteTable(io.Writer) error
	WriteJSON(io.Writer) error
}

// runBench is `orderflow bench`: it measures a running system from the outside against
// its database and engine ceilings, or (--scale, --deep-book) a seeded database's reads
// and a deep book's sweep (see package bench). Progress goes to stdout, then the table;
// with --json the last line is the report as JSON.
func runBench(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	opts, modes, asJSON, err := parseBench(cfg, args)
	if errors.Is(err, errBenchHelp) {
		_, err = fmt.Fprintln(stdout, benchUsage)
		return err
	}
	if err != nil {
		return err
	}
	opts.Progress = stdout
	opts.Logger = slog.New(slog.NewTextHandler(stdout, &slog.HandlerOptions{Level: slog.LevelError}))
	var rep benchReport
	switch modes.Mode() {
	case bench.ModeScale:
		rep, err = bench.Scale(ctx, modes.ScaleOptions(opts))
	case bench.ModeDeepBook:
		rep, err = bench.DeepBook(ctx, modes.DeepBookOptions(opts))
	default:
		rep, err = bench.Run(ctx, opts)
	}
	if err != nil {
		return err
	}
	if err := rep.WriteTable(stdout); err != nil {
		return err
	}
	if asJSON {
		return rep.WriteJSON(stdout)
	}
	return nil
}

// parseBenchFlags turns the command line into the load's options (see parseBench).
func parseBenchFlags(cfg Config, args []string) (bench.Options, bool, error) {
	opts, _, asJSON, err := parseBench(cfg, args)
	return opts, asJSON, err
}

// parseBench turns the command line into bench options, and the flags of the other
// modes. The defaults point at the system `make run` starts with the same environment.
func parseBench(cfg Config, args []string) (bench.Options, *bench.ModeFlags, bool, error) {
	d := bench.Defaults()
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	apiURL := fs.String("api", "http://"+localHostPort(cfg.HTTPAddr), "")
	dbURL := fs.String("database-url", cfg.DatabaseURL, "")
	temporal := fs.String("temporal", cfg.TemporalAddress, "")
	mode := fs.String("mode", string(d.Mode), "")
	rate := fs.Float64("rate", 0, "")
	concurrency := fs.Int("concurrency", d.Concurrency, "")
	maxPending := fs.Int("max-pending", 0, "")
	duration := fs.Duration("duration", d.Duration, "")
	warmup := fs.Duration("warmup", d.Warmup, "")
	drain := fs.Duration("drain", d.Drain, "")
	instruments := fs.String("instruments", "101,102,103", "")
	cancelRatio := fs.Float64("cancel-ratio", d.CancelRatio, "")
	skipCeilings := fs.Bool("skip-ceilings", false, "")
	topology := fs.String("topology", "run", "")
	ceilingDuration := fs.Duration("ceiling-duration", d.CeilingDuration, "")
	engineConcurrency := fs.Int("engine-concurrency", d.EngineConcurrency, "")
	engineShapes := fs.Int("engine-shapes", 0, "")
	pids := fs.String("pids", "", "")
	asJSON := fs.Bool("json", false, "")
	modes := bench.AddModeFlags(fs)
	if err := fs.Parse(bench.ModeArgs(args)); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return bench.Options{}, nil, false, errBenchHelp
		}
		return bench.Options{}, nil, false, fmt.Errorf("%v\n%s", err, benchUsage)
	}
	if fs.NArg() > 0 {
		return bench.Options{}, nil, false, fmt.Errorf("unexpected argument %q\n%s", fs.Arg(0), benchUsage)
	}
	if err := modes.Check(fs); err != nil {
		return bench.Options{}, nil, false, err
	}
	if *dbURL == "" {
		*dbURL = fmt.Sprintf("postgres://postgres@127.0.0.1:%d/orderflow?sslmode=disable", cfg.DevPGPort)
	}
	if *temporal == "" {
		*temporal = net.JoinHostPort("127.0.0.1", strconv.Itoa(cfg.DevTemporalPort))
	}
	if *concurrency <= 0 || *engineConcurrency <= 0 || *maxPending < 0 || *duration <= 0 || *ceilingDuration <= 0 || *engineShapes < 0 {
		return bench.Options{}, nil, false, errors.New("--concurrency, --engine-concurrency, --duration and --ceiling-duration must be positive, --max-pending and --engine-shapes not negative")
	}
	if *skipCeilings && *engineShapes > 0 {
		return bench.Options{}, nil, false, errors.New("--engine-shapes is measured with the ceilings; drop --skip-ceilings")
	}
	opts := bench.Options{
		APIURL: *apiURL, DatabaseURL: *dbURL, DBMaxConns: cfg.DBMaxConns,
		TemporalAddress: *temporal, TemporalNamespace: cfg.TemporalNamespace,
		TemporalConnection: cfg.temporalConnection(),
		Mode:               bench.Mode(*mode), Rate: *rate, Concurrency: *concurrency, MaxPending: *maxPending,
		Duration: *duration, Warmup: *warmup, Drain: *drain,
		CancelRatio: *cancelRatio, SkipCeilings: *skipCeilings, CeilingDuration: *ceilingDuration, Topology: *topology,
		EngineConcurrency: *engineConcurrency, EngineShapes: *engineShapes,
	}
	for _, s := range strings.Split(*instruments, ",") {
		id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil || id <= 0 {
			return bench.Options{}, nil, false, fmt.Errorf("--instruments: %q is not a positive integer", s)
		}
		opts.Instruments = append(opts.Instruments, id)
	}
	if *pids != "" {
		procs, err := bench.ParsePIDs(*pids)
		if err != nil {
			return bench.Options{}, nil, false, err
		}
		opts.Procs = procs
	}
	if opts.Mode == bench.Open && opts.Rate <= 0 {
		return bench.Options{}, nil, false, errors.New("--mode open needs --rate (orders per second)")
	}
	if opts.Mode != bench.Open && opts.Mode != bench.Closed {
		return bench.Options{}, nil, false, fmt.Errorf("--mode %q: use open or closed", *mode)
	}
	return opts, modes, *asJSON, nil
}

// localHostPort turns a listen address into one to connect to: an unspecified host
// (":8080", "0.0.0.0:8080") means this machine.
func localHostPort(addr string) string {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return addr
	}
	if host == "" || host == "0.0.0.0" || host == "::" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, port)
}
