package main

import (
	"os"
	"strings"
	"testing"
)

func TestTemporalGRPCCompressionIsNoneUnlessAskedFor(t *testing.T) {
	for _, tc := range []struct {
		value    string
		wantGzip bool
		wantErr  bool
	}{
		{"", false, false},
		{"none", false, false},
		{"gzip", true, false},
		{"zstd", false, true},
	} {
		cfg, err := loadConfig(func(name string) string {
			if name == "TEMPORAL_GRPC_COMPRESSION" {
				return tc.value
			}
			return ""
		})
		if tc.wantErr {
			if err == nil || !strings.Contains(err.Error(), "TEMPORAL_GRPC_COMPRESSION must be none or gzip") {
				t.Errorf("%q: error %v, want one naming TEMPORAL_GRPC_COMPRESSION", tc.value, err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.value, err)
			continue
		}
		if cfg.TemporalCompressGzip != tc.wantGzip {
			t.Errorf("%q: gzip = %v, want %v", tc.value, cfg.TemporalCompressGzip, tc.wantGzip)
		}
		if cfg.temporalConnection().GrpcCompression == nil {
			t.Errorf("%q: no compression setting passed to the client (the SDK would default to gzip)", tc.value)
		}
	}
}

// Authentication is on unless trust-body is asked for by name; every security setting
// that cannot work is refused at start, naming the setting.
func TestSecuritySettingsAreCheckedAtStart(t *testing.T) {
	dir := t.TempDir()
	secret := dir + "/db-url"
	if err := os.WriteFile(secret, []byte("postgres://u:p@db/orderflow\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(func(string) string { return "" })
	if err != nil || cfg.AuthMode != authKeys || cfg.TemporalTLS != nil || cfg.KafkaTLS != nil {
		t.Fatalf("defaults: %+v, %v; want keys, no TLS", cfg, err)
	}
	cfg, err = loadConfig(func(k string) string { return map[string]string{"DATABASE_URL_FILE": secret}[k] })
	if err != nil || cfg.DatabaseURL != "postgres://u:p@db/orderflow" {
		t.Errorf("DATABASE_URL_FILE: %q, %v; want the file's content less its newline", cfg.DatabaseURL, err)
	}
	cfg, err = loadConfig(func(k string) string {
		return map[string]string{"RATE_LIMIT_TRADE": "5:10", "RATE_LIMIT_READ": "off", "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512", "KAFKA_SASL_USER": "u", "KAFKA_SASL_PASSWORD": "p"}[k]
	})
	if err != nil || cfg.Limits.Trade.PerSecond != 5 || cfg.Limits.Trade.Burst != 10 || cfg.Limits.Read.PerSecond >= 0 || cfg.KafkaSASL == nil || cfg.KafkaTLS != nil {
		t.Errorf("limits and SCRAM: %+v, %v", cfg.Limits, err)
	}
	for env, want := range map[string]string{
		"AUTH_MODE=none":                             "AUTH_MODE",
		"RATE_LIMIT_TRADE=fast":                      "RATE_LIMIT_TRADE",
		"RATE_LIMIT_READ=10:0":                       "RATE_LIMIT_READ",
		"DATABASE_URL=x DATABASE_URL_FILE=" + secret: "both set",
		"DATABASE_URL_FILE=" + dir + "/missing":      "DATABASE_URL_FILE",
		"HTTP_TLS_CERT_FILE=/c":                      "HTTP_TLS_KEY_FILE",
		"KAFKA_SASL_MECHANISM=GSSAPI":                "KAFKA_SASL_MECHANISM",
		"KAFKA_SASL_MECHANISM=PLAIN KAFKA_SASL_USER=u KAFKA_SASL_PASSWORD=p KAFKA_TLS=off": "KAFKA_TLS",
		"KAFKA_SASL_USER=u":                      "KAFKA_SASL_MECHANISM",
		"TEMPORAL_TLS_CA_FILE=" + dir + "/none":  "TEMPORAL",
		"TEMPORAL_TLS_CERT_FILE=" + secret:       "TEMPORAL",
		"OIDC_JWKS_URL=https://idp/keys":         "OIDC_ISSUER",
		"ADMISSION_MAX_DELAY=soon":               "ADMISSION_MAX_DELAY",
		"ADMISSION_MIN_DRAIN=-3":                 "ADMISSION_MIN_DRAIN",
		"ACTIVITY_RETRY_MAX_ATTEMPTS=3000000000": "ACTIVITY_RETRY_MAX_ATTEMPTS",
		"ACTIVITY_STEP_TIMEOUT=0s":               "ACTIVITY_STEP_TIMEOUT",
		"AUTH_KEY_CACHE_TTL=2m":                  "AUTH_KEY_CACHE_TTL",
		"IDEMPOTENCY_KEY_TTL=30s":                "IDEMPOTENCY_KEY_TTL",
		"IDEMPOTENCY_KEY_TTL=soon":               "IDEMPOTENCY_KEY_TTL",
		"MARKET_MAX_AGE=-1s":                     "MARKET_MAX_AGE",
		"DAY_END=25:00":                          "DAY_END",
	} {
		vars := map[string]string{}
		for _, kv := range strings.Fields(env) {
			k, v, _ := strings.Cut(kv, "=")
			vars[k] = v
		}
		_, err := loadConfig(func(k string) string { return vars[k] })
		if err == nil || !strings.Contains(err.Error(), want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want one line naming %s", env, err, want)
		}
	}
}
