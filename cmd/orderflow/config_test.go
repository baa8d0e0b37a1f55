package main

import (
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
