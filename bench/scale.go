package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// Targets of the read paths on a database of a million orders (issue 10).
const (
	TargetDefaultPageP99Ms = 50.0 // GET /api/v1/orders, the first page with its totalElements
	TargetUserFilterP99Ms  = 10.0 // GET /api/v1/orders?userId=U
	TargetEventsP99Ms      = 5.0  // GET /api/v1/orders/{id}/events
)

// SortFields are the names the original backend's entity had, which its web client
// sends as ?sort=field,dir.
var SortFields = []string{
	"orderId", "orderType", "orderKind", "userId", "instrumentId", "price", "quantity",
	"remainingQuantity", "orderStatus", "createdAt", "updatedAt",
}

// scaleWarmup is how many untimed requests of each endpoint go before its timed ones
// (one per sort variant), so that a cold connection or plan cache is not measured.
const scaleWarmup = 20

// ScaleOptions configure a scale run: the seed, then the reads measured against the API.
type ScaleOptions struct {
	APIURL      string
	DatabaseURL string
	Seed        SeedOptions
	// Requests is how many timed requests each endpoint gets; SortRequests how many
	// each sort field and direction gets (0: sorts not measured).
	Requests     int
	SortRequests int
	// Progress receives a line per seeded chunk and per endpoint; nil discards them.
	Progress io.Writer
}

// EndpointLatency is the latency of the 200 answers of one endpoint, and the other
// answers by status ("transport" for no answer).
type EndpointLatency struct {
	Name string `json:"name"`
	Summary
	Errors map[string]int `json:"errors_by_status"`
}

// errorCount is how many requests did not answer 200.
func (e EndpointLatency) errorCount() int {
	n := 0
	for _, c := range e.Errors {
		n += c
	}
	return n
}

// ScaleReport is what a scale run found. Its JSON form is one object with stable names.
type ScaleReport struct {
	Mode         string  `json:"mode"` // "scale"
	Orders       int     `json:"orders"`
	Users        int     `json:"users"`
	SeedExisting int     `json:"seed_existing"` // seeded orders found from an earlier run
	SeedInserted int     `json:"seed_inserted"` // seeded orders this run wrote
	SeedS        float64 `json:"seed_s"`
	// TotalElements is the default page's totalElements: every order in the database.
	TotalElements int64             `json:"total_elements"`
	Requests      int               `json:"requests"`
	SortRequests  int               `json:"sort_requests"`
	DefaultPage   EndpointLatency   `json:"default_page"`
	UserFilter    EndpointLatency   `json:"user_filter"`
	Events        EndpointLatency   `json:"events"`
	Sorts         []EndpointLatency `json:"sorts"`
	SortErrors    int               `json:"sort_errors"` // non-200 answers over every sort variant
	Targets       map[string]bool   `json:"targets_met"`
	Notes         []string          `json:"notes,omitempty"`
}

// Scale seeds the database to opts.Seed.Orders orders (see Seed) and measures the read
// paths that a database of that size makes slow, one request at a time so that the
// latency is the system's and not a queue's: the default page of the order list, a
// random user's orders, a random seeded order's events, and the list sorted by each of
// SortFields both ways. A non-200 answer counts as an error of its endpoint, not a
// failure of the run.
func Scale(ctx context.Context, opts ScaleOptions) (*ScaleReport, error) {
	if opts.Progress == nil {
		opts.Progress = io.Discard
	}
	out := &lineWriter{w: opts.Progress}
	base := strings.TrimRight(opts.APIURL, "/")
	hc := &http.Client{Timeout: 30 * time.Second}
	defer hc.CloseIdleConnections()
	if err := (&runner{opts: Options{APIURL: base}, http: hc}).checkAPI(ctx); err != nil {
		return nil, err
	}
	pcfg, err := pgxpool.ParseConfig(opts.DatabaseURL)
	if err != nil {
		return nil, fmt.Errorf("bench: database URL: %w", err)
	}
	pcfg.MaxConns = 2
	pool, err := pgxpool.NewWithConfig(ctx, pcfg)
	if err != nil {
		return nil, fmt.Errorf("bench: database: %w", err)
	}
	defer pool.Close()

	rep := &ScaleReport{Mode: ModeScale, Orders: opts.Seed.Orders, Users: opts.Seed.Users,
		Requests: opts.Requests, SortRequests: opts.SortRequests}
	seed := opts.Seed
	seed.Progress = func(done, total int, took time.Duration) {
		out.printf("seed: %d of %d orders (%.0f%%), last chunk %.1f s", done, total, 100*float64(done)/float64(total), took.Seconds())
	}
	out.printf("seed: %d orders over %d users, %d per transaction…", seed.Orders, seed.Users, seed.Chunk)
	res, err := Seed(ctx, pool, seed)
	if err != nil {
		return nil, err
	}
	rep.SeedExisting, rep.SeedInserted, rep.SeedS = res.Existing, res.Inserted, round2(res.Took.Seconds())
	if res.Inserted == 0 {
		out.printf("seed: the %d orders are already there (an earlier run's); nothing written", res.Existing)
	} else {
		out.printf("seed: wrote %d orders, %d trades and %d events in %.1f s", res.Inserted, res.Trades, res.Events, res.Took.Seconds())
	}

	ids, err := sampleSeeded(ctx, pool, opts.Requests+scaleWarmup)
	if err != nil {
		return nil, err
	}
	creds := newCredentials(pool)
	defer func() {
		if err := creds.revoke(); err != nil {
			out.printf("%v", err)
		}
	}()
	m := &reads{http: hc, base: base, out: out, creds: creds, rng: rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 10))}
	rep.DefaultPage, rep.TotalElements, err = m.defaultPage(ctx, opts.Requests)
	if err != nil {
		return nil, err
	}
	rep.UserFilter = m.measure(ctx, "GET /api/v1/orders?userId=U", opts.Requests, scaleWarmup, func(int) string {
		return "/api/v1/orders?userId=" + strconv.Itoa(1+m.rng.IntN(opts.Seed.Users))
	})
	rep.Events = m.measure(ctx, "GET /api/v1/orders/{id}/events", opts.Requests, scaleWarmup, func(i int) string {
		return fmt.Sprintf("/api/v1/orders/%d/events", ids[i%len(ids)])
	})
	if opts.SortRequests > 0 {
		for _, f := range SortFields {
			for _, dir := range []string{"asc", "desc"} {
				path := "/api/v1/orders?sort=" + f + "," + dir
				e := m.measure(ctx, "GET "+path, opts.SortRequests, 1, func(int) string { return path })
				rep.Sorts = append(rep.Sorts, e)
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("bench: interrupted: %w", context.Cause(ctx))
	}
	rep.finish()
	return rep, nil
}

// sampleSeeded returns up to n seeded order ids, at random.
func sampleSeeded(ctx context.Context, pool *pgxpool.Pool, n int) ([]int64, error) {
	rows, err := pool.Query(ctx, `SELECT id FROM orders WHERE idempotency_key LIKE '`+SeedKeyPrefix+`%' ORDER BY random() LIMIT $1`, n)
	if err != nil {
		return nil, fmt.Errorf("bench: sample seeded orders: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		return nil, fmt.Errorf("bench: sample seeded orders: %w", err)
	}
	if len(ids) == 0 {
		return nil, fmt.Errorf("bench: no seeded orders found")
	}
	return ids, nil
}

// reads times GET requests against the API, one at a time.
type reads struct {
	http  *http.Client
	base  string
	out   *lineWriter
	creds *credentials
	rng   *rand.Rand
}

// get sends one GET and returns its status ("transport" when there was no answer), its
// body and how long until the body was read.
func (m *reads) get(ctx context.Context, path string) (string, []byte, time.Duration) {
	start := time.Now()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.base+path, nil)
	if err != nil || m.creds.authorize(ctx, req, benchOperator) != nil {
		return "request", nil, 0
	}
	resp, err := m.http.Do(req)
	if err != nil {
		return "transport", nil, time.Since(start)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	took := time.Since(start)
	if err != nil {
		return "transport", nil, took
	}
	return strconv.Itoa(resp.StatusCode), body, took
}

// measure sends warm untimed requests, then n timed ones, to path(i) for i = 0, 1, …
func (m *reads) measure(ctx context.Context, name string, n, warm int, path func(i int) string) EndpointLatency {
	for i := range warm {
		if ctx.Err() != nil {
			break
		}
		m.get(ctx, path(n+i))
	}
	var lat Latencies
	var errs Counter
	for i := range n {
		if ctx.Err() != nil {
			break
		}
		status, _, took := m.get(ctx, path(i))
		if status == "200" {
			lat.Add(took)
		} else {
			errs.Add(status)
		}
	}
	e := EndpointLatency{Name: name, Summary: Summarize(lat.Take()), Errors: errs.Snapshot()}
	m.out.printf("%s: p50 %.1f  p99 %.1f  max %.1f ms over %d, errors %s", name, e.P50, e.P99, e.Max, e.Count, counts(e.Errors, "none"))
	return e
}

// pageShape is the part of the list's page object that the bench checks.
type pageShape struct {
	Content       []json.RawMessage `json:"content"`
	TotalElements *int64            `json:"totalElements"`
}

// defaultPage measures the list's default page, and checks once that it is the seed's
// page object with its totalElements.
func (m *reads) defaultPage(ctx context.Context, n int) (EndpointLatency, int64, error) {
	const path = "/api/v1/orders"
	status, body, _ := m.get(ctx, path)
	var page pageShape
	if status != "200" || json.Unmarshal(body, &page) != nil || page.TotalElements == nil || page.Content == nil {
		return EndpointLatency{}, 0, fmt.Errorf("bench: GET %s answered %s, not a page object with content and totalElements: %.200s", path, status, body)
	}
	e := m.measure(ctx, "GET "+path, n, scaleWarmup-1, func(int) string { return path })
	return e, *page.TotalElements, nil
}

// finish sets the targets: each is met when every timed request answered 200 and the
// p99 is within the target.
func (rep *ScaleReport) finish() {
	met := func(e EndpointLatency, target float64) bool {
		return e.Count > 0 && e.errorCount() == 0 && e.P99 <= target
	}
	rep.Targets = map[string]bool{
		"default_page_p99": met(rep.DefaultPage, TargetDefaultPageP99Ms),
		"user_filter_p99":  met(rep.UserFilter, TargetUserFilterP99Ms),
		"events_p99":       met(rep.Events, TargetEventsP99Ms),
	}
	rep.SortErrors = 0
	for _, s := range rep.Sorts {
		rep.SortErrors += s.errorCount()
	}
	if rep.SortErrors > 0 {
		rep.Notes = append(rep.Notes, fmt.Sprintf("%d sorted-list requests did not answer 200 (see errors_by_status of each sort)", rep.SortErrors))
	}
	if rep.TotalElements < int64(rep.Orders) {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the default page's totalElements (%d) is below the seed's %d orders", rep.TotalElements, rep.Orders))
	}
}

// WriteJSON writes the report as one line of JSON.
func (rep *ScaleReport) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("bench: encode report: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// WriteTable writes the report for people.
func (rep *ScaleReport) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	seed := fmt.Sprintf("wrote %d in %.1f s", rep.SeedInserted, rep.SeedS)
	if rep.SeedInserted == 0 {
		seed = "found from an earlier run"
	}
	p("")
	p("OrderFlow bench --scale: %d seeded orders over %d users (%s); %d orders in the database; one request at a time",
		rep.Orders, rep.Users, seed, rep.TotalElements)
	p("")
	p("endpoint\tp50 ms\tp95 ms\tp99 ms\tmax ms\trequests\terrors\ttarget")
	row := func(e EndpointLatency, tgt string) {
		p("%s\t%.1f\t%.1f\t%.1f\t%.1f\t%d\t%s\t%s", e.Name, e.P50, e.P95, e.P99, e.Max, e.Count, counts(e.Errors, "none"), tgt)
	}
	row(rep.DefaultPage, target(rep.Targets, "default_page_p99", fmt.Sprintf("p99 ≤ %g ms", TargetDefaultPageP99Ms)))
	row(rep.UserFilter, target(rep.Targets, "user_filter_p99", fmt.Sprintf("p99 ≤ %g ms", TargetUserFilterP99Ms)))
	row(rep.Events, target(rep.Targets, "events_p99", fmt.Sprintf("p99 ≤ %g ms", TargetEventsP99Ms)))
	for _, s := range rep.Sorts {
		row(s, "")
	}
	if len(rep.Notes) > 0 {
		p("")
		for _, n := range rep.Notes {
			p("note: %s", n)
		}
	}
	return tw.Flush()
}
