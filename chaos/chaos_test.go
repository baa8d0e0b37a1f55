package chaos_test

import (
	"context"
	"flag"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/kafka"
)

var long = flag.Bool("chaos.long", false, "run the long chaos suite (make chaos): longer load and three faults per scenario")

// profile is how long and how hard each scenario runs.
type profile struct {
	shape    loadShape
	warm     int           // orders acknowledged before the first fault
	between  int           // orders acknowledged after each recovery, before the next step
	cycles   int           // faults per scenario that kills a worker (each costs a rebalance)
	restarts int           // faults per scenario that restarts a service
	outage   time.Duration // how long a long outage lasts (Kafka down)
	drain    time.Duration // how long the system may take to settle once the load stops
}

func profileFor(long bool) profile {
	if long {
		return profile{shape: loadShape{placers: 3, every: 500 * time.Millisecond}, warm: 60, between: 90, cycles: 3, restarts: 3, outage: 2 * time.Minute, drain: 5 * time.Minute}
	}
	return profile{shape: loadShape{placers: 3, every: 500 * time.Millisecond}, warm: 10, between: 10, cycles: 1, restarts: 2, outage: 25 * time.Second, drain: 5 * time.Minute}
}

// scenario is one kind of fault. inject runs while the load runs, and returns once the
// system is back (every process it stopped is running again, unless the scenario is about
// working without it).
type scenario struct {
	name      string
	setup     func(ctx context.Context, r *run) error // before the load starts
	inject    func(ctx context.Context, r *run) error
	afterLoad func(ctx context.Context, r *run) error // after the load stops, before the drain
	verify    func(ctx context.Context, r *run)       // after the drain: the scenario's own checks (r.violate, r.lose)
	teardown  func(ctx context.Context, r *run) error // after the checks
}

// run is one scenario's run.
type run struct {
	t      *testing.T
	s      *system
	l      *load
	p      profile
	wg     sync.WaitGroup // watchers that add notes
	mu     sync.Mutex
	faults int
	notes  []string
	errs   []string // violations the injector itself observed
	lost   []string // acknowledged orders the scenario's own checks found lost
}

func (r *run) fault() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.faults++
}

func (r *run) note(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.notes = append(r.notes, fmt.Sprintf(format, args...))
}

func (r *run) violate(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.errs = append(r.errs, fmt.Sprintf(format, args...))
}

// lose records an acknowledged order that the scenario's own checks found lost.
func (r *run) lose(format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lost = append(r.lost, fmt.Sprintf(format, args...))
}

// waitAcks waits until n orders more than mark have been acknowledged.
func (r *run) waitAcks(ctx context.Context, mark, n int, when string) error {
	return waitUntil(ctx, 2*time.Minute, fmt.Sprintf("%d acknowledged orders %s", n, when), func() (bool, error) {
		return r.l.ackCount() >= mark+n, nil
	})
}

// waitFailures waits until the load has seen n failed requests (transport errors or
// 503s) more than mark: the clients have noticed the fault.
func (r *run) waitFailures(ctx context.Context, mark, n int, when string) error {
	return waitUntil(ctx, time.Minute, fmt.Sprintf("%d failed requests %s", n, when), func() (bool, error) {
		return r.l.failureCount() >= mark+n, nil
	})
}

// waitMidActivities waits until an order of the scenario is between two of its run's
// activities (validated, or sent to the executor but not yet executed), so that a kill
// lands in the middle of the work.
func (r *run) waitMidActivities(ctx context.Context) {
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for time.Now().Before(deadline) {
		var n int
		err := r.s.pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE instrument_id = ANY($1)
			AND status IN ('VALIDATED', 'SENT_TO_EXECUTOR')`, r.l.instruments).Scan(&n)
		if err == nil && n > 0 {
			r.note("killed with %d orders between activities", n)
			return
		}
		<-tick.C
	}
	r.note("no order was seen between activities in 30s; killed anyway")
}

// watchRebalance notes, in the background, how long after since the executor group
// was stable again with n members that all have partitions: until then, the partitions
// a killed worker held are not consumed.
func (r *run) watchRebalance(ctx context.Context, since time.Time, n int) {
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		if err := r.s.waitGroupMembers(ctx, n); err != nil {
			r.note("the executor group did not settle with %d members: %v", n, err)
			return
		}
		r.note("the executor group was stable again with %d member(s) %s after the kill", n, time.Since(since).Round(100*time.Millisecond))
	}()
}

// row is one line of the suite's table.
type row struct {
	scenario   string
	placed     int
	faults     int
	lost       int
	duplicates int
	violations int
	drain      string
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if binDir != "" {
		_ = os.RemoveAll(binDir)
	}
	os.Exit(code)
}

// TestChaos runs every scenario, one at a time, against one system that is healed
// between scenarios; each scenario trades on instruments of its own, so its checks see
// its own orders (the auditor sees everything).
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos suite runs real processes; skipped with -short")
	}
	runSuite(t, "OrderFlow chaos suite", devTopology, scenarios())
}

// runSuite starts a system of the topology, runs the scenarios on it one at a time, and
// prints their table under title.
func runSuite(t *testing.T, title string, top topology, scenarios []scenario) {
	p := profileFor(*long)
	ctx := context.Background()
	s := startSystem(t, top)
	var table []row
	for i, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			rw := row{scenario: sc.name, drain: "—"}
			defer func() { table = append(table, rw) }()
			s.runScenario(ctx, t, i, sc, p, &rw)
		})
	}
	mode := "short"
	if *long {
		mode = "long (-chaos.long)"
	}
	out := formatTable(table)
	t.Logf("%s, %s:\n%s", title, mode, out)
	fmt.Printf("\n%s, %s, %s:\n%s\n", title, mode, time.Now().UTC().Format("2006-01-02 15:04 MST"), out)
}

// runScenario heals the system, starts the load, injects the scenario's faults, stops
// the load, waits for the system to drain and checks every invariant, filling rw.
func (s *system) runScenario(ctx context.Context, t *testing.T, i int, sc scenario, p profile, rw *row) {
	if err := s.heal(ctx); err != nil {
		t.Fatalf("heal before the scenario: %v", err)
	}
	instruments := s.newInstruments(t, i)
	l := newLoad(s, instruments, p.shape, uint64(i+1))
	r := &run{t: t, s: s, l: l, p: p}
	if sc.setup != nil {
		if err := sc.setup(ctx, r); err != nil {
			t.Fatalf("setup: %v", err)
		}
	}
	l.start()
	halted := false
	halt := func() {
		if !halted {
			halted = true
			l.halt()
		}
	}
	defer halt()

	if err := r.waitAcks(ctx, 0, p.warm, "before the first fault"); err != nil {
		t.Fatalf("%v (load so far: %s)", err, l.summary())
	}
	if err := sc.inject(ctx, r); err != nil {
		t.Errorf("inject: %v", err)
	}
	if err := r.waitAcks(ctx, l.ackCount(), p.between, "after the last recovery"); err != nil {
		t.Errorf("%v (load so far: %s)", err, l.summary())
	}
	halt()
	if sc.afterLoad != nil {
		if err := sc.afterLoad(ctx, r); err != nil {
			t.Errorf("after the load: %v", err)
		}
	}
	rw.placed = l.ackCount()
	rw.faults = r.faults

	took, err := s.drain(ctx, l, p.drain)
	if err != nil {
		t.Errorf("the system did not drain: %v", err)
		rw.drain = "> " + p.drain.String()
	} else {
		rw.drain = took.Round(100 * time.Millisecond).String()
	}
	if sc.verify != nil {
		sc.verify(ctx, r)
	}

	f := s.check(ctx, l)
	f.lost = append(f.lost, r.lost...)
	f.violations = append(f.violations, r.errs...)
	f.violations = append(f.violations, s.newLogProblems()...)
	audit := s.audit(ctx)
	switch {
	case !audit.available:
		t.Logf("auditor not available yet (%s); only the suite's own checks ran", audit.output)
	case audit.violations > 0:
		t.Errorf("orderflow audit found %d violations:\n%s", audit.violations, audit.output)
	default:
		t.Logf("orderflow audit: %s, no violations", audit.summary)
	}
	r.wg.Wait()
	rw.lost, rw.duplicates = len(f.lost), len(f.duplicates)
	rw.violations = len(f.violations) + audit.violations

	t.Logf("load: %s", l.summary())
	for _, n := range r.notes {
		t.Logf("note: %s", n)
	}
	for _, v := range f.lost {
		t.Errorf("lost: %s", v)
	}
	for _, v := range f.duplicates {
		t.Errorf("executed twice: %s", v)
	}
	for _, v := range f.violations {
		t.Errorf("violation: %s", v)
	}
	if t.Failed() {
		for _, p := range s.processes() {
			t.Logf("%s log: %s", p.name, p.log)
		}
		t.Logf("temporal log: %s; PostgreSQL log: %s/server.log", s.temporalLog(), s.pgDir)
	}
	if sc.teardown != nil {
		if err := sc.teardown(ctx, r); err != nil {
			t.Errorf("teardown: %v", err)
		}
	}
}

// newInstruments creates the scenario's two instruments (ids from 50000 up, clear of
// the seeded ones and of the end-to-end tests').
func (s *system) newInstruments(t *testing.T, scenario int) []int64 {
	t.Helper()
	var ids []int64
	for k := range 2 {
		id := int64(50_000 + 10*scenario + k + 1)
		_, err := s.pool.Exec(context.Background(),
			`INSERT INTO instruments (id, symbol, tick_size, lot_size, min_quantity, max_quantity, status)
			 VALUES ($1, $2, 0.01, 1, 1, 1000000, 'ACTIVE')`, id, fmt.Sprintf("CHAOS%d", id))
		if err != nil {
			t.Fatalf("create instrument %d: %v", id, err)
		}
		ids = append(ids, id)
	}
	return ids
}

// newLogProblems returns data races and panics in the processes' logs not reported yet.
func (s *system) newLogProblems() []string {
	var out []string
	for _, p := range s.processes() {
		for _, line := range p.logProblems() {
			if !s.reported[line] {
				s.reported[line] = true
				out = append(out, line)
			}
		}
	}
	return out
}

func formatTable(rows []row) string {
	var b strings.Builder
	b.WriteString("| scenario | orders placed | faults injected | orders lost | duplicates | invariant violations | time to drain |\n")
	b.WriteString("| --- | ---: | ---: | ---: | ---: | ---: | ---: |\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %d | %s |\n", r.scenario, r.placed, r.faults, r.lost, r.duplicates, r.violations, r.drain)
	}
	return b.String()
}

// scenarios lists the faults, one scenario each, in the order they run.
func scenarios() []scenario {
	return []scenario{
		{
			name: "worker killed (kill -9) mid-activities, then restarted",
			inject: func(ctx context.Context, r *run) error {
				w := r.s.workers[0]
				for c := range r.p.cycles {
					if c > 0 {
						if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "between faults"); err != nil {
							return err
						}
					}
					r.waitMidActivities(ctx)
					if err := w.kill(); err != nil {
						return err
					}
					killed := time.Now()
					r.fault()
					// With no worker at all, the API keeps accepting orders into the outbox.
					if err := r.waitAcks(ctx, r.l.ackCount(), 5, "with the worker dead"); err != nil {
						return err
					}
					if err := r.s.ensure(ctx, w); err != nil {
						return err
					}
					r.watchRebalance(ctx, killed, 1)
				}
				return nil
			},
		},
		{
			name: "two workers share the load; one is killed (kill -9)",
			setup: func(ctx context.Context, r *run) error {
				if len(r.s.workers) < 2 {
					w := r.s.addWorker()
					r.t.Cleanup(func() { _ = w.stop() })
				}
				if err := r.s.ensure(ctx, r.s.workers[1]); err != nil {
					return err
				}
				return r.s.waitGroupMembers(ctx, 2)
			},
			inject: func(ctx context.Context, r *run) error {
				for c := range r.p.cycles {
					victim := r.s.workers[c%2]
					if c > 0 {
						// The previous victim is back; both share the load again.
						if err := r.s.waitGroupMembers(ctx, 2); err != nil {
							return err
						}
						if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "with both workers"); err != nil {
							return err
						}
					}
					r.waitMidActivities(ctx)
					if err := victim.kill(); err != nil {
						return err
					}
					r.fault()
					if c == r.p.cycles-1 {
						r.watchRebalance(ctx, time.Now(), 1)
					}
					if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "with one worker left"); err != nil {
						return err
					}
					if c < r.p.cycles-1 {
						if err := r.s.ensure(ctx, victim); err != nil {
							return err
						}
					}
				}
				// The last victim stays dead: the survivor drains alone.
				return nil
			},
			teardown: func(ctx context.Context, r *run) error {
				// Back to one worker: workers[0] is restarted by the next heal.
				return r.s.workers[1].stop()
			},
		},
		{
			name:   "Kafka broker restarted (SIGTERM, kill -9); the outbox holds messages meanwhile",
			inject: brokerRestart,
		},
		{
			name: "API restarted (kill -9, SIGTERM)",
			inject: func(ctx context.Context, r *run) error {
				for c := range r.p.restarts {
					if c > 0 {
						if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "between faults"); err != nil {
							return err
						}
					}
					mark := r.l.failureCount()
					stop := r.s.apis[0].kill
					if c%2 == 1 {
						stop = r.s.apis[0].stop
					}
					if err := stop(); err != nil {
						return err
					}
					r.fault()
					if err := r.waitFailures(ctx, mark, 3, "with the API down"); err != nil {
						return err
					}
					if err := r.s.ensure(ctx, r.s.apis[0]); err != nil {
						return err
					}
				}
				return nil
			},
		},
		{
			name:   "PostgreSQL restarted (fast, immediate); the API answers 503 meanwhile",
			inject: postgresRestart,
		},
		{
			name:   "Temporal server restarted (state kept on disk)",
			inject: temporalRestart(false),
		},
		duplicateDelivery(),
		// Faults of production operations (production_test.go).
		operatorCancelsAndTerminatesRuns(),
		apiConnectionsTerminated(),
		kafkaDown(),
		messageBeforeItsOrder(),
		restoreOlderSnapshot(),
		rollingDeploy(), // last: see its comment
	}
}

// brokerRestart stops the broker (SIGTERM, then kill -9 on the next cycle) while orders
// keep coming, checks that the outbox holds them, restarts it on the same port and data
// folder, and checks that the executor group's committed offsets survived.
func brokerRestart(ctx context.Context, r *run) error {
	s := r.s
	for c := range r.p.restarts {
		if c > 0 {
			if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "between faults"); err != nil {
				return err
			}
		}
		before, err := s.committed(ctx)
		if err != nil {
			return fmt.Errorf("offsets before the restart: %w", err)
		}
		stop := s.broker.stop
		if c%2 == 1 {
			stop = s.broker.kill
		}
		if err := stop(); err != nil {
			return err
		}
		r.fault()
		mark := r.l.ackCount()
		var held int
		err = waitUntil(ctx, 2*time.Minute, "orders held in the outbox while the broker is down", func() (bool, error) {
			if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&held); err != nil {
				return false, nil
			}
			return held > 0 && r.l.ackCount() >= mark+5, nil
		})
		if err != nil {
			return err
		}
		r.note("the outbox held %d messages while the broker was down", held)
		if err := s.ensure(ctx, s.broker); err != nil {
			return err
		}
		after, err := s.committed(ctx)
		if err != nil {
			return fmt.Errorf("offsets after the restart: %w", err)
		}
		kept := true
		for p, at := range before {
			if after[p] < at {
				kept = false
				r.note("partition %d: committed offset %d before the restart, %d after", p, at, after[p])
			}
		}
		if kept {
			r.note("the executor group's committed offsets survived the restart (%v, then %v)", before, after)
		}
		for _, w := range s.workers[:1] {
			if err := s.waitReady(ctx, w); err != nil {
				return err
			}
		}
	}
	return nil
}

// temporalRestart stops Temporal while the load runs — gracefully, or with kill -9 once
// an order is between its activities — checks that orders are still accepted, starts it
// again on its kept state and waits until the workers that always run are ready.
func temporalRestart(kill bool) func(ctx context.Context, r *run) error {
	return func(ctx context.Context, r *run) error {
		s := r.s
		for c := range r.p.restarts {
			if c > 0 {
				if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "between faults"); err != nil {
					return err
				}
			}
			stop := s.stopTemporal
			if kill {
				r.waitMidActivities(ctx)
				stop = s.killTemporal
			}
			if err := stop(); err != nil {
				return err
			}
			r.fault()
			// Orders are still accepted: placing one needs PostgreSQL only.
			if err := r.waitAcks(ctx, r.l.ackCount(), 5, "with Temporal down"); err != nil {
				return err
			}
			if err := s.startTemporal(ctx); err != nil {
				return err
			}
			for _, w := range s.workers[:s.replicas] {
				if err := s.waitReady(ctx, w); err != nil {
					return err
				}
			}
		}
		return nil
	}
}

// committed returns the executor group's committed offsets on order-execution.
func (s *system) committed(ctx context.Context) (map[int32]int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	offsets, err := s.adm.FetchOffsets(ctx, kafka.ConsumerGroup)
	if err != nil {
		return nil, err
	}
	out := map[int32]int64{}
	offsets.Each(func(o kadm.OffsetResponse) {
		if o.Topic == kafka.TopicOrderExecution && o.Err == nil {
			out[o.Partition] = o.At
		}
	})
	return out, nil
}

// waitGroupMembers waits until the executor group has n members with partitions.
func (s *system) waitGroupMembers(ctx context.Context, n int) error {
	return waitUntil(ctx, 2*time.Minute, fmt.Sprintf("%d members in the executor group", n), func() (bool, error) {
		dctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		groups, err := s.adm.DescribeGroups(dctx, kafka.ConsumerGroup)
		if err != nil {
			return false, nil
		}
		g, ok := groups[kafka.ConsumerGroup]
		if !ok || g.Err != nil || g.State != "Stable" {
			return false, nil
		}
		assigned := 0
		for _, m := range g.Members {
			if c, ok := m.Assigned.AsConsumer(); ok && len(c.Topics) > 0 {
				assigned++
			}
		}
		return len(g.Members) == n && assigned == n, nil
	})
}

// postgresRestart stops PostgreSQL while the load runs (a fast shutdown, then a crash on
// the next cycle), waits for the API to answer a dozen 503s, and starts it again on the
// same data folder and port.
func postgresRestart(ctx context.Context, r *run) error {
	s := r.s
	for c := range r.p.restarts {
		if c > 0 {
			if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "between faults"); err != nil {
				return err
			}
		}
		marks := r.l.codeCount("POST 503")
		if err := s.stopPostgres(c%2 == 1); err != nil {
			return err
		}
		r.fault()
		err := waitUntil(ctx, time.Minute, "503 answers while PostgreSQL is down", func() (bool, error) {
			return r.l.codeCount("POST 503") >= marks+12, nil
		})
		if err != nil {
			r.violate("the API did not answer 503 while PostgreSQL was down: %v (load: %s)", err, r.l.summary())
		}
		if err := s.startPostgres(ctx); err != nil {
			return err
		}
		for _, p := range append(slices.Clone(s.apis), s.workers[0]) {
			if err := s.waitReady(ctx, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// duplicateDelivery re-publishes every acknowledged order's order-execution message with
// a plain Kafka producer, in batches in reverse order: each message is then delivered
// twice (the relay's and ours), and out of order.
func duplicateDelivery() scenario {
	var (
		stop chan struct{}
		done chan struct{}
		next int
		perr error
	)
	publish := func(ctx context.Context, r *run) error {
		batch := r.l.acksFrom(next)
		if len(batch) == 0 {
			return nil
		}
		next += len(batch)
		records := make([]*kgo.Record, 0, len(batch))
		for _, a := range slices.Backward(batch) {
			records = append(records, &kgo.Record{Topic: kafka.TopicOrderExecution, Key: []byte(a.msg.Key()), Value: a.msg.Encode()})
		}
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		if err := r.s.kc.ProduceSync(pctx, records...).FirstErr(); err != nil {
			return fmt.Errorf("re-publish: %w", err)
		}
		r.mu.Lock()
		r.faults += len(records)
		r.mu.Unlock()
		return nil
	}
	return scenario{
		name: "every order-execution message delivered twice, out of order",
		setup: func(context.Context, *run) error {
			stop, done, next, perr = make(chan struct{}), make(chan struct{}), 0, nil
			return nil
		},
		inject: func(ctx context.Context, r *run) error {
			go func() {
				defer close(done)
				// Batches of a couple of seconds, so that reversing them reorders.
				tick := time.NewTicker(2 * time.Second)
				defer tick.Stop()
				for {
					select {
					case <-stop:
						return
					case <-tick.C:
					}
					if err := publish(ctx, r); err != nil {
						perr = err
						return
					}
				}
			}()
			return waitUntil(ctx, 2*time.Minute, "duplicates published", func() (bool, error) {
				r.mu.Lock()
				defer r.mu.Unlock()
				return r.faults >= r.p.warm, nil
			})
		},
		afterLoad: func(ctx context.Context, r *run) error {
			close(stop)
			<-done
			if perr != nil {
				return perr
			}
			// The rest, so that every acknowledged order's message comes twice; the drain
			// waits until the executor group has consumed them.
			return publish(ctx, r)
		},
	}
}
