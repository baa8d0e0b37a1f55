package bench

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
)

func TestFinishDerivesRatiosAndTargets(t *testing.T) {
	rep := &Report{
		IngestPerS: 600, DBCeilingPerS: ptr(1000.0),
		E2EPerS: 30, EngineCeilingPerS: ptr(50.0),
		PostP99Ms: 30, BacklogSlopePerS: 0.4,
		RSSMB: map[string]float64{ProcAPIWorker: 120, ProcPostgres: 900},
	}
	rep.finish()
	if *rep.IngestVsDB != 0.6 || *rep.E2EVsEngine != 0.6 {
		t.Errorf("ratios = %v, %v; want 0.6, 0.6", *rep.IngestVsDB, *rep.E2EVsEngine)
	}
	want := map[string]bool{"ingest_vs_db": true, "e2e_vs_engine": false, "post_p99": false,
		"no_growing_backlog": true, "rss_api+worker": true}
	for k, v := range want {
		if got, ok := rep.Targets[k]; !ok || got != v {
			t.Errorf("target %s = %v (present %v), want %v", k, got, ok, v)
		}
	}
	if _, ok := rep.Targets["rss_postgres"]; ok {
		t.Error("PostgreSQL's memory has no target")
	}
}

func TestBacklogGrowingNeedsMoreThanNoise(t *testing.T) {
	for _, c := range []struct {
		slope, rate float64
		want        bool
	}{
		{0, 100, false},
		{0.9, 10, false},  // under one order a second
		{1.5, 100, false}, // under 2% of 100/s
		{3, 100, true},    // 3/s more every second: falling behind
		{-40, 100, false}, // draining
		{25, 1000, true},  // 2.5% of 1000/s
		{15, 1000, false}, // 1.5% of 1000/s
	} {
		if got := backlogGrowing(c.slope, c.rate); got != c.want {
			t.Errorf("backlogGrowing(%v, %v) = %v, want %v", c.slope, c.rate, got, c.want)
		}
	}
}

func TestJSONIsOneLineWithTheTrackedKeys(t *testing.T) {
	rep := &Report{Mode: Closed, Concurrency: 4, IngestPerS: 10, E2EPerS: 5, PostP99Ms: 3, E2EP99Ms: 40,
		CPUSPer1k: map[string]float64{ProcTemporal: 1.5}, PeakRSSMB: map[string]float64{ProcTemporal: 80}}
	rep.finish()
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Fatalf("JSON is not one line: %q", out)
	}
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"ingest_per_s", "e2e_per_s", "db_ceiling_per_s", "engine_ceiling_per_s",
		"post_p50_ms", "post_p95_ms", "post_p99_ms", "post_max_ms", "e2e_p50_ms", "e2e_p95_ms", "e2e_p99_ms",
		"errors_by_status", "ingest_vs_db", "e2e_vs_engine", "cpu_s_per_1k", "peak_rss_mb",
		"backlog_end", "backlog_slope_per_s", "mode", "concurrency", "duration_s",
		"shape_mix_ceiling_per_s", "e2e_vs_shape_mix", "refused_per_s", "topology"} {
		if _, ok := m[k]; !ok {
			t.Errorf("JSON lacks %q: %s", k, out)
		}
	}
	if m["db_ceiling_per_s"] != nil || m["ingest_vs_db"] != nil {
		t.Errorf("unmeasured ceilings must be null: %s", out)
	}
}

func TestTableShowsFiguresCeilingsAndMisses(t *testing.T) {
	rep := &Report{Mode: Open, Rate: 500, DurationS: 30, WarmupS: 5, Instruments: []int64{101}, ShapeMixCeilingPerS: ptr(40.0),
		IngestPerS: 499.5, DBCeilingPerS: ptr(1000.0), E2EPerS: 20, EngineCeilingPerS: ptr(100.0),
		PostP99Ms: 12, ErrorsByStatus: map[string]int{"503": 2},
		CPUCores: map[string]float64{ProcAPIWorker: 1.1}, CPUSPer1k: map[string]float64{ProcAPIWorker: 2.2},
		RSSMB: map[string]float64{ProcAPIWorker: 350}, PeakRSSMB: map[string]float64{ProcAPIWorker: 400}}
	rep.finish()
	var buf bytes.Buffer
	if err := rep.WriteTable(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"open loop, 500 orders/s", "499.5 orders/s accepted", "1000.0 db inserts/s", "0.50",
		"≥ 0.5 met", "≥ 0.7 MISSED", "40.0 order-shaped runs/s", "≥ 0.75 MISSED", "503 2", "api+worker", "< 300 MB MISSED"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
