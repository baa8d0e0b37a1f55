package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"text/tabwriter"
)

// Targets of the issue that asked for the bench, on a 2-core machine with everything on
// one box.
const (
	// TargetIngestVsDB: accepted orders/s at least this share of the database ceiling.
	TargetIngestVsDB = 0.5
	// TargetPostP99Ms: POST p99 at most this, offered at half the database ceiling.
	TargetPostP99Ms = 25.0
	// TargetE2EVsEngine: settled orders/s at least this share of the engine ceiling.
	TargetE2EVsEngine = 0.7
	// TargetE2EVsShapeMix: settled orders/s at least this share of the engine's ceiling
	// for the load's own mix of run shapes.
	TargetE2EVsShapeMix = 0.75
	// TargetRSSMB: the API and the worker each below this resident memory.
	TargetRSSMB = 300.0
)

// Report is what a run found. Its JSON form is one object whose field names are stable,
// so runs can be compared over time; figures that could not be measured are null.
type Report struct {
	Mode        Mode    `json:"mode"`
	Rate        float64 `json:"rate,omitempty"`        // open loop: offered orders/s
	Concurrency int     `json:"concurrency,omitempty"` // closed loop: clients
	MaxPending  int     `json:"max_pending,omitempty"` // closed loop: backlog bound, if any
	DurationS   float64 `json:"duration_s"`
	WarmupS     float64 `json:"warmup_s"`
	Instruments []int64 `json:"instruments"`
	CancelRatio float64 `json:"cancel_ratio"`

	// Ingestion: POST /api/v1/orders answered within the window.
	Posted         int            `json:"posted"`
	Accepted       int            `json:"accepted"`
	IngestPerS     float64        `json:"ingest_per_s"`
	PostP50Ms      float64        `json:"post_p50_ms"`
	PostP95Ms      float64        `json:"post_p95_ms"`
	PostP99Ms      float64        `json:"post_p99_ms"`
	PostMaxMs      float64        `json:"post_max_ms"`
	ErrorsByStatus map[string]int `json:"errors_by_status"`
	OpenDropped    int            `json:"open_dropped,omitempty"`
	// Admission control's refusals (503 OVERLOADED): not errors, and not in the POST
	// latencies; a closed-loop client waits their Retry-After (at most 1s), jittered ±50%.
	Refused      int     `json:"refused"`
	RefusedPerS  float64 `json:"refused_per_s"`
	RefusedP99Ms float64 `json:"refused_p99_ms"`
	Topology     string  `json:"topology"`

	// End to end: orders reaching the book or an end.
	Settled       int     `json:"settled"` // settled within the window, whenever accepted
	E2EPerS       float64 `json:"e2e_per_s"`
	E2EP50Ms      float64 `json:"e2e_p50_ms"`
	E2EP95Ms      float64 `json:"e2e_p95_ms"`
	E2EP99Ms      float64 `json:"e2e_p99_ms"`
	E2EMaxMs      float64 `json:"e2e_max_ms"`
	E2ESamples    int     `json:"e2e_samples"`     // orders accepted in the window and seen settled
	E2EUnsettled  int     `json:"e2e_unsettled"`   // orders accepted in the window and not settled after the drain
	E2ELowerBound bool    `json:"e2e_lower_bound"` // the percentiles count unsettled orders at their age: lower bounds
	// The settled orders' latency in two parts: from the 201 to their workflow's first
	// event (outbox relay, Kafka, consumer, workflow start), and from there to settled.
	PickupP50Ms     float64        `json:"e2e_pickup_p50_ms"`
	PickupP99Ms     float64        `json:"e2e_pickup_p99_ms"`
	StepsP50Ms      float64        `json:"e2e_steps_p50_ms"`
	StepsP99Ms      float64        `json:"e2e_steps_p99_ms"`
	Outcomes        map[string]int `json:"outcomes"` // how the window's orders settled
	CancelsByStatus map[string]int `json:"cancels_by_status"`
	CancelsSkipped  int            `json:"cancels_skipped,omitempty"`

	InFlightBefore   int64   `json:"in_flight_before"` // orders of anyone on their way through at the start
	BacklogEnd       int     `json:"backlog_end"`      // the bench's accepted orders not settled at the window's end
	BacklogSlopePerS float64 `json:"backlog_slope_per_s"`
	BacklogGrowing   bool    `json:"backlog_growing"`

	DBCeilingPerS            *float64    `json:"db_ceiling_per_s"`
	EngineCeilingPerS        *float64    `json:"engine_ceiling_per_s"`
	DBCeilingConns           int         `json:"db_ceiling_conns,omitempty"`
	EngineCeilingConcurrency int         `json:"engine_ceiling_concurrency,omitempty"`
	DBCeilingP50Ms           float64     `json:"db_ceiling_p50_ms,omitempty"` // one insert transaction
	DBCeilingP99Ms           float64     `json:"db_ceiling_p99_ms,omitempty"`
	EngineCeilingP50Ms       float64     `json:"engine_ceiling_p50_ms,omitempty"` // one empty workflow, start to result
	EngineCeilingP99Ms       float64     `json:"engine_ceiling_p99_ms,omitempty"`
	EngineCeilingCPUSPer1k   *float64    `json:"engine_ceiling_cpu_s_per_1k"` // the Temporal server's CPU per 1,000 empty workflows
	EngineShapes             []ShapeCost `json:"engine_shapes,omitempty"`     // the Temporal server's CPU per run of each workflow shape (--engine-shapes)
	// The engine's ceiling for the load's own mix of run shapes (ShapeMixCeiling), measured
	// after the load, and the Temporal server's CPU per 1,000 runs of it.
	ShapeMix            []MixClass `json:"shape_mix,omitempty"`
	ShapeMixCeilingPerS *float64   `json:"shape_mix_ceiling_per_s"`
	ShapeMixCPUSPer1k   *float64   `json:"shape_mix_cpu_s_per_1k"`
	// The Temporal SDK's CPU per 1,000 runs of the mix on the bench's own worker (the
	// worker's side of the engine's work), to set against the api+worker's per order.
	ShapeMixClientCPUSPer1k *float64 `json:"shape_mix_client_cpu_s_per_1k"`
	E2EVsShapeMix           *float64 `json:"e2e_vs_shape_mix"`
	IngestVsDB              *float64 `json:"ingest_vs_db"`
	E2EVsEngine             *float64 `json:"e2e_vs_engine"`

	CPUs            int     `json:"cpus"`
	LoadAverage     float64 `json:"load_average"`      // one-minute load average when the bench started
	MachineCPUCores float64 `json:"machine_cpu_cores"` // average cores busy over the window, whole machine
	OtherCPUCores   float64 `json:"other_cpu_cores"`   // of which used by processes neither observed nor the bench

	CPUSPer1k map[string]float64 `json:"cpu_s_per_1k"` // CPU seconds per 1,000 accepted orders
	CPUCores  map[string]float64 `json:"cpu_cores"`    // average cores busy over the window
	RSSMB     map[string]float64 `json:"rss_mb"`       // at the window's end
	PeakRSSMB map[string]float64 `json:"peak_rss_mb"`  // the kernel's high-water mark (VmHWM), or the sampled peak of a tree
	PIDs      map[string][]int   `json:"pids"`

	Targets map[string]bool `json:"targets_met"`
	Notes   []string        `json:"notes,omitempty"`
}

// backlogGrowing says whether a backlog slope means the system falls behind: more than
// one order a second, and more than 2% of the accepted rate.
func backlogGrowing(slope, ingestPerS float64) bool {
	return slope > max(1, 0.02*ingestPerS)
}

// finish derives the ratios and the targets from the figures.
func (rep *Report) finish() {
	rep.BacklogGrowing = backlogGrowing(rep.BacklogSlopePerS, rep.IngestPerS)
	if rep.DBCeilingPerS != nil && *rep.DBCeilingPerS > 0 {
		rep.IngestVsDB = ptr(round3(rep.IngestPerS / *rep.DBCeilingPerS))
	}
	if rep.EngineCeilingPerS != nil && *rep.EngineCeilingPerS > 0 {
		rep.E2EVsEngine = ptr(round3(rep.E2EPerS / *rep.EngineCeilingPerS))
	}
	if rep.ShapeMixCeilingPerS != nil && *rep.ShapeMixCeilingPerS > 0 {
		rep.E2EVsShapeMix = ptr(round3(rep.E2EPerS / *rep.ShapeMixCeilingPerS))
	}
	rep.Targets = map[string]bool{}
	if rep.IngestVsDB != nil {
		rep.Targets["ingest_vs_db"] = *rep.IngestVsDB >= TargetIngestVsDB
	}
	if rep.E2EVsEngine != nil {
		rep.Targets["e2e_vs_engine"] = *rep.E2EVsEngine >= TargetE2EVsEngine
	}
	if rep.E2EVsShapeMix != nil {
		rep.Targets["e2e_vs_shape_mix"] = *rep.E2EVsShapeMix >= TargetE2EVsShapeMix
	}
	rep.Targets["post_p99"] = rep.PostP99Ms <= TargetPostP99Ms
	rep.Targets["no_growing_backlog"] = !rep.BacklogGrowing
	for _, name := range []string{ProcAPI, ProcWorker, ProcAPIWorker} {
		if v, ok := rep.RSSMB[name]; ok {
			rep.Targets["rss_"+name] = v < TargetRSSMB
		}
	}
	if rep.ErrorsByStatus == nil {
		rep.ErrorsByStatus = map[string]int{}
	}
}

// WriteJSON writes the report as one line of JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	b, err := json.Marshal(rep)
	if err != nil {
		return fmt.Errorf("bench: encode report: %w", err)
	}
	_, err = fmt.Fprintf(w, "%s\n", b)
	return err
}

// WriteTable writes the report for people.
func (rep *Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }

	load := fmt.Sprintf("closed loop, %d clients", rep.Concurrency)
	if rep.MaxPending > 0 {
		load += fmt.Sprintf(", at most %d pending", rep.MaxPending)
	}
	if rep.Mode == Open {
		load = fmt.Sprintf("open loop, %g orders/s offered", rep.Rate)
	}
	p("")
	p("OrderFlow bench on %s: %s; %gs measured after %gs warm-up; instruments %s; cancel ratio %g",
		cmp.Or(rep.Topology, "run"), load, rep.DurationS, rep.WarmupS, joinInts(rep.Instruments), rep.CancelRatio)
	p("")
	p("\tfigure\tceiling\tratio\ttarget")
	p("ingestion\t%.1f orders/s accepted\t%s\t%s\t%s",
		rep.IngestPerS, ceiling(rep.DBCeilingPerS, "db inserts/s"), ratio(rep.IngestVsDB), target(rep.Targets, "ingest_vs_db", fmt.Sprintf("≥ %g", TargetIngestVsDB)))
	p("  POST latency\tp50 %.1f  p95 %.1f  p99 %.1f  max %.1f ms\t\t\t%s",
		rep.PostP50Ms, rep.PostP95Ms, rep.PostP99Ms, rep.PostMaxMs, target(rep.Targets, "post_p99", fmt.Sprintf("p99 ≤ %g ms at half the db ceiling", TargetPostP99Ms)))
	p("  errors\t%s", counts(rep.ErrorsByStatus, "none"))
	if rep.Refused > 0 {
		p("  refused (overloaded)\t%d, %.1f/s, p99 %.1f ms", rep.Refused, rep.RefusedPerS, rep.RefusedP99Ms)
	}
	if rep.OpenDropped > 0 {
		p("  dropped arrivals\t%d (the open loop's in-flight bound was reached)", rep.OpenDropped)
	}
	p("end to end\t%.1f orders/s settled\t%s\t%s\t%s",
		rep.E2EPerS, ceiling(rep.EngineCeilingPerS, "empty wf/s"), ratio(rep.E2EVsEngine), target(rep.Targets, "e2e_vs_engine", fmt.Sprintf("≥ %g", TargetE2EVsEngine)))
	if rep.ShapeMixCeilingPerS != nil {
		p("  against the load's shape mix		%s	%s	%s",
			ceiling(rep.ShapeMixCeilingPerS, "order-shaped runs/s"), ratio(rep.E2EVsShapeMix), target(rep.Targets, "e2e_vs_shape_mix", fmt.Sprintf("≥ %g", TargetE2EVsShapeMix)))
		p("    the mix	%s", describeMix(rep.ShapeMix))
	}
	bound := ""
	if rep.E2ELowerBound {
		bound = "at least "
	}
	p("  201 → settled\t%sp50 %.1f  p95 %.1f  p99 %.1f  max %.1f ms (%d orders settled, %d not)",
		bound, rep.E2EP50Ms, rep.E2EP95Ms, rep.E2EP99Ms, rep.E2EMaxMs, rep.E2ESamples, rep.E2EUnsettled)
	if rep.E2ESamples > 0 {
		p("    of which\t201 → workflow's first step p50 %.1f  p99 %.1f ms; then to settled p50 %.1f  p99 %.1f ms",
			rep.PickupP50Ms, rep.PickupP99Ms, rep.StepsP50Ms, rep.StepsP99Ms)
	}
	p("  backlog\t%d pending at the end, slope %+.1f/s\t\t\t%s",
		rep.BacklogEnd, rep.BacklogSlopePerS, target(rep.Targets, "no_growing_backlog", "not growing"))
	p("  outcomes\t%s", counts(rep.Outcomes, "none"))
	p("  cancels\t%s", counts(rep.CancelsByStatus, "none"))
	p("")
	p("cost\tCPU s / 1k orders\tCPU cores\tRSS MB\tpeak RSS MB")
	names := slices.Sorted(maps.Keys(rep.CPUCores))
	for _, name := range names {
		note := ""
		if _, checked := rep.Targets["rss_"+name]; checked {
			note = "  " + target(rep.Targets, "rss_"+name, fmt.Sprintf("< %g MB", TargetRSSMB))
		}
		p("  %s\t%.3f\t%.2f\t%.0f\t%.0f%s", name, rep.CPUSPer1k[name], rep.CPUCores[name], rep.RSSMB[name], rep.PeakRSSMB[name], note)
	}
	if rep.EngineCeilingCPUSPer1k != nil {
		p("  temporal, ceiling\t%.3f\t\t\t\t(per 1k empty workflows)", *rep.EngineCeilingCPUSPer1k)
	}
	if rep.ShapeMixCPUSPer1k != nil {
		p("  temporal, shape mix\t%.3f\t\t\t\t(per 1k runs of the load's mix, no database)", *rep.ShapeMixCPUSPer1k)
	}
	if rep.ShapeMixClientCPUSPer1k != nil {
		p("  SDK worker, shape mix\t%.3f\t\t\t\t(the same runs on the bench's worker: the engine's share of a worker's work)", *rep.ShapeMixClientCPUSPer1k)
	}
	p("  machine\t\t%.2f of %d\t\t(%.2f by other processes; load average %.2f at the start)", rep.MachineCPUCores, rep.CPUs, rep.OtherCPUCores, rep.LoadAverage)
	if len(rep.EngineShapes) > 0 {
		p("")
		p("engine shapes\tTemporal CPU ms / run\truns")
		for _, s := range rep.EngineShapes {
			p("  %s\t%.2f\t%d", s.Name, s.CPUMsRun, s.Runs)
		}
	}
	if len(rep.Notes) > 0 {
		p("")
		for _, n := range rep.Notes {
			p("note: %s", n)
		}
	}
	return tw.Flush()
}

func ceiling(v *float64, unit string) string {
	if v == nil {
		return "(not measured)"
	}
	return fmt.Sprintf("%.1f %s", *v, unit)
}

func ratio(v *float64) string {
	if v == nil {
		return "-"
	}
	return fmt.Sprintf("%.2f", *v)
}

func target(met map[string]bool, key, what string) string {
	ok, checked := met[key]
	switch {
	case !checked:
		return what + " (not checked)"
	case ok:
		return what + " met"
	default:
		return what + " MISSED"
	}
}

func counts(m map[string]int, empty string) string {
	if len(m) == 0 {
		return empty
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, fmt.Sprintf("%s %d", k, m[k]))
	}
	return strings.Join(parts, ", ")
}

func joinInts(v []int64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprint(x)
	}
	return strings.Join(parts, ",")
}
