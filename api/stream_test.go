package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/eventstream"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
)

// streamHarness is a harness whose API serves event streams from a hub of its own, over
// real HTTP, with the order-book service the workflow steps call to move orders on.
type streamHarness struct {
	*harness
	hub  *eventstream.Hub
	book *orderbook.Service
	url  string
}

// newStreamHarness starts a hub with hcfg and an API with cfg (and that hub) served by
// srv (nil: httptest's default server).
func newStreamHarness(t *testing.T, hcfg eventstream.Config, cfg api.Config, srv func(http.Handler) *httptest.Server) *streamHarness {
	t.Helper()
	pool := newPool(t)
	hub := eventstream.New(pool, nil, hcfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = hub.Run(ctx) }()
	cfg.Streams = hub
	h := newHarnessWith(t, pool, cfg, nil)
	if srv == nil {
		srv = httptest.NewServer
	}
	ts := srv(h.handler)
	// Cleanups run last first: the hub stops (ending its streams) before the server closes.
	t.Cleanup(ts.Close)
	t.Cleanup(func() { cancel(); <-done })
	<-hub.Ready()
	return &streamHarness{harness: h, hub: hub, book: orderbook.New(pool, nil, orderbook.Config{}), url: ts.URL}
}

// sseEvent is one block of a stream: an event, a retry field, or a comment.
type sseEvent struct {
	id, event, data, retry, comment string
}

// sseClient reads one stream with net/http, as a browser's EventSource would.
type sseClient struct {
	t      *testing.T
	resp   *http.Response
	events chan sseEvent
	cancel context.CancelFunc
	ended  chan struct{}
}

// open connects to path with header pairs; it fails the test unless the answer is a
// 200 event stream, which it checks against the spec.
func (s *streamHarness) open(path string, header ...string) *sseClient {
	s.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.url+path, nil)
	if err != nil {
		s.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		s.t.Fatalf("GET %s: %v", path, err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "text/event-stream" {
		body, _ := io.ReadAll(resp.Body)
		cancel()
		s.t.Fatalf("GET %s: %d %s: %s", path, resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	s.spec.check(s.t, req, response{status: resp.StatusCode, header: resp.Header})
	c := &sseClient{t: s.t, resp: resp, events: make(chan sseEvent, 1<<16), cancel: cancel, ended: make(chan struct{})}
	go c.read()
	s.t.Cleanup(c.close)
	if first := c.next(); first.retry == "" {
		s.t.Fatalf("the stream began with %+v, want a retry field", first)
	}
	return c
}

func (c *sseClient) read() {
	defer close(c.ended)
	defer close(c.events)
	sc := bufio.NewScanner(c.resp.Body)
	var e sseEvent
	for sc.Scan() {
		line := sc.Text()
		field, value, _ := strings.Cut(line, ":")
		value = strings.TrimPrefix(value, " ")
		switch {
		case line == "":
			if e != (sseEvent{}) { // a blank line after a comment dispatches nothing
				c.events <- e
			}
			e = sseEvent{}
		case field == "":
			c.events <- sseEvent{comment: value}
		case field == "id":
			e.id = value
		case field == "event":
			e.event = value
		case field == "data":
			e.data = value
		case field == "retry":
			e.retry = value
		}
	}
}

// close disconnects and waits for the reader to stop.
func (c *sseClient) close() {
	c.cancel()
	<-c.ended
	_ = c.resp.Body.Close()
}

// next returns the next block, failing the test after 10s.
func (c *sseClient) next() sseEvent {
	c.t.Helper()
	select {
	case e, ok := <-c.events:
		if !ok {
			c.t.Fatal("the stream ended")
		}
		return e
	case <-time.After(10 * time.Second):
		c.t.Fatal("nothing on the stream within 10s")
	}
	return sseEvent{}
}

// streamedEvent is an order-event's data.
type streamedEvent struct {
	ID        int64           `json:"id"`
	OrderID   int64           `json:"orderId"`
	EventType string          `json:"eventType"`
	ToStatus  string          `json:"toStatus"`
	Details   json.RawMessage `json:"details"`
}

// orderEvents returns the next n order events, skipping heartbeats; each event's id
// line must be its data's id, and its data an OrderEvent of the spec.
func (c *sseClient) orderEvents(spec *specValidator, n int) []streamedEvent {
	c.t.Helper()
	var out []streamedEvent
	for len(out) < n {
		e := c.next()
		if e.comment != "" {
			continue
		}
		if e.event != "order-event" {
			c.t.Fatalf("after %d order events: %+v", len(out), e)
		}
		var v streamedEvent
		if err := json.Unmarshal([]byte(e.data), &v); err != nil {
			c.t.Fatalf("data %q: %v", e.data, err)
		}
		var raw any
		_ = json.Unmarshal([]byte(e.data), &raw)
		if err := spec.doc.Components.Schemas["OrderEvent"].Value.VisitJSON(raw); err != nil {
			c.t.Errorf("data %s is not an OrderEvent: %v", e.data, err)
		}
		if e.id != strconv.FormatInt(v.ID, 10) {
			c.t.Errorf("id line %q for event %d", e.id, v.ID)
		}
		out = append(out, v)
	}
	return out
}

func eventIDs(events []streamedEvent) []int64 {
	out := make([]int64, len(events))
	for i, e := range events {
		out[i] = e.ID
	}
	return out
}

// userEvents is user's events in the database, in stream order.
func (s *streamHarness) userEvents(user int64) []int64 {
	s.t.Helper()
	rows, err := s.pool.Query(context.Background(), `SELECT e.id FROM order_events e JOIN orders o ON o.id = e.order_id
		WHERE o.user_id = $1 ORDER BY e.xact, e.id`, user)
	if err != nil {
		s.t.Fatal(err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[int64])
	if err != nil {
		s.t.Fatal(err)
	}
	return ids
}

// advance validates, dispatches and matches order id, as its run's steps do.
func (s *streamHarness) advance(id int64) {
	s.t.Helper()
	ctx := context.Background()
	if _, err := s.book.Validate(ctx, id); err != nil {
		s.t.Fatalf("validate %d: %v", id, err)
	}
	if _, err := s.book.Dispatch(ctx, id); err != nil {
		s.t.Fatalf("dispatch %d: %v", id, err)
	}
	if _, err := s.book.Match(ctx, id); err != nil {
		s.t.Fatalf("match %d: %v", id, err)
	}
}

func TestAReconnectingStreamGetsExactlyTheEventsItMissedThenLiveOnes(t *testing.T) {
	t.Parallel()
	s := newStreamHarness(t, eventstream.Config{}, testConfig(), nil)
	key := bearer(s.key(1, auth.ScopeRead))
	first := s.open("/api/v1/orders/events/stream", "Authorization", key)

	a, b := s.mustPlace(limitBody(1, "10", 1)), s.mustPlace(limitBody(1, "11", 1))
	s.advance(a.OrderID)
	want := s.userEvents(1)
	seen := first.orderEvents(s.spec, len(want))
	if !slices.Equal(eventIDs(seen), want) {
		t.Fatalf("live: %v, want user 1's events %v", eventIDs(seen), want)
	}
	first.close()
	waitFor(t, "the server to end the first stream", func() bool { return s.hub.Stats().Subscribers == 0 })

	// Missed while disconnected: b reaches the book, a is cancelled.
	s.advance(b.OrderID)
	if _, err := s.book.RecordCancel(context.Background(), a.OrderID, "test", nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.book.Cancel(context.Background(), orderbook.CancelRequest{OrderID: a.OrderID}); err != nil {
		t.Fatal(err)
	}
	all := s.userEvents(1)
	missed := all[len(want):]
	last := strconv.FormatInt(seen[len(seen)-1].ID, 10)
	again := s.open("/api/v1/orders/events/stream", "Authorization", key, "Last-Event-ID", last)
	if got := again.orderEvents(s.spec, len(missed)); !slices.Equal(eventIDs(got), missed) {
		t.Fatalf("after Last-Event-ID %s: %v, want exactly the missed %v", last, eventIDs(got), missed)
	}
	c := s.mustPlace(limitBody(1, "12", 1))
	if got := again.orderEvents(s.spec, 1)[0]; got.OrderID != c.OrderID || got.EventType != "ORDER_PLACED" {
		t.Errorf("next after the replay: %+v, want order %d's ORDER_PLACED (nothing repeated)", got, c.OrderID)
	}
	if n := len(s.userEvents(1)); n != len(all)+1 {
		t.Errorf("user 1 has %d events, want %d", n, len(all)+1)
	}
}

func TestAStreamHoldsOnlyTheCallersOrdersAndAnOrdersStreamOnlyThatOrder(t *testing.T) {
	t.Parallel()
	s := newStreamHarness(t, eventstream.Config{}, testConfig(), nil)
	key1, key2 := bearer(s.key(1, auth.ScopeRead)), bearer(s.key(2, auth.ScopeRead))
	mine := s.open("/api/v1/orders/events/stream", "Authorization", key1)
	theirs := s.open("/api/v1/orders/events/stream", "Authorization", key2)
	sell := s.mustPlace(`{"userId":2,"instrumentId":101,"orderType":"SELL","orderKind":"LIMIT","price":10,"quantity":1}`)
	s.advance(sell.OrderID)
	buy := s.mustPlace(limitBody(1, "10", 1))
	one := s.open(fmt.Sprintf("/api/v1/orders/%d/events/stream", buy.OrderID), "Authorization", key1, "Last-Event-ID",
		strconv.FormatInt(s.userEvents(1)[0], 10)) // its ORDER_PLACED: replay from after it
	s.advance(buy.OrderID) // fills against user 2's sell

	want1, want2 := s.userEvents(1), s.userEvents(2)
	got1, got2 := mine.orderEvents(s.spec, len(want1)), theirs.orderEvents(s.spec, len(want2))
	if !slices.Equal(eventIDs(got1), want1) || !slices.Equal(eventIDs(got2), want2) {
		t.Fatalf("user 1 got %v (want %v), user 2 got %v (want %v)", eventIDs(got1), want1, eventIDs(got2), want2)
	}
	if got := eventIDs(one.orderEvents(s.spec, len(want1)-1)); !slices.Equal(got, want1[1:]) {
		t.Errorf("order %d's stream: %v, want %v", buy.OrderID, got, want1[1:])
	}
	fills := 0
	for _, e := range append(got1, got2...) {
		if strings.Contains(string(e.Details), "counterpartyOrderId") {
			t.Errorf("event %d shows the counterparty's order: %s", e.ID, e.Details)
		}
		if e.ToStatus == "EXECUTED" {
			fills++
		}
	}
	if fills != 2 {
		t.Errorf("%d fills to EXECUTED streamed, want one each side", fills)
	}

	// Another user's order is not found, and another user's event is no place to resume.
	res := s.do(http.MethodGet, fmt.Sprintf("/api/v1/orders/%d/events/stream", buy.OrderID), "", "Authorization", key2)
	wantProblem(t, res, http.StatusNotFound, "ORDER_NOT_FOUND", "")
	for _, id := range []string{strconv.FormatInt(want1[0], 10), "999999", "abc"} {
		res := s.do(http.MethodGet, "/api/v1/orders/events/stream", "", "Authorization", key2, "Last-Event-ID", id)
		wantProblem(t, res, http.StatusBadRequest, "VALIDATION_FAILED", "Last-Event-ID")
	}
	// An operator streams one user at a time, named.
	res = s.do(http.MethodGet, "/api/v1/orders/events/stream", "", "Authorization", bearer(s.key(9, auth.ScopeAdmin)))
	wantProblem(t, res, http.StatusBadRequest, "VALIDATION_FAILED", "userId")
}

// smallBuffers is a listener whose connections have small kernel send buffers, so that
// a client that reads nothing blocks the server's writes after a few kilobytes.
type smallBuffers struct{ net.Listener }

func (l smallBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

func TestASlowStreamIsToldAndDroppedWhileAnotherKeepsReceiving(t *testing.T) {
	t.Parallel()
	s := newStreamHarness(t, eventstream.Config{Buffer: 16}, testConfig(), func(h http.Handler) *httptest.Server {
		ts := httptest.NewUnstartedServer(h)
		ts.Listener = smallBuffers{ts.Listener}
		ts.Start()
		return ts
	})
	key := bearer(s.key(1, auth.ScopeRead))
	fast := s.open("/api/v1/orders/events/stream", "Authorization", key)
	o := s.mustPlace(limitBody(1, "10", 1))
	got := fast.orderEvents(s.spec, 1)

	// The slow client asks for the stream and reads nothing.
	slow, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = slow.Close() }()
	_ = slow.(*net.TCPConn).SetReadBuffer(4096)
	fmt.Fprintf(slow, "GET /api/v1/orders/events/stream HTTP/1.1\r\nHost: test\r\nAuthorization: %s\r\n\r\n", key)
	waitFor(t, "both streams subscribed", func() bool { return s.hub.Stats().Subscribers == 2 })

	// Batches of events, each taken by the fast client before the next.
	details := []byte(fmt.Sprintf(`{"note":%q}`, strings.Repeat("x", 1000)))
	for s.hub.Stats().Dropped == 0 {
		if len(got) > 5000 {
			t.Fatal("the slow client was not dropped after 5000 events")
		}
		tx, err := s.pool.Begin(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for range 10 {
			if _, err := queries.New(tx).InsertOrderEvent(context.Background(), queries.InsertOrderEventParams{
				OrderID: o.OrderID, EventType: "NOTE", ToStatus: "CREATED", Details: details}); err != nil {
				t.Fatal(err)
			}
		}
		if err := tx.Commit(context.Background()); err != nil {
			t.Fatal(err)
		}
		got = append(got, fast.orderEvents(s.spec, 10)...)
	}
	if want := s.userEvents(1); !slices.Equal(eventIDs(got), want) {
		t.Errorf("the fast client got %d events, want all %d", len(got), len(want))
	}
	t.Logf("the slow stream was dropped after %d events", len(got))

	// Once the slow client reads, its stream ends with the reason.
	_ = slow.SetReadDeadline(time.Now().Add(10 * time.Second))
	r := bufio.NewReader(slow)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("the slow client's stream had no dropped event: %v", err)
		}
		if strings.TrimSpace(line) == "event: dropped" {
			data, _ := r.ReadString('\n')
			if !strings.Contains(data, "TOO_SLOW") || !strings.Contains(data, "Last-Event-ID") {
				t.Errorf("dropped event's data: %s", data)
			}
			break
		}
	}
	waitFor(t, "the slow stream to end", func() bool { return s.hub.Stats().Subscribers == 1 })
}

func TestAnIdleStreamHeartbeatsAndOutlivesTheServersTimeouts(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.StreamHeartbeat = 50 * time.Millisecond
	cfg.RequestTimeout = time.Millisecond // at least CancelWait + 5s: 5.05s
	const timeouts = 300 * time.Millisecond
	s := newStreamHarness(t, eventstream.Config{}, cfg, func(h http.Handler) *httptest.Server {
		ts := httptest.NewUnstartedServer(h)
		// The production server's timeouts (newHTTPServer), shortened.
		ts.Config.ReadHeaderTimeout, ts.Config.ReadTimeout, ts.Config.WriteTimeout = timeouts, timeouts, timeouts
		ts.Start()
		return ts
	})
	key := bearer(s.key(1, auth.ScopeRead))
	st := s.open("/api/v1/orders/events/stream", "Authorization", key)
	start := time.Now()
	beats := 0
	// Past the request timeout (5.05s) and many times the server's timeouts.
	for time.Since(start) < 5500*time.Millisecond {
		e := st.next()
		if e.comment != "heartbeat" {
			t.Fatalf("an idle stream sent %+v", e)
		}
		beats++
	}
	if beats < 20 {
		t.Errorf("%d heartbeats in 5.5s at one per 50ms", beats)
	}
	o := s.mustPlace(limitBody(1, "10", 1))
	if got := st.orderEvents(s.spec, 1)[0]; got.OrderID != o.OrderID {
		t.Errorf("after the heartbeats: %+v, want order %d's placement", got, o.OrderID)
	}
}

func TestAStreamReplaysAtMostTenThousandEventsThenAsksForAResync(t *testing.T) {
	t.Parallel()
	s := newStreamHarness(t, eventstream.Config{}, testConfig(), nil)
	key := bearer(s.key(1, auth.ScopeRead))
	// Someone else's stream keeps the hub reading (with none it reads nothing), so its
	// cursor passes the events below and they can only be replayed.
	other, err := s.hub.Subscribe(context.Background(), eventstream.Filter{UserID: 999})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	o := s.mustPlace(limitBody(1, "10", 1))
	s.exec(`INSERT INTO order_events (order_id, seq, event_type, to_status)
		SELECT $1, 1 + g, 'NOTE', 'CREATED' FROM generate_series(1, 10005) g`, o.OrderID)
	all := s.userEvents(1)
	waitFor(t, "the hub past the inserted events", func() bool { return s.hub.Stats().Cursor.ID == all[len(all)-1] })
	st := s.open("/api/v1/orders/events/stream", "Authorization", key, "Last-Event-ID", strconv.FormatInt(all[0], 10))
	if got := eventIDs(st.orderEvents(s.spec, 10_000)); !slices.Equal(got, all[1:10_001]) {
		t.Fatalf("replayed %d events, not the first 10000 missed", len(got))
	}
	e := st.next()
	var resync struct{ LastEventID string }
	if e.event != "resync" || e.id != "" || json.Unmarshal([]byte(e.data), &resync) != nil || resync.LastEventID != strconv.FormatInt(all[10_000], 10) {
		t.Fatalf("after 10000 events: %+v, want a resync naming event %d", e, all[10_000])
	}
	if _, ok := <-st.events; ok {
		t.Error("the stream went on after its resync event")
	}
	again := s.open("/api/v1/orders/events/stream", "Authorization", key, "Last-Event-ID", resync.LastEventID)
	if got := eventIDs(again.orderEvents(s.spec, 5)); !slices.Equal(got, all[10_001:]) {
		t.Errorf("the next connection replayed %v, want %v", got, all[10_001:])
	}
}

func TestAStreamBeyondTheReplicasCapIsRefusedWithRetryAfter(t *testing.T) {
	t.Parallel()
	s := newStreamHarness(t, eventstream.Config{MaxSubscribers: 1}, testConfig(), nil)
	key := bearer(s.key(1, auth.ScopeRead))
	s.open("/api/v1/orders/events/stream", "Authorization", key)
	res := s.do(http.MethodGet, "/api/v1/orders/events/stream", "", "Authorization", key)
	wantProblem(t, res, http.StatusServiceUnavailable, "SERVICE_UNAVAILABLE", "")
	if res.header.Get("Retry-After") == "" {
		t.Error("no Retry-After")
	}
}

// TestThousandsOfIdleStreamsStayCheap opens 2000 streams on one replica (trust-body
// mode, so that authentication costs nothing), measures what they hold, and checks that
// each still gets its events.
func TestThousandsOfIdleStreamsStayCheap(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 2000 connections")
	}
	const streams, users = 2000, 50
	cfg := testConfig()
	cfg.TrustBody = true
	s := newStreamHarness(t, eventstream.Config{}, cfg, nil)
	host := strings.TrimPrefix(s.url, "http://")

	measure := func() (heap, stacks uint64, goroutines int) {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc, m.StackInuse, runtime.NumGoroutine()
	}
	heap0, stacks0, g0 := measure()
	conns := make([]net.Conn, streams)
	for i := range conns {
		c, err := net.Dial("tcp", host)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer func() { _ = c.Close() }()
		fmt.Fprintf(c, "GET /api/v1/orders/events/stream?userId=%d HTTP/1.1\r\nHost: test\r\n\r\n", 1+i%users)
		conns[i] = c
	}
	waitFor(t, "every stream subscribed", func() bool { return s.hub.Stats().Subscribers == streams })
	heap1, stacks1, g1 := measure()
	per := func(a, b uint64) uint64 { return (max(a, b) - b) / streams }
	t.Logf("%d idle streams: %d B of heap and %d B of stacks each (server and client ends), %.1f goroutines each",
		streams, per(heap1, heap0), per(stacks1, stacks0), float64(g1-g0)/streams)
	if per(heap1, heap0)+per(stacks1, stacks0) > 64<<10 {
		t.Errorf("an idle stream holds more than 64 KiB")
	}
	if g1-g0 > 3*streams {
		t.Errorf("%d goroutines for %d streams", g1-g0, streams)
	}

	// One event per user reaches each of its streams.
	for u := range users {
		s.mustPlace(limitBody(int64(1+u), "10", 1))
	}
	for i, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
		r := bufio.NewReader(c)
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("stream %d: no event: %v", i, err)
			}
			if strings.HasPrefix(line, "event: order-event") {
				break
			}
		}
	}
}
