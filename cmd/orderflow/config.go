package main

import (
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"
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
//	ACTIVITY_RETRY_INITIAL, ACTIVITY_RETRY_MAX_INTERVAL, ACTIVITY_RETRY_MAX_ATTEMPTS, ACTIVITY_STEP_TIMEOUT
//	                    retry policy of the lifecycle steps: exponential backoff from the
//	                    initial interval (200ms) to the maximum (30s), this many attempts in
//	                    all (12, at most 1000: about 2.5 minutes when attempts fail fast, 5.5
//	                    when each times out); then the order is parked for an operator
//	STUCK_AFTER         orders stuck: non-terminal, not resting and unchanged this long (default 5m)
//	RECONCILE_INTERVAL  how often the worker's reconciler schedule gives a new run to open
//	                    orders whose run was terminated or failed (default 30s)
//	MATCH_FILLS_PER_STEP
//	                    most fills one step of matching writes in one transaction under the
//	                    instrument's lock; a deeper sweep continues in the next step (default 1000)
//	EVENT_STREAMS_MAX   API: most event streams (SSE) one replica serves at once; more are
//	                    refused 503 with Retry-After (default 5000)
//	AUTH_MODE           keys (default): every API request carries a bearer credential, an API
//	                    key or (when OIDC_JWKS_URL is set) a JWT; trust-body: none, the body's
//	                    userId is believed and every route is open (local experiments and the
//	                    seed's web client only; logged as a warning at every start)
//	DAY_END             when DAY orders expire, as HH:MM in UTC (21:00)
//	MARKET_MAX_AGE      a MARKET order that reaches matching later than this after its 201
//	                    ends EXPIRED (reason STALE) instead of filling (10s; 0 never)
//	IDEMPOTENCY_KEY_TTL how long an Idempotency-Key replays its first answer (24h, from 1m
//	                    to 720h); after it the key places a new order. Each answer stores
//	                    its expiry, so replicas configured apart agree on it
//	AUTH_KEY_CACHE_TTL  how long a replica remembers an API key it found valid (5s): a key
//	                    revoked through another replica or the CLI keeps working here for up
//	                    to that long; 0 reads the key on every request
//	OIDC_JWKS_URL, OIDC_ISSUER, OIDC_AUDIENCE
//	                    accept the JWTs of an OIDC provider: its key set, issuer and audience
//	OIDC_USER_CLAIM, OIDC_SCOPES_CLAIM, OIDC_CLOCK_SKEW
//	                    the claims with the user id (sub) and the scopes (scope); skew (1m, 5m at most)
//	OIDC_ALLOW_ADMIN    on: believe a token's admin scope (off: tokens read and trade only)
//	OIDC_JWKS_MIN_REFETCH
//	                    least time between two fetches of the key set (10s)
//	RATE_LIMIT_TRADE, RATE_LIMIT_READ, RATE_LIMIT_FAILED_AUTH
//	                    per replica: placing and cancelling per user (100:200, i.e. 100/s with
//	                    bursts of 200), other requests per user (200:400), refused
//	                    credentials per source address (1:20); "off" for none
//	HTTP_TLS_CERT_FILE, HTTP_TLS_KEY_FILE
//	                    serve the API over TLS with this certificate; renewed files are
//	                    served without a restart
//	TEMPORAL_TLS        on: connect to Temporal over TLS (implied by the settings below)
//	TEMPORAL_TLS_CA_FILE, TEMPORAL_TLS_CERT_FILE, TEMPORAL_TLS_KEY_FILE, TEMPORAL_TLS_SERVER_NAME
//	                    the CA to trust (default the system's), the client certificate of
//	                    mutual TLS, the server name to verify
//	TEMPORAL_API_KEY    an API key (Temporal Cloud), sent over TLS
//	KAFKA_TLS, KAFKA_TLS_CA_FILE, KAFKA_TLS_CERT_FILE, KAFKA_TLS_KEY_FILE, KAFKA_TLS_SERVER_NAME
//	                    the same for Kafka
//	KAFKA_SASL_MECHANISM, KAFKA_SASL_USER, KAFKA_SASL_PASSWORD
//	                    SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN (only over TLS) and its user
//	ADMISSION_MAX_DELAY the longest the orders accepted and not yet executed may take to
//	                    execute, at the rate they have been, for a new one to be accepted
//	                    (default 1s; make run sets 400ms; more is 503 OVERLOADED with Retry-After);
//	                    off for none. It counts orders in transit too, so it must exceed
//	                    their 201 → book time when the system is not loaded
//	ADMISSION_MIN_DRAIN the execution rate assumed when less has been seen (default 20/s)
//	SHUTDOWN_TIMEOUT    after SIGTERM, how long in-flight HTTP requests and running
//	                    Temporal tasks may take to finish, the process exiting within it
//	                    (default 25s; Kubernetes gives 30s unless told otherwise)
//	LOG_FORMAT          text or json (default text; json in containers)
//	LOG_LEVEL           debug, info, warn or error (default info)
//	DATA_DIR            dev only: where the local cluster, Temporal and Kafka keep data (default .orderflow)
//	TEMPORAL_CLI        dev only: the temporal binary (default bin/temporal, then PATH)
//	DEV_PG_PORT, DEV_TEMPORAL_PORT, DEV_TEMPORAL_UI_PORT, DEV_KAFKA_PORT
//	                    dev only: ports of the embedded services (5433, 7233, 8233, 9092)
//
// Every setting NAME may instead be given as a file: NAME_FILE names a file whose content
// (less a final newline) is the value, so secrets (DATABASE_URL, TEMPORAL_API_KEY,
// KAFKA_SASL_PASSWORD) need never be in the environment. Setting both is an error.
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
	ShutdownTimeout      time.Duration
	KeyCacheTTL          time.Duration
	IdempotencyTTL       time.Duration
	MarketMaxAge         time.Duration
	DayEnd               time.Duration
	ReconcileInterval    time.Duration
	MatchFillsPerStep    int
	EventStreamsMax      int
	DBMaxConns           int32
	HTTPTLSCertFile      string
	HTTPTLSKeyFile       string
	TemporalTLS          *tls.Config // nil: plaintext
	TemporalAPIKey       string
	KafkaTLS             *tls.Config // nil: plaintext
	KafkaSASL            sasl.Mechanism
	AuthMode             string // "keys" or "trust-body"
	JWT                  auth.JWTConfig
	Limits               api.Limits
	Admission            orderbook.AdmissionConfig
	LogFormat            string
	LogLevel             slog.Level
	DataDir              string
	TemporalCLI          string
	DevPGPort            int
	DevTemporalPort      int
	DevTemporalUIPort    int
	DevKafkaPort         int
}

// maxRetryAttempts bounds ACTIVITY_RETRY_MAX_ATTEMPTS: a step's retries run inside its
// workflow task, and past a few hundred an operator should decide.
const maxRetryAttempts = 1000

// The authentication modes (AUTH_MODE).
const (
	authKeys      = "keys"
	authTrustBody = "trust-body"
)

func loadConfig(getenv func(string) string) (Config, error) {
	var errs []string
	str := func(name, def string) string {
		v := strings.TrimSpace(getenv(name))
		if file := strings.TrimSpace(getenv(name + "_FILE")); file != "" {
			if v != "" {
				errs = append(errs, fmt.Sprintf("%s and %s_FILE are both set; give one", name, name))
			}
			b, err := os.ReadFile(file)
			if err != nil {
				errs = append(errs, fmt.Sprintf("%s_FILE: %v", name, err))
			}
			v = strings.TrimRight(string(b), "\r\n")
		}
		if v != "" {
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
		EventStreamsMax:   integer("EVENT_STREAMS_MAX", 5000),
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
	cfg.ShutdownTimeout = duration("SHUTDOWN_TIMEOUT", 25*time.Second)
	cfg.ReconcileInterval = duration("RECONCILE_INTERVAL", 30*time.Second)
	attempts := integer("ACTIVITY_RETRY_MAX_ATTEMPTS", int(workflows.DefaultRetry.MaximumAttempts))
	if attempts > maxRetryAttempts {
		errs = append(errs, fmt.Sprintf("ACTIVITY_RETRY_MAX_ATTEMPTS must be at most %d", maxRetryAttempts))
	}
	cfg.Retry = workflows.RetryConfig{
		InitialInterval: duration("ACTIVITY_RETRY_INITIAL", workflows.DefaultRetry.InitialInterval),
		MaximumInterval: duration("ACTIVITY_RETRY_MAX_INTERVAL", workflows.DefaultRetry.MaximumInterval),
		MaximumAttempts: int32(min(attempts, maxRetryAttempts)),
		StepTimeout:     duration("ACTIVITY_STEP_TIMEOUT", 15*time.Second),
	}
	switch c := str("TEMPORAL_GRPC_COMPRESSION", "none"); c {
	case "none", "gzip":
		cfg.TemporalCompressGzip = c == "gzip"
	default:
		errs = append(errs, "TEMPORAL_GRPC_COMPRESSION must be none or gzip")
	}
	cfg.HTTPTLSCertFile, cfg.HTTPTLSKeyFile = str("HTTP_TLS_CERT_FILE", ""), str("HTTP_TLS_KEY_FILE", "")
	if (cfg.HTTPTLSCertFile == "") != (cfg.HTTPTLSKeyFile == "") {
		errs = append(errs, "HTTP_TLS_CERT_FILE and HTTP_TLS_KEY_FILE go together")
	}
	clientTLS := func(prefix string, implied bool) *tls.Config {
		ca, cert, key := str(prefix+"_TLS_CA_FILE", ""), str(prefix+"_TLS_CERT_FILE", ""), str(prefix+"_TLS_KEY_FILE", "")
		switch on := str(prefix+"_TLS", ""); {
		case on != "" && on != "on" && on != "off":
			errs = append(errs, prefix+"_TLS must be on or off")
			return nil
		case on == "off" && (implied || ca != "" || cert != ""):
			errs = append(errs, prefix+"_TLS is off, but other settings need TLS")
			return nil
		case on != "on" && !implied && ca == "" && cert == "" && key == "":
			return nil
		}
		c, err := tlsConfig(ca, cert, key, str(prefix+"_TLS_SERVER_NAME", ""))
		if err != nil {
			errs = append(errs, prefix+" "+err.Error())
		}
		return c
	}
	cfg.TemporalAPIKey = str("TEMPORAL_API_KEY", "")
	cfg.TemporalTLS = clientTLS("TEMPORAL", cfg.TemporalAPIKey != "")
	mech, user, pass := str("KAFKA_SASL_MECHANISM", ""), str("KAFKA_SASL_USER", ""), str("KAFKA_SASL_PASSWORD", "")
	switch mech {
	case "":
		if user != "" || pass != "" {
			errs = append(errs, "KAFKA_SASL_USER and KAFKA_SASL_PASSWORD need KAFKA_SASL_MECHANISM")
		}
	case "SCRAM-SHA-256":
		cfg.KafkaSASL = scram.Auth{User: user, Pass: pass}.AsSha256Mechanism()
	case "SCRAM-SHA-512":
		cfg.KafkaSASL = scram.Auth{User: user, Pass: pass}.AsSha512Mechanism()
	case "PLAIN":
		cfg.KafkaSASL = plain.Auth{User: user, Pass: pass}.AsMechanism()
	default:
		errs = append(errs, "KAFKA_SASL_MECHANISM must be SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN")
	}
	if mech != "" && (user == "" || pass == "") {
		errs = append(errs, "KAFKA_SASL_MECHANISM needs KAFKA_SASL_USER and KAFKA_SASL_PASSWORD")
	}
	// PLAIN sends the password as it is; never without TLS.
	cfg.KafkaTLS = clientTLS("KAFKA", mech == "PLAIN")
	switch cfg.AuthMode = str("AUTH_MODE", authKeys); cfg.AuthMode {
	case authKeys, authTrustBody:
	default:
		errs = append(errs, "AUTH_MODE must be keys or trust-body")
	}
	if t, err := time.Parse("15:04", str("DAY_END", "21:00")); err != nil {
		errs = append(errs, "DAY_END must be a time of day in UTC such as 21:00")
	} else {
		cfg.DayEnd = time.Duration(t.Hour())*time.Hour + time.Duration(t.Minute())*time.Minute
	}
	if age, err := time.ParseDuration(str("MARKET_MAX_AGE", "10s")); err != nil || age < 0 {
		errs = append(errs, "MARKET_MAX_AGE must be a duration such as 10s, or 0 for no limit")
	} else {
		cfg.MarketMaxAge = age
	}
	if ttl, err := time.ParseDuration(str("IDEMPOTENCY_KEY_TTL", "24h")); err != nil || ttl < time.Minute || ttl > 720*time.Hour {
		errs = append(errs, "IDEMPOTENCY_KEY_TTL must be a duration from 1m to 720h, such as 24h")
	} else {
		cfg.IdempotencyTTL = ttl
	}
	if ttl, err := time.ParseDuration(str("AUTH_KEY_CACHE_TTL", "5s")); err != nil || ttl < 0 || ttl > time.Minute {
		errs = append(errs, "AUTH_KEY_CACHE_TTL must be a duration from 0 to 1m, such as 5s (a key revoked elsewhere works for up to that long)")
	} else {
		cfg.KeyCacheTTL = ttl
	}
	cfg.JWT = auth.JWTConfig{
		JWKSURL: str("OIDC_JWKS_URL", ""), Issuer: str("OIDC_ISSUER", ""), Audience: str("OIDC_AUDIENCE", ""),
		UserClaim: str("OIDC_USER_CLAIM", ""), ScopesClaim: str("OIDC_SCOPES_CLAIM", ""),
	}
	if cfg.JWT.JWKSURL != "" {
		cfg.JWT.ClockSkew = duration("OIDC_CLOCK_SKEW", time.Minute)
		cfg.JWT.MinRefetch = duration("OIDC_JWKS_MIN_REFETCH", 10*time.Second)
		switch v := str("OIDC_ALLOW_ADMIN", "off"); v {
		case "on", "off":
			cfg.JWT.AllowAdmin = v == "on"
		default:
			errs = append(errs, "OIDC_ALLOW_ADMIN must be on or off")
		}
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
	if v := str("ADMISSION_MAX_DELAY", "1s"); v == "off" {
		cfg.Admission.MaxDelay = -1
	} else if d, err := time.ParseDuration(v); err != nil || d <= 0 {
		errs = append(errs, "ADMISSION_MAX_DELAY must be off or a positive duration such as 1s")
	} else {
		cfg.Admission.MaxDelay = d
	}
	if v := str("ADMISSION_MIN_DRAIN", ""); v != "" {
		if r, err := strconv.ParseFloat(v, 64); err != nil || r <= 0 || r > 1e6 {
			errs = append(errs, "ADMISSION_MIN_DRAIN must be a positive number of orders per second")
		} else {
			cfg.Admission.MinDrain = r
		}
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
	return client.ConnectionOptions{GrpcCompression: c, TLS: cfg.TemporalTLS}
}

// temporalOptions are the options of every Temporal client of this process, at
// TEMPORAL_ADDRESS (or the default); the caller adds its logger and metrics.
func (cfg Config) temporalOptions() client.Options {
	o := client.Options{HostPort: cfg.TemporalAddress, Namespace: cfg.TemporalNamespace, ConnectionOptions: cfg.temporalConnection()}
	if o.HostPort == "" {
		o.HostPort = defaultTemporalAddress
	}
	if cfg.TemporalAPIKey != "" {
		o.Credentials = client.NewAPIKeyStaticCredentials(cfg.TemporalAPIKey)
	}
	return o
}

// kafkaOptions are the options of every Kafka client of this process: the brokers (or the
// default one), TLS and SASL.
func (cfg Config) kafkaOptions() []kgo.Opt {
	brokers := cfg.KafkaBrokers
	if len(brokers) == 0 {
		brokers = []string{defaultKafkaBroker}
	}
	opts := []kgo.Opt{kgo.SeedBrokers(brokers...)}
	if cfg.KafkaTLS != nil {
		opts = append(opts, kgo.DialTLSConfig(cfg.KafkaTLS.Clone()))
	}
	if cfg.KafkaSASL != nil {
		opts = append(opts, kgo.SASL(cfg.KafkaSASL))
	}
	return opts
}

func newLogger(cfg Config, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: cfg.LogLevel}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
