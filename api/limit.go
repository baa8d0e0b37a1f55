package api

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// RateLimit is a token bucket: Burst requests at once, refilled at PerSecond. A zero
// PerSecond means the default of its class; a negative one, no limit.
type RateLimit struct {
	PerSecond float64
	Burst     int
}

// Limits are the API's rate limits, each per replica (every replica keeps its own
// buckets; a client spread over n replicas gets up to n times the limit):
//
//   - Trade: placing and cancelling, per user; default 100/s, burst 200.
//   - Read: everything else, per user; default 200/s, burst 400.
//   - FailedAuth: refused credentials, per source address; once spent, every request
//     from that address is refused (429) without checking its credential; default 1/s,
//     burst 20.
type Limits struct {
	Trade, Read, FailedAuth RateLimit
}

func (l RateLimit) or(perSecond float64, burst int) RateLimit {
	if l.PerSecond == 0 {
		return RateLimit{PerSecond: perSecond, Burst: burst}
	}
	if l.Burst <= 0 {
		l.Burst = max(1, int(math.Ceil(l.PerSecond)))
	}
	return l
}

func (l Limits) withDefaults() Limits {
	return Limits{Trade: l.Trade.or(100, 200), Read: l.Read.or(200, 400), FailedAuth: l.FailedAuth.or(1, 20)}
}

// maxBuckets bounds how many buckets a limiter keeps. A bucket that has refilled says
// nothing a new one would not, so those go first; a limiter that still holds this many
// busy ones (a flood from as many addresses) starts afresh rather than grow.
const maxBuckets = 100_000

// limiter is one RateLimit kept per key (a user, an address).
type limiter struct {
	name  string // the policy's name in the RateLimit headers
	limit RateLimit

	mu      sync.Mutex
	buckets map[string]*rate.Limiter
}

func newLimiter(name string, l RateLimit) *limiter {
	return &limiter{name: name, limit: l, buckets: map[string]*rate.Limiter{}}
}

// bucket returns key's bucket; mu must be held.
func (l *limiter) bucket(key string, now time.Time) *rate.Limiter {
	b, ok := l.buckets[key]
	if ok {
		return b
	}
	if len(l.buckets) >= maxBuckets {
		for k, b := range l.buckets {
			if b.TokensAt(now) >= float64(l.limit.Burst) {
				delete(l.buckets, k)
			}
		}
		// Still full of busy buckets (a flood from as many addresses): drop a tenth of
		// them, at random (map order), rather than grow or forget them all at once.
		for k := range l.buckets {
			if len(l.buckets) < maxBuckets*9/10 {
				break
			}
			delete(l.buckets, k)
		}
	}
	b = rate.NewLimiter(rate.Limit(l.limit.PerSecond), l.limit.Burst)
	l.buckets[key] = b
	return b
}

// verdict is what a limiter said about one request.
type verdict struct {
	allowed   bool
	remaining int           // whole requests left in the bucket
	reset     time.Duration // until the bucket is full again
	retry     time.Duration // refused: until the next request would be allowed
}

// take spends one request of key's bucket, if it holds one.
func (l *limiter) take(key string) verdict {
	if l.limit.PerSecond < 0 {
		return verdict{allowed: true}
	}
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.bucket(key, now)
	v := verdict{allowed: b.AllowN(now, 1)}
	return l.describe(v, b.TokensAt(now))
}

func (l *limiter) describe(v verdict, tokens float64) verdict {
	perSecond := l.limit.PerSecond
	v.remaining = max(0, int(tokens))
	v.reset = time.Duration((float64(l.limit.Burst) - tokens) / perSecond * float64(time.Second))
	if !v.allowed {
		v.retry = time.Duration((1 - tokens) / perSecond * float64(time.Second))
	}
	return v
}

// setHeaders writes the IETF RateLimit fields (draft-ietf-httpapi-ratelimit-headers):
// the policy (quota q in window w seconds) and what is left of it (r requests, full again
// in t seconds).
func (l *limiter) setHeaders(h http.Header, v verdict) {
	if l.limit.PerSecond < 0 {
		return
	}
	window := max(1, int(math.Ceil(float64(l.limit.Burst)/l.limit.PerSecond)))
	h.Set("RateLimit-Policy", fmt.Sprintf("%q;q=%d;w=%d", l.name, l.limit.Burst, window))
	h.Set("RateLimit", fmt.Sprintf("%q;r=%d;t=%d", l.name, v.remaining, seconds(v.reset)))
}

// seconds rounds d up to whole seconds.
func seconds(d time.Duration) int { return int(math.Ceil(d.Seconds())) }

// tooMany is the 429 of a spent bucket.
func tooMany(v verdict, what string) *apiError {
	return &apiError{code: codeTooManyRequests, retryAfter: max(time.Second, v.retry),
		message: fmt.Sprintf("too many %s; retry after %d seconds", what, max(1, seconds(v.retry)))}
}

// sourceAddress is the address a request came from: the peer's IP. Forwarded headers are
// not believed, since any client can send them.
func sourceAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// addressKey is the bucket key of a source address: an IPv4 address, or an IPv6 one's
// /64, the block a single host is usually given (so rotating through it earns nothing).
func addressKey(addr string) string {
	ip, err := netip.ParseAddr(addr)
	if err != nil || ip.Is4() || ip.Is4In6() {
		return addr
	}
	p, err := ip.Prefix(64)
	if err != nil {
		return addr
	}
	return p.String()
}

// userKey is the bucket key of a user.
func userKey(user int64) string { return strconv.FormatInt(user, 10) }
