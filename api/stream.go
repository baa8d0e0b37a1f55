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

	"github.com/go-chi/chi/v5/middleware"

	"github.com/orderflow/orderflow/eventstream"
)

// Event stream limits.
const (
	// maxReplay bounds the events one connection replays after its Last-Event-ID; a
	// client further behind gets them in turns (resync) or reads the timelines.
	maxReplay = 10_000
	// replayPage is how many replayed events one query reads.
	replayPage = 500
	// streamWriteTimeout bounds one write to a stream: a client that takes no bytes for
	// this long is cut off, whatever the hub's queue holds.
	streamWriteTimeout = 10 * time.Second
	// streamFarewellTimeout bounds the last write to a dropped client, which is told why.
	streamFarewellTimeout = 2 * time.Second
	// streamRetry is the reconnection delay the stream asks EventSource clients for.
	streamRetry = 3 * time.Second
)

// lastEventIDHeader is the header an SSE client sends on reconnection: the id of the last
// event it received.
const lastEventIDHeader = "Last-Event-ID"

// streamPath reports whether r asks for an event stream, which lives as long as its
// client and so is exempt from the request timeout.
func streamPath(r *http.Request) bool {
	return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, "/events/stream")
}

// streamEvents handles GET /api/v1/orders/events/stream: the events of the caller's
// orders as they commit, as Server-Sent Events. A caller who sees every user's orders
// (an operator, or trust-body mode) names the user with userId.
func (s *server) streamEvents(w http.ResponseWriter, r *http.Request) error {
	c := callerOf(r)
	user, err := s.userOf(c, r.URL.Query().Get("userId"))
	if err != nil {
		return err
	}
	return s.stream(w, r, eventstream.Filter{UserID: user})
}

// streamOrderEvents handles GET /api/v1/orders/{id}/events/stream: one order's events as
// they commit. Another user's order is 404, as everywhere.
func (s *server) streamOrderEvents(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	o, err := s.loadOrder(r.WithContext(ctx))
	if err != nil {
		return err
	}
	return s.stream(w, r, eventstream.Filter{UserID: o.UserID, OrderID: o.ID})
}

// stream serves f's events: it subscribes at the hub's cursor, replays what the client
// missed after its Last-Event-ID up to that cursor, then writes the live events, with a
// heartbeat comment whenever the stream is idle. Errors before the first byte are
// answered as problems; after it, the stream just ends (a client reconnects with its
// Last-Event-ID).
func (s *server) stream(w http.ResponseWriter, r *http.Request, f eventstream.Filter) error {
	if s.cfg.Streams == nil {
		return newError(codeUnavailable, "event streams are not served by this replica")
	}
	setup, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
	defer cancel()
	from, replay, err := s.lastEventPosition(setup, r, f)
	if err != nil {
		return err
	}
	sub, err := s.cfg.Streams.Subscribe(setup, f)
	switch {
	case errors.Is(err, eventstream.ErrTooMany):
		return &apiError{code: codeUnavailable, retryAfter: 5 * time.Second, cause: err,
			message: "this replica serves as many event streams as it may; retry later (or elsewhere)"}
	case err != nil:
		return &apiError{code: codeUnavailable, retryAfter: time.Second, cause: err,
			message: "the event stream is not available; retry shortly"}
	}
	defer sub.Close()

	sw := &sseWriter{w: w, rc: http.NewResponseController(w)}
	// A keep-alive connection's next request must not inherit the stream's deadline.
	defer func() { _ = sw.rc.SetWriteDeadline(time.Time{}) }()
	// The stream outlives the server's read and write timeouts, which are for ordinary
	// requests: with a read deadline left, net/http would cancel the request when it
	// passed. Each write gets a deadline of its own instead.
	if err := sw.rc.SetReadDeadline(time.Time{}); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return fmt.Errorf("api: event stream: clear the read deadline: %w", err)
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("X-Accel-Buffering", "no") // a proxy such as nginx must not buffer the stream
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(sw, "retry: %d\n\n", streamRetry.Milliseconds())
	if err := sw.flush(); err != nil {
		return s.streamEnded(r, err)
	}

	both := callerOf(r).seesAll()
	last := sub.Start()
	if replay {
		if from.After(last) {
			// The client has read further than this replica's hub (it was served by another
			// replica): the live events up to its position are not news to it.
			last = from
		}
		done, err := s.replayEvents(r.Context(), sw, f, from, sub.Start(), both)
		if err != nil || done {
			return s.streamEnded(r, err)
		}
	}

	heartbeat := time.NewTicker(s.cfg.StreamHeartbeat)
	defer heartbeat.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-sub.Done():
			if errors.Is(sub.Err(), eventstream.ErrTooSlow) {
				sw.arm(streamFarewellTimeout)
				sw.event("dropped", "", map[string]string{"reason": "TOO_SLOW",
					"message": "this stream fell too far behind its events and was closed; reconnect with Last-Event-ID to resume"})
				_ = sw.flush()
			}
			return nil
		case <-sub.Pending():
			for _, e := range sub.Take() {
				if !e.Position().After(last) {
					continue
				}
				last = e.Position()
				sw.orderEvent(e, both)
			}
		case <-heartbeat.C:
			fmt.Fprint(sw, ": heartbeat\n\n")
		}
		if err := sw.flush(); err != nil {
			return s.streamEnded(r, err)
		}
	}
}

// lastEventPosition reads the request's Last-Event-ID: where the replay starts, and
// whether there is one. The id must be an event of f's user; any other (unknown, or
// another user's: the two are not told apart) is a 400 naming the header.
func (s *server) lastEventPosition(ctx context.Context, r *http.Request, f eventstream.Filter) (eventstream.Position, bool, error) {
	raw := strings.TrimSpace(r.Header.Get(lastEventIDHeader))
	if raw == "" {
		return eventstream.Position{}, false, nil
	}
	id, err := strconv.ParseInt(raw, 10, 64)
	if err != nil || id <= 0 {
		return eventstream.Position{}, false, invalid(fieldError{lastEventIDHeader, fmt.Sprintf("must be the id of an event (a positive integer), got %q", raw)})
	}
	loc, err := s.cfg.Streams.Locate(ctx, id)
	if errors.Is(err, eventstream.ErrUnknownEvent) || err == nil && loc.UserID != f.UserID {
		return eventstream.Position{}, false, invalid(fieldError{lastEventIDHeader,
			fmt.Sprintf("%d is not an event of this stream's orders; reconnect without it and read the timelines (GET /api/v1/orders/{id}/events)", id)})
	}
	if err != nil {
		return eventstream.Position{}, false, fmt.Errorf("api: %w", err)
	}
	return loc.Position, true, nil
}

// replayEvents writes f's events after from up to upto, at most maxReplay of them; with more,
// it writes a resync event after them, and done says the stream must end.
func (s *server) replayEvents(ctx context.Context, sw *sseWriter, f eventstream.Filter, from, upto eventstream.Position, both bool) (done bool, err error) {
	sent := 0
	for upto.After(from) {
		qctx, cancel := context.WithTimeout(ctx, s.cfg.RequestTimeout)
		events, err := s.cfg.Streams.Replay(qctx, f, from, upto, replayPage)
		cancel()
		if err != nil {
			return true, err
		}
		for _, e := range events {
			if sent == maxReplay {
				sw.arm(streamFarewellTimeout)
				sw.event("resync", "", map[string]any{"lastEventId": strconv.FormatInt(from.ID, 10),
					"message": fmt.Sprintf("more than %d events were missed; reconnect with Last-Event-ID to receive the next ones, or read the orders' timelines (GET /api/v1/orders/{id}/events)", maxReplay)})
				_ = sw.flush()
				return true, nil
			}
			sw.orderEvent(e, both)
			from = e.Position()
			sent++
		}
		if err := sw.flush(); err != nil {
			return true, err
		}
		if len(events) < replayPage {
			break
		}
	}
	return false, nil
}

// streamEnded logs why a stream ended early; nothing more can be answered on it.
func (s *server) streamEnded(r *http.Request, err error) error {
	if err != nil && r.Context().Err() == nil {
		s.logger.DebugContext(r.Context(), "event stream ended", "error", err,
			"request_id", middleware.GetReqID(r.Context()))
	}
	return nil
}

// sseWriter writes Server-Sent Events; the first write error sticks and is returned by
// flush. Every batch of writes up to a flush has one write deadline, armed before its
// first byte (a deadline set at the flush would come too late for bytes that overflow
// the response's buffer).
type sseWriter struct {
	w     http.ResponseWriter
	rc    *http.ResponseController
	armed bool
	err   error
}

// arm gives the writes up to the next flush d to complete.
func (sw *sseWriter) arm(d time.Duration) {
	sw.armed = true
	if sw.err != nil {
		return
	}
	if err := sw.rc.SetWriteDeadline(time.Now().Add(d)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		sw.err = err
	}
}

func (sw *sseWriter) Write(p []byte) (int, error) {
	if !sw.armed {
		sw.arm(streamWriteTimeout)
	}
	if sw.err != nil {
		return 0, sw.err
	}
	n, err := sw.w.Write(p)
	sw.err = err
	return n, err
}

// event writes one event of type name with v as its one-line JSON data, and an id line
// unless id is empty (control events carry none, so that a reconnection resumes after
// the last order event).
func (sw *sseWriter) event(name, id string, v any) {
	data, err := json.Marshal(v)
	if err != nil {
		sw.err = fmt.Errorf("encode %s event: %w", name, err)
		return
	}
	if id != "" {
		fmt.Fprintf(sw, "id: %s\n", id)
	}
	fmt.Fprintf(sw, "event: %s\ndata: %s\n\n", name, data)
}

// orderEvent writes e as GET /api/v1/orders/{id}/events shows it; the counterparty's
// order id only to a caller who sees both orders.
func (sw *sseWriter) orderEvent(e *eventstream.Event, both bool) {
	v := newEventView(e.OrderEvent)
	if !both {
		v.Details = withoutCounterparty(v.Details)
	}
	sw.event("order-event", strconv.FormatInt(e.ID, 10), v)
}

// flush sends what was written, within the batch's deadline.
func (sw *sseWriter) flush() error {
	if !sw.armed {
		sw.arm(streamWriteTimeout)
	}
	sw.armed = false
	if sw.err != nil {
		return sw.err
	}
	if err := sw.rc.Flush(); err != nil {
		sw.err = err
	}
	return sw.err
}
