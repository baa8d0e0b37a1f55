package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"go.temporal.io/sdk/client"

	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
	"github.com/orderflow/orderflow/reconcile"
	"github.com/orderflow/orderflow/workflows"
)

const ordersUsage = "usage: orderflow orders stuck [--older-than 5m] | retry ID | fail ID --reason TEXT | reconcile [--since 24h | --all]"

// runOrders is `orderflow orders`: the on-call engineer's tools for orders whose
// execution stalled. It reads PostgreSQL and signals the orders' workflows directly, so
// it works when the API is down.
func runOrders(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(ordersUsage)
	}
	fs := flag.NewFlagSet("orders "+args[0], flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	olderThan := fs.Duration("older-than", cfg.StuckAfter, "list orders unchanged for longer than this")
	reason := fs.String("reason", "", "why the order is failed")
	since := fs.Duration("since", 24*time.Hour, "reconcile the orders whose runs closed unfinished this recently")
	all := fs.Bool("all", false, "reconcile every open order (after restoring the database)")
	// The order id comes first (`retry 42`), flags after it.
	rest := args[1:]
	var id int64
	if args[0] == "retry" || args[0] == "fail" {
		if len(rest) == 0 {
			return errors.New(ordersUsage)
		}
		var err error
		if id, err = strconv.ParseInt(rest[0], 10, 64); err != nil || id <= 0 {
			return fmt.Errorf("order id %q is not a positive integer", rest[0])
		}
		rest = rest[1:]
	}
	if err := fs.Parse(rest); err != nil {
		return fmt.Errorf("%v; %s", err, ordersUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; %s", fs.Arg(0), ordersUsage)
	}

	pool, err := openPool(ctx, cfg, "orderflow-orders")
	if err != nil {
		return err
	}
	defer pool.Close()
	q := queries.New(pool)
	switch args[0] {
	case "stuck":
		return listStuck(ctx, orderbook.New(pool, nil, orderbook.Config{}), cfg, *olderThan, stdout)
	case "reconcile":
		return reconcileOrders(ctx, cfg, orderbook.New(pool, nil, orderbook.Config{}), *since, *all, stdout)
	case "retry", "fail":
		if args[0] == "fail" && strings.TrimSpace(*reason) == "" {
			return errors.New("fail needs --reason saying why the order is failed")
		}
		o, err := q.GetOrder(ctx, id)
		if errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("order %d does not exist", id)
		}
		if err != nil {
			return fmt.Errorf("read order %d: %w", id, err)
		}
		if !o.NeedsAttention {
			return fmt.Errorf("order %d is %s and not parked: only an order whose execution stalled can be retried or failed", id, o.Status)
		}
		starter, tc, err := dialStarter(ctx, cfg)
		if err != nil {
			return err
		}
		defer tc.Close()
		// The CLI waits as long as it takes: an operator at a terminal wants the outcome.
		const wait = time.Minute
		var applied bool
		what := "retry applied; the workflow resumed at " + o.StalledStep
		if args[0] == "retry" {
			applied, err = starter.Retry(ctx, id, o.RunKey, "operator:cli", wait)
		} else {
			applied, err = starter.Fail(ctx, id, o.RunKey, strings.TrimSpace(*reason), "operator:cli", wait)
			what = "failed by the operator"
		}
		if err != nil {
			return err
		}
		if !applied {
			what = args[0] + " accepted; the workflow is still applying it (see `orderflow orders stuck`)"
		}
		_, err = fmt.Fprintf(stdout, "order %d: %s\n", id, what)
		return err
	}
	return fmt.Errorf("unknown orders command %q; %s", args[0], ordersUsage)
}

func dialStarter(ctx context.Context, cfg Config) (*workflows.Starter, client.Client, error) {
	opts := cfg.temporalOptions()
	c, err := client.DialContext(ctx, opts)
	if err != nil {
		return nil, nil, fmt.Errorf("temporal at %s: %w", opts.HostPort, err)
	}
	return workflows.NewStarter(c, cfg.Retry), c, nil
}

// listStuck prints parked orders and orders that are neither terminal nor resting and
// have not changed for longer than olderThan, with their last error and UI link.
func listStuck(ctx context.Context, book *orderbook.Service, cfg Config, olderThan time.Duration, stdout io.Writer) error {
	rows, err := book.Stuck(ctx, olderThan, 1000)
	if err != nil {
		return err
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintf(stdout, "no stuck orders (none parked, none unchanged for more than %s)\n", olderThan)
		return err
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ORDER\tSTATUS\tPARKED\tSTEP\tUNCHANGED FOR\tLAST ERROR\tWORKFLOW")
	for _, o := range rows {
		parked := "no"
		if o.NeedsAttention {
			parked = "yes"
		}
		link := workflows.OrderWorkflowID(o.ID, o.RunKey)
		if cfg.TemporalUIURL != "" {
			link = cfg.TemporalUIURL + "/namespaces/" + cfg.TemporalNamespace + "/workflows/" + link
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", o.ID, o.Status, parked, dash(o.StalledStep),
			time.Since(o.UpdatedAt).Round(time.Second), dash(oneLine(o.LastError, 80)), link)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = stdout.Write(b.Bytes())
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// oneLine keeps a table row on one line.
func oneLine(s string, max int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len([]rune(s)) > max {
		return string([]rune(s)[:max-1]) + "…"
	}
	return s
}

// reconcileOrders is `orderflow orders reconcile`: one pass of the worker's reconciler
// now, over the runs closed unfinished in the last since, or over every open order.
func reconcileOrders(ctx context.Context, cfg Config, book *orderbook.Service, since time.Duration, all bool, stdout io.Writer) error {
	starter, tc, err := dialStarter(ctx, cfg)
	if err != nil {
		return err
	}
	defer tc.Close()
	r := reconcile.New(tc, starter, book, nil)
	var rep reconcile.Report
	if all {
		rep, err = r.All(ctx)
	} else {
		rep, err = r.Closed(ctx, time.Now().Add(-since))
	}
	for _, x := range rep.Restarted {
		what := "started a new run"
		if x.Cancelled {
			what = "its run was cancelled without cancelling it; started a run that cancels it"
		}
		fmt.Fprintf(stdout, "order %d (%s): %s %s\n", x.OrderID, x.Status, what, x.WorkflowID)
	}
	if err != nil {
		return err
	}
	for _, wid := range rep.Strays {
		fmt.Fprintf(stdout, "run %s: no order's (left from before a restore); told to end\n", wid)
	}
	if _, err := fmt.Fprintf(stdout, "reconciled: %d open orders checked, %d given a new run\n", rep.Checked, len(rep.Restarted)); err != nil {
		return err
	}
	if len(rep.Failed) > 0 {
		return fmt.Errorf("%d orders could not be given a run (%v); see the log, and run the command again", len(rep.Failed), rep.Failed)
	}
	return nil
}
