package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"text/tabwriter"

	"go.temporal.io/sdk/client"
	tlog "go.temporal.io/sdk/log"

	"github.com/orderflow/orderflow/audit"
)

const auditUsage = "usage: orderflow audit [--json] [--grace 30s] [--order-ids 1,2,3]"

// runAudit is `orderflow audit`: it checks every invariant over PostgreSQL and the order
// runs Temporal knows (see package audit), prints each violation or a one-line summary,
// and fails when it found any, so that scripts and CI can gate on it.
func runAudit(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	grace := fs.Duration("grace", audit.DefaultGrace, "how long a placed order may be without a run")
	ids := fs.String("order-ids", "", "audit only these orders (comma-separated ids)")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("%v; %s", err, auditUsage)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q; %s", fs.Arg(0), auditUsage)
	}
	if *grace < 0 {
		return fmt.Errorf("--grace must be 0 or more; %s", auditUsage)
	}
	opts := audit.Options{Grace: *grace}
	if *grace == 0 {
		opts.Grace = -1 // the flag's 0 means none; Options' zero means the default
	}
	if *ids != "" {
		for _, s := range strings.Split(*ids, ",") {
			id, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
			if err != nil || id <= 0 {
				return fmt.Errorf("--order-ids: %q is not a positive integer; %s", s, auditUsage)
			}
			opts.OrderIDs = append(opts.OrderIDs, id)
		}
	}

	pool, err := openPool(ctx, cfg, "orderflow-audit")
	if err != nil {
		return err
	}
	defer pool.Close()
	// The SDK's default logger writes to stdout, which is the report's.
	topts := cfg.temporalOptions()
	addr := topts.HostPort
	topts.Logger = tlog.NewStructuredLogger(slog.New(slog.DiscardHandler))
	tc, err := client.DialContext(ctx, topts)
	if err != nil {
		return fmt.Errorf("temporal at %s: %w", addr, err)
	}
	defer tc.Close()
	runs := audit.NewTemporalRuns(tc, cfg.TemporalNamespace)
	if opts.Retention, err = runs.Retention(ctx); err != nil {
		return err
	}

	rep, err := audit.Run(ctx, pool, runs, opts)
	if err != nil {
		return err
	}
	if err := printReport(stdout, rep, *asJSON); err != nil {
		return err
	}
	if n := len(rep.Violations); n > 0 {
		return fmt.Errorf("audit found %s", plural(n, "violation"))
	}
	return nil
}

// printReport writes rep as JSON, or as one line per violation followed by a summary.
func printReport(w io.Writer, rep audit.Report, asJSON bool) error {
	ms := float64(rep.Duration.Microseconds()) / 1000
	if asJSON {
		b, err := json.Marshal(struct {
			audit.Report
			DurationMs float64 `json:"durationMs"`
		}{rep, ms})
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", b)
		return err
	}
	var b bytes.Buffer
	if len(rep.Violations) > 0 {
		tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "CHECK\tORDER\tDETAIL")
		for _, v := range rep.Violations {
			order := "-"
			if v.OrderID != 0 {
				order = strconv.FormatInt(v.OrderID, 10)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Check, order, v.Detail)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	outcome := "no violations"
	if n := len(rep.Violations); n > 0 {
		outcome = plural(n, "violation")
	}
	fmt.Fprintf(&b, "audited %s, %s in %s ms: %s\n",
		plural(rep.Orders, "order"), plural(rep.Trades, "trade"), strconv.FormatFloat(ms, 'f', 1, 64), outcome)
	_, err := w.Write(b.Bytes())
	return err
}

func plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
