// Package bench measures a running OrderFlow system from the outside, the way its users
// load it, and compares what it finds with two ceilings measured on the same machine in
// the same run:
//
//   - ingestion: POST /api/v1/orders accepted per second and its latency, against the
//     database's rate of single-row INSERT transactions through a pool of the
//     application's size;
//   - end to end: orders per second reaching the book or an end (terminal, or resting on
//     the book) and the latency from the client's 201 to that moment, against the
//     Temporal server's rate of empty workflow executions;
//   - cost: CPU seconds per 1,000 orders and memory of each process it can see on this
//     machine (API, worker, Temporal server, PostgreSQL, and the bench itself).
//
// The load is either open loop (a fixed arrival rate, latency counted from each order's
// scheduled time so that a slow system cannot hide its queueing) or closed loop (a fixed
// number of clients placing orders back to back), after a warm-up and for a fixed
// duration. Orders follow Mix. Some of the orders seen resting are cancelled.
//
// Completion is read from PostgreSQL, not by polling the API per order: one set-based
// query every pollInterval for the orders still pending. An order's settle time is the
// created_at of the event that first put it in a settled status, so latencies do not
// depend on the polling period (the client and the database share a clock on one box).
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"
)

// Mode is how load is offered.
type Mode string

// The load modes.
const (
	// Open offers orders at a fixed rate whatever the system does (Options.Rate).
	Open Mode = "open"
	// Closed runs a fixed number of clients, each placing its next order when the
	// previous one is answered (Options.Concurrency).
	Closed Mode = "closed"
)

// Options configure a run. Zero values take the defaults Defaults returns.
type Options struct {
	APIURL            string // base URL of the API, e.g. http://127.0.0.1:8080; several, comma-separated, are used in turn
	DatabaseURL       string // the system's PostgreSQL, read to follow orders and for the ceiling
	DBMaxConns        int32  // pool size of the database ceiling: the application's DB_MAX_CONNS
	TemporalAddress   string // Temporal frontend, for the engine ceiling
	TemporalNamespace string // its namespace
	// TemporalConnection is how the engine ceiling's client connects: as the system's do
	// (TEMPORAL_GRPC_COMPRESSION), so both pay the same transport costs.
	TemporalConnection client.ConnectionOptions
	Mode               Mode    // Open or Closed
	Rate               float64 // open loop: orders per second
	Concurrency        int     // closed loop: clients
	// MaxPending, when positive, makes closed-loop clients wait while that many accepted
	// orders have not settled, so the run measures throughput without building an
	// unbounded backlog.
	MaxPending int
	// MaxInFlight bounds the open loop's concurrent requests; arrivals beyond ten times
	// that many waiting are dropped and counted.
	MaxInFlight       int
	Warmup            time.Duration // load before the measured window, not counted
	Duration          time.Duration // the measured window
	Drain             time.Duration // after the window, how long to wait for its orders to settle
	Instruments       []int64
	CancelRatio       float64 // share of the orders seen resting that are cancelled
	SkipCeilings      bool
	CeilingDuration   time.Duration // measured window of each ceiling
	EngineConcurrency int           // concurrent empty workflows of the engine ceiling
	// EngineShapes is how many runs of each workflow shape to measure the Temporal
	// server's CPU on (EngineShapes in shapes.go), after the ceilings; 0 skips them.
	EngineShapes int
	// Topology names what is measured, for the report: "run" (make run) or "cluster"
	// (make cluster).
	Topology string
	// Procs are the processes to observe; nil discovers them (see Discover).
	Procs []Proc
	// Progress receives a line a second while the bench runs; nil discards it.
	Progress io.Writer
	// Logger receives the Temporal SDK's log of the engine ceiling; nil discards it.
	Logger *slog.Logger
}

// Defaults returns the options `orderflow bench` starts from.
func Defaults() Options {
	return Options{
		APIURL:            "http://127.0.0.1:8080",
		DBMaxConns:        20,
		TemporalAddress:   "127.0.0.1:7233",
		TemporalNamespace: "default",
		Mode:              Closed,
		Concurrency:       32,
		MaxInFlight:       1000,
		Warmup:            5 * time.Second,
		Duration:          30 * time.Second,
		Drain:             10 * time.Second,
		Instruments:       []int64{101, 102, 103},
		CancelRatio:       0.1,
		CeilingDuration:   5 * time.Second,
		EngineConcurrency: 50,
	}
}

// apis are the API replicas' base URLs of APIURL.
func (o Options) apis() []string {
	var out []string
	for _, u := range strings.Split(o.APIURL, ",") {
		if u = strings.TrimRight(strings.TrimSpace(u), "/"); u != "" {
			out = append(out, u)
		}
	}
	return out
}

// api returns the API replica the n-th request goes to: each in turn, as a load balancer
// would spread them.
func (r *runner) api(n int64) string {
	return r.apis[int(uint64(n)%uint64(len(r.apis)))]
}

// withDefaults fills the zero fields from Defaults. Warmup and Drain may be zero.
func (o Options) withDefaults() Options {
	d := Defaults()
	if o.APIURL == "" {
		o.APIURL = d.APIURL
	}
	o.APIURL = strings.Join(o.apis(), ",")
	if o.DBMaxConns <= 0 {
		o.DBMaxConns = d.DBMaxConns
	}
	if o.TemporalAddress == "" {
		o.TemporalAddress = d.TemporalAddress
	}
	if o.TemporalNamespace == "" {
		o.TemporalNamespace = d.TemporalNamespace
	}
	if o.Mode == "" {
		o.Mode = d.Mode
	}
	if o.Concurrency <= 0 {
		o.Concurrency = d.Concurrency
	}
	if o.MaxInFlight <= 0 {
		o.MaxInFlight = d.MaxInFlight
	}
	if o.Duration <= 0 {
		o.Duration = d.Duration
	}
	if len(o.Instruments) == 0 {
		o.Instruments = d.Instruments
	}
	if o.CeilingDuration <= 0 {
		o.CeilingDuration = d.CeilingDuration
	}
	if o.EngineConcurrency <= 0 {
		o.EngineConcurrency = d.EngineConcurrency
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

func (o Options) validate() error {
	var errs []string
	switch o.Mode {
	case Open:
		if o.Rate <= 0 {
			errs = append(errs, "open loop needs a positive rate (orders/s)")
		}
	case Closed:
	default:
		errs = append(errs, fmt.Sprintf("mode %q is neither open nor closed", o.Mode))
	}
	if o.DatabaseURL == "" {
		errs = append(errs, "the database URL is needed to follow orders to their end")
	}
	if o.Warmup < 0 || o.Drain < 0 {
		errs = append(errs, "warm-up and drain cannot be negative")
	}
	if o.CancelRatio < 0 || o.CancelRatio > 1 {
		errs = append(errs, "the cancel ratio must be between 0 and 1")
	}
	if len(errs) > 0 {
		return fmt.Errorf("bench: %s", strings.Join(errs, "; "))
	}
	return nil
}

// pollInterval is how often the tracker asks PostgreSQL about pending orders.
const pollInterval = 150 * time.Millisecond

// cancelWorkers bound the concurrent cancel requests (each may wait for the workflow).
const cancelWorkers = 16

// runner is one run's state.
type runner struct {
	opts    Options
	runID   string
	http    *http.Client
	tracker *Tracker
	creds   *credentials
	apis    []string // opts.apis(), split once
	procs   []Proc
	fs      procFS
	out     *lineWriter

	t0, measureStart, end time.Time

	seq        atomic.Int64 // idempotency keys
	posts      Latencies    // POST latency of responses in the window
	refusals   Latencies    // latency of the window's admission refusals (503 OVERLOADED)
	accepted   atomic.Int64 // 201s in the window
	idsMu      sync.Mutex
	ids        []int64      // the orders accepted in the window, for the shape mix
	errors     Counter      // non-201 answers and transport errors in the window, by status
	dropped    atomic.Int64 // open loop arrivals dropped in the window
	lastPosts  atomic.Int64 // responses since the last progress line
	lastErrors atomic.Int64

	settleMu      sync.Mutex
	e2e           Latencies // 201 → settled, of the orders accepted in the window
	pickup, steps Latencies // its two parts: 201 → the workflow's first event → settled
	settledInWin  int       // settlements whose time falls in the window
	outcomes      Counter   // settled statuses of the orders accepted in the window
	lastSettled   int
	cancelling    atomic.Bool
	cancelQ       chan int64
	cancels       Counter
	cancelSkipped atomic.Int64
	cancelMix     *Mix
}

// Run runs the bench and returns its report. Progress lines go to opts.Progress.
func Run(ctx context.Context, opts Options) (*Report, error) {
	opts = opts.withDefaults()
	if err := opts.validate(); err != nil {
		return nil, err
	}
	r := &runner{
		opts:      opts,
		apis:      opts.apis(),
		runID:     strconv.FormatInt(time.Now().UnixNano(), 36),
		out:       &lineWriter{w: opts.Progress},
		fs:        procFS{root: "/proc"},
		cancelQ:   make(chan int64, 1024),
		cancelMix: NewMix(opts.Instruments, uint64(time.Now().UnixNano())),
	}
	r.http = &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        0,
			MaxIdleConnsPerHost: max(opts.Concurrency, opts.MaxInFlight, cancelWorkers) + 8,
			IdleConnTimeout:     90 * time.Second,
		},
	}
	defer r.http.CloseIdleConnections()
	if err := r.checkAPI(ctx); err != nil {
		return nil, err
	}

	pcfg, err := pgxpool.ParseConfig(opts.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("bench: database URL: %w", err)
	}
	pcfg.MaxConns = 4
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("bench: database: %w", err)
	}
	defer pool.Close()
	r.creds = newCredentials(pool)
	defer func() {
		if err := r.creds.revoke(); err != nil {
			r.out.printf("%v", err)
		}
	}()
	r.tracker = NewTracker(pool)
	rep := &Report{
		Mode: opts.Mode, Concurrency: opts.Concurrency, MaxPending: opts.MaxPending,
		DurationS: opts.Duration.Seconds(), WarmupS: opts.Warmup.Seconds(),
		Instruments: opts.Instruments, CancelRatio: opts.CancelRatio,
	}
	if opts.Mode == Open {
		rep.Rate, rep.Concurrency, rep.MaxPending = opts.Rate, 0, 0
	}
	rep.CPUs, rep.LoadAverage = runtime.NumCPU(), r.fs.loadAverage()
	if rep.InFlightBefore, err = InFlight(ctx, pool); err != nil {
		return nil, err
	}
	if rep.InFlightBefore > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the system was not idle at the start: %d orders were on their way through it", rep.InFlightBefore))
	}

	r.procs = opts.Procs
	if r.procs == nil {
		var notes []string
		r.procs, notes = Discover(Targets{APIURL: opts.APIURL, TemporalAddress: opts.TemporalAddress, DatabaseURL: opts.DatabaseURL})
		rep.Notes = append(rep.Notes, notes...)
	}
	r.procs = append(r.procs, Proc{Name: ProcBench, PIDs: []int{os.Getpid()}})
	rep.PIDs = map[string][]int{}
	for _, p := range r.procs {
		rep.PIDs[p.Name] = p.PIDs
	}
	r.out.printf("processes: %s", describeProcs(r.procs))

	if !opts.SkipCeilings {
		if err := r.ceilings(ctx, rep); err != nil {
			return nil, err
		}
	}
	if err := r.load(ctx, rep); err != nil {
		return nil, err
	}
	if !opts.SkipCeilings {
		if err := r.shapeMix(ctx, rep); err != nil {
			return nil, err
		}
	}
	rep.finish()
	return rep, nil
}

// checkAPI fails fast, with the address, when an API replica does not answer.
func (r *runner) checkAPI(ctx context.Context) error {
	for _, base := range r.opts.apis() {
		if err := r.checkOneAPI(ctx, base); err != nil {
			return err
		}
	}
	return nil
}

func (r *runner) checkOneAPI(ctx context.Context, base string) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/readyz", nil)
	if err != nil {
		return fmt.Errorf("bench: API URL: %w", err)
	}
	resp, err := r.http.Do(req)
	if err != nil {
		return fmt.Errorf("bench: the API at %s does not answer (is `make run` running?): %w", base, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: the API at %s is not ready: /readyz answered %s", base, resp.Status)
	}
	return nil
}

// ceilings measures both ceilings, before any load so that they do not overlap it.
func (r *runner) ceilings(ctx context.Context, rep *Report) error {
	o := r.opts
	// The CPU the server spends per operation of a ceiling, to compare with its CPU per
	// order under load.
	costPer1k := func(name string, before, after map[string]ProcSample, ops int64) *float64 {
		a, b := before[name], after[name]
		if !a.Alive || !b.Alive || ops == 0 {
			return nil
		}
		return ptr(round3((b.CPUSeconds - a.CPUSeconds) / float64(ops) * 1000))
	}
	samples := &sampler{r: r, rss: map[string]int64{}, peak: map[string]int64{}}

	r.out.printf("database ceiling: %d connections inserting single rows for %s…", o.DBMaxConns, o.CeilingDuration)
	db, err := DBCeiling(ctx, o.DatabaseURL, o.DBMaxConns, o.CeilingDuration)
	if err != nil {
		return err
	}
	rep.DBCeilingPerS = ptr(round2(db.PerSecond))
	rep.DBCeilingConns = db.Concurrency
	rep.DBCeilingP50Ms, rep.DBCeilingP99Ms = db.Latency.P50, db.Latency.P99
	r.out.printf("database ceiling: %.0f single-row insert transactions/s (each p50 %.1f ms, p99 %.1f ms)", db.PerSecond, db.Latency.P50, db.Latency.P99)

	r.out.printf("engine ceiling: %d concurrent empty workflows on %s for %s…", o.EngineConcurrency, o.TemporalAddress, o.CeilingDuration)
	tc, err := r.dialTemporal(ctx)
	if err != nil {
		return err
	}
	defer tc.Close()
	var after map[string]ProcSample
	before := samples.take()
	eng, err := EngineCeiling(ctx, tc, r.runID, o.EngineConcurrency, o.CeilingDuration, func() { after = samples.take() })
	if err != nil {
		return err
	}
	rep.EngineCeilingCPUSPer1k = costPer1k(ProcTemporal, before, after, eng.Total)
	rep.EngineCeilingPerS = ptr(round2(eng.PerSecond))
	rep.EngineCeilingConcurrency = eng.Concurrency
	rep.EngineCeilingP50Ms, rep.EngineCeilingP99Ms = eng.Latency.P50, eng.Latency.P99
	r.out.printf("engine ceiling: %.1f empty workflow executions/s (each p50 %.1f ms, p99 %.1f ms)", eng.PerSecond, eng.Latency.P50, eng.Latency.P99)

	if o.EngineShapes > 0 {
		r.out.printf("engine shapes: %d runs of each of %d workflow shapes…", o.EngineShapes, len(shapes))
		serverCPU := func() (float64, bool) {
			s := samples.take()[ProcTemporal]
			return s.CPUSeconds, s.Alive
		}
		costs, err := EngineShapes(ctx, tc, r.runID, o.EngineShapes, o.EngineConcurrency, serverCPU)
		if err != nil {
			return err
		}
		if costs == nil {
			r.out.printf("engine shapes: skipped, the Temporal server's CPU cannot be read (is it on this machine? see --pids)")
		}
		rep.EngineShapes = costs
	}
	return nil
}

// dialTemporal connects to the Temporal frontend of the system measured.
func (r *runner) dialTemporal(ctx context.Context) (client.Client, error) {
	o := r.opts
	tc, err := client.DialContext(ctx, client.Options{
		HostPort: o.TemporalAddress, Namespace: o.TemporalNamespace,
		Logger:            tlog.NewStructuredLogger(o.Logger),
		ConnectionOptions: o.TemporalConnection,
	})
	if err != nil {
		return nil, fmt.Errorf("bench: temporal at %s: %w", o.TemporalAddress, err)
	}
	return tc, nil
}

// shapeMix measures, after the load, the engine's ceiling for the mix of run shapes the
// load's orders took (ShapeMixCeiling), and the Temporal server's CPU per run of it.
func (r *runner) shapeMix(ctx context.Context, rep *Report) error {
	o := r.opts
	r.idsMu.Lock()
	ids := r.ids
	r.idsMu.Unlock()
	if len(ids) == 0 {
		rep.Notes = append(rep.Notes, "shape mix: no order was accepted in the window, so there is no mix to measure")
		return nil
	}
	mix, err := ObservedMix(ctx, r.tracker.pool, ids)
	if err != nil {
		return err
	}
	rep.ShapeMix = mix
	tc, err := r.dialTemporal(ctx)
	if err != nil {
		return err
	}
	defer tc.Close()
	r.out.printf("shape mix ceiling: %d concurrent order-shaped runs in the load's mix (%s) for %s…", o.EngineConcurrency, describeMix(mix), o.CeilingDuration)
	samples := &sampler{r: r, rss: map[string]int64{}, peak: map[string]int64{}}
	before := samples.take()
	c, err := ShapeMixCeiling(ctx, tc, r.runID, mix, o.EngineConcurrency, o.CeilingDuration)
	if err != nil {
		return err
	}
	after := samples.take()
	rep.ShapeMixCeilingPerS = ptr(round2(c.PerSecond))
	per1k := func(name string) *float64 {
		a, b := before[name], after[name]
		if !a.Alive || !b.Alive || c.Total == 0 {
			return nil
		}
		return ptr(round3((b.CPUSeconds - a.CPUSeconds) / float64(c.Total) * 1000))
	}
	// The server's work for the mix, and the worker's side of the engine's work: the SDK
	// running the same runs in this process, with no database, Kafka or HTTP behind them.
	rep.ShapeMixCPUSPer1k, rep.ShapeMixClientCPUSPer1k = per1k(ProcTemporal), per1k(ProcBench)
	r.out.printf("shape mix ceiling: %.1f order-shaped runs/s (each p50 %.1f ms, p99 %.1f ms)", c.PerSecond, c.Latency.P50, c.Latency.P99)
	return nil
}

// load offers the load, follows its orders, and fills the load's part of rep.
func (r *runner) load(ctx context.Context, rep *Report) error {
	o := r.opts
	r.t0 = time.Now()
	r.measureStart = r.t0.Add(o.Warmup)
	r.end = r.measureStart.Add(o.Duration)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	// Followers: the tracker's poller, the cancellers, the progress sampler.
	var followers sync.WaitGroup
	pollCtx, stopPolling := context.WithCancel(ctx)
	defer stopPolling()
	var pollErr atomic.Value
	followers.Add(1)
	go func() {
		defer followers.Done()
		if err := r.pollLoop(pollCtx); err != nil {
			pollErr.Store(err)
			cancel()
		}
	}()
	cancelDone := make(chan struct{})
	var cancellers sync.WaitGroup
	for range cancelWorkers {
		cancellers.Add(1)
		go func() {
			defer cancellers.Done()
			r.cancelLoop(ctx, cancelDone)
		}()
	}
	r.cancelling.Store(o.CancelRatio > 0)
	samples := &sampler{r: r, rss: map[string]int64{}, peak: map[string]int64{}}
	samples.prev = samples.take()
	phase := atomic.Value{}
	phase.Store("warm-up")
	followers.Add(1)
	go func() {
		defer followers.Done()
		samples.loop(pollCtx, &phase)
	}()

	// The load itself stops at r.end; requests in flight then finish.
	loadDone := make(chan struct{})
	defer func() {
		// On an early return, stop everything and wait, so nothing prints afterwards.
		cancel()
		stopPolling()
		<-loadDone
		followers.Wait()
		cancellers.Wait()
	}()
	go func() {
		defer close(loadDone)
		switch o.Mode {
		case Open:
			r.openLoop(ctx)
		case Closed:
			r.closedLoop(ctx)
		}
	}()

	if !sleepUntil(ctx, r.measureStart) {
		return r.interrupted(ctx, &pollErr)
	}
	phase.Store("measure")
	cpuStart, machineStart := samples.take(), r.fs.machineCPU()
	if !sleepUntil(ctx, r.end) {
		return r.interrupted(ctx, &pollErr)
	}
	cpuEnd, machineEnd := samples.take(), r.fs.machineCPU()
	phase.Store("finish")
	r.cancelling.Store(false)
	close(cancelDone)
	<-loadDone

	// Every order settled inside the window is found by one full sweep now.
	if err := r.pollOnce(ctx, true); err != nil {
		return err
	}
	rep.BacklogEnd = r.tracker.Pending()
	rep.BacklogSlopePerS = round2(Slope(samples.backlogTail()))
	phase.Store("drain")
	drainEnd := time.Now().Add(o.Drain)
	for r.tracker.PendingMeasured() > 0 && time.Now().Before(drainEnd) {
		if !sleepUntil(ctx, time.Now().Add(pollInterval)) {
			return r.interrupted(ctx, &pollErr)
		}
	}
	stopPolling()
	followers.Wait()
	if err := r.pollOnce(ctx, true); err != nil {
		return err
	}
	cancellers.Wait()
	if err, ok := pollErr.Load().(error); ok {
		return err
	}

	window := o.Duration.Seconds()
	rep.Accepted = int(r.accepted.Load())
	rep.IngestPerS = round2(float64(rep.Accepted) / window)
	post := Summarize(r.posts.Take())
	rep.Posted = post.Count
	rep.PostP50Ms, rep.PostP95Ms, rep.PostP99Ms, rep.PostMaxMs = post.P50, post.P95, post.P99, post.Max
	rep.ErrorsByStatus = r.errors.Snapshot()
	refused := Summarize(r.refusals.Take())
	rep.Refused, rep.RefusedPerS, rep.RefusedP99Ms = refused.Count, round2(float64(refused.Count)/window), refused.P99
	rep.Topology = o.Topology
	rep.OpenDropped = int(r.dropped.Load())
	r.settleMu.Lock()
	rep.Settled = r.settledInWin
	r.settleMu.Unlock()
	rep.E2EPerS = round2(float64(rep.Settled) / window)
	// Orders still unsettled count at their age now, so that a backlog shows in the
	// percentiles (as lower bounds) instead of leaving only the lucky orders in them.
	settledLat := r.e2e.Take()
	unsettled := r.tracker.PendingMeasuredAges(time.Now())
	e2e := Summarize(append(settledLat, unsettled...))
	rep.E2ESamples, rep.E2EUnsettled = len(settledLat), len(unsettled)
	rep.E2ELowerBound = len(unsettled) > 0
	rep.E2EP50Ms, rep.E2EP95Ms, rep.E2EP99Ms, rep.E2EMaxMs = e2e.P50, e2e.P95, e2e.P99, e2e.Max
	pickup, steps := Summarize(r.pickup.Take()), Summarize(r.steps.Take())
	rep.PickupP50Ms, rep.PickupP99Ms = pickup.P50, pickup.P99
	rep.StepsP50Ms, rep.StepsP99Ms = steps.P50, steps.P99
	rep.Outcomes = r.outcomes.Snapshot()
	rep.CancelsByStatus = r.cancels.Snapshot()
	rep.CancelsSkipped = int(r.cancelSkipped.Load())
	if rep.E2EUnsettled > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d orders accepted in the window had not settled %s after it: the end-to-end percentiles count them at their age then, so they are lower bounds", rep.E2EUnsettled, o.Drain))
	}

	rep.CPUSPer1k, rep.CPUCores = map[string]float64{}, map[string]float64{}
	var observed float64
	rep.RSSMB, rep.PeakRSSMB = map[string]float64{}, map[string]float64{}
	for _, p := range r.procs {
		a, b := cpuStart[p.Name], cpuEnd[p.Name]
		if !a.Alive || !b.Alive {
			rep.Notes = append(rep.Notes, p.Name+": the process went away during the run")
			continue
		}
		cpu := b.CPUSeconds - a.CPUSeconds
		observed += cpu
		rep.CPUCores[p.Name] = round2(cpu / window)
		if rep.Accepted > 0 {
			rep.CPUSPer1k[p.Name] = round3(cpu / float64(rep.Accepted) * 1000)
		}
		rep.RSSMB[p.Name] = mb(b.RSSBytes)
		peak := samples.peakOf(p.Name)
		if b.HWMBytes > 0 {
			peak = max(peak, b.HWMBytes)
		}
		rep.PeakRSSMB[p.Name] = mb(peak)
	}
	if machineEnd > 0 {
		rep.MachineCPUCores = round2((machineEnd - machineStart) / window)
		rep.OtherCPUCores = round2(max(machineEnd-machineStart-observed, 0) / window)
		if rep.OtherCPUCores > 0.25 {
			rep.Notes = append(rep.Notes, fmt.Sprintf("processes outside the system and the bench kept %.2f of the %d cores busy during the window: the figures understate what the system can do", rep.OtherCPUCores, rep.CPUs))
		}
	}
	return nil
}

// interrupted returns why the load phase ended early.
func (r *runner) interrupted(ctx context.Context, pollErr *atomic.Value) error {
	if err, ok := pollErr.Load().(error); ok {
		return err
	}
	return fmt.Errorf("bench: interrupted: %w", context.Cause(ctx))
}

// inWindow reports whether t falls in the measured window.
func (r *runner) inWindow(t time.Time) bool {
	return !t.Before(r.measureStart) && t.Before(r.end)
}

// closedLoop runs the closed-loop clients until the end of the window.
func (r *runner) closedLoop(ctx context.Context) {
	var wg sync.WaitGroup
	for i := range r.opts.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mix := NewMix(r.opts.Instruments, uint64(r.t0.UnixNano())+uint64(i))
			for ctx.Err() == nil && time.Now().Before(r.end) {
				for r.opts.MaxPending > 0 && r.tracker.Pending() >= r.opts.MaxPending && time.Now().Before(r.end) {
					if !sleepUntil(ctx, time.Now().Add(5*time.Millisecond)) {
						return
					}
				}
				if !time.Now().Before(r.end) {
					return
				}
				if wait := r.place(ctx, mix.Next(), time.Now()); wait > 0 && !sleepUntil(ctx, time.Now().Add(jitter(wait, rand.Float64()))) {
					return
				}
			}
		}()
	}
	wg.Wait()
}

// openLoop offers orders at the fixed rate until the end of the window. Each order's
// latency counts from when it was due, so that time spent waiting for a free slot is
// not hidden (no coordinated omission).
func (r *runner) openLoop(ctx context.Context) {
	mix := NewMix(r.opts.Instruments, uint64(r.t0.UnixNano()))
	slots := make(chan struct{}, r.opts.MaxInFlight)
	var waiting atomic.Int64
	var wg sync.WaitGroup
	defer wg.Wait()
	perOrder := float64(time.Second) / r.opts.Rate
	for i := 0; ; i++ {
		due := r.t0.Add(time.Duration(float64(i) * perOrder))
		if !due.Before(r.end) {
			return
		}
		if !sleepUntil(ctx, due) {
			return
		}
		if waiting.Load() >= int64(10*r.opts.MaxInFlight) {
			if r.inWindow(due) {
				r.dropped.Add(1)
			}
			continue
		}
		waiting.Add(1)
		wg.Add(1)
		o := mix.Next()
		go func() {
			defer wg.Done()
			select {
			case slots <- struct{}{}:
			case <-ctx.Done():
				waiting.Add(-1)
				return
			}
			waiting.Add(-1)
			r.place(ctx, o, due)
			<-slots
		}()
	}
}

// placedBody is the part of POST /api/v1/orders's answer the bench reads.
type placedBody struct {
	OrderID int64 `json:"orderId"`
}

// place posts one order that was due at due, records the answer, and follows an
// accepted order.
//
// It returns how long the client should wait before its next order: the Retry-After of a
// refusal (at most a second), else nothing.
func (r *runner) place(ctx context.Context, o OrderRequest, due time.Time) time.Duration {
	n := r.seq.Add(1)
	key := fmt.Sprintf("bench-%s-%d", r.runID, n)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.api(n)+"/api/v1/orders", bytes.NewReader(o.Body()))
	if err != nil {
		r.countError("request")
		return 0
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	if err := r.creds.authorize(ctx, req, o.UserID); err != nil {
		r.countError("credential")
		return 0
	}
	resp, err := r.http.Do(req)
	now := time.Now()
	r.lastPosts.Add(1)
	measured := r.inWindow(now)
	if err != nil {
		if ctx.Err() != nil {
			return 0
		}
		r.lastErrors.Add(1)
		if measured {
			r.countError("transport")
		}
		return 0
	}
	body, readErr := io.ReadAll(resp.Body)
	resp.Body.Close()
	now = time.Now()
	if measured {
		r.posts.Add(now.Sub(due))
	}
	var placed placedBody
	if refusal(resp.StatusCode, body) {
		// Admission control said the system is executing all it can: not an error, and
		// the client waits as told (up to a second) before its next order.
		if measured {
			r.refusals.Add(now.Sub(due))
		}
		return retryAfter(resp.Header.Get("Retry-After"))
	}
	if resp.StatusCode != http.StatusCreated || readErr != nil || json.Unmarshal(body, &placed) != nil || placed.OrderID <= 0 {
		r.lastErrors.Add(1)
		if measured {
			r.countError(strconv.Itoa(resp.StatusCode))
		}
		return 0
	}
	if measured {
		r.accepted.Add(1)
		r.idsMu.Lock()
		r.ids = append(r.ids, placed.OrderID)
		r.idsMu.Unlock()
	}
	r.tracker.Add(placed.OrderID, now, measured)
	return 0
}

// refusal reports whether an answer is admission control's refusal of a new order.
func refusal(status int, body []byte) bool {
	return status == http.StatusServiceUnavailable && bytes.Contains(body, []byte(`"errorCode":"OVERLOADED"`))
}

// retryAfter reads a Retry-After in seconds, at most a second (a client wanting to load
// the system comes back soon); 100ms when absent.
// jitter spreads a wait over half to one and a half of it (u uniform in [0, 1)), as a
// well-behaved client does, so that the clients refused together do not all come back in
// the same instant.
func jitter(d time.Duration, u float64) time.Duration {
	return time.Duration(float64(d) * (0.5 + u))
}

func retryAfter(v string) time.Duration {
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 100 * time.Millisecond
	}
	return min(time.Duration(n)*time.Second, time.Second)
}

func (r *runner) countError(kind string) { r.errors.Add(kind) }

// pollLoop asks about pending orders every pollInterval, and about all of them every
// sweepEvery-th time, until ctx ends.
func (r *runner) pollLoop(ctx context.Context) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for i := 1; ; i++ {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if err := r.pollOnce(ctx, i%sweepEvery == 0); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// pollOnce polls the tracker once and accounts for what settled.
func (r *runner) pollOnce(ctx context.Context, full bool) error {
	settled, err := r.tracker.Poll(ctx, full)
	r.settleMu.Lock()
	defer r.settleMu.Unlock()
	for _, s := range settled {
		if !s.SettledAt.Before(r.measureStart) && !s.SettledAt.After(r.end) {
			r.settledInWin++
		}
		if s.Measured {
			r.e2e.Add(s.Latency)
			r.pickup.Add(s.Pickup)
			r.steps.Add(s.Steps)
			r.outcomes.Add(s.Status)
		}
		r.lastSettled++
		if slices.Contains(restingStatuses, s.Status) && r.cancelling.Load() && r.cancelMix.Chance(r.opts.CancelRatio) {
			select {
			case r.cancelQ <- s.ID:
			default:
				r.cancelSkipped.Add(1)
			}
		}
	}
	return err
}

// cancelLoop sends the queued cancels until done is closed.
func (r *runner) cancelLoop(ctx context.Context, done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			return
		case id := <-r.cancelQ:
			r.cancel(ctx, id)
		}
	}
}

// cancel asks for order id to be cancelled and counts the answer: 200 (applied or
// filled first), 202 (not yet applied), 409 (it ended before the request).
func (r *runner) cancel(ctx context.Context, id int64) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, fmt.Sprintf("%s/api/v1/orders/%d/cancel", r.api(id), id), nil)
	if err != nil || r.creds.authorize(ctx, req, benchOperator) != nil {
		r.cancels.Add("request")
		return
	}
	resp, err := r.http.Do(req)
	if err != nil {
		if ctx.Err() == nil {
			r.cancels.Add("transport")
		}
		return
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	r.cancels.Add(strconv.Itoa(resp.StatusCode))
}

// sampler samples the processes once a second, prints the progress line, and keeps the
// backlog's history and the memory peaks.
type sampler struct {
	r    *runner
	prev map[string]ProcSample
	at   time.Time

	mu      sync.Mutex
	rss     map[string]int64
	peak    map[string]int64
	backlog []Point
}

// take samples every process now.
func (s *sampler) take() map[string]ProcSample {
	out := make(map[string]ProcSample, len(s.r.procs))
	for _, p := range s.r.procs {
		ps := s.r.fs.Sample(p)
		out[p.Name] = ps
		s.mu.Lock()
		s.rss[p.Name] = ps.RSSBytes
		s.peak[p.Name] = max(s.peak[p.Name], ps.RSSBytes)
		s.mu.Unlock()
	}
	return out
}

func (s *sampler) peakOf(name string) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak[name]
}

// backlogTail returns the backlog's history over the last half of the window (at least
// its last five seconds), for the slope that says whether it grows.
func (s *sampler) backlogTail() []Point {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := min(s.r.opts.Duration.Seconds()/2, max(s.r.opts.Duration.Seconds()-5, 0))
	var out []Point
	for _, p := range s.backlog {
		if p.T >= from {
			out = append(out, p)
		}
	}
	return out
}

func (s *sampler) loop(ctx context.Context, phase *atomic.Value) {
	s.at = time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		now := time.Now()
		cur := s.take()
		pending := s.r.tracker.Pending()
		if s.r.inWindow(now) || now.Equal(s.r.end) {
			s.mu.Lock()
			s.backlog = append(s.backlog, Point{T: now.Sub(s.r.measureStart).Seconds(), V: float64(pending)})
			s.mu.Unlock()
		}
		s.r.out.printf("%s", s.line(phase.Load().(string), now, cur, pending))
		s.prev, s.at = cur, now
	}
}

// line is one progress line: the last second's posts, errors and settlements, the
// pending orders, and each process's CPU use (in cores) and memory.
func (s *sampler) line(phase string, now time.Time, cur map[string]ProcSample, pending int) string {
	r := s.r
	secs := now.Sub(s.at).Seconds()
	posts := r.lastPosts.Swap(0)
	errs := r.lastErrors.Swap(0)
	r.settleMu.Lock()
	settled := r.lastSettled
	r.lastSettled = 0
	r.settleMu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "[%-7s %5.1fs] posts %6.0f/s err %d | settled %5.0f/s pending %d |",
		phase, now.Sub(r.t0).Seconds(), float64(posts)/secs, errs, float64(settled)/secs, pending)
	for _, p := range r.procs {
		c, pr := cur[p.Name], s.prev[p.Name]
		if !c.Alive {
			continue
		}
		fmt.Fprintf(&b, " %s %.2f cpu %.0fMB", p.Name, (c.CPUSeconds-pr.CPUSeconds)/secs, float64(c.RSSBytes)/(1<<20))
	}
	return b.String()
}

// lineWriter writes whole lines from several goroutines.
type lineWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lineWriter) printf(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprintf(l.w, format+"\n", args...)
}

// sleepUntil waits until t; false means ctx ended first.
func sleepUntil(ctx context.Context, t time.Time) bool {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err() == nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-timer.C:
		return true
	}
}

func describeProcs(procs []Proc) string {
	var parts []string
	for _, p := range procs {
		pids := make([]string, len(p.PIDs))
		for i, pid := range p.PIDs {
			pids[i] = strconv.Itoa(pid)
		}
		s := p.Name + " " + strings.Join(pids, ",")
		if p.Tree {
			s += " (and its children)"
		}
		parts = append(parts, s)
	}
	if len(parts) == 0 {
		return "none found"
	}
	return strings.Join(parts, "; ")
}

func ptr[T any](v T) *T { return &v }

func mb(b int64) float64 { return round2(float64(b) / (1 << 20)) }
