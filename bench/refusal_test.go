package bench

import (
	"testing"
	"time"
)

// Admission control's refusals are told apart from other 503s by their errorCode, and a
// client waits their Retry-After, at most a second.
func TestRefusalsAreToldApartAndWaitedFor(t *testing.T) {
	overloaded := []byte(`{"status":503,"errorCode":"OVERLOADED","message":"…"}`)
	unavailable := []byte(`{"status":503,"errorCode":"SERVICE_UNAVAILABLE"}`)
	switch {
	case !refusal(503, overloaded):
		t.Error("an OVERLOADED 503 is not a refusal")
	case refusal(503, unavailable), refusal(200, overloaded):
		t.Error("another answer taken for a refusal")
	}
	for v, want := range map[string]time.Duration{"1": time.Second, "7": time.Second, "": 100 * time.Millisecond, "x": 100 * time.Millisecond} {
		if got := retryAfter(v); got != want {
			t.Errorf("retryAfter(%q) = %s, want %s", v, got, want)
		}
	}
}

func TestARefusedClientsWaitIsSpreadAroundItsRetryAfter(t *testing.T) {
	for u, want := range map[float64]time.Duration{0: 500 * time.Millisecond, 0.5: time.Second, 0.999: 1499 * time.Millisecond} {
		if got := jitter(time.Second, u); got != want {
			t.Errorf("jitter(1s, %v) = %s, want %s", u, got, want)
		}
	}
}
