package main

import (
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/workflows"
)

// Config is OrderFlow's configuration, read once from the environment at start:
//
//	DATABASE_URL        PostgreSQL URL (dev: empty starts a local cluster under DATA_DIR)
//	TEMPORAL_ADDRESS    Temporal frontend host:port (dev: empty starts the dev server)
//	TEMPORAL_NAMESPACE  Temporal namespace (default "default")
//	TEMPORAL_GRPC_COMPRESSION
//	                    none or gzip: compression of requests to Temporal (default none:
//	                    the messages are small, and gzip cost CPU on both ends for nothing)
//	KAFKA_BROKERS       comma-separated brokers (dev: empty starts an in-process broker)
//	HTTP_ADDR           API listen address (default 127.0.0.1:8080)
//	METRICS_ADDR        the admin listener of every process: /metrics, /healthz and (worker,
//	                    dev) /readyz with what it checks (default 127.0.0.1:9090); an API and
//	                    a worker on one host need two
//	DEBUG_ADDR          if set, serve Go's pprof profiler there (e.g. 127.0.0.1:6060); off by default
//	TEMPORAL_UI_URL     Temporal UI base URL for links (default http://127.0.0.1:8233)
//	CORS_ORIGINS        comma-separated browser origins (default http://localhost:3000)
//	CANCEL_WAIT         how long a cancel request waits to be applied (default 2s)
//	DB_MAX_CONNS        PostgreSQL pool size (default 20)
//	ACTIVITY_RETRY_INITIAL, ACTIVITY_RETRY_MAX_INTERVAL, ACTIVITY_RETRY_MAX_ATTEMPTS
//	                    retry policy of the lifecycle steps: exponential backoff from the
//	                    initial interval (200ms) to the maximum (30s), this many attempts in
//	                    all (12, about 2.5 minutes); then the order is parked for an operator
//	STUCK_AFTER         orders stuck: non-terminal, not resting and unchanged this long (default 5m)
//	RECONCILE_INTERVAL  how often the worker's reconciler schedule gives a new run to open
//	                    orders whose run was terminated or failed (default 30s)
//	MATCH_FILLS_PER_STEP
//	                    most fills one step of matching writes in one transaction under the
//	                    instrument's lock; a deeper sweep continues in the next step (default 1000)
//	AUTH_MODE           keys (default): every API request carries a bearer credential, an API
//	                    key or (when OIDC_JWKS_URL is set) a JWT; trust-body: none, the body's
//	                    userId is believed and every route is open (local experiments and the
//	                    seed's web client only; logged as a warning at every start)
//	OIDC_JWKS_URL, OIDC_ISSUER, OIDC_AUDIENCE
//	                    accept the JWTs of an OIDC provider: its key set, issuer and audience
//	OIDC_USER_CLAIM, OIDC_SCOPES_CLAIM, OIDC_CLOCK_SKEW
//	                    the claims with the user id (sub) and the scopes (scope); skew (1m)
//	RATE_LIMIT_TRADE, RATE_LIMIT_READ, RATE_LIMIT_FAILED_AUTH
//	                    per replica: placing and cancelling per user (100:200, i.e. 100/s with
//	                    bursts of 200), other requests per user (200:400), refused
//	                    credentials per source address (1:20); "off" for none
//	LOG_FORMAT          text or json (default text; json in containers)
//	LOG_LEVEL           debug, info, warn or error (default info)
//	DATA_DIR            dev only: where the local cluster, Temporal and Kafka keep data (default .orderflow)
//	TEMPORAL_CLI        dev only: the temporal binary (default bin/temporal, then PATH)
//	DEV_PG_PORT, DEV_TEMPORAL_PORT, DEV_TEMPORAL_UI_PORT, DEV_KAFKA_PORT
//	                    dev only: ports of the embedded services (5433, 7233, 8233, 9092)
type Config struct {
	DatabaseURL       string
	TemporalAddress   string
	TemporalNamespace string
	// TemporalCompressGzip turns on gzip for requests to Temporal (TEMPORAL_GRPC_COMPRESSION).
	TemporalCompressGzip bool
	KafkaBrokers         []string
	HTTPAddr             string
	MetricsAddr          string
	DebugAddr            string
	TemporalUIURL        string
	CORSOrigins          []string
	CancelWait           time.Duration
	Retry                workflows.RetryConfig
	StuckAfter           time.Duration
	ReconcileInterval    time.Duration
	MatchFillsPerStep    int
	DBMaxConns           int32
	AuthMode             string // "keys" or "trust-body"
	JWT                  auth.JWTConfig
	Limits               api.Limits
	LogFormat            string
	LogLevel             slog.Level
	DataDir              string
	TemporalCLI          string
	DevPGPort            int
	DevTemporalPort      int
	DevTemporalUIPort    int
	DevKafkaPort         int
}

// The authentication modes (AUTH_MODE).
const (
	authKeys      = "keys"
	authTrustBody = "trust-body"
)

func loadConfig(getenv func(string) string) (Config, error) {
	str := func(name, def string) string {
		if v := strings.TrimSpace(getenv(name)); v != "" {
			return v
		}
		return def
	}
	list := func(name, def string) []string {
		var out []string
		for _, s := range strings.Split(str(name, def), ",") {
			if s = strings.TrimSpace(s); s != "" {
				out = append(out, s)
			}
		}
		return out
	}
	var errs []string
	integer := func(name string, def int) int {
		v, err := strconv.Atoi(str(name, strconv.Itoa(def)))
		if err != nil || v <= 0 {
			errs = append(errs, fmt.Sprintf("%s must be a positive integer", name))
		}
		return v
	}
	cfg := Config{
		DatabaseURL:       str("DATABASE_URL", ""),
		TemporalAddress:   str("TEMPORAL_ADDRESS", ""),
		TemporalNamespace: str("TEMPORAL_NAMESPACE", "default"),
		KafkaBrokers:      list("KAFKA_BROKERS", ""),
		HTTPAddr:          str("HTTP_ADDR", "127.0.0.1:8080"),
		MetricsAddr:       str("METRICS_ADDR", "127.0.0.1:9090"),
		DebugAddr:         str("DEBUG_ADDR", ""),
		TemporalUIURL:     strings.TrimRight(str("TEMPORAL_UI_URL", "http://127.0.0.1:8233"), "/"),
		CORSOrigins:       list("CORS_ORIGINS", "http://localhost:3000"),
		DBMaxConns:        int32(integer("DB_MAX_CONNS", 20)),
		MatchFillsPerStep: integer("MATCH_FILLS_PER_STEP", orderbook.DefaultMaxFillsPerStep),
		LogFormat:         str("LOG_FORMAT", "text"),
		DataDir:           str("DATA_DIR", ".orderflow"),
		TemporalCLI:       str("TEMPORAL_CLI", ""),
		DevPGPort:         integer("DEV_PG_PORT", 5433),
		DevTemporalPort:   integer("DEV_TEMPORAL_PORT", 7233),
		DevTemporalUIPort: integer("DEV_TEMPORAL_UI_PORT", 8233),
		DevKafkaPort:      integer("DEV_KAFKA_PORT", 9092),
	}
	duration := func(name string, def time.Duration) time.Duration {
		d, err := time.ParseDuration(str(name, def.String()))
		if err != nil || d <= 0 {
			errs = append(errs, fmt.Sprintf("%s must be a positive duration such as %s", name, def))
		}
		return d
	}
	cfg.CancelWait = duration("CANCEL_WAIT", 2*time.Second)
	cfg.StuckAfter = duration("STUCK_AFTER", 5*time.Minute)
	cfg.ReconcileInterval = duration("RECONCILE_INTERVAL", 30*time.Second)
	cfg.Retry = workflows.RetryConfig{
		InitialInterval: duration("ACTIVITY_RETRY_INITIAL", workflows.DefaultRetry.InitialInterval),
		MaximumInterval: duration("ACTIVITY_RETRY_MAX_INTERVAL", workflows.DefaultRetry.MaximumInterval),
		MaximumAttempts: int32(integer("ACTIVITY_RETRY_MAX_ATTEMPTS", int(workflows.DefaultRetry.MaximumAttempts))),
	}
	switch c := str("TEMPORAL_GRPC_COMPRESSION", "none"); c {
	case "none", "gzip":
		cfg.TemporalCompressGzip = c == "gzip"
	default:
		errs = append(errs, "TEMPORAL_GRPC_COMPRESSION must be none or gzip")
	}
	switch cfg.AuthMode = str("AUTH_MODE", authKeys); cfg.AuthMode {
	case authKeys, authTrustBody:
	default:
		errs = append(errs, "AUTH_MODE must be keys or trust-body")
	}
	cfg.JWT = auth.JWTConfig{
		JWKSURL: str("OIDC_JWKS_URL", ""), Issuer: str("OIDC_ISSUER", ""), Audience: str("OIDC_AUDIENCE", ""),
		UserClaim: str("OIDC_USER_CLAIM", ""), ScopesClaim: str("OIDC_SCOPES_CLAIM", ""),
	}
	if cfg.JWT.JWKSURL != "" {
		cfg.JWT.ClockSkew = duration("OIDC_CLOCK_SKEW", time.Minute)
		if cfg.JWT.Issuer == "" || cfg.JWT.Audience == "" {
			errs = append(errs, "OIDC_ISSUER and OIDC_AUDIENCE are required with OIDC_JWKS_URL")
		}
	}
	rateLimit := func(name string) api.RateLimit {
		v := str(name, "")
		if v == "" {
			return api.RateLimit{}
		}
		if v == "off" {
			return api.RateLimit{PerSecond: -1}
		}
		perSecond, burst, hasBurst := strings.Cut(v, ":")
		l := api.RateLimit{}
		var err error
		if l.PerSecond, err = strconv.ParseFloat(perSecond, 64); err != nil || l.PerSecond <= 0 || l.PerSecond > 1e6 {
			errs = append(errs, fmt.Sprintf("%s must be off or RATE[:BURST], requests per second and the burst, such as 100:200", name))
			return l
		}
		if hasBurst {
			if l.Burst, err = strconv.Atoi(burst); err != nil || l.Burst <= 0 {
				errs = append(errs, fmt.Sprintf("%s: the burst after the colon must be a positive integer", name))
			}
		}
		return l
	}
	cfg.Limits = api.Limits{Trade: rateLimit("RATE_LIMIT_TRADE"), Read: rateLimit("RATE_LIMIT_READ"), FailedAuth: rateLimit("RATE_LIMIT_FAILED_AUTH")}
	if cfg.LogFormat != "text" && cfg.LogFormat != "json" {
		errs = append(errs, "LOG_FORMAT must be text or json")
	}
	if err := cfg.LogLevel.UnmarshalText([]byte(str("LOG_LEVEL", "info"))); err != nil {
		errs = append(errs, "LOG_LEVEL must be debug, info, warn or error")
	}
	if len(errs) > 0 {
		return cfg, fmt.Errorf("configuration: %s", strings.Join(errs, "; "))
	}
	return cfg, nil
}

// temporalConnection is how every client of this process connects to Temporal.
func (cfg Config) temporalConnection() client.ConnectionOptions {
	var c client.GrpcCompression = &client.GrpcCompressionNone{}
	if cfg.TemporalCompressGzip {
		c = &client.GrpcCompressionGzip{}
	}
	return client.ConnectionOptions{GrpcCompression: c}
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
