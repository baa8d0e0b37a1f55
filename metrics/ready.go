package metrics

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// checkTimeout bounds each readiness check: an orchestrator probing every few seconds
// needs an answer, and a dependency slower than this is not ready.
const checkTimeout = 2 * time.Second

// Check is one dependency a process needs to do its work, e.g. PostgreSQL and
// pool.Ping. Ping returns nil if the dependency answers.
type Check struct {
	Name string
	Ping func(context.Context) error
}

// Readiness returns a handler that runs every check at once and answers 200 with
// {"<name>":"ok",…} if all pass, or 503 with the failing ones as "unavailable". Reasons
// are logged, not answered, so the endpoint never shows connection details.
func Readiness(logger *slog.Logger, checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
		defer cancel()
		errs := make([]error, len(checks))
		var wg sync.WaitGroup
		for i, c := range checks {
			wg.Go(func() { errs[i] = c.Ping(ctx) })
		}
		wg.Wait()

		status := http.StatusOK
		body := make(map[string]string, len(checks))
		for i, c := range checks {
			body[c.Name] = "ok"
			if errs[i] != nil {
				status = http.StatusServiceUnavailable
				body[c.Name] = "unavailable"
				if logger != nil {
					logger.Warn("not ready", "dependency", c.Name, "error", errs[i])
				}
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(body) // the client may be gone; nothing to do then
	})
}
