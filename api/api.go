// Package api is OrderFlow's REST API: placing, reading, listing and cancelling orders,
// their event timelines and trades, and the instruments they trade. It keeps the seed
// application's JSON shapes so the seed's web client keeps working, and answers every
// error as an RFC 9457 problem+json body that also carries the seed's errorCode.
//
// Placing an order only writes it (with its ORDER_PLACED event and an outbox message) in
// one transaction; execution happens asynchronously in the order's Temporal workflow.
// Cancelling records the request and asks the workflow, through a Canceller, to apply it.
package api

import (
	"context"
	_ "embed"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/cors"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/eventstream"
	"github.com/orderflow/orderflow/kafka"
	"github.com/orderflow/orderflow/orderbook"
)

// openapiSpec is the API's OpenAPI 3 description, served at /openapi.yaml; the tests
// check real responses against it, so it cannot drift from the handlers.
//
//go:embed openapi.yaml
var openapiSpec []byte

// maxBodyBytes bounds every request body: an order is a few hundred bytes, so anything
// near this limit is a mistake or an attack.
const maxBodyBytes = 64 << 10

// Canceller asks the order's workflow to cancel it (signal-with-start, so a cancel that
// arrives before the workflow exists still wins) and waits up to wait for the workflow
// to apply it. applied reports whether it did within that time; an error means the
// request could not be delivered.
type Canceller interface {
	RequestCancel(ctx context.Context, orderID int64, runKey, requestedBy string, wait time.Duration) (applied bool, err error)
}

// Config tunes the API. The zero value of every field means its default:
//
//   - AllowedOrigins: browser origins allowed by CORS; default http://localhost:3000,
//     where the seed's web client runs.
//   - CancelWait: how long a cancel request waits for the workflow to apply the cancel
//     before answering 202; default 2s.
//   - TemporalUIURL: base URL of the Temporal UI (e.g. http://127.0.0.1:8233); when set,
//     order views link to their workflow there. Empty omits the link.
//   - Namespace: the Temporal namespace used in that link; default "default".
//   - RequestTimeout: the deadline of every request; default 10s, and always at least
//     CancelWait plus 5s so that a cancel's wait fits inside it.
//   - Batches: told how many orders each statement of the group commit wrote; nil, no one.
//   - PlaceQueue: how many new orders may wait to be written; more are refused with 503
//     and Retry-After; default 1024.
//   - Auth: checks the bearer credential of every /api/v1 request. Nil (without
//     TrustBody) refuses them all with 401: the API never runs open by omission.
//   - TrustBody: no authentication at all; the body's userId is believed, every order
//     is visible and every route open. For local experiments and the seed's web client
//     only.
//   - Limits: the rate limits (see Limits).
//   - Admission: refuses new orders the system could not execute in bounded time (its
//     Run must be running); nil, none.
//   - DayEnd: when DAY orders expire, as the time of day in UTC; default 21:00 (the
//     close of New York's session in winter).
//   - IdempotencyTTL: how long an Idempotency-Key replays its first answer; default
//     orderbook.DefaultIdempotencyTTL (24h).
//   - Amends: applies amendments (PATCH) through the orders' runs, waiting up to
//     CancelWait; nil answers them 503.
//   - RefusalLookup: how long a refusal by admission control waits for its key's look-up
//     (a replay of an accepted order gets its answer even while the system refuses new
//     ones); default 5ms. Past it, the refusal is answered without it (a retry gets the
//     answer), so refusals stay cheap and quick however slow the database is.
//   - Streams: the hub of the event streams (GET /api/v1/orders/events/stream and
//     /api/v1/orders/{id}/events/stream), which its owner runs; nil answers them 503.
//   - StreamHeartbeat: how often an idle event stream sends a comment, so that proxies
//     keep it open; default 15s.
type Config struct {
	AllowedOrigins  []string
	CancelWait      time.Duration
	TemporalUIURL   string
	Namespace       string
	RequestTimeout  time.Duration
	Batches         orderbook.BatchObserver
	PlaceQueue      int
	Auth            *auth.Authenticator
	TrustBody       bool
	Limits          Limits
	Admission       *orderbook.Admission
	IdempotencyTTL  time.Duration
	DayEnd          time.Duration
	Streams         *eventstream.Hub
	StreamHeartbeat time.Duration
	Amends          Amender
	RefusalLookup   time.Duration
}

// withDefaults returns cfg with every unset field given its documented default.
func (cfg Config) withDefaults() Config {
	if len(cfg.AllowedOrigins) == 0 {
		cfg.AllowedOrigins = []string{"http://localhost:3000"}
	}
	if cfg.DayEnd <= 0 || cfg.DayEnd >= 24*time.Hour {
		cfg.DayEnd = 21 * time.Hour
	}
	if cfg.CancelWait <= 0 {
		cfg.CancelWait = 2 * time.Second
	}
	cfg.TemporalUIURL = strings.TrimRight(cfg.TemporalUIURL, "/")
	if cfg.Namespace == "" {
		cfg.Namespace = "default"
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = 10 * time.Second
	}
	cfg.RequestTimeout = max(cfg.RequestTimeout, cfg.CancelWait+5*time.Second)
	cfg.Limits = cfg.Limits.withDefaults()
	if cfg.RefusalLookup <= 0 {
		cfg.RefusalLookup = 5 * time.Millisecond
	}
	if cfg.StreamHeartbeat <= 0 {
		cfg.StreamHeartbeat = 15 * time.Second
	}
	return cfg
}

// server holds the handlers' dependencies.
type server struct {
	pool    *pgxpool.Pool // only for readiness
	book    *orderbook.Service
	cancels Canceller
	logger  *slog.Logger
	cfg     Config

	trades, reads, failures *limiter
	refusalLogs             *limiter // a line a minute per address refused 429
	// lookups bounds the refusals' key look-ups in flight (see admit).
	lookups chan struct{}
	// recent are the keys this process saw place orders: a refusal looks up only those.
	recent *recentKeys
}

// NewServer returns the API's HTTP handler over the order-book service on pool. pool
// and cancels must not be nil; a nil logger discards logs.
func NewServer(pool *pgxpool.Pool, cancels Canceller, logger *slog.Logger, cfg Config) http.Handler {
	if logger == nil {
		logger = slogDiscard()
	}
	cfg = cfg.withDefaults()
	book := orderbook.New(pool, logger, orderbook.Config{
		Waker: kafka.NewOutboxWaker(pool, logger), Batches: cfg.Batches, PlaceTimeout: cfg.RequestTimeout,
		PlaceQueue: cfg.PlaceQueue, IdempotencyTTL: cfg.IdempotencyTTL,
	})
	s := &server{pool: pool, book: book, cancels: cancels, logger: logger, cfg: cfg,
		trades:      newLimiter("trade", cfg.Limits.Trade),
		reads:       newLimiter("read", cfg.Limits.Read),
		failures:    newLimiter("failed-auth", cfg.Limits.FailedAuth),
		refusalLogs: newLimiter("log", RateLimit{PerSecond: 1.0 / 60, Burst: 1}),
		lookups:     make(chan struct{}, maxRefusalLookups),
		recent:      newRecentKeys(keysPerGeneration),
	}
	return s.routes()
}

// routes builds the router. Middleware order matters: the request id comes first so
// every log line and problem body carries it; the access log wraps the recoverer so a
// recovered panic is logged with the 500 it became; CORS precedes routing so preflight
// requests never reach a handler. Every /api/v1 route authenticates its caller, then
// checks the scope it needs and the caller's rate limit.
func (s *server) routes() http.Handler {
	mux := chi.NewRouter()
	mux.Use(
		middleware.RequestID,
		echoRequestID,
		s.accessLog,
		s.recoverer,
		securityHeaders,
		cors.Handler(cors.Options{
			AllowedOrigins: s.cfg.AllowedOrigins,
			AllowedMethods: []string{http.MethodGet, http.MethodPost, http.MethodPatch, http.MethodDelete, http.MethodOptions},
			AllowedHeaders: []string{"Accept", "Authorization", "Content-Type", "Idempotency-Key", "If-Match", "If-None-Match", middleware.RequestIDHeader},
			ExposedHeaders: []string{"Location", "Retry-After", "RateLimit", "RateLimit-Policy", "WWW-Authenticate", "ETag", replayedHeader, middleware.RequestIDHeader},
			MaxAge:         300,
		}),
		s.timeout,
		s.limitBody,
	)
	mux.NotFound(func(w http.ResponseWriter, r *http.Request) {
		s.fail(w, r, newError(codeNotFound, "no route for %s %s", r.Method, r.URL.Path))
	})
	mux.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		// chi does not pass the allowed methods to a custom handler, so ask the router.
		for _, m := range []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
			if mux.Match(chi.NewRouteContext(), m, r.URL.Path) {
				w.Header().Add("Allow", m)
			}
		}
		s.fail(w, r, newError(codeMethodNotAllowed, "method %s is not allowed on %s", r.Method, r.URL.Path))
	})

	mux.Get("/healthz", s.handle(s.healthz))
	mux.Get("/readyz", s.handle(s.readyz))
	mux.Get("/openapi.yaml", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		_, _ = w.Write(openapiSpec)
	})
	mux.Route("/api/v1", func(r chi.Router) {
		r.Use(s.authenticate)
		read := s.guard(s.reads, auth.ScopeRead)
		trade := s.guard(s.trades, auth.ScopeTrade)
		admin := s.guard(s.reads, auth.ScopeAdmin)
		r.With(trade).Post("/orders", s.handle(s.placeOrder))
		r.With(read).Get("/orders", s.handle(s.listOrders))
		r.With(read).Get("/orders/by-client-order-id", s.handle(s.getOrderByClientID))
		// A stream's connect counts as one read, however long it lasts.
		r.With(read).Get("/orders/events/stream", s.handle(s.streamEvents))
		r.With(read).Get("/orders/{id}/events/stream", s.handle(s.streamOrderEvents))
		r.With(read).Get("/orders/{id}", s.handle(s.getOrder))
		r.With(trade).Patch("/orders/{id}", s.handle(s.amendOrder))
		// An operator (admin) cancels any user's order; a trader, their own.
		r.With(s.guard(s.trades, auth.ScopeTrade, auth.ScopeAdmin)).Post("/orders/{id}/cancel", s.handle(s.cancelOrder))
		r.With(s.guard(s.trades, auth.ScopeTrade, auth.ScopeAdmin)).Delete("/orders", s.handle(s.cancelOrders))
		r.With(read).Get("/orders/{id}/events", s.handle(s.listOrderEvents))
		r.With(read).Get("/orders/{id}/trades", s.handle(s.listOrderTrades))
		r.With(read).Get("/instruments", s.handle(s.listInstruments))
		r.With(read).Get("/instruments/{id}/book", s.handle(s.getBook))
		r.Group(func(r chi.Router) {
			r.Use(admin)
			r.Get("/admin/orders/stuck", s.handle(s.listStuck))
			r.Post("/admin/orders/{id}/retry", s.handle(s.retryOrder))
			r.Post("/admin/orders/{id}/fail", s.handle(s.failOrder))
			r.Get("/admin/instruments", s.handle(s.listInstruments))
			r.Post("/admin/instruments/{id}/halt", s.handle(s.haltInstrument))
			r.Post("/admin/instruments/{id}/resume", s.handle(s.resumeInstrument))
			r.Post("/admin/keys", s.handle(s.createKey))
			r.Get("/admin/keys", s.handle(s.listKeys))
			r.Post("/admin/keys/{keyId}/revoke", s.handle(s.revokeKey))
		})
	})
	return mux
}

// handle adapts a handler that returns its error, so that every error reaches fail and
// no handler writes an error body itself.
func (s *server) handle(h func(http.ResponseWriter, *http.Request) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if err := h(w, r); err != nil {
			s.fail(w, r, err)
		}
	}
}

// healthz answers whether the process is serving at all; it checks no dependency, so an
// orchestrator does not restart the API because the database is down.
func (s *server) healthz(w http.ResponseWriter, r *http.Request) error {
	s.respond(w, r, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}

// readyz answers whether the API can serve requests, which needs the database.
func (s *server) readyz(w http.ResponseWriter, r *http.Request) error {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.pool.Ping(ctx); err != nil {
		return &apiError{code: codeUnavailable, message: "the database is not reachable", cause: err}
	}
	s.respond(w, r, http.StatusOK, map[string]string{"status": "ok"})
	return nil
}
