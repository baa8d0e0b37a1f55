package chaos_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sync"

	"go.temporal.io/api/workflowservice/v1"
)

// The next release's binary: orderflow built with -tags rollingdeploy, whose workers run
// a changed OrderWorkflow (cmd/orderflow/nextrelease.go: a timer gated by
// workflow.GetVersion, change id rolling-deploy-test).
var (
	nextOnce sync.Once
	nextPath string
	nextErr  error
)

func nextReleaseBinary(s *system) (string, error) {
	nextOnce.Do(func() {
		root, err := filepath.Abs("..")
		if err != nil {
			nextErr = err
			return
		}
		nextPath = filepath.Join(filepath.Dir(s.bin), "orderflow-next")
		cmd := exec.Command("go", "build", "-race", "-tags", "rollingdeploy", "-o", nextPath, "./cmd/orderflow")
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			nextErr = fmt.Errorf("go build -tags rollingdeploy: %w\n%s", err, out)
		}
	})
	return nextPath, nextErr
}

// rollingDeploy replaces today's worker with the next release's, one worker at a time,
// under the load: a next-release worker joins (the old and the new one side by side
// share the consumer group and the task queue), then the old one is stopped (SIGTERM),
// and the new one carries on alone with the runs the old one started. A worker of the
// old release handed a run the new one advanced fails that workflow task as
// non-deterministic and never records into it, so every order must still end as the
// load expects. It comes last: the runs it leaves open carry the change's marker, which
// the old release's workers of the scenarios after it could not replay.
func rollingDeploy() scenario {
	var next *process
	return scenario{
		name: "rolling deploy to a changed workflow; old and new workers side by side, then the new alone",
		setup: func(ctx context.Context, r *run) error {
			bin, err := nextReleaseBinary(r.s)
			if err != nil {
				return err
			}
			next = r.s.newProcess("worker-next", "worker", map[string]string{
				"METRICS_ADDR": fmt.Sprintf("127.0.0.1:%d", freePort(r.t)), "TEMPORAL_DEBUG": "1", "RECONCILE_INTERVAL": "2s",
			})
			next.bin = bin
			r.t.Cleanup(func() { _ = next.stop() })
			return nil
		},
		inject: func(ctx context.Context, r *run) error {
			if err := r.s.ensure(ctx, next); err != nil {
				return err
			}
			if err := r.s.waitGroupMembers(ctx, 2); err != nil {
				return err
			}
			r.fault()
			if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "with the old and the new worker side by side"); err != nil {
				return err
			}
			if err := r.s.workers[0].stop(); err != nil {
				return err
			}
			r.fault()
			return r.waitAcks(ctx, r.l.ackCount(), r.p.between, "with the new worker alone")
		},
		verify: func(ctx context.Context, r *run) {
			// The new release ran: its change's marker is on runs of the scenario's orders.
			query := fmt.Sprintf("TemporalChangeVersion = 'rolling-deploy-test-1' AND (%s)", instrumentTerms(r.l.instruments))
			resp, err := r.s.tc.CountWorkflow(ctx, &workflowservice.CountWorkflowExecutionsRequest{Query: query})
			switch {
			case err != nil:
				r.violate("count the new release's runs: %v", err)
			case resp.GetCount() == 0:
				r.violate("no run of the scenario carries the new release's change (%s)", query)
			default:
				r.note("%d runs took the new release's change", resp.GetCount())
			}
			if !next.running() {
				r.violate("the next release's worker died")
			}
		},
		teardown: func(ctx context.Context, r *run) error {
			_ = next.stop()
			// workers[0] (today's release) comes back with the next heal.
			return nil
		},
	}
}
