package chaos_test

// Scenarios on the production topology (make cluster's): the Temporal server built from
// go.temporal.io/server with persistence and visibility on PostgreSQL, two API replicas
// behind the load's round robin, and two workers sharing the consumer group and the task
// queue. A part killed here has a twin that carries on, except the Temporal server.

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// TestChaosCluster runs the cluster's scenarios, one at a time, against one system of the
// cluster topology, healed between scenarios, with the same checks and table as TestChaos.
func TestChaosCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("the chaos suite runs real processes; skipped with -short")
	}
	runSuite(t, "OrderFlow chaos suite on the cluster topology", clusterTopology, clusterScenarios())
}

// clusterScenarios lists the cluster's faults, one scenario each, in the order they run.
func clusterScenarios() []scenario {
	return []scenario{
		{
			name:   "cluster: Temporal server killed (kill -9) under load, then restarted (state in PostgreSQL)",
			inject: temporalRestart(true),
		},
		{
			name:   "cluster: one of two workers killed (kill -9) mid-activities, then restarted",
			inject: clusterWorkerKilled,
		},
		{
			name:   "cluster: one of two API replicas killed (kill -9); retries go to the other",
			inject: clusterAPIKilled,
		},
		{
			name:   "cluster: rolling restart of the workers (SIGTERM, one at a time)",
			inject: rollingRestartWorkers,
		},
	}
}

// clusterWorkerKilled kills the workers in turn, one per fault, while an order is between
// its activities; the other worker must keep executing new orders (after the group has
// rebalanced the victim's partitions to it, and from the task queue at once) before the
// victim is restarted.
func clusterWorkerKilled(ctx context.Context, r *run) error {
	s := r.s
	for c := range r.p.cycles {
		victim := s.workers[c%s.replicas]
		if c > 0 {
			if err := s.waitGroupMembers(ctx, s.replicas); err != nil {
				return err
			}
			if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "between faults"); err != nil {
				return err
			}
		}
		r.waitMidActivities(ctx)
		if err := victim.kill(); err != nil {
			return err
		}
		killed := time.Now()
		r.fault()
		if err := r.waitSettled(ctx, r.l.ackCount(), 5, "with "+victim.name+" dead"); err != nil {
			return err
		}
		r.note("5 orders placed after %s was killed settled %s after the kill", victim.name, time.Since(killed).Round(100*time.Millisecond))
		if err := s.ensure(ctx, victim); err != nil {
			return err
		}
		r.watchRebalance(ctx, killed, s.replicas)
	}
	return nil
}

// clusterAPIKilled kills the API replicas in turn, one per fault: the load's requests to
// the dead one fail and are retried against the other, with the same Idempotency-Key, so
// orders keep being acknowledged — one whose first answer was lost with the replica is
// answered by the other as a replay — until the victim is back.
func clusterAPIKilled(ctx context.Context, r *run) error {
	s := r.s
	for c := range r.p.restarts {
		victim := s.apis[c%len(s.apis)]
		if c > 0 {
			if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "between faults"); err != nil {
				return err
			}
		}
		mark := r.l.failureCount()
		if err := victim.kill(); err != nil {
			return err
		}
		r.fault()
		if err := r.waitFailures(ctx, mark, 3, "with "+victim.name+" dead"); err != nil {
			return err
		}
		if err := r.waitAcks(ctx, r.l.ackCount(), r.p.between, "with "+victim.name+" dead"); err != nil {
			return err
		}
		if err := s.ensure(ctx, victim); err != nil {
			return err
		}
	}
	r.note("%d requests failed while a replica was dead, each retried on the other; %d orders were acknowledged by a replay (Idempotent-Replayed)",
		r.l.failureCount(), r.l.codeCount("POST replayed"))
	return nil
}

// rollingRestartWorkers restarts the workers one at a time, as a deploy of the same
// release does: SIGTERM one, wait until it has exited and its replacement is ready and
// back in the group, let orders flow, then the next. Runs the stopped worker held move
// to the others at its next workflow task.
func rollingRestartWorkers(ctx context.Context, r *run) error {
	s := r.s
	for round := range r.p.cycles {
		for _, w := range s.workers[:s.replicas] {
			signalled := time.Now()
			if err := w.stop(); err != nil { // returns once it has exited
				return err
			}
			r.fault()
			exited := time.Since(signalled)
			if err := s.ensure(ctx, w); err != nil {
				return err
			}
			if err := s.waitGroupMembers(ctx, s.replicas); err != nil {
				return err
			}
			r.note("round %d: %s exited %s after its SIGTERM; replaced, the group was stable again %s after it", round+1, w.name,
				exited.Round(100*time.Millisecond), time.Since(signalled).Round(100*time.Millisecond))
			if err := r.waitSettled(ctx, r.l.ackCount(), r.p.between, "after "+w.name+"'s restart"); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitSettled waits until n orders acknowledged after the first mark have left the
// steps before execution (terminal, or resting on the book): the workers still running
// execute new orders, rather than the API merely accepting them.
func (r *run) waitSettled(ctx context.Context, mark, n int, when string) error {
	return waitUntil(ctx, 2*time.Minute, fmt.Sprintf("%d orders settled %s", n, when), func() (bool, error) {
		acks := r.l.acksFrom(mark)
		if len(acks) < n {
			return false, nil
		}
		ids := make([]int64, len(acks))
		for i, a := range acks {
			ids[i] = a.msg.OrderID
		}
		var settled int
		err := r.s.pool.QueryRow(ctx, `SELECT count(*) FROM orders WHERE id = ANY($1)
			AND status NOT IN ('CREATED', 'VALIDATED', 'SENT_TO_EXECUTOR')`, ids).Scan(&settled)
		return err == nil && settled >= n, nil
	})
}
