package main

import (
	"fmt"
	"runtime/debug"
	"strconv"
	"strings"
)

// defaultGCPercent is the garbage collector's target when GOGC is not set: twice the
// runtime's 100, which halves the collector's CPU for a few tens of megabytes more heap
// (BENCHMARKS.md, issue 13's targets).
const defaultGCPercent = 200

// memoryLimitShare is the share of the container's memory limit the Go heap may grow to
// before the collector works hard: the rest is for what the limit also counts and Go does
// not manage (the binary's pages, page cache, socket buffers).
const memoryLimitShare = 0.9

// runtimeSettings are the garbage collector's settings the environment asks for:
// GOGC and GOMEMLIMIT as the runtime reads them, or, unset, GOGC 200 and, when
// ORDERFLOW_MEMORY_LIMIT gives the container's memory limit in bytes (the Kubernetes
// manifests set it from the container's resources), 90% of it.
func runtimeSettings(getenv func(string) string) (gcPercent int, memLimit int64, err error) {
	gcPercent, memLimit = -1, -1 // -1: leave the runtime's own
	if getenv("GOGC") == "" {
		gcPercent = defaultGCPercent
	}
	raw := strings.TrimSpace(getenv("ORDERFLOW_MEMORY_LIMIT"))
	if raw == "" || getenv("GOMEMLIMIT") != "" {
		return gcPercent, memLimit, nil
	}
	limit, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || limit <= 0 {
		return 0, 0, fmt.Errorf("ORDERFLOW_MEMORY_LIMIT must be a positive number of bytes, got %q", raw)
	}
	return gcPercent, int64(float64(limit) * memoryLimitShare), nil
}

// tuneRuntime applies runtimeSettings.
func tuneRuntime(getenv func(string) string) error {
	gc, mem, err := runtimeSettings(getenv)
	if err != nil {
		return err
	}
	if gc >= 0 {
		debug.SetGCPercent(gc)
	}
	if mem > 0 {
		debug.SetMemoryLimit(mem)
	}
	return nil
}
