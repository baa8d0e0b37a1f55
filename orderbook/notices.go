package orderbook

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/queries"
)

// Delivery of fill notices. notifyWorkers bounds the signals in flight at once however
// many resting orders a sweep traded with; noticeBatch is how many notices the sender
// claims at a time; noticePoll is how often it looks for notices nobody woke it for
// (another process's, or ones whose claim ran out).
const (
	notifyWorkers = 8
	noticeBatch   = 256
	noticePoll    = time.Second
)

// FillNotifier tells a resting order's run that a fill left its order in status; a run
// that no longer exists is not an error. (workflows.Starter is one.)
type FillNotifier interface {
	NotifyFill(ctx context.Context, orderID int64, runKey string, status order.Status) error
}

func notices(rows []queries.ClaimFillNoticesRow) []FillNotice {
	out := make([]FillNotice, len(rows))
	for i, n := range rows {
		out[i] = FillNotice{ID: n.ID, OrderID: n.OrderID, RunKey: n.RunKey, Status: order.Status(n.Status)}
	}
	return out
}

// Deliver sends the notices through n, at most notifyWorkers at a time, deletes those
// delivered and returns the first failure. A notice that failed stays claimed until its
// claim runs out; DeliverFillNotices then sends it again. A notice delivered twice (its
// deletion failed) is harmless: the run takes the status it already knows as a no-op.
func (s *Service) Deliver(ctx context.Context, n FillNotifier, notices []FillNotice) error {
	if len(notices) == 0 {
		return nil
	}
	work := make(chan FillNotice)
	var (
		mu        sync.Mutex
		delivered []int64
		firstErr  error
		wg        sync.WaitGroup
	)
	for range min(notifyWorkers, len(notices)) {
		wg.Go(func() {
			for fn := range work {
				err := n.NotifyFill(ctx, fn.OrderID, fn.RunKey, fn.Status)
				mu.Lock()
				if err == nil {
					delivered = append(delivered, fn.ID)
				} else if firstErr == nil {
					firstErr = fmt.Errorf("tell order %d of its fill: %w", fn.OrderID, err)
				}
				mu.Unlock()
			}
		})
	}
	for _, fn := range notices {
		work <- fn
	}
	close(work)
	wg.Wait()
	if len(delivered) > 0 {
		if err := s.q.DeleteFillNotices(ctx, delivered); err != nil && firstErr == nil {
			firstErr = fmt.Errorf("delete %d delivered fill notices: %w", len(delivered), err)
		}
	}
	return firstErr
}

// DeliverFillNotices sends, until ctx ends, the fill notices that no step handed back
// for delivery (deep sweeps) or whose delivery failed: it claims them a batch at a time
// (several senders may run, in several processes), delivers them, and waits for a Match
// of this service to wake it, or for noticePoll, when none are left.
func (s *Service) DeliverFillNotices(ctx context.Context, n FillNotifier) error {
	poll := time.NewTicker(noticePoll)
	defer poll.Stop()
	for {
		claimed, err := s.q.ClaimFillNotices(ctx, queries.ClaimFillNoticesParams{
			LeaseSeconds: s.noticeLease.Seconds(), MaxRows: noticeBatch,
		})
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			s.log.Warn("claim fill notices", "error", err)
		case len(claimed) > 0:
			if err := s.Deliver(ctx, n, notices(claimed)); err != nil && ctx.Err() == nil {
				s.log.Warn("fill notices not delivered; sent again when their claim runs out", "error", err)
			}
			if len(claimed) == noticeBatch {
				continue // more may be waiting
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.noticeWake:
		case <-poll.C:
		}
	}
}

// wakeNotifier tells this service's DeliverFillNotices that a step left notices to it.
func (s *Service) wakeNotifier() {
	select {
	case s.noticeWake <- struct{}{}:
	default: // already woken
	}
}
