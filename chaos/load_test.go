package chaos_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/kafka"
)

// loadShape is how hard a scenario's load pushes.
type loadShape struct {
	placers int           // goroutines placing orders, each paced by its own ticker
	every   time.Duration // each placer's pace
}

// acked is an order the API acknowledged (201, or 200 for a replayed key): it must exist
// and settle, whatever fault is injected.
type acked struct {
	msg kafka.ExecutionMessage // what its order-execution message says
	key string                 // its Idempotency-Key
	at  time.Time
}

// load places a steady mix of orders — LIMIT orders that cross and that rest, IOC
// LIMITs, MARKET orders — on the scenario's instruments, cancels about one in four
// of them and amends (PATCH) about one in ten of the others that may rest. A request that fails with a transport error or a 503 is retried with the same
// Idempotency-Key, as a careful client would; a 200 for such a retry acknowledges the
// order as much as a 201. Requests go to the API replicas in turn, and a retry to the
// replica after the one that failed, as a client behind a load balancer sees it.
// Anything else the API answers that a client could not act on (a 500, a 503 without a
// problem body, a 404 for an acknowledged order) is recorded as a violation.
type load struct {
	s           *system
	instruments []int64
	shape       loadShape
	seed        uint64

	stop    chan struct{}
	cancels chan int64
	amends  chan amendment
	wg      sync.WaitGroup
	turn    atomic.Uint64 // the round robin over the API replicas

	mu         sync.Mutex
	acks       []acked
	ackedIDs   map[int64]bool
	cancelled  map[int64]bool // cancel answered 202: the run got the signal and must apply it
	gone       map[int64]bool // ids of acknowledged orders a restore took back (forget), until reused
	codes      map[string]int // "POST 201", "cancel 503", "POST transport error", …
	failures   int            // transport errors and 503s, the marks of a fault
	slowest    answer         // the answer that took longest
	violations []string
}

// answer is one request the API answered, and how long the answer took.
type answer struct {
	what string
	took time.Duration
}

// amendment is a PATCH the load sends for an acknowledged order.
type amendment struct {
	id   int64
	body []byte
}

func newLoad(s *system, instruments []int64, shape loadShape, seed uint64) *load {
	return &load{
		s: s, instruments: instruments, shape: shape, seed: seed,
		stop: make(chan struct{}), cancels: make(chan int64, 10_000), amends: make(chan amendment, 10_000),
		ackedIDs: map[int64]bool{}, cancelled: map[int64]bool{}, gone: map[int64]bool{}, codes: map[string]int{},
	}
}

// start starts the placers, two cancellers and an amender.
func (l *load) start() {
	for p := range l.shape.placers {
		l.wg.Add(1)
		go l.place(p)
	}
	for range 2 {
		l.wg.Add(1)
		go l.cancel()
	}
	l.wg.Add(1)
	go l.amend()
}

// halt stops the load and waits for its requests to finish; a request still being
// retried is abandoned (never acknowledged).
func (l *load) halt() {
	close(l.stop)
	l.wg.Wait()
}

// ackCount returns how many orders have been acknowledged so far.
func (l *load) ackCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acks)
}

// failureCount returns how many requests failed with a transport error or a 503.
func (l *load) failureCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.failures
}

// acksFrom returns the acknowledged orders from index i on, in acknowledgement order.
func (l *load) acksFrom(i int) []acked {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i >= len(l.acks) {
		return nil
	}
	return append([]acked(nil), l.acks[i:]...)
}

func (l *load) violate(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.violations = append(l.violations, fmt.Sprintf(format, args...))
}

func (l *load) count(key string, failure bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.codes[key]++
	if failure {
		l.failures++
	}
}

// place is one placer: one new order per tick, or a retry of the one in hand.
func (l *load) place(p int) {
	defer l.wg.Done()
	rng := rand.New(rand.NewPCG(l.seed, uint64(p)))
	tick := time.NewTicker(l.shape.every)
	defer tick.Stop()
	for i := 0; ; i++ {
		body := l.order(rng)
		key := fmt.Sprintf("chaos-%d-%d-%d", l.instruments[0], p, i)
		for replica, done := l.replica(), false; !done; replica++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
			done = l.placeOnce(body, key, rng, replica)
		}
	}
}

// replica returns the API replica a new request goes to: the next in turn. A retry goes
// to the one after (do takes the index modulo the replicas).
func (l *load) replica() int {
	return int(l.turn.Add(1) % uint64(len(l.s.baseURLs)))
}

// order returns a random order body on the load's instruments, priced around 100 so
// that buys and sells both cross and rest.
func (l *load) order(rng *rand.Rand) map[string]any {
	body := map[string]any{
		"userId":       1 + rng.IntN(12),
		"instrumentId": l.instruments[rng.IntN(len(l.instruments))],
		"orderType":    []string{"BUY", "SELL"}[rng.IntN(2)],
		"quantity":     1 + rng.IntN(20),
	}
	if rng.IntN(5) == 0 {
		body["orderKind"] = "MARKET"
		return body
	}
	body["orderKind"] = "LIMIT"
	body["price"] = fmt.Sprintf("%d.%02d", 98+rng.IntN(5), rng.IntN(4)*25)
	switch rng.IntN(12) {
	case 0, 1:
		body["timeInForce"] = "IOC"
	case 2:
		body["timeInForce"] = "FOK" // the auditor checks none is ever filled in part
	case 3:
		// Expiring within the scenario, so its faults meet the runs' expiry timers; the
		// checks find any left resting past its expiry.
		body["timeInForce"] = "GTD"
		body["expireAt"] = time.Now().Add(time.Duration(2+rng.IntN(20)) * time.Second).UTC().Format(time.RFC3339Nano)
	}
	return body
}

// placeOnce posts the order once to the API replica and reports whether it is done with
// (acknowledged, or answered in a way no retry can change).
func (l *load) placeOnce(body map[string]any, key string, rng *rand.Rand, replica int) bool {
	b, _ := json.Marshal(body)
	code, hdr, resp, err := l.do(replica, http.MethodPost, "/api/v1/orders", b, key)
	switch {
	case err != nil:
		l.count("POST transport error", true)
		return false
	case code == http.StatusServiceUnavailable, code == http.StatusConflict:
		// Refused, or the key's first attempt (cut off, perhaps on another replica) is
		// still being written: nothing of this one was, and a retry gets the answer.
		l.count(fmt.Sprintf("POST %d", code), true)
		l.checkProblem("POST /api/v1/orders", code, hdr, resp)
		return false
	}
	l.count(fmt.Sprintf("POST %d", code), false)
	if hdr.Get("Idempotent-Replayed") == "true" {
		l.count("POST replayed", false)
	}
	if code != http.StatusCreated && code != http.StatusOK {
		l.violate("POST /api/v1/orders %s answered %d: %s", b, code, excerpt(resp))
		return true
	}
	var v struct {
		OrderID      int64  `json:"orderId"`
		UserID       int64  `json:"userId"`
		InstrumentID int64  `json:"instrumentId"`
		Side         string `json:"orderType"`
		Kind         string `json:"orderKind"`
	}
	if err := json.Unmarshal(resp, &v); err != nil || v.OrderID <= 0 {
		l.violate("POST /api/v1/orders answered %d with an unreadable body %q", code, excerpt(resp))
		return true
	}
	l.mu.Lock()
	if !l.ackedIDs[v.OrderID] {
		l.ackedIDs[v.OrderID] = true
		delete(l.gone, v.OrderID) // the id is another order's now
		l.acks = append(l.acks, acked{at: time.Now(), key: key, msg: kafka.ExecutionMessage{
			OrderID: v.OrderID, UserID: v.UserID, InstrumentID: v.InstrumentID, Side: v.Side, Kind: v.Kind,
		}})
	}
	l.mu.Unlock()
	switch tif, _ := body["timeInForce"].(string); {
	case rng.IntN(4) == 0:
		select {
		case l.cancels <- v.OrderID:
		default:
		}
	case body["orderKind"] == "LIMIT" && tif != "IOC" && tif != "FOK" && rng.IntN(7) == 0:
		select {
		case l.amends <- amendment{id: v.OrderID, body: amendBody(body, rng)}:
		default:
		}
	}
	return true
}

// amendBody is a PATCH for the order placed with body: half of them a smaller quantity
// (kept in place), half a new price a quarter away (a replacement, which may cross).
func amendBody(body map[string]any, rng *rand.Rand) []byte {
	qty, _ := body["quantity"].(int)
	if qty > 1 && rng.IntN(2) == 0 {
		b, _ := json.Marshal(map[string]any{"quantity": qty / 2})
		return b
	}
	price := decimal.RequireFromString(body["price"].(string)).Add(decimal.New(int64(rng.IntN(3)-1)*25, -2))
	b, _ := json.Marshal(map[string]any{"price": price.String()})
	return b
}

// amend is the amender: it sends the amendments it is handed, retrying transport errors,
// 503s and orders not resting yet a few times.
func (l *load) amend() { serve(l, l.amends, l.amendOnce) }

// serve sends each request handed on in to the replicas in turn with once, which
// reports whether it is done with it, trying up to ten times a tick apart, until the
// load stops.
func serve[T any](l *load, in <-chan T, once func(T, int) bool) {
	defer l.wg.Done()
	tick := time.NewTicker(l.shape.every)
	defer tick.Stop()
	for {
		var req T
		select {
		case <-l.stop:
			return
		case req = <-in:
		}
		replica := l.replica()
		for attempt := 0; attempt < 10 && !once(req, replica+attempt); attempt++ {
			select {
			case <-l.stop:
				return
			case <-tick.C:
			}
		}
	}
}

// amendOnce sends one PATCH to the API replica and reports whether it is done with.
func (l *load) amendOnce(a amendment, replica int) bool {
	l.mu.Lock()
	gone := l.gone[a.id]
	l.mu.Unlock()
	if gone {
		return true
	}
	path := fmt.Sprintf("/api/v1/orders/%d", a.id)
	code, hdr, resp, err := l.do(replica, http.MethodPatch, path, a.body, "")
	switch {
	case err != nil:
		l.count("PATCH transport error", true)
		return false
	case code == http.StatusServiceUnavailable:
		l.count("PATCH 503", true)
		l.checkProblem("PATCH "+path, code, hdr, resp)
		return false
	case code == http.StatusConflict && hdr.Get("Retry-After") != "":
		// Not resting yet (its run has not matched it), or being amended: try again.
		l.count("PATCH 409 retry", false)
		l.checkProblem("PATCH "+path, code, hdr, resp)
		return false
	}
	l.count(fmt.Sprintf("PATCH %d", code), false)
	switch code {
	case http.StatusOK, http.StatusCreated, http.StatusAccepted, http.StatusConflict:
		// Applied, replaced, being applied, or the order ended or filled first: truthful.
	default:
		l.violate("PATCH %s %s for an acknowledged order answered %d: %s", path, a.body, code, excerpt(resp))
	}
	return true
}

// cancel is one canceller: it cancels the orders it is handed, retrying transport errors
// and 503s a few times.
func (l *load) cancel() { serve(l, l.cancels, l.cancelOnce) }

// cancelOnce posts a cancel to the API replica and reports whether it is done with.
func (l *load) cancelOnce(id int64, replica int) bool {
	l.mu.Lock()
	gone := l.gone[id]
	l.mu.Unlock()
	if gone {
		return true // the restore took the order back: there is nothing to cancel
	}
	path := fmt.Sprintf("/api/v1/orders/%d/cancel", id)
	code, hdr, resp, err := l.do(replica, http.MethodPost, path, nil, "")
	switch {
	case err != nil:
		l.count("cancel transport error", true)
		return false
	case code == http.StatusServiceUnavailable:
		// "Recorded, but the run could not be reached": the order may rest with its cancel
		// requested until a retry gets through.
		l.count("cancel 503", true)
		l.checkProblem("POST "+path, code, hdr, resp)
		return false
	}
	l.count(fmt.Sprintf("cancel %d", code), false)
	switch code {
	case http.StatusAccepted:
		l.mu.Lock()
		l.cancelled[id] = true
		l.mu.Unlock()
	case http.StatusOK, http.StatusConflict:
		// Applied, or the order was already terminal: both are truthful answers.
	default:
		l.violate("POST %s for an acknowledged order answered %d: %s", path, code, excerpt(resp))
	}
	return true
}

// do sends one request to an API replica (any int: taken modulo the replicas).
func (l *load) do(replica int, method, path string, body []byte, key string) (int, http.Header, []byte, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	base := l.s.baseURLs[replica%len(l.s.baseURLs)]
	req, err := http.NewRequestWithContext(ctx, method, base+path, bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if key != "" {
		req.Header.Set("Idempotency-Key", key)
	}
	started := time.Now()
	resp, err := l.s.http.Do(req)
	if err != nil {
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, nil, nil, err // cut off mid-body: as good as no answer
	}
	took := time.Since(started)
	l.mu.Lock()
	if took > l.slowest.took {
		l.slowest = answer{what: fmt.Sprintf("%s %s answered %d", method, path, resp.StatusCode), took: took}
	}
	l.mu.Unlock()
	return resp.StatusCode, resp.Header, b, nil
}

// slowestAnswer returns the request the API took longest to answer so far.
func (l *load) slowestAnswer() answer {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.slowest
}

// checkProblem records a violation unless a retryable answer is a 503 or 409 with an
// RFC 9457 problem+json body carrying the seed's error fields.
func (l *load) checkProblem(what string, code int, hdr http.Header, body []byte) {
	if code != http.StatusServiceUnavailable && code != http.StatusConflict {
		l.violate("%s answered %d: %s", what, code, excerpt(body))
		return
	}
	mt, _, _ := mime.ParseMediaType(hdr.Get("Content-Type"))
	var p struct {
		Status    int    `json:"status"`
		Title     string `json:"title"`
		ErrorCode string `json:"errorCode"`
		Message   string `json:"message"`
	}
	if mt != "application/problem+json" || json.Unmarshal(body, &p) != nil || p.Status != code || p.ErrorCode == "" || p.Title == "" {
		l.violate("%s answered %d without a problem+json body (Content-Type %q): %s", what, code, hdr.Get("Content-Type"), excerpt(body))
		return
	}
	if strings.Contains(p.Message, "goroutine ") || strings.Contains(p.Message, ".go:") {
		l.violate("%s answered %d with internals in its message: %s", what, code, excerpt(body))
	}
}

func excerpt(b []byte) string {
	const limit = 300
	if len(b) > limit {
		return string(b[:limit]) + "…"
	}
	return string(b)
}

// summary returns the load's answers by kind, sorted, for the scenario's log.
func (l *load) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	keys := make([]string, 0, len(l.codes))
	for k := range l.codes {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s: %d", k, l.codes[k])
	}
	return strings.Join(parts, ", ")
}

// cancelledIDs returns the orders whose cancel was answered 202.
func (l *load) cancelledIDs() []int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	ids := make([]int64, 0, len(l.cancelled))
	for id := range l.cancelled {
		ids = append(ids, id)
	}
	return ids
}

// violationList returns what the load saw that no client should ever see.
func (l *load) violationList() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.violations...)
}

// codeCount returns how many answers of one kind ("POST 503") the load has had.
func (l *load) codeCount(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.codes[key]
}
