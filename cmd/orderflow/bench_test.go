package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBenchSmokeRunEndsWithTheReportAsJSON runs `orderflow bench` briefly against the
// shared stack, at low concurrency, on instruments of its own. It checks the command
// works end to end and keeps its output contract; it checks no speed (the bench itself
// measures speed, not the tests).
func TestBenchSmokeRunEndsWithTheReportAsJSON(t *testing.T) {
	s := needStack(t)
	instruments := fmt.Sprintf("%d,%d", s.newInstrument(t), s.newInstrument(t))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, []string{"bench",
		"--api", s.baseURL, "--duration", "2s", "--warmup", "0s", "--drain", "30s",
		"--concurrency", "2", "--ceiling-duration", "1s", "--engine-shapes", "5", "--instruments", instruments, "--json",
	}, func(k string) string { return s.env[k] }, &out)
	if err != nil {
		t.Fatalf("bench: %v\n%s", err, out.String())
	}
	lines := strings.Split(strings.TrimRight(out.String(), "\n"), "\n")
	last := lines[len(lines)-1]
	var rep map[string]any
	if err := json.Unmarshal([]byte(last), &rep); err != nil {
		t.Fatalf("the last line is not JSON (%v):\n%s", err, out.String())
	}
	for _, k := range []string{"ingest_per_s", "e2e_per_s", "db_ceiling_per_s", "engine_ceiling_per_s",
		"post_p50_ms", "post_p95_ms", "post_p99_ms", "post_max_ms", "e2e_p50_ms", "e2e_p95_ms", "e2e_p99_ms",
		"errors_by_status", "ingest_vs_db", "e2e_vs_engine", "cpu_s_per_1k", "peak_rss_mb",
		"backlog_end", "backlog_slope_per_s", "mode", "concurrency", "duration_s",
		"shape_mix_ceiling_per_s", "e2e_vs_shape_mix", "refused_per_s", "topology"} {
		if _, ok := rep[k]; !ok {
			t.Errorf("the report lacks %q: %s", k, last)
		}
	}
	positive := func(k string) {
		if v, ok := rep[k].(float64); !ok || v <= 0 {
			t.Errorf("%s = %v, want > 0:\n%s", k, rep[k], out.String())
		}
	}
	for _, k := range []string{"ingest_per_s", "e2e_per_s", "db_ceiling_per_s", "engine_ceiling_per_s", "shape_mix_ceiling_per_s", "e2e_vs_shape_mix"} {
		positive(k)
	}
	// The shape mix is the window's accepted orders, every one of them classified.
	mixed := 0.0
	mix, _ := rep["shape_mix"].([]any)
	for _, c := range mix {
		m, _ := c.(map[string]any)
		n, _ := m["orders"].(float64)
		mixed += n
	}
	if accepted, _ := rep["accepted"].(float64); mixed != accepted || accepted == 0 {
		t.Errorf("shape_mix %v holds %v orders, want the %v accepted", rep["shape_mix"], mixed, accepted)
	}
	shapes, _ := rep["engine_shapes"].([]any)
	if len(shapes) != 4 {
		t.Errorf("engine_shapes = %v, want 4 shapes", rep["engine_shapes"])
	}
	for _, sh := range shapes {
		m, _ := sh.(map[string]any)
		if runs, _ := m["runs"].(float64); runs != 5 {
			t.Errorf("shape %v: runs %v, want 5", m["name"], m["runs"])
		}
		if ms, _ := m["cpu_ms_per_run"].(float64); ms <= 0 {
			t.Errorf("shape %v: cpu_ms_per_run %v, want > 0", m["name"], m["cpu_ms_per_run"])
		}
	}
	if errs, _ := rep["errors_by_status"].(map[string]any); len(errs) > 0 {
		t.Errorf("errors by status: %v", errs)
	}
	if !strings.Contains(out.String(), "ingestion") || !strings.Contains(out.String(), "end to end") {
		t.Errorf("the table is missing:\n%s", out.String())
	}
	// The database ceiling's scratch table is gone.
	var exists bool
	if err := s.pool.QueryRow(ctx, `SELECT to_regclass('bench_ceiling') IS NOT NULL`).Scan(&exists); err != nil || exists {
		t.Errorf("bench_ceiling left behind (%v, %v)", exists, err)
	}
}

func TestBenchFlagsDefaultToTheSystemMakeRunStarts(t *testing.T) {
	cfg, err := loadConfig(func(k string) string {
		return map[string]string{"HTTP_ADDR": "0.0.0.0:18080", "DEV_PG_PORT": "15433", "DEV_TEMPORAL_PORT": "17233", "DB_MAX_CONNS": "7"}[k]
	})
	if err != nil {
		t.Fatal(err)
	}
	opts, asJSON, err := parseBenchFlags(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if opts.APIURL != "http://127.0.0.1:18080" || opts.DatabaseURL != "postgres://postgres@127.0.0.1:15433/orderflow?sslmode=disable" ||
		opts.TemporalAddress != "127.0.0.1:17233" || opts.DBMaxConns != 7 || asJSON {
		t.Errorf("defaults = %+v (json %v)", opts, asJSON)
	}
	opts, asJSON, err = parseBenchFlags(cfg, []string{"--mode", "open", "--rate", "250", "--instruments", "7, 8",
		"--pids", "api=10,worker=10,postgres=3", "--json"})
	if err != nil {
		t.Fatal(err)
	}
	if opts.Mode != "open" || opts.Rate != 250 || fmt.Sprint(opts.Instruments) != "[7 8]" || len(opts.Procs) != 2 || !asJSON {
		t.Errorf("parsed = %+v (json %v)", opts, asJSON)
	}
	for _, bad := range [][]string{
		{"--mode", "open"}, {"--mode", "sideways"}, {"--instruments", "x"}, {"--pids", "db=1"},
		{"--concurrency", "0"}, {"extra"}, {"--engine-shapes", "-1"}, {"--engine-shapes", "5", "--skip-ceilings"},
	} {
		if _, _, err := parseBenchFlags(cfg, bad); err == nil {
			t.Errorf("parseBenchFlags(%q) did not fail", bad)
		}
	}
}
