package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/audit"
)

// auditSettled audits the orders opts selects, again and again until the audit comes
// out clean or timeout passes, and returns the last report. Temporal's visibility is
// eventually consistent, and orders a test did not wait for may still be moving: what a
// short wait does not resolve is a real violation.
func (s *stack) auditSettled(ctx context.Context, opts audit.Options, timeout time.Duration) (audit.Report, error) {
	deadline := time.Now().Add(timeout)
	for {
		rep, err := audit.Run(ctx, s.pool, audit.NewTemporalRuns(s.temporal, "default"), opts)
		if err != nil || len(rep.Violations) == 0 || time.Now().After(deadline) {
			return rep, err
		}
		time.Sleep(250 * time.Millisecond)
	}
}

// auditAfterTests audits the whole shared database and Temporal once every test has
// finished, so that every end-to-end test is audited, whatever it checks itself. No order
// is spared for being young: nothing is being placed any more.
func auditAfterTests(ctx context.Context, s *stack, stdout io.Writer) error {
	rep, err := s.auditSettled(ctx, audit.Options{Grace: -1}, 30*time.Second)
	if err != nil {
		return fmt.Errorf("audit after the tests: %w", err)
	}
	var b bytes.Buffer
	if err := printReport(&b, rep, false); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "audit after the tests: %s", b.String())
	if len(rep.Violations) > 0 {
		return fmt.Errorf("audit after the tests found %s", plural(len(rep.Violations), "violation"))
	}
	return nil
}

// auditCommand runs `orderflow audit args…` against env and returns its output and error.
func auditCommand(env map[string]string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, append([]string{"audit"}, args...), func(k string) string { return env[k] }, &out)
	return out.String(), err
}

var auditSummary = regexp.MustCompile(`^audited (\d+) orders?, (\d+) trades? in [0-9.]+ ms: no violations\n$`)

// While other tests place, fill and cancel orders on the same stack, the whole database
// must audit clean at any moment: in-flight orders have live runs, or are young enough
// that their run may still be starting.
func TestAuditOfTheRunningSystemFindsNoViolations(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	sell := s.mustPlace(t, limit(1, inst, "SELL", "20", 10))
	s.waitStatus(t, sell, "EXECUTING")
	buy := s.mustPlace(t, market(2, inst, "BUY", 4))
	s.waitStatus(t, buy, "EXECUTED")
	s.waitStatus(t, sell, "PARTIALLY_FILLED")
	resting := s.mustPlace(t, limit(3, inst, "BUY", "19", 2))
	s.waitStatus(t, resting, "EXECUTING")
	cancelled := s.mustPlace(t, limit(3, inst, "BUY", "18", 2))
	s.waitStatus(t, cancelled, "EXECUTING")
	// Applied (200) or still on its way to the run (202): the audit must pass either way.
	if code, _ := s.cancel(t, cancelled); code != http.StatusOK && code != http.StatusAccepted {
		t.Fatalf("cancel answered %d", code)
	}

	// A generous grace: on a loaded machine the burst test's messages can wait in Kafka
	// for longer than the default 30s before their runs start.
	out, err := auditCommand(s.env, "--grace", "2m")
	if err != nil {
		t.Fatalf("orderflow audit: %v\n%s", err, out)
	}
	if m := auditSummary.FindStringSubmatch(out); m == nil {
		t.Errorf("orderflow audit printed %q, want one summary line ending in no violations", out)
	} else if n, _ := strconv.Atoi(m[1]); n < 4 {
		t.Errorf("orderflow audit audited %d orders, want at least this test's 4", n)
	}

	ids := fmt.Sprintf("%d,%d,%d,%d", sell, buy, resting, cancelled)
	out, err = auditCommand(s.env, "--json", "--order-ids", ids)
	if err != nil {
		t.Fatalf("orderflow audit --json --order-ids %s: %v\n%s", ids, err, out)
	}
	var rep struct {
		Orders     int               `json:"orders"`
		Trades     int               `json:"trades"`
		DurationMs *float64          `json:"durationMs"`
		Violations []audit.Violation `json:"violations"`
	}
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("orderflow audit --json printed %q: %v", out, err)
	}
	if rep.Orders != 4 || rep.Trades != 1 || rep.DurationMs == nil || rep.Violations == nil || len(rep.Violations) > 0 {
		t.Errorf("orderflow audit --json = %s, want 4 orders, 1 trade, a duration and an empty list of violations", out)
	}
}

// A database of its own on the stack's cluster, corrupted by hand, so that the shared
// one stays clean: the command lists each violation and fails.
func TestAuditOfACorruptDatabaseListsEachViolationAndFails(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	ctx := context.Background()
	name := "audit_" + strings.ToLower(rand.Text()[:12])
	if _, err := s.pool.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	u, err := url.Parse(s.dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/" + name
	env := map[string]string{"DATABASE_URL": u.String(), "TEMPORAL_ADDRESS": s.env["TEMPORAL_ADDRESS"]}
	if err := run(ctx, []string{"migrate"}, func(k string) string { return env[k] }, io.Discard); err != nil {
		t.Fatal(err)
	}
	db, err := pgx.Connect(ctx, env["DATABASE_URL"])
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close(ctx)
	// An order that claims to be EXECUTED without a trade, whose timeline stops at
	// CREATED. Placed just now, so the default grace spares it the runs check (the
	// stack's Temporal has runs for other databases' orders of the same ids).
	var id int64
	err = db.QueryRow(ctx, `
		WITH o AS (
		    INSERT INTO orders (user_id, instrument_id, side, kind, price, quantity, remaining_quantity,
		                        status, time_in_force, idempotency_key, request_hash)
		    VALUES (1, 101, 'BUY', 'LIMIT', 10, 5, 0, 'EXECUTED', 'GTC', 'k', 'h') RETURNING id),
		e AS (INSERT INTO order_events (order_id, seq, event_type, to_status) SELECT id, 1, 'ORDER_PLACED', 'CREATED' FROM o)
		SELECT id FROM o`).Scan(&id)
	if err != nil {
		t.Fatal(err)
	}

	out, err := auditCommand(env)
	if err == nil || err.Error() != "audit found 2 violations" {
		t.Errorf("orderflow audit = %v, want error %q", err, "audit found 2 violations")
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^CHECK +ORDER +DETAIL$`),
		regexp.MustCompile(fmt.Sprintf(`^timeline +%d +the last event \(ORDER_PLACED at seq 1\) leaves the order CREATED, but the order is EXECUTED$`, id)),
		regexp.MustCompile(fmt.Sprintf(`^fills +%d +quantity 5 − remaining 0 = 5 filled, but its 0 trade\(s\) add up to 0$`, id)),
		regexp.MustCompile(`^audited 1 order, 0 trades in [0-9.]+ ms: 2 violations$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("orderflow audit printed:\n%s\nwant %d lines", out, len(want))
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d = %q, want it to match %s", i, lines[i], re)
		}
	}
}

func TestAuditRejectsBadArguments(t *testing.T) {
	t.Parallel()
	// No database answers here: each mistake must be reported before connecting.
	env := map[string]string{"DATABASE_URL": "postgres://nobody@127.0.0.1:1/none"}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--yaml"}, "flag provided but not defined: -yaml"},
		{[]string{"extra"}, `unexpected argument "extra"`},
		{[]string{"--grace", "-1s"}, "--grace must be 0 or more"},
		{[]string{"--grace", "soon"}, `invalid value "soon" for flag -grace`},
		{[]string{"--order-ids", "1,x"}, `--order-ids: "x" is not a positive integer`},
		{[]string{"--order-ids", "0"}, `--order-ids: "0" is not a positive integer`},
	} {
		out, err := auditCommand(env, tc.args...)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || !strings.HasSuffix(err.Error(), auditUsage) {
			t.Errorf("audit %v = %v, want an error starting %q and ending with the usage", tc.args, err, tc.want)
		}
		if out != "" {
			t.Errorf("audit %v printed %q, want nothing", tc.args, out)
		}
	}
}
