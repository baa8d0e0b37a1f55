package bench_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/orderflow/orderflow/bench"
)

// fakeAPI answers the reads the scale run makes as the API would, except that it refuses
// one sort, as an API that does not know a field would.
type fakeAPI struct {
	total   int64
	refused string // the sort parameter answered 400

	mu     sync.Mutex
	events []int64 // the ids whose events were asked for
	users  map[int64]bool
	sorts  map[string]int
}

func (f *fakeAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	q := r.URL.Query()
	switch {
	case r.URL.Path == "/readyz":
		w.WriteHeader(http.StatusOK)
	case r.URL.Path == "/api/v1/orders" && q.Get("sort") != "":
		f.sorts[q.Get("sort")]++
		if q.Get("sort") == f.refused {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, `{"content":[],"totalElements":%d}`, f.total)
	case r.URL.Path == "/api/v1/orders":
		if u, err := strconv.ParseInt(q.Get("userId"), 10, 64); err == nil {
			f.users[u] = true
		}
		fmt.Fprintf(w, `{"content":[],"totalElements":%d,"totalPages":1,"number":0,"size":20}`, f.total)
	case strings.HasSuffix(r.URL.Path, "/events"):
		id, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimPrefix(r.URL.Path, "/api/v1/orders/"), "/events"), 10, 64)
		f.events = append(f.events, id)
		fmt.Fprint(w, `[]`)
	default:
		http.NotFound(w, r)
	}
}

func TestScaleSeedsThenTimesEachReadAndCountsRefusalsAsErrors(t *testing.T) {
	t.Parallel()
	db, url := newDB(t)
	api := &fakeAPI{total: 200, refused: "orderType,asc", users: map[int64]bool{}, sorts: map[string]int{}}
	srv := httptest.NewServer(api)
	defer srv.Close()
	var progress bytes.Buffer
	rep, err := bench.Scale(context.Background(), bench.ScaleOptions{
		APIURL: srv.URL, DatabaseURL: url,
		Seed:     bench.SeedOptions{Orders: 200, Users: 10, Chunk: 100},
		Requests: 30, SortRequests: 2, Progress: &progress,
	})
	if err != nil {
		t.Fatalf("scale: %v\n%s", err, progress.String())
	}
	if rep.SeedInserted != 200 || rep.TotalElements != 200 {
		t.Errorf("seeded %d, totalElements %d; want 200 and 200", rep.SeedInserted, rep.TotalElements)
	}
	for _, e := range []bench.EndpointLatency{rep.DefaultPage, rep.UserFilter, rep.Events} {
		if e.Count != 30 || len(e.Errors) != 0 || e.P99 <= 0 {
			t.Errorf("%s: %d timed answers, errors %v, p99 %v; want 30 timed 200s", e.Name, e.Count, e.Errors, e.P99)
		}
	}
	if len(rep.Sorts) != 2*len(bench.SortFields) {
		t.Fatalf("%d sort variants measured, want %d", len(rep.Sorts), 2*len(bench.SortFields))
	}
	for _, s := range rep.Sorts {
		refused := s.Name == "GET /api/v1/orders?sort="+api.refused
		if refused && (s.Count != 0 || s.Errors["400"] != 2) || !refused && (s.Count != 2 || len(s.Errors) != 0) {
			t.Errorf("%s: %d timed, errors %v", s.Name, s.Count, s.Errors)
		}
	}
	if rep.SortErrors != 2 || len(rep.Notes) == 0 {
		t.Errorf("sort errors %d, notes %q; want 2 and a note", rep.SortErrors, rep.Notes)
	}
	for _, k := range []string{"default_page_p99", "user_filter_p99", "events_p99"} {
		if _, ok := rep.Targets[k]; !ok {
			t.Errorf("targets lack %s: %v", k, rep.Targets)
		}
	}

	// The events asked for are seeded orders', and the users the seed's.
	api.mu.Lock()
	events, users, sorts := api.events, api.users, api.sorts
	api.mu.Unlock()
	if n := count(t, db, `SELECT count(*) FROM orders WHERE id = ANY($1) AND idempotency_key LIKE 'scale-seed-%'`, events); n == 0 || len(events) != 30+20 {
		t.Errorf("%d event requests (want 30 timed and 20 warm-up), %d distinct seeded orders among them", len(events), n)
	}
	for u := range users {
		if u < 1 || u > 10 {
			t.Errorf("asked for user %d, outside the seed's 1–10", u)
		}
	}
	if sorts["price,desc"] != 3 {
		t.Errorf("price,desc asked %d times, want 1 warm-up and 2 timed", sorts["price,desc"])
	}

	var out bytes.Buffer
	if err := rep.WriteJSON(&out); err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), "\n") != 1 {
		t.Errorf("JSON is not one line: %q", out.String())
	}
	var m map[string]any
	if err := json.Unmarshal(out.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"mode", "orders", "users", "total_elements", "default_page", "user_filter", "events", "sorts", "sort_errors", "targets_met"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out.String())
		}
	}
	if p, _ := m["default_page"].(map[string]any); p["p99_ms"] == nil || p["errors_by_status"] == nil {
		t.Errorf("default_page lacks p99_ms or errors_by_status: %v", p)
	}
	out.Reset()
	if err := rep.WriteTable(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"GET /api/v1/orders/{id}/events", "p99 ≤ 5 ms", "orderType,asc", "400 2"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}

	// A second run finds the seed and writes nothing.
	again, err := bench.Scale(context.Background(), bench.ScaleOptions{
		APIURL: srv.URL, DatabaseURL: url, Seed: bench.SeedOptions{Orders: 200, Users: 10, Chunk: 100}, Requests: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	if again.SeedInserted != 0 || again.SeedExisting != 200 || len(again.Sorts) != 0 {
		t.Errorf("second run: %d written, %d found, %d sorts; want 0, 200 and none", again.SeedInserted, again.SeedExisting, len(again.Sorts))
	}
}

func TestScaleFailsWhenTheListIsNotAPage(t *testing.T) {
	t.Parallel()
	_, url := newDB(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			return
		}
		fmt.Fprint(w, `[]`) // a bare list, not the seed's page object
	}))
	defer srv.Close()
	_, err := bench.Scale(context.Background(), bench.ScaleOptions{
		APIURL: srv.URL, DatabaseURL: url, Seed: bench.SeedOptions{Orders: 20, Users: 2, Chunk: 20}, Requests: 1,
	})
	if err == nil || !strings.Contains(err.Error(), "totalElements") {
		t.Errorf("scale = %v, want an error naming totalElements", err)
	}
}
