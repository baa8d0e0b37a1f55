package chaos_test

// Scenarios of faults that production operations bring rather than crashes: operators
// cancelling and terminating runs, a DBA terminating the API's sessions, a long Kafka
// outage, a message that arrives before its order, and a restore of an older database
// snapshot against the kept Temporal namespace.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kgo"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/orderflow/orderflow/kafka"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/workflows"
)

// apiDeadline is the deadline orderflow api gives every request (api.Config's default
// RequestTimeout, which `orderflow api` does not change); answerMargin is what the
// client may add to it on this machine (loopback, a race-built API on 2 cores).
const (
	apiDeadline  = 10 * time.Second
	answerMargin = 2 * time.Second
)

// idleInTransactionLimit is the longest a session may sit idle inside a transaction: one
// that holds a transaction open while it waits for Kafka holds its locks and its
// snapshot for as long as Kafka is away.
const idleInTransactionLimit = 5 * time.Second

// repairBound is how long the reconciler may take to give an order whose run was
// terminated a new run: many of the workers' RECONCILE_INTERVAL (2s in this suite).
const repairBound = time.Minute

// ownRun is a running order run that is its order's own (its run key is the order's),
// with where the order stood when it was found.
type ownRun struct {
	id     int64
	wid    string
	runID  string
	status order.Status
}

// instrumentTerms is the visibility filter for runs on the instruments.
func instrumentTerms(instruments []int64) string {
	terms := make([]string, len(instruments))
	for i, id := range instruments {
		terms[i] = fmt.Sprintf("InstrumentId = %d", id)
	}
	return "(" + strings.Join(terms, " OR ") + ")"
}

// listRuns returns the workflow id and run id of every order run on the instruments that
// visibility lists as running.
func (s *system) listRuns(ctx context.Context, instruments []int64) (map[string]string, error) {
	query := fmt.Sprintf("WorkflowType = 'OrderWorkflow' AND ExecutionStatus = 'Running' AND %s", instrumentTerms(instruments))
	runs := map[string]string{}
	var token []byte
	for {
		lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		resp, err := s.tc.ListWorkflow(lctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
		cancel()
		if err != nil {
			return nil, fmt.Errorf("list running runs: %w", err)
		}
		for _, e := range resp.GetExecutions() {
			runs[e.GetExecution().GetWorkflowId()] = e.GetExecution().GetRunId()
		}
		if token = resp.GetNextPageToken(); len(token) == 0 {
			return runs, nil
		}
	}
}

// ownRuns splits the running runs on the instruments into those that are their open
// order's own and the strays: runs whose id names no order, or an order with another run
// key (runs left from another history of the database, or started by a foreign message).
func (s *system) ownRuns(ctx context.Context, instruments []int64) (own []ownRun, strays []string, err error) {
	runs, err := s.listRuns(ctx, instruments)
	if err != nil {
		return nil, nil, err
	}
	var ids []int64
	for wid := range runs {
		if id, _, ok := order.ParseWorkflowID(wid); ok {
			ids = append(ids, id)
		}
	}
	rows, err := s.pool.Query(ctx, `SELECT id, run_key, status FROM orders WHERE id = ANY($1)`, ids)
	if err != nil {
		return nil, nil, err
	}
	type row struct {
		id          int64
		key, status string
	}
	found, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
		var o row
		return o, r.Scan(&o.id, &o.key, &o.status)
	})
	if err != nil {
		return nil, nil, err
	}
	mine := map[string]row{}
	for _, o := range found {
		mine[workflows.OrderWorkflowID(o.id, o.key)] = o
	}
	for wid, runID := range runs {
		o, ok := mine[wid]
		switch {
		case !ok:
			strays = append(strays, wid)
		case !order.Status(o.status).Terminal():
			// A terminal order's run is ending, or visibility has not caught up with it.
			own = append(own, ownRun{id: o.id, wid: wid, runID: runID, status: order.Status(o.status)})
		}
	}
	slices.SortFunc(own, func(a, b ownRun) int { return int(a.id - b.id) })
	slices.Sort(strays)
	return own, strays, nil
}

// describe returns the status, run id and start time of the workflow's current run.
func (s *system) describe(ctx context.Context, wid string) (enumspb.WorkflowExecutionStatus, string, time.Time, error) {
	dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	d, err := s.tc.DescribeWorkflowExecution(dctx, wid, "")
	if err != nil {
		return 0, "", time.Time{}, err
	}
	info := d.GetWorkflowExecutionInfo()
	return info.GetStatus(), info.GetExecution().GetRunId(), info.GetStartTime().AsTime(), nil
}

// orderResult returns the result of the workflow's current run, which must have closed.
func (s *system) orderResult(ctx context.Context, wid string) (workflows.OrderResult, error) {
	gctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	var res workflows.OrderResult
	err := s.tc.GetWorkflow(gctx, wid, "").Get(gctx, &res)
	return res, err
}

// waitClosed waits until the workflow's current run has closed and returns its status.
func (s *system) waitClosed(ctx context.Context, wid string, timeout time.Duration) (enumspb.WorkflowExecutionStatus, error) {
	var st enumspb.WorkflowExecutionStatus
	err := waitUntil(ctx, timeout, "run "+wid+" to close", func() (bool, error) {
		var err error
		st, _, _, err = s.describe(ctx, wid)
		return err == nil && st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING, nil
	})
	return st, err
}

// alreadyClosed reports whether err says the run had closed before it was acted on.
func alreadyClosed(err error) bool {
	var notFound *serviceerror.NotFound
	return errors.As(err, &notFound)
}

// orderState is an order's status and reason, as PostgreSQL has them.
func (s *system) orderState(ctx context.Context, id int64) (order.Status, string, error) {
	var st, reason string
	err := s.pool.QueryRow(ctx, `SELECT status, reason FROM orders WHERE id = $1`, id).Scan(&st, &reason)
	return order.Status(st), reason, err
}

// operatorCancelsAndTerminatesRuns has operators cancel and terminate a sample of the
// scenario's running runs, as `temporal workflow cancel` and `temporal workflow
// terminate` do (the same two requests, sent with the suite's client). A cancelled run
// must cancel its order on its way out; a terminated run leaves its order open, and the
// worker's reconciler must give it a new run that carries on.
func operatorCancelsAndTerminatesRuns() scenario {
	const perCycle = 2 // runs cancelled, and runs terminated, per cycle
	type acted struct {
		wid, runID string
		status     order.Status // where the order stood when it was acted on
		at         time.Time
	}
	var cancelled, terminated map[int64]acted
	return scenario{
		name: "operators cancel and terminate running and resting runs (temporal workflow cancel / terminate)",
		setup: func(context.Context, *run) error {
			cancelled, terminated = map[int64]acted{}, map[int64]acted{}
			return nil
		},
		inject: func(ctx context.Context, r *run) error {
			actedOn := func(id int64) bool {
				_, c := cancelled[id]
				_, t := terminated[id]
				return c || t
			}
			act := func(ctx context.Context, o ownRun, terminate bool) error {
				a := acted{wid: o.wid, runID: o.runID, status: o.status, at: time.Now()}
				actx, cancel := context.WithTimeout(ctx, 20*time.Second)
				defer cancel()
				var err error
				if terminate {
					err = r.s.tc.TerminateWorkflow(actx, o.wid, o.runID, "chaos: an operator terminates the run")
					terminated[o.id] = a
				} else {
					err = r.s.tc.CancelWorkflow(actx, o.wid, o.runID)
					cancelled[o.id] = a
				}
				switch {
				case alreadyClosed(err):
					r.note("run %s had closed before the operator acted on it", o.wid)
				case err != nil:
					return fmt.Errorf("act on %s: %w", o.wid, err)
				}
				r.fault()
				return nil
			}
			rng := rand.New(rand.NewPCG(7, 7))
			for c := range r.p.restarts {
				if c > 0 {
					if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "between faults"); err != nil {
						return err
					}
				}
				// A run between two of its steps lasts milliseconds, less than visibility
				// takes to list it, so that one is found through PostgreSQL.
				if o, ok := r.s.runBetweenSteps(ctx, r.l.instruments, actedOn); ok {
					if err := act(ctx, o, c%2 == 0); err != nil {
						return err
					}
				} else {
					r.note("no run was seen between two steps in 10s")
				}
				var own []ownRun
				err := waitUntil(ctx, time.Minute, "running runs to act on", func() (bool, error) {
					var err error
					own, _, err = r.s.ownRuns(ctx, r.l.instruments)
					return err == nil && len(own) >= 2*perCycle, nil
				})
				if err != nil {
					return err
				}
				rng.Shuffle(len(own), func(i, j int) { own[i], own[j] = own[j], own[i] })
				picked := 0
				for _, o := range own {
					if picked == 2*perCycle {
						break
					}
					if actedOn(o.id) {
						continue
					}
					if err := act(ctx, o, picked%2 == 0); err != nil {
						return err
					}
					picked++
				}
			}
			return nil
		},
		verify: func(ctx context.Context, r *run) {
			var byRun, ended, onTheWay int
			for id, a := range cancelled {
				if !a.status.Resting() {
					onTheWay++
				}
				st, reason, err := r.s.orderState(ctx, id)
				switch {
				case err != nil:
					r.violate("order %d, whose run %s was cancelled: %v", id, a.wid, err)
				case (st == order.Cancelled || st == order.PartiallyCancelled) && reason == order.ReasonRunCancelled:
					byRun++
				case st.Terminal():
					ended++ // a fill or the client's cancel ended it first
				default:
					r.violate("order %d is %s after its run %s was cancelled (it was %s then)", id, st, a.wid, a.status)
				}
			}
			r.note("%d runs cancelled (%d of orders still on their way): %d orders cancelled by their run (RUN_CANCELLED), %d had ended otherwise",
				len(cancelled), onTheWay, byRun, ended)

			// Each terminated run's order ends, or gets a new run from the reconciler.
			var repaired, done int
			var slowest time.Duration
			onTheWay = 0
			for id, a := range terminated {
				if !a.status.Resting() {
					onTheWay++
				}
				var last string
				err := waitUntil(ctx, repairBound, fmt.Sprintf("order %d to end or get a new run", id), func() (bool, error) {
					st, runID, started, err := r.s.describe(ctx, a.wid)
					if err != nil {
						last = err.Error()
						return false, nil
					}
					if runID != a.runID {
						repaired++
						slowest = max(slowest, started.Sub(a.at))
						return true, nil
					}
					ost, _, err := r.s.orderState(ctx, id)
					if err == nil && ost.Terminal() {
						done++ // ended before the reconciler's pass (a fill, a cancel's own run)
						return true, nil
					}
					last = fmt.Sprintf("its run is still the terminated one (%s), order %s", st, ost)
					return false, nil
				})
				if err != nil {
					r.violate("order %d, whose run %s was terminated: %v (last seen: %s)", id, a.wid, err, last)
				}
			}
			r.note("%d runs terminated (%d of orders still on their way): %d given a new run, by the reconciler or a client's cancel (slowest %s after the terminate), %d ended without one",
				len(terminated), onTheWay, repaired, slowest.Round(100*time.Millisecond), done)
		},
	}
}

// runBetweenSteps looks for up to 10s for an order on the instruments that is between
// two steps of its run (VALIDATED or SENT_TO_EXECUTOR) and not yet acted on, and returns
// its run.
func (s *system) runBetweenSteps(ctx context.Context, instruments []int64, actedOn func(int64) bool) (ownRun, bool) {
	var found ownRun
	err := waitUntil(ctx, 10*time.Second, "a run between two steps", func() (bool, error) {
		var key, st string
		err := s.pool.QueryRow(ctx, `SELECT id, run_key, status FROM orders WHERE instrument_id = ANY($1)
			AND status IN ('VALIDATED', 'SENT_TO_EXECUTOR') ORDER BY id DESC LIMIT 1`, instruments).Scan(&found.id, &key, &st)
		if err != nil || actedOn(found.id) {
			return false, nil
		}
		found.wid, found.status = workflows.OrderWorkflowID(found.id, key), order.Status(st)
		_, found.runID, _, err = s.describe(ctx, found.wid)
		return err == nil, nil
	})
	return found, err == nil
}

// apiConnectionsTerminated terminates the API's PostgreSQL sessions
// (pg_terminate_backend, as a DBA or a failover does) while group-commit statements are
// in flight. A lock on the outbox, which every placement statement writes, holds the
// statements in flight: the terminations then land inside them, not between them. Every
// request must still be answered within its deadline, and every order answered 201 must
// execute.
func apiConnectionsTerminated() scenario {
	return scenario{
		name: "PostgreSQL sessions of the API terminated (pg_terminate_backend) while group-commit batches are in flight",
		inject: func(ctx context.Context, r *run) error {
			for c := range r.p.restarts {
				if c > 0 {
					if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "between faults"); err != nil {
						return err
					}
				}
				if err := terminateInFlight(ctx, r); err != nil {
					return err
				}
			}
			return nil
		},
		verify: func(ctx context.Context, r *run) {
			if n := r.l.codeCount("POST transport error") + r.l.codeCount("cancel transport error"); n > 0 {
				r.violate("%d requests were never answered (the API was up throughout): %s", n, r.l.summary())
			}
			slowest := r.l.slowestAnswer()
			r.note("slowest answer: %s, after %s", slowest.what, slowest.took.Round(time.Millisecond))
			if slowest.took > apiDeadline+answerMargin {
				r.violate("%s after %s, past the request deadline of %s", slowest.what, slowest.took.Round(time.Millisecond), apiDeadline)
			}
		},
	}
}

// placementsInFlight counts the API's sessions running the group-commit statement.
const placementsInFlight = `SELECT count(*) FROM pg_stat_activity
	WHERE application_name = $1 AND state = 'active' AND query LIKE '-- name: PlaceOrders%'`

// terminateInFlight holds a lock on the outbox, sends a burst of orders so that both
// group-commit writers are held in their statements and the rest queue behind them,
// terminates every API session, waits for the queued orders' batch to be held in turn
// and terminates again, then lets go of the lock.
func terminateInFlight(ctx context.Context, r *run) error {
	s := r.s
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return err
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // releasing the lock is all it does
	// SHARE conflicts with the ROW EXCLUSIVE lock an INSERT takes, and with nothing a
	// reader takes: placements wait, reads and the suite's checks do not.
	if _, err := tx.Exec(ctx, `LOCK TABLE outbox IN SHARE MODE`); err != nil {
		return fmt.Errorf("lock the outbox: %w", err)
	}
	before, _ := s.batchStats(ctx)
	r.l.burst(24)
	// First both writers' statements, then the statement of what queued behind them.
	for round, want := range []int{2, 1} {
		var held int
		err := waitUntil(ctx, 15*time.Second, fmt.Sprintf("%d group-commit statements of the API in flight", want), func() (bool, error) {
			err := s.pool.QueryRow(ctx, placementsInFlight, apiApplicationName).Scan(&held)
			return err == nil && held >= want, nil
		})
		if err != nil {
			return err
		}
		// The sessions are chosen first (PostgreSQL may evaluate the conditions of one
		// WHERE in any order, and would terminate others'); pg_terminate_backend with a
		// timeout waits for each to end, so the next round cannot count one of this one.
		var killed int
		err = s.pool.QueryRow(ctx, `WITH api AS MATERIALIZED (
				SELECT pid FROM pg_stat_activity WHERE application_name = $1 AND pid <> pg_backend_pid())
			SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)) FROM api`, apiApplicationName).Scan(&killed)
		if err != nil {
			return fmt.Errorf("terminate the API's sessions: %w", err)
		}
		r.fault()
		r.note("round %d: terminated %d sessions of the API, %d of them in a group-commit statement", round+1, killed, held)
	}
	if err := tx.Rollback(ctx); err != nil {
		return err
	}
	// The batches the terminations failed are written again (order by order, or retried
	// by the clients); the histogram says how big the statements were meanwhile.
	if after, err := s.batchStats(ctx); err == nil && after.count > before.count {
		n := after.count - before.count
		r.note("%d group-commit statements during the fault, %.1f orders each on average", int(n), (after.sum-before.sum)/n)
	}
	return nil
}

// getBody returns the body of a 200 answer to GET u.
func (s *system) getBody(ctx context.Context, u string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return "", err
	}
	resp, err := s.http.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("%s: %s", u, resp.Status)
	}
	return string(b), err
}

// batchSizes is the API's orderflow_order_write_batch_size histogram: how many
// statements the group commit ran, and how many orders they carried.
type batchSizes struct{ count, sum float64 }

// batchStats reads the group commit's histogram from the API's /metrics.
func (s *system) batchStats(ctx context.Context) (batchSizes, error) {
	var b batchSizes
	body, err := s.getBody(ctx, metricsURL(s.apis[0])+"/metrics")
	if err != nil {
		return b, err
	}
	for _, line := range strings.Split(body, "\n") {
		name, value, ok := strings.Cut(line, " ")
		if !ok {
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(value), 64)
		if err != nil {
			continue
		}
		switch name {
		case "orderflow_order_write_batch_size_count":
			b.count = v
		case "orderflow_order_write_batch_size_sum":
			b.sum = v
		}
	}
	return b, nil
}

// burst places n orders at once, each retried like the placers' (same Idempotency-Key,
// on transport errors and 503s), so that they queue for the group commit together.
func (l *load) burst(n int) {
	burst := time.Now().UnixNano() // distinguishes the keys of successive bursts
	for j := range n {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			rng := rand.New(rand.NewPCG(l.seed, uint64(burst)+uint64(j)))
			body := l.order(rng)
			key := fmt.Sprintf("chaos-%d-burst-%d-%d", l.instruments[0], burst, j)
			tick := time.NewTicker(l.shape.every)
			defer tick.Stop()
			for replica := l.replica(); !l.placeOnce(body, key, rng, replica); replica++ {
				select {
				case <-l.stop:
					return
				case <-tick.C:
				}
			}
		}()
	}
}

// kafkaDown stops the broker for the profile's outage while orders keep coming, and
// watches PostgreSQL meanwhile: no session may sit idle in a transaction for more than
// idleInTransactionLimit, since nothing should hold a transaction open while it waits
// for Kafka. Then the broker restarts on its port and data folder, and the outbox drains.
func kafkaDown() scenario {
	return scenario{
		name: "Kafka down for two minutes (short run: 25s); no session idle in a transaction meanwhile",
		inject: func(ctx context.Context, r *run) error {
			s := r.s
			before, err := s.committed(ctx)
			if err != nil {
				return fmt.Errorf("offsets before the outage: %w", err)
			}
			if err := s.broker.stop(); err != nil {
				return err
			}
			r.fault()
			down, mark := time.Now(), r.l.ackCount()
			var longest idleSession
			var held int
			// The outage lasts its time; meanwhile the suite watches the sessions.
			err = waitUntil(ctx, r.p.outage+time.Minute, "the outage to last "+r.p.outage.String(), func() (bool, error) {
				longest = longest.max(s.longestIdleInTransaction(ctx))
				var n int
				if s.pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n) == nil {
					held = max(held, n)
				}
				return time.Since(down) >= r.p.outage, nil
			})
			if err != nil {
				return err
			}
			accepted := r.l.ackCount() - mark
			r.note("Kafka was down for %s: %d orders acknowledged meanwhile, up to %d messages held in the outbox",
				time.Since(down).Round(100*time.Millisecond), accepted, held)
			if accepted == 0 {
				r.violate("no order was acknowledged while Kafka was down")
			}
			if err := s.ensure(ctx, s.broker); err != nil {
				return err
			}
			// Recovery is when the relay publishes the backlog: keep watching until it has.
			err = waitUntil(ctx, 2*time.Minute, "the outbox to drain after the outage", func() (bool, error) {
				longest = longest.max(s.longestIdleInTransaction(ctx))
				var n int
				err := s.pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&n)
				return err == nil && n == 0, nil
			})
			if err != nil {
				return err
			}
			r.note("longest idle in transaction during the outage and its recovery: %s", longest)
			if longest.idle > idleInTransactionLimit {
				r.violate("a session was idle in a transaction for %s while Kafka was down (limit %s)", longest, idleInTransactionLimit)
			}
			after, err := s.committed(ctx)
			if err != nil {
				return fmt.Errorf("offsets after the outage: %w", err)
			}
			for p, at := range before {
				if after[p] < at {
					r.violate("partition %d: committed offset %d before the outage, %d after", p, at, after[p])
				}
			}
			return s.waitReady(ctx, s.workers[0])
		},
	}
}

// idleSession is the session that has been idle in a transaction longest.
type idleSession struct {
	idle time.Duration
	who  string
}

func (a idleSession) max(b idleSession) idleSession {
	if b.idle > a.idle {
		return b
	}
	return a
}

func (a idleSession) String() string {
	if a.who == "" {
		return a.idle.Round(time.Millisecond).String()
	}
	return fmt.Sprintf("%s (%s)", a.idle.Round(time.Millisecond), a.who)
}

// longestIdleInTransaction returns the session idle in a transaction (or in an aborted
// one) the longest, or nothing; a failed look is nothing too, the next one will tell.
func (s *system) longestIdleInTransaction(ctx context.Context) idleSession {
	var secs float64
	var who string
	err := s.pool.QueryRow(ctx, `SELECT extract(epoch FROM now() - state_change),
			format('%s pid %s, %s: %s', coalesce(nullif(application_name, ''), 'no application_name'), pid, state, left(query, 80))
		FROM pg_stat_activity
		WHERE state IN ('idle in transaction', 'idle in transaction (aborted)') AND pid <> pg_backend_pid()
		ORDER BY state_change LIMIT 1`).Scan(&secs, &who)
	if err != nil {
		return idleSession{}
	}
	return idleSession{idle: time.Duration(secs * float64(time.Second)), who: who}
}

// messageBeforeItsOrder publishes order-execution messages for an order id that does
// not exist yet — one without a run key, one with a made-up run key — and lets the load
// run until the API places an order with that id. The runs the messages start must end
// on their own (UNKNOWN_ORDER, or FOREIGN_RUN once the order exists) touching nothing,
// and the real order must execute with its own run.
func messageBeforeItsOrder() scenario {
	const ahead = 30 // ids past the last one drawn: about 5 s of the short load
	const madeUpKey = "chaosstray1"
	var (
		target int64
		strays []string
	)
	return scenario{
		name: "an order-execution message for an order id not placed yet, then that order",
		inject: func(ctx context.Context, r *run) error {
			s := r.s
			var last int64
			err := s.pool.QueryRow(ctx, `SELECT greatest(
				coalesce(pg_sequence_last_value(pg_get_serial_sequence('orders', 'id')::regclass), 0),
				coalesce((SELECT max(id) FROM orders), 0))`).Scan(&last)
			if err != nil {
				return err
			}
			target = last + ahead
			strays = nil
			var records []*kgo.Record
			for _, key := range []string{"", madeUpKey} {
				m := kafka.ExecutionMessage{OrderID: target, UserID: 1, InstrumentID: r.l.instruments[0], Side: "BUY", Kind: "LIMIT", RunKey: key}
				records = append(records, &kgo.Record{Topic: kafka.TopicOrderExecution, Key: []byte(m.Key()), Value: m.Encode()})
				strays = append(strays, workflows.OrderWorkflowID(target, key))
			}
			pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			err = s.kc.ProduceSync(pctx, records...).FirstErr()
			cancel()
			if err != nil {
				return fmt.Errorf("publish the early messages: %w", err)
			}
			r.mu.Lock()
			r.faults += len(records)
			r.mu.Unlock()
			for _, wid := range strays {
				// The consumer starts the run; it must then end by itself.
				if err := waitUntil(ctx, time.Minute, "the consumer to start "+wid, func() (bool, error) {
					_, _, _, err := s.describe(ctx, wid)
					return err == nil, nil
				}); err != nil {
					return err
				}
				st, err := s.waitClosed(ctx, wid, time.Minute)
				if err != nil {
					r.violate("the run %s of a message for an order not placed yet: %v", wid, err)
					continue
				}
				var exists bool
				_ = s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1)`, target).Scan(&exists)
				r.note("run %s closed %s (order %d placed by then: %t)", wid, st, target, exists)
			}
			// Now the real order: the load places it within seconds. An id is skipped only
			// if a statement that drew it failed, and then the scenario cannot go on.
			return waitUntil(ctx, 2*time.Minute, fmt.Sprintf("order %d to be placed", target), func() (bool, error) {
				var exists bool
				var drawn int64
				err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM orders WHERE id = $1),
					coalesce(pg_sequence_last_value(pg_get_serial_sequence('orders', 'id')::regclass), 0)`, target).Scan(&exists, &drawn)
				switch {
				case err != nil:
					return false, nil
				case !exists && drawn > target+100:
					return false, fmt.Errorf("id %d was drawn but no order has it", target)
				}
				return exists, nil
			})
		},
		verify: func(ctx context.Context, r *run) {
			s := r.s
			for _, wid := range strays {
				res, err := s.orderResult(ctx, wid)
				switch {
				case err != nil:
					r.violate("the run %s of a message for an order not placed yet did not complete: %v", wid, err)
				case res.Reason != workflows.ReasonUnknownOrder && res.Reason != workflows.ReasonForeignRun:
					r.violate("the run %s of a message for an order not placed yet ended %+v, not %s or %s",
						wid, res, workflows.ReasonUnknownOrder, workflows.ReasonForeignRun)
				case res.Status != "":
					r.violate("the run %s of a message for an order not placed yet reports order status %s", wid, res.Status)
				default:
					r.note("run %s ended %s, touching nothing", wid, res.Reason)
				}
			}
			var key, st string
			if err := s.pool.QueryRow(ctx, `SELECT run_key, status FROM orders WHERE id = $1`, target).Scan(&key, &st); err != nil {
				r.violate("order %d: %v", target, err)
				return
			}
			if !slices.ContainsFunc(r.l.acksFrom(0), func(a acked) bool { return a.msg.OrderID == target }) {
				r.violate("order %d was placed but the load has no acknowledgement of it", target)
			}
			wid := workflows.OrderWorkflowID(target, key)
			if slices.Contains(strays, wid) {
				r.violate("order %d has the run key of a stray run (%s)", target, wid)
				return
			}
			runSt, _, _, err := s.describe(ctx, wid)
			if err != nil {
				r.violate("order %d (%s) has no run %s: %v", target, st, wid, err)
				return
			}
			r.note("order %d is %s; its own run %s is %s", target, st, wid, runSt)
			var events int
			if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM order_events WHERE order_id = $1`, target).Scan(&events); err == nil && events < 2 {
				r.violate("order %d has %d events: its run did not move it", target, events)
			}
		},
	}
}

// pgTool returns the path of a PostgreSQL client program of the server's version: the
// one next to initdb (as devstack finds the server), else PATH's.
func pgTool(name string) (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if resolved, err := filepath.EvalSymlinks(p); err == nil {
			if tool := filepath.Join(filepath.Dir(resolved), name); exec.Command(tool, "--version").Run() == nil {
				return tool, nil
			}
		}
	}
	return exec.LookPath(name)
}

// pgRun runs a PostgreSQL client program against the cluster.
func (s *system) pgRun(ctx context.Context, name string, args ...string) error {
	tool, err := pgTool(name)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	args = append([]string{"-h", "127.0.0.1", "-p", strconv.Itoa(s.pgPort), "-U", "postgres"}, args...)
	if out, err := exec.CommandContext(cctx, tool, args...).CombinedOutput(); err != nil {
		return fmt.Errorf("%s: %w\n%s", name, err, out)
	}
	return nil
}

// stopServices stops the API and the workers gracefully (SIGTERM), as before maintenance.
func (s *system) stopServices() error {
	var errs []error
	for _, p := range append(slices.Clone(s.apis), s.workers...) {
		errs = append(errs, p.stop())
	}
	return errors.Join(errs...)
}

// startServices starts the worker, then the APIs, and waits until they are ready.
func (s *system) startServices(ctx context.Context) error {
	for _, p := range append([]*process{s.workers[0]}, s.apis...) {
		if err := s.ensure(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// restoreOlderSnapshot takes a snapshot of the database (pg_dump, with the API and the
// worker stopped), lets the system run on, then restores the snapshot into a fresh
// database, follows RUNBOOK.md's procedure ("Restoring the database": migrate,
// `orderflow orders reconcile --all`, workers then APIs) and starts again, against the Temporal namespace and Kafka topics as they are. The orders
// acknowledged after the snapshot are gone by design, and the checks are relative to the
// restored database; the new orders reuse their ids (with other run keys) and must all
// execute, every open order of the restored database must have a live run, and the runs
// left over from the lost history must touch nothing.
func restoreOlderSnapshot() scenario {
	var (
		snapAt   time.Time
		lostKeys map[int64]string // the run keys of the orders the restore took back
		resting  []int64          // orders resting in the snapshot, cancelled after it
		told     []string         // the runs reconcile --all told to end (no order's)
	)
	return scenario{
		name: "database restored from an older snapshot against the kept Temporal namespace, then orders reconcile --all",
		inject: func(ctx context.Context, r *run) error {
			s := r.s
			dump := filepath.Join(s.dir, fmt.Sprintf("snapshot-%d.dump", time.Now().UnixNano()))
			if err := s.stopServices(); err != nil {
				return err
			}
			snapAt = time.Now()
			var snapMax int64
			if err := s.pool.QueryRow(ctx, `SELECT coalesce(max(id), 0) FROM orders`).Scan(&snapMax); err != nil {
				return err
			}
			if err := s.pgRun(ctx, "pg_dump", "-Fc", "-f", dump, "orderflow"); err != nil {
				return err
			}
			r.note("snapshot taken with orders up to id %d", snapMax)

			// The system runs on: these orders, fills and cancels are the history the
			// restore takes back. Cancelling orders that rest in the snapshot ends their
			// runs in that history, so after the restore they rest again with a closed run,
			// which is what reconcile --all is for.
			var trades int
			_ = s.pool.QueryRow(ctx, `SELECT count(*) FROM trades WHERE instrument_id = ANY($1)`, r.l.instruments).Scan(&trades)
			rows, err := s.pool.Query(ctx, `SELECT id FROM orders WHERE instrument_id = ANY($1)
				AND status IN ('EXECUTING', 'PARTIALLY_FILLED') ORDER BY id LIMIT 3`, r.l.instruments)
			if err != nil {
				return err
			}
			if resting, err = pgx.CollectRows(rows, pgx.RowTo[int64]); err != nil {
				return err
			}
			if err := s.startServices(ctx); err != nil {
				return err
			}
			applied := map[int64]bool{}
			for _, id := range resting {
				code, _, body, err := r.l.do(r.l.replica(), http.MethodPost, fmt.Sprintf("/api/v1/orders/%d/cancel", id), nil, "")
				if err != nil || (code != http.StatusOK && code != http.StatusAccepted && code != http.StatusConflict) {
					return fmt.Errorf("cancel order %d after the snapshot: %d %s %v", id, code, excerpt(body), err)
				}
				// 200: applied, so its run has ended; 202: its run may still be applying it.
				applied[id] = code == http.StatusOK
			}
			if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "after the snapshot"); err != nil {
				return err
			}
			if err := waitUntil(ctx, time.Minute, "trades after the snapshot", func() (bool, error) {
				var n int
				err := s.pool.QueryRow(ctx, `SELECT count(*) FROM trades WHERE instrument_id = ANY($1)`, r.l.instruments).Scan(&n)
				return err == nil && n > trades, nil
			}); err != nil {
				return err
			}
			if err := s.stopServices(); err != nil {
				return err
			}
			rows, err = s.pool.Query(ctx, `SELECT id, run_key FROM orders WHERE id > $1`, snapMax)
			if err != nil {
				return err
			}
			lostKeys = map[int64]string{}
			var id int64
			var key string
			if _, err := pgx.ForEachRow(rows, []any{&id, &key}, func() error { lostKeys[id] = key; return nil }); err != nil {
				return err
			}

			// The restore: a fresh database from the snapshot, in place of the current one.
			admin, err := pgx.Connect(ctx, strings.Replace(s.pgURL(), "/orderflow?", "/postgres?", 1))
			if err != nil {
				return err
			}
			for _, stmt := range []string{`DROP DATABASE orderflow WITH (FORCE)`, `CREATE DATABASE orderflow`} {
				if _, err := admin.Exec(ctx, stmt); err != nil {
					admin.Close(ctx)
					return fmt.Errorf("%s: %w", stmt, err)
				}
			}
			admin.Close(ctx)
			if err := s.pgRun(ctx, "pg_restore", "-d", "orderflow", dump); err != nil {
				return err
			}
			r.fault()
			r.note("restored the snapshot: %d orders placed after it are gone", len(lostKeys))
			// The suite's own sessions went with the old database.
			s.pool.Reset()
			if err := forgetRestored(ctx, r, snapAt); err != nil {
				return err
			}

			// The rest of RUNBOOK.md's procedure: migrate, reconcile, then start.
			if out, errOut, err := s.command(ctx, "migrate"); err != nil {
				return fmt.Errorf("orderflow migrate: %w\n%s%s", err, out, errOut)
			}
			out, errOut, err := s.command(ctx, "orders", "reconcile", "--all")
			if err != nil {
				return fmt.Errorf("orderflow orders reconcile --all: %w\n%s%s", err, out, errOut)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			r.note("orderflow orders reconcile --all: %s", lines[len(lines)-1])
			told = nil
			for _, l := range lines {
				if wid, ok := strings.CutPrefix(l, "run "); ok {
					told = append(told, strings.SplitN(wid, ":", 2)[0])
				}
			}
			restarted := 0
			for _, id := range resting {
				// Its run ended with the cancel the restore took back, so it rests again
				// with a closed run: reconcile --all must give it a new one.
				if slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, fmt.Sprintf("order %d (", id)) }) {
					restarted++
				} else if applied[id] {
					r.violate("order %d rests again after the restore, its run ended, and reconcile --all gave it no new run", id)
				}
			}
			r.note("%d of the %d orders resting in the snapshot and cancelled after it were given a new run", restarted, len(resting))
			return s.startServices(ctx)
		},
		verify: func(ctx context.Context, r *run) {
			s := r.s
			// New orders reuse the ids of the orders the restore took back, with keys of
			// their own.
			reused := 0
			for _, a := range r.l.acksFrom(0) {
				old, ok := lostKeys[a.msg.OrderID]
				if !ok {
					continue
				}
				reused++
				var key string
				if err := s.pool.QueryRow(ctx, `SELECT run_key FROM orders WHERE id = $1`, a.msg.OrderID).Scan(&key); err != nil {
					r.violate("order %d: %v", a.msg.OrderID, err)
				} else if key == old {
					r.violate("order %d came back with the run key of the order the restore took back (%s)", a.msg.OrderID, key)
				}
			}
			r.note("%d orders placed after the restore reuse the id of an order it took back", reused)
			if reused == 0 {
				r.t.Errorf("no order placed after the restore reused an id the restore took back: the scenario tested nothing")
			}

			// The runs left from the lost history, still waiting on the book, are strays:
			// reconcile --all told each to end, and each must end without touching the
			// order that has its id now, or that has none.
			ended := map[string]int{}
			for _, wid := range told {
				if _, err := s.waitClosed(ctx, wid, time.Minute); err != nil {
					r.violate("the stray run %s, told to end by reconcile --all: %v", wid, err)
					continue
				}
				res, err := s.orderResult(ctx, wid)
				switch {
				case err != nil:
					r.violate("the stray run %s did not complete: %v", wid, err)
				case res.Reason != workflows.ReasonForeignRun && res.Reason != workflows.ReasonUnknownOrder:
					r.violate("the stray run %s ended %+v, not %s or %s", wid, res, workflows.ReasonForeignRun, workflows.ReasonUnknownOrder)
				default:
					ended[res.Reason]++
				}
			}
			r.note("reconcile --all told %d runs left from the lost history to end: %d ended %s and %d %s",
				len(told), ended[workflows.ReasonForeignRun], workflows.ReasonForeignRun, ended[workflows.ReasonUnknownOrder], workflows.ReasonUnknownOrder)
			if _, strays, err := s.ownRuns(ctx, r.l.instruments); err != nil {
				r.violate("list the runs left from the lost history: %v", err)
			} else if len(strays) > 0 {
				r.violate("runs left from the lost history still running after reconcile --all: %v", strays)
			}
			const probe = "reconcile" // the requestedBy of the cancel reconcile --all sends
			var touched []int64
			rows, err := s.pool.Query(ctx, `SELECT DISTINCT order_id FROM order_events WHERE details->>'requestedBy' = $1`, probe)
			if err == nil {
				touched, err = pgx.CollectRows(rows, pgx.RowTo[int64])
			}
			if err != nil {
				r.violate("look for the strays' changes: %v", err)
			}
			for _, id := range touched {
				r.violate("order %d was changed by a stray run's cancel", id)
			}
		},
	}
}

// forgetRestored makes the load's record relative to the restored database: the
// acknowledged orders it does not have are gone by design if they were acknowledged
// after the snapshot (and lost otherwise), and the cancels it does not have (answered
// 202 after the snapshot) are forgotten with them.
func forgetRestored(ctx context.Context, r *run, snapAt time.Time) error {
	l := r.l
	acks := l.acksFrom(0)
	ids, users, keys := make([]int64, len(acks)), make([]int64, len(acks)), make([]string, len(acks))
	for i, a := range acks {
		ids[i], users[i], keys[i] = a.msg.OrderID, a.msg.UserID, a.key
	}
	rows, err := r.s.pool.Query(ctx, `SELECT a.id FROM unnest($1::bigint[], $2::bigint[], $3::text[]) AS a(id, user_id, key)
		JOIN orders o ON o.id = a.id AND o.user_id = a.user_id AND o.idempotency_key = a.key`, ids, users, keys)
	if err != nil {
		return err
	}
	kept, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	gone := map[int64]bool{}
	for _, a := range acks {
		switch {
		case slices.Contains(kept, a.msg.OrderID):
		case a.at.Before(snapAt):
			r.lose("order %d, acknowledged before the snapshot, is missing after the restore", a.msg.OrderID)
		default:
			gone[a.msg.OrderID] = true
		}
	}
	// A 202 survives the restore if the cancel did: the order has its request or ended.
	rows, err = r.s.pool.Query(ctx, `SELECT id FROM orders o WHERE id = ANY($1) AND (status = ANY($2)
		OR EXISTS (SELECT 1 FROM order_events e WHERE e.order_id = o.id AND e.event_type = 'CANCEL_REQUESTED'))`,
		l.cancelledIDs(), order.Names(order.TerminalStatuses()))
	if err != nil {
		return err
	}
	stands, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return err
	}
	l.mu.Lock()
	l.acks = slices.DeleteFunc(l.acks, func(a acked) bool { return gone[a.msg.OrderID] })
	takenBack := 0
	for id := range l.cancelled {
		if !slices.Contains(stands, id) {
			delete(l.cancelled, id)
			takenBack++
		}
	}
	for id := range gone {
		delete(l.ackedIDs, id)
		l.gone[id] = true
	}
	l.mu.Unlock()
	r.note("the restore took back %d acknowledged orders and %d accepted cancels, all from after the snapshot", len(gone), takenBack)
	return nil
}
