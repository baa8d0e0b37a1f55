package chaos_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/twmb/franz-go/pkg/kadm"
	enumspb "go.temporal.io/api/enums/v1"
	"go.temporal.io/api/workflowservice/v1"

	"github.com/orderflow/orderflow/kafka"
	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/workflows"
)

// unsettledSQL selects the orders among $1's instruments that are still on their way:
// not terminal and not resting on the book, or parked for an operator.
const unsettledSQL = `
	SELECT id, status, needs_attention, last_error FROM orders
	WHERE instrument_id = ANY($1)
	  AND (status IN ('CREATED', 'VALIDATED', 'SENT_TO_EXECUTOR') OR needs_attention)
	ORDER BY id`

// drain waits until the scenario's orders have settled: the outbox is empty, the
// executor group has consumed everything on order-execution, no order on the
// instruments is still on its way, and every cancel answered 202 has been applied (the
// order is terminal). It returns how long that took and, at the deadline, what is left.
func (s *system) drain(ctx context.Context, l *load, timeout time.Duration) (time.Duration, error) {
	started := time.Now()
	var last string
	err := waitUntil(ctx, timeout, "drain", func() (bool, error) {
		var outbox int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM outbox`).Scan(&outbox); err != nil {
			last = "database: " + err.Error()
			return false, nil
		}
		if outbox > 0 {
			last = fmt.Sprintf("%d outbox rows not yet published", outbox)
			return false, nil
		}
		if lag, err := s.consumerLag(ctx); err != nil || lag > 0 {
			last = fmt.Sprintf("consumer lag %d (%v)", lag, err)
			return false, nil
		}
		var unsettled int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM (`+unsettledSQL+`) u`, l.instruments).Scan(&unsettled); err != nil {
			last = "database: " + err.Error()
			return false, nil
		}
		if unsettled > 0 {
			last = fmt.Sprintf("%d orders not yet settled", unsettled)
			return false, nil
		}
		var pendingCancels int
		if err := s.pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE id = ANY($1)
			AND status NOT IN ('EXECUTED', 'REJECTED', 'CANCELLED', 'PARTIALLY_CANCELLED', 'FAILED')`,
			l.cancelledIDs()).Scan(&pendingCancels); err != nil {
			last = "database: " + err.Error()
			return false, nil
		}
		if pendingCancels > 0 {
			last = fmt.Sprintf("%d accepted cancels not yet applied", pendingCancels)
			return false, nil
		}
		return true, nil
	})
	if err != nil {
		return time.Since(started), fmt.Errorf("%w; last seen: %s", err, last)
	}
	return time.Since(started), nil
}

// consumerLag is how many order-execution records the executor group has not committed.
func (s *system) consumerLag(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	ends, err := s.adm.ListEndOffsets(ctx, kafka.TopicOrderExecution)
	if err != nil {
		return 0, err
	}
	committed, err := s.adm.FetchOffsets(ctx, kafka.ConsumerGroup)
	if err != nil {
		return 0, err
	}
	var lag int64
	ends.Each(func(o kadm.ListedOffset) {
		at := int64(0)
		if c, ok := committed.Lookup(o.Topic, o.Partition); ok {
			at = c.At
		}
		lag += max(o.Offset-at, 0)
	})
	return lag, nil
}

// findings is what the checks found about one scenario.
type findings struct {
	lost       []string // acknowledged orders that are missing or never started
	duplicates []string // orders executed more than once
	violations []string // every other broken invariant
}

// check runs the invariants over the scenario's orders (every order on its instruments,
// acknowledged or not) and the auditor over the whole system.
func (s *system) check(ctx context.Context, l *load) findings {
	var f findings
	acks := l.acksFrom(0)
	ids := make([]int64, len(acks))
	for i, a := range acks {
		ids[i] = a.msg.OrderID
	}
	rows := func(dst *[]string, name, query string, args ...any) {
		r, err := s.pool.Query(ctx, query, args...)
		if err != nil {
			f.violations = append(f.violations, fmt.Sprintf("%s: query: %v", name, err))
			return
		}
		defer r.Close()
		for r.Next() {
			vals, err := r.Values()
			if err != nil {
				f.violations = append(f.violations, fmt.Sprintf("%s: %v", name, err))
				return
			}
			*dst = append(*dst, fmt.Sprintf("%s: %v", name, vals))
		}
		if err := r.Err(); err != nil {
			f.violations = append(f.violations, fmt.Sprintf("%s: %v", name, err))
		}
	}

	// Lost: acknowledged, yet not stored, or stored but never started by a run.
	rows(&f.lost, "acknowledged order missing", `
		SELECT id FROM unnest($1::bigint[]) AS a(id)
		WHERE NOT EXISTS (SELECT 1 FROM orders o WHERE o.id = a.id)`, ids)
	rows(&f.lost, "acknowledged order never left CREATED", `
		SELECT id FROM orders WHERE id = ANY($1) AND status = 'CREATED'`, ids)

	// Executed twice: more than one EXECUTING step, fills that do not add up to the
	// trades, or one pair of orders trading twice (an incoming order meets a resting one
	// once at most).
	rows(&f.duplicates, "order entered EXECUTING more than once", `
		SELECT e.order_id, count(*) FROM order_events e JOIN orders o ON o.id = e.order_id
		WHERE o.instrument_id = ANY($1) AND e.event_type = 'EXECUTING'
		GROUP BY e.order_id HAVING count(*) > 1`, l.instruments)
	rows(&f.duplicates, "filled quantity differs from the sum of its trades", `
		SELECT o.id, o.quantity - o.remaining_quantity AS filled, coalesce(sum(t.quantity), 0)::bigint AS traded
		FROM orders o LEFT JOIN trades t ON t.buy_order_id = o.id OR t.sell_order_id = o.id
		WHERE o.instrument_id = ANY($1)
		GROUP BY o.id HAVING o.quantity - o.remaining_quantity <> coalesce(sum(t.quantity), 0)`, l.instruments)
	rows(&f.duplicates, "two orders traded with each other more than once", `
		SELECT buy_order_id, sell_order_id, count(*) FROM trades WHERE instrument_id = ANY($1)
		GROUP BY buy_order_id, sell_order_id HAVING count(*) > 1`, l.instruments)

	// Everything else.
	rows(&f.violations, "order not settled (on its way or parked)", unsettledSQL, l.instruments)
	rows(&f.violations, "cancel answered 202 but never applied", `
		SELECT id, status FROM orders WHERE id = ANY($1)
		AND status NOT IN ('EXECUTED', 'REJECTED', 'CANCELLED', 'PARTIALLY_CANCELLED', 'FAILED')`, l.cancelledIDs())
	rows(&f.violations, "timeline does not end at the order's status, or has gaps", `
		SELECT o.id, o.status, max(e.seq), count(e.*),
		       (SELECT to_status FROM order_events WHERE order_id = o.id ORDER BY seq DESC LIMIT 1)
		FROM orders o JOIN order_events e ON e.order_id = o.id
		WHERE o.instrument_id = ANY($1)
		GROUP BY o.id
		HAVING max(e.seq) <> count(e.*)
		    OR (SELECT to_status FROM order_events WHERE order_id = o.id ORDER BY seq DESC LIMIT 1) <> o.status`, l.instruments)
	rows(&f.violations, "crossed book (best bid at or above best ask)", `
		SELECT b.instrument_id, b.bid, a.ask FROM
		  (SELECT instrument_id, max(price) AS bid FROM orders WHERE instrument_id = ANY($1) AND side = 'BUY'
		     AND kind = 'LIMIT' AND status IN ('EXECUTING', 'PARTIALLY_FILLED') AND remaining_quantity > 0 GROUP BY instrument_id) b
		JOIN
		  (SELECT instrument_id, min(price) AS ask FROM orders WHERE instrument_id = ANY($1) AND side = 'SELL'
		     AND kind = 'LIMIT' AND status IN ('EXECUTING', 'PARTIALLY_FILLED') AND remaining_quantity > 0 GROUP BY instrument_id) a
		ON a.instrument_id = b.instrument_id WHERE b.bid >= a.ask`, l.instruments)
	rows(&f.violations, "MARKET, IOC or FOK order left resting", `
		SELECT id, kind, time_in_force, status FROM orders WHERE instrument_id = ANY($1)
		AND status IN ('EXECUTING', 'PARTIALLY_FILLED') AND (kind = 'MARKET' OR time_in_force IN ('IOC', 'FOK'))`, l.instruments)
	// An expiring order's run has a timer for its expiry, which faults must not lose.
	rows(&f.violations, "GTD or DAY order resting a minute past its expiry", `
		SELECT id, time_in_force, status, expire_at FROM orders WHERE instrument_id = ANY($1)
		AND status IN ('EXECUTING', 'PARTIALLY_FILLED') AND expire_at < now() - interval '1 minute'`, l.instruments)

	// A resting order needs a live run to receive its fills and cancels.
	resting, err := s.resting(ctx, l.instruments)
	if err != nil {
		f.violations = append(f.violations, "list resting orders: "+err.Error())
	}
	for _, o := range resting {
		if err := s.liveRun(ctx, o.wid); err != nil && s.stillOpen(ctx, o.id) {
			f.violations = append(f.violations, fmt.Sprintf("resting order %d: %v", o.id, err))
		}
	}

	// A terminal order's run must end: one still waiting was never told of the fill or
	// cancel that ended it.
	orphans, err := s.orphanRuns(ctx, l.instruments)
	if err != nil {
		f.violations = append(f.violations, "list live runs: "+err.Error())
	}
	f.violations = append(f.violations, orphans...)

	f.violations = append(f.violations, l.violationList()...)
	for _, p := range s.processes() {
		f.violations = append(f.violations, p.surprises()...)
	}
	return f
}

// liveRun returns an error unless the order's run is running. The server may be slow
// to answer on a loaded machine, so a failed call is retried a few times.
func (s *system) liveRun(ctx context.Context, wid string) error {
	var err error
	for range 3 {
		dctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		d, derr := s.tc.DescribeWorkflowExecution(dctx, wid, "")
		cancel()
		if derr != nil {
			err = fmt.Errorf("describe its run: %w", derr)
			continue
		}
		if st := d.GetWorkflowExecutionInfo().GetStatus(); st != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING {
			return fmt.Errorf("no live run (its run is %s)", st)
		}
		return nil
	}
	return err
}

// orphanRuns returns the terminal orders on instruments whose run is still running,
// once the runs have had three minutes to hear of the fills and cancels that ended them.
// After a kill -9 the dead worker's long polls linger at the server for up to a minute
// and a workflow task handed to one of them waits that long (seen: 57 s), so a minute
// is not enough to tell a late run from an orphaned one.
func (s *system) orphanRuns(ctx context.Context, instruments []int64) ([]string, error) {
	var terms []string
	for _, id := range instruments {
		terms = append(terms, fmt.Sprintf("InstrumentId = %d", id))
	}
	query := fmt.Sprintf("ExecutionStatus = 'Running' AND (%s)", strings.Join(terms, " OR "))
	var found []string
	err := waitUntil(ctx, 3*time.Minute, "the runs of terminal orders to end", func() (bool, error) {
		found = nil
		var ids []int64
		var keys []string
		var token []byte
		for {
			lctx, cancel := context.WithTimeout(ctx, 20*time.Second)
			resp, err := s.tc.ListWorkflow(lctx, &workflowservice.ListWorkflowExecutionsRequest{Query: query, NextPageToken: token})
			cancel()
			if err != nil {
				return false, nil // a slow server: ask again
			}
			for _, e := range resp.GetExecutions() {
				if id, key, ok := order.ParseWorkflowID(e.GetExecution().GetWorkflowId()); ok {
					ids, keys = append(ids, id), append(keys, key)
				}
			}
			if token = resp.GetNextPageToken(); len(token) == 0 {
				break
			}
		}
		// A live run is an orphan only if it is its order's: one whose key is not the
		// order's is a stray, and ends at its next step.
		rows, err := s.pool.Query(ctx, `SELECT o.id, o.run_key, o.status FROM orders o
			JOIN unnest($1::bigint[], $2::text[]) AS r(id, run_key) ON r.id = o.id AND r.run_key = o.run_key
			WHERE o.status = ANY($3) ORDER BY o.id`, ids, keys, order.Names(order.TerminalStatuses()))
		if err != nil {
			return false, nil
		}
		type terminal struct {
			id          int64
			key, status string
		}
		done, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (terminal, error) {
			var o terminal
			return o, r.Scan(&o.id, &o.key, &o.status)
		})
		if err != nil {
			return false, nil
		}
		for _, o := range done {
			// Visibility lags a little behind; ask the run itself.
			if wid := workflows.OrderWorkflowID(o.id, o.key); s.liveRun(ctx, wid) == nil {
				found = append(found, fmt.Sprintf("order %d is %s but its run %s is still running", o.id, o.status, wid))
			}
		}
		return len(found) == 0, nil
	})
	if err != nil && len(found) == 0 {
		return nil, err
	}
	return found, nil
}

// resting returns the orders resting on the instruments' books.
func (s *system) resting(ctx context.Context, instruments []int64) ([]orderRun, error) {
	rows, err := s.pool.Query(ctx, `SELECT id, run_key FROM orders WHERE instrument_id = ANY($1)
		AND status IN ('EXECUTING', 'PARTIALLY_FILLED') ORDER BY id`, instruments)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (orderRun, error) {
		var o orderRun
		var key string
		err := r.Scan(&o.id, &key)
		o.wid = workflows.OrderWorkflowID(o.id, key)
		return o, err
	})
}

// stillOpen reports whether order id is still open (or cannot be read): an order seen
// resting whose run has ended since may have ended with it meanwhile (a GTD order's
// expiry, a fill), which is no violation.
func (s *system) stillOpen(ctx context.Context, id int64) bool {
	var status string
	if err := s.pool.QueryRow(ctx, `SELECT status FROM orders WHERE id = $1`, id).Scan(&status); err != nil {
		return true
	}
	return !order.Status(status).Terminal()
}

// orderRun is an order and its workflow id.
type orderRun struct {
	id  int64
	wid string
}

// processes returns every orderflow process the system has described.
func (s *system) processes() []*process {
	return append(append([]*process{s.broker}, s.apis...), s.workers...)
}

// auditReport is the result of one `orderflow audit --json` run.
type auditReport struct {
	available  bool // false while `orderflow audit` is not implemented
	violations int
	output     string
	summary    string // what it audited, when its report says
}

// audit runs `orderflow audit --json` over the whole system: it exits non-zero when it
// finds a violation, and its JSON report lists them.
func (s *system) audit(ctx context.Context) auditReport {
	out, errOut, err := s.command(ctx, "audit", "--json")
	r := auditReport{available: true, output: strings.TrimSpace(string(out) + "\n" + string(errOut))}
	if strings.Contains(string(errOut), "not implemented yet") {
		return auditReport{output: strings.TrimSpace(string(errOut))}
	}
	var sum struct {
		Orders     int     `json:"orders"`
		Trades     int     `json:"trades"`
		DurationMs float64 `json:"durationMs"`
	}
	if json.Unmarshal(out, &sum) == nil {
		r.summary = fmt.Sprintf("audited %d orders and %d trades in %.0f ms", sum.Orders, sum.Trades, sum.DurationMs)
	}
	var exit *exec.ExitError
	switch {
	case err == nil:
		return r
	case !errors.As(err, &exit):
		r.violations = 1
		r.output = fmt.Sprintf("could not run the auditor: %v\n%s", err, r.output)
		return r
	}
	r.violations = countViolations(out)
	return r
}

// countViolations reads a violation count out of the auditor's JSON: a "violations"
// list or number, or a top-level list; at least 1, since the auditor failed.
func countViolations(out []byte) int {
	var obj map[string]json.RawMessage
	if json.Unmarshal(out, &obj) == nil {
		if raw, ok := obj["violations"]; ok {
			var list []json.RawMessage
			if json.Unmarshal(raw, &list) == nil && len(list) > 0 {
				return len(list)
			}
			var n int
			if json.Unmarshal(raw, &n) == nil && n > 0 {
				return n
			}
		}
	}
	var list []json.RawMessage
	if json.Unmarshal(out, &list) == nil && len(list) > 0 {
		return len(list)
	}
	return 1
}
