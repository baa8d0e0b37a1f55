package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
)

// Operator carries on-call decisions about parked orders (orders whose workflow
// exhausted a step's retries) to their workflows, and waits up to wait for the workflow
// to have applied them (applied false: accepted, still being applied); a workflow that
// is not parked refuses with an error wrapping orderbook.ErrNotParked. The Canceller given to NewServer provides it when it can;
// otherwise the admin routes answer 503.
type Operator interface {
	Retry(ctx context.Context, orderID int64, runKey, requestedBy string, wait time.Duration) (applied bool, err error)
	Fail(ctx context.Context, orderID int64, runKey, reason, requestedBy string, wait time.Duration) (applied bool, err error)
}

// maxReasonLen bounds an operator's fail reason, which is stored on the order.
const maxReasonLen = 500

// operatorView answers an admin decision.
type operatorView struct {
	orderView
	Message string `json:"message"`
}

// operator returns the Operator, or SERVICE_UNAVAILABLE if the API has none.
func (s *server) operator() (Operator, error) {
	ops, ok := s.cancels.(Operator)
	if !ok {
		return nil, newError(codeUnavailable, "operator decisions are not available on this server")
	}
	return ops, nil
}

// loadParked returns the order of the request if it is parked, ORDER_NOT_PARKED if not.
func (s *server) loadParked(r *http.Request) (queries.Order, error) {
	o, err := s.loadOrder(r)
	if err != nil {
		return o, err
	}
	if !o.NeedsAttention {
		return o, newError(codeOrderNotParked, "order %d is %s and not parked: only an order whose execution stalled can be retried or failed by an operator", o.ID, o.Status)
	}
	return o, nil
}

// retryOrder tells a parked order's workflow to retry the step that stalled.
func (s *server) retryOrder(w http.ResponseWriter, r *http.Request) error {
	ops, err := s.operator()
	if err != nil {
		return err
	}
	o, err := s.loadParked(r)
	if err != nil {
		return err
	}
	applied, err := ops.Retry(r.Context(), o.ID, o.RunKey, callerOf(r).name(), s.cfg.CancelWait)
	if err != nil {
		return decisionError(o, "retry", err)
	}
	return s.respondDecided(w, r, o.ID, applied, "Retry applied: the workflow resumed at "+o.StalledStep)
}

// decisionError is the answer to a decision the order's run did not apply: refused,
// because the run is not parked (whatever the row said a moment before), or not
// delivered.
func decisionError(o queries.Order, what string, err error) error {
	if errors.Is(err, orderbook.ErrNotParked) {
		return newError(codeOrderNotParked, "order %d is not parked: its run refused the %s (only an order whose execution stalled can be retried or failed)", o.ID, what)
	}
	return &apiError{code: codeUnavailable, message: "the order's workflow did not answer; read the order before deciding again", cause: fmt.Errorf("api: %s order %d: %w", what, o.ID, err)}
}

// respondDecided answers a decision the run accepted, with the order as it is now: 200
// with msg once applied, 202 while the run is still applying it.
func (s *server) respondDecided(w http.ResponseWriter, r *http.Request, id int64, applied bool, msg string) error {
	o, err := s.book.Order(r.Context(), id)
	if err != nil {
		return fmt.Errorf("api: re-read order %d: %w", id, err)
	}
	status := http.StatusOK
	if !applied {
		status, msg = http.StatusAccepted, "Decision accepted; the workflow is applying it"
	}
	v, err := s.fullView(r.Context(), o)
	if err != nil {
		return err
	}
	s.respond(w, r, status, operatorView{orderView: v, Message: msg})
	return nil
}

// failOrder tells a parked order's workflow to end it FAILED with the given reason.
func (s *server) failOrder(w http.ResponseWriter, r *http.Request) error {
	ops, err := s.operator()
	if err != nil {
		return err
	}
	if err := requireJSON(r); err != nil {
		return err
	}
	reason, err := decodeFailReason(r)
	if err != nil {
		return err
	}
	o, err := s.loadParked(r)
	if err != nil {
		return err
	}
	applied, err := ops.Fail(r.Context(), o.ID, o.RunKey, reason, callerOf(r).name(), s.cfg.CancelWait)
	if err != nil {
		return decisionError(o, "fail", err)
	}
	return s.respondDecided(w, r, o.ID, applied, "Order failed by the operator")
}

// decodeFailReason reads {"reason": "..."}: a non-empty string of at most maxReasonLen
// characters, and no other field.
func decodeFailReason(r *http.Request) (string, error) {
	fields, err := readObject(r)
	if err != nil {
		return "", err
	}
	for name := range fields {
		if name != "reason" {
			return "", invalid(fieldError{name, "is not a known field"})
		}
	}
	var reason string
	if raw, ok := fields["reason"]; !ok || json.Unmarshal(raw, &reason) != nil {
		return "", invalid(fieldError{"reason", "is required: a string saying why the order is failed"})
	}
	reason = strings.TrimSpace(reason)
	switch {
	case reason == "":
		return "", invalid(fieldError{"reason", "must not be empty"})
	case utf8.RuneCountInString(reason) > maxReasonLen:
		return "", invalid(fieldError{"reason", fmt.Sprintf("must be at most %d characters", maxReasonLen)})
	}
	return reason, nil
}

// stuckView is one order that needs attention.
type stuckView struct {
	orderView
	StalledStep string `json:"stalledStep,omitempty"`
	LastError   string `json:"lastError,omitempty"`
}

// listStuck lists parked orders and orders that are neither terminal nor resting and
// have not changed for longer than olderThan (default 5m).
func (s *server) listStuck(w http.ResponseWriter, r *http.Request) error {
	olderThan := 5 * time.Minute
	if v := r.URL.Query().Get("olderThan"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return invalid(fieldError{"olderThan", "must be a positive duration such as 5m or 90s"})
		}
		olderThan = d
	}
	rows, err := s.book.Stuck(r.Context(), olderThan, 1000)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	views, err := s.orderViews(r.Context(), rows...)
	if err != nil {
		return err
	}
	out := make([]stuckView, len(rows))
	for i, o := range rows {
		out[i] = stuckView{orderView: views[i], StalledStep: o.StalledStep, LastError: o.LastError}
	}
	s.respond(w, r, http.StatusOK, out)
	return nil
}

// haltInstrument handles POST /api/v1/admin/instruments/{id}/halt: from its answer on,
// the instrument matches nothing (see orderbook.Service.HaltInstrument).
func (s *server) haltInstrument(w http.ResponseWriter, r *http.Request) error {
	return s.setInstrumentStatus(w, r, s.book.HaltInstrument)
}

// resumeInstrument handles POST /api/v1/admin/instruments/{id}/resume.
func (s *server) resumeInstrument(w http.ResponseWriter, r *http.Request) error {
	return s.setInstrumentStatus(w, r, s.book.ResumeInstrument)
}

func (s *server) setInstrumentStatus(w http.ResponseWriter, r *http.Request, set func(context.Context, int64) (queries.Instrument, error)) error {
	raw := chi.URLParam(r, "id")
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return invalid(fieldError{"id", fmt.Sprintf("must be a positive integer, got %q", raw)})
	}
	in, err := set(r.Context(), id)
	if errors.Is(err, orderbook.ErrInstrumentNotFound) {
		return newError(codeInstrumentNotFound, "instrument %d not found", id)
	}
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	s.respond(w, r, http.StatusOK, newInstrumentView(in))
	return nil
}
