package api_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/orderflow/orderflow/api"
	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/auth/oidctest"
	"github.com/orderflow/orderflow/devstack"
)

// state is what a refused request must leave as it was: the orders with their events and
// outbox messages, the keys and their revocations, the instruments' statuses, and what
// reached the order's run (the fake canceller stands for Temporal).
type state struct {
	rows              [3]int
	keys, revoked     int
	instruments       string
	cancels, decision int
}

func (h *harness) state() state {
	h.t.Helper()
	var s state
	s.rows = h.orderRows()
	if err := h.pool.QueryRow(context.Background(), `
		SELECT (SELECT count(*) FROM api_keys), (SELECT count(*) FROM api_keys WHERE revoked_at IS NOT NULL),
		       (SELECT string_agg(status, ',' ORDER BY id) FROM instruments)`).Scan(&s.keys, &s.revoked, &s.instruments); err != nil {
		h.t.Fatal(err)
	}
	s.cancels, s.decision = len(h.cancels.recorded()), len(h.cancels.decided())
	return s
}

// who a matrix credential stands for.
type who int

const (
	nobody     who = iota // refused: 401
	stranger              // another user, read and trade
	ownerRead             // the order's owner, read only
	ownerTrade            // the order's owner, trade only
	owner                 // the order's owner, read and trade
	operator              // admin only
)

// route is one API route of the matrix, about an order of user 1 where it names one.
type route struct {
	method, path string // path: %[1]d the order id, %[2]s a key id
	body         string
	need         string // read, trade, cancel (trade on one's own, or admin) or admin
	ok           int    // the status of a caller allowed
}

var routes = []route{
	{"POST", "/api/v1/orders", limitBody(1, `"10"`, 1), "trade", 201},
	{"GET", "/api/v1/orders", "", "list", 200},
	{"GET", "/api/v1/orders/%[1]d", "", "read", 200},
	// The order is not resting yet: its owner's amendment is refused 409, after the checks.
	{"PATCH", "/api/v1/orders/%[1]d", `{"quantity":2}`, "amend", 409},
	// The harness runs no event-stream hub: 503 once the caller may have the stream.
	{"GET", "/api/v1/orders/events/stream?userId=1", "", "user", 503},
	{"GET", "/api/v1/orders/%[1]d/events/stream", "", "read", 503},
	{"POST", "/api/v1/orders/%[1]d/cancel", "", "cancel", 202},
	{"GET", "/api/v1/orders/%[1]d/events", "", "read", 200},
	{"GET", "/api/v1/orders/%[1]d/trades", "", "read", 200},
	{"GET", "/api/v1/instruments", "", "list", 200},
	{"GET", "/api/v1/admin/orders/stuck", "", "admin", 200},
	{"POST", "/api/v1/admin/orders/%[1]d/retry", "", "admin", 409},
	{"POST", "/api/v1/admin/orders/%[1]d/fail", `{"reason":"r"}`, "admin", 409},
	{"GET", "/api/v1/admin/instruments", "", "admin", 200},
	{"POST", "/api/v1/admin/instruments/103/halt", "", "admin", 200},
	{"POST", "/api/v1/admin/instruments/103/resume", "", "admin", 200},
	{"POST", "/api/v1/admin/keys", `{"userId":5,"scopes":["read"]}`, "admin", 201},
	{"GET", "/api/v1/admin/keys", "", "admin", 200},
	{"POST", "/api/v1/admin/keys/%[2]s/revoke", "", "admin", 200},
}

// want is the status route answers c.
func (r route) want(c who) int {
	read := c == stranger || c == ownerRead || c == owner || c == operator
	trade := c == stranger || c == ownerTrade || c == owner
	switch {
	case c == nobody:
		return 401
	case r.need == "admin":
		return map[bool]int{true: r.ok, false: 403}[c == operator]
	case r.need == "list":
		return map[bool]int{true: r.ok, false: 403}[read]
	case r.need == "user": // read, naming user 1
		return map[bool]int{true: r.ok, false: 403}[read && c != stranger]
	case r.need == "read" && !read, (r.need == "trade" || r.need == "amend") && !trade, r.need == "cancel" && !trade && c != operator:
		return 403
	case r.need == "trade" && c == stranger:
		return 403 // the body names user 1
	case c == stranger: // another user's order does not exist for them
		return 404
	}
	return r.ok
}

// Every route, asked with every kind of credential, answers what the credential may do,
// and a refused request changes nothing in the database or in what reached Temporal.
func TestEveryRouteAnswersEachCredentialAsItsScopesAndOwnerAllow(t *testing.T) {
	t.Parallel()
	idp := oidctest.NewProvider(t)
	verifier, err := auth.NewJWTVerifier(context.Background(), idp.Config())
	if err != nil {
		t.Fatal(err)
	}
	cfg := testConfig()
	cfg.Auth = &auth.Authenticator{JWT: verifier}
	h := newHarnessWith(t, newPool(t), cfg, nil)
	ctx := context.Background()

	revoked, rec, err := h.creds.Keys().Create(ctx, 1, "revoked", []auth.Scope{auth.ScopeRead, auth.ScopeTrade})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := h.creds.Keys().Revoke(ctx, rec.ID); err != nil {
		t.Fatal(err)
	}
	unknown, _, _ := auth.NewKey()
	rotatedOut := idp.Token(t, oidctest.Claims(1, "read trade"))
	forged := idp.Forgeries(t, oidctest.Claims(1, "read trade"))
	idp.Rotate(t)
	// The verifier learns of the rotation from the first token naming the new key.
	if _, err := verifier.Verify(ctx, idp.Token(t, oidctest.Claims(1, "read"))); err != nil {
		t.Fatal(err)
	}

	creds := []struct {
		name, header string
		who          who
	}{
		{"no credential", "none", nobody},
		{"malformed header", "Basic dXNlcjpwYXNz", nobody},
		{"unknown key", bearer(unknown), nobody},
		{"revoked key", bearer(revoked), nobody},
		{"JWKS rotation: a token of the key rotated out", bearer(rotatedOut), nobody},
		{"another user's key", bearer(h.key(2, auth.ScopeRead, auth.ScopeTrade)), stranger},
		{"read-only scope", bearer(h.key(1, auth.ScopeRead)), ownerRead},
		{"trade scope", bearer(h.key(1, auth.ScopeTrade)), ownerTrade},
		{"read and trade", bearer(h.key(1, auth.ScopeRead, auth.ScopeTrade)), owner},
		{"the owner's JWT after the rotation", bearer(idp.Token(t, oidctest.Claims(1, "read trade"))), owner},
		{"admin", bearer(h.key(devstack.OperatorUser, auth.ScopeAdmin)), operator},
	}
	for name, tok := range forged {
		creds = append(creds, struct {
			name, header string
			who          who
		}{name, bearer(tok), nobody})
	}

	for _, c := range creds {
		for _, r := range routes {
			t.Run(c.name+"/"+r.method+" "+r.path, func(t *testing.T) {
				h := h.on(t)
				o := h.mustPlace(limitBody(1, `"10"`, 1))
				_, target, err := h.creds.Keys().Create(ctx, 1, "target", []auth.Scope{auth.ScopeRead})
				if err != nil {
					t.Fatal(err)
				}
				path := r.path
				if strings.Contains(path, "%") {
					path = fmt.Sprintf(path, o.OrderID, target.ID)
				}
				hdr := []string{"Authorization", c.header, "Idempotency-Key", newKey()}
				if r.body != "" {
					hdr = append(hdr, "Content-Type", "application/json")
				}
				before := h.state()
				res := h.do(r.method, path, r.body, hdr...)
				want := r.want(c.who)
				if res.status != want {
					t.Fatalf("status %d, want %d; body %s", res.status, want, res.body)
				}
				if want >= 400 {
					if after := h.state(); after != before {
						t.Errorf("a refused request changed %+v into %+v", before, after)
					}
				}
				switch want {
				case 401:
					if a := res.header.Get("WWW-Authenticate"); !strings.HasPrefix(a, "Bearer") {
						t.Errorf("WWW-Authenticate = %q, want a Bearer challenge", a)
					}
					wantProblem(t, res, 401, "UNAUTHENTICATED", "")
				case 404:
					wantProblem(t, res, 404, "ORDER_NOT_FOUND", "")
				}
				if c.who == stranger && r.method == "GET" && r.path == "/api/v1/orders" {
					for _, v := range decode[struct{ Content []orderBody }](t, res).Content {
						if v.UserID != 2 {
							t.Errorf("another user's list holds order %d of user %d", v.OrderID, v.UserID)
						}
					}
				}
				h.exec(`UPDATE instruments SET status = 'ACTIVE'`)
			})
		}
	}
}

// The order's user is the credential's: a body may omit it or name it, and a body
// naming anyone else is refused with 403 naming the field and writes nothing. Lists hold
// the caller's orders only, and an Idempotency-Key is the caller's own.
func TestTheUserOfAnOrderIsTheCredentialsNeverTheBodys(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	alice := bearer(h.key(1, auth.ScopeRead, auth.ScopeTrade))
	bob := bearer(h.key(2, auth.ScopeRead, auth.ScopeTrade))
	place := func(who, key, body string) response {
		return h.do(http.MethodPost, "/api/v1/orders", body, "Authorization", who, "Content-Type", "application/json", "Idempotency-Key", key)
	}
	noUser := `{"instrumentId":101,"orderType":"BUY","orderKind":"LIMIT","price":"10","quantity":1}`
	res := place(alice, "same-key", noUser)
	if res.status != 201 || decode[orderBody](t, res).UserID != 1 {
		t.Fatalf("a body without userId: %d %s, want 201 for user 1", res.status, res.body)
	}
	before := h.orderRows()
	wantProblem(t, place(alice, newKey(), limitBody(2, `"10"`, 1)), 403, "FORBIDDEN", "userId")
	if after := h.orderRows(); after != before {
		t.Errorf("a refused placement wrote %v → %v", before, after)
	}
	// The same key from another user is another order, not a replay of alice's.
	res = place(bob, "same-key", noUser)
	if res.status != 201 || decode[orderBody](t, res).UserID != 2 {
		t.Fatalf("bob reusing alice's key: %d %s, want a new order of his", res.status, res.body)
	}
	if again := place(bob, "same-key", limitBody(2, `"10"`, 1)); again.status != 201 || again.header.Get("Idempotent-Replayed") != "true" || !bytes.Equal(again.body, res.body) {
		t.Errorf("bob's replay naming himself: %d %s, want his first answer replayed", again.status, again.body)
	}
	list := h.do(http.MethodGet, "/api/v1/orders", "", "Authorization", bob)
	if page := decode[struct{ Content []orderBody }](t, list); len(page.Content) != 1 || page.Content[0].UserID != 2 {
		t.Errorf("bob's list: %s, want his one order", list.body)
	}
	wantProblem(t, h.do(http.MethodGet, "/api/v1/orders?userId=1", "", "Authorization", bob), 403, "FORBIDDEN", "userId")
	if res := h.do(http.MethodGet, "/api/v1/orders?userId=2", "", "Authorization", bob); res.status != 200 {
		t.Errorf("bob filtering by himself: %d", res.status)
	}
}

// The trust-body mode is the original API: the body names the user, and must.
func TestTrustBodyModeBelievesTheBodyAndNeedsItsUser(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.TrustBody = true
	h := newHarnessWith(t, newPool(t), cfg, nil)
	wantProblem(t, h.place(newKey(), `{"instrumentId":101,"orderType":"BUY","orderKind":"MARKET","quantity":1}`), 400, "VALIDATION_FAILED", "userId")
	o := h.mustPlace(limitBody(7, `"10"`, 1))
	if o.UserID != 7 {
		t.Errorf("user %d, want the body's 7", o.UserID)
	}
	if res := h.get(fmt.Sprintf("/api/v1/orders/%d", o.OrderID)); res.status != 200 {
		t.Errorf("reading without a credential in trust-body mode: %d", res.status)
	}
}

// Trading and reading are limited per user, apart; a refusal is 429 with Retry-After and
// the RateLimit fields, writes nothing, and the bucket refills.
func TestRateLimitsArePerUserAndRecover(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	// A slow refill (a token every 2s), so that a slow machine between two requests
	// cannot refill the bucket behind the test's back.
	cfg.Limits = api.Limits{Trade: api.RateLimit{PerSecond: 0.5, Burst: 2}, Read: api.RateLimit{PerSecond: -1}, FailedAuth: api.RateLimit{PerSecond: -1}}
	h := newHarnessWith(t, newPool(t), cfg, nil)
	for i := range 2 {
		res := h.place(newKey(), limitBody(1, `"10"`, 1))
		if res.status != 201 {
			t.Fatalf("placement %d: %d", i, res.status)
		}
		if p := res.header.Get("RateLimit-Policy"); p != `"trade";q=2;w=4` {
			t.Errorf("RateLimit-Policy = %q", p)
		}
		if want := fmt.Sprintf(`"trade";r=%d;`, 1-i); !strings.HasPrefix(res.header.Get("RateLimit"), want) {
			t.Errorf("RateLimit = %q, want it to start %s", res.header.Get("RateLimit"), want)
		}
	}
	before := h.orderRows()
	res := h.place(newKey(), limitBody(1, `"10"`, 1))
	wantProblem(t, res, 429, "TOO_MANY_REQUESTS", "")
	if ra := res.header.Get("Retry-After"); (ra != "1" && ra != "2") || !strings.HasPrefix(res.header.Get("RateLimit"), `"trade";r=0;`) {
		t.Errorf("429 headers: Retry-After %q, RateLimit %q", res.header.Get("Retry-After"), res.header.Get("RateLimit"))
	}
	if after := h.orderRows(); after != before {
		t.Errorf("a refused placement wrote %v → %v", before, after)
	}
	if res := h.place(newKey(), limitBody(2, `"10"`, 1)); res.status != 201 {
		t.Errorf("another user, within their own limit: %d", res.status)
	}
	if res := h.get("/api/v1/orders"); res.status != 200 {
		t.Errorf("a read of the limited user: %d; reads are limited apart", res.status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for h.place(newKey(), limitBody(1, `"10"`, 1)).status != 201 {
		if time.Now().After(deadline) {
			t.Fatal("the bucket did not refill in 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Refused credentials are throttled per source address: once its bucket is spent, a
// refused credential from that address is 429 until it refills; a valid credential from
// the same address is never refused (a guesser behind a shared proxy locks nobody out),
// and other addresses (an IPv6 host's whole /64 counting as one) are not affected.
func TestRefusedCredentialsAreThrottledPerAddress(t *testing.T) {
	t.Parallel()
	cfg := testConfig()
	cfg.Limits.FailedAuth = api.RateLimit{PerSecond: 0.5, Burst: 3} // slow refill, as above
	h := newHarnessWith(t, newPool(t), cfg, nil)
	good := bearer(h.key(1, auth.ScopeRead))
	from := func(addr, cred string) response {
		req, _ := http.NewRequest(http.MethodGet, "/api/v1/orders", nil)
		req.RemoteAddr = net.JoinHostPort(addr, "1234")
		req.Header.Set("Authorization", cred)
		return h.serve(req)
	}
	bad, _, _ := auth.NewKey()
	for _, addr := range []string{"192.0.2.1", "2001:db8::1"} {
		for i := range 3 {
			if res := from(addr, bearer(bad)); res.status != 401 {
				t.Fatalf("%s: refused credential %d: %d", addr, i, res.status)
			}
		}
		res := from(addr, bearer(bad))
		wantProblem(t, res, 429, "TOO_MANY_REQUESTS", "")
		if ra := res.header.Get("Retry-After"); ra != "1" && ra != "2" {
			t.Errorf("%s: Retry-After %q, want the 2s of a token at most", addr, ra)
		}
		if res := from(addr, good); res.status != 200 {
			t.Errorf("%s: a valid key from the throttled address: %d, want 200", addr, res.status)
		}
	}
	if res := from("2001:db8::2", "Basic x"); res.status != 429 {
		t.Errorf("another address of the same /64: %d, want 429", res.status)
	}
	if res := from("192.0.2.2", bearer(bad)); res.status != 401 {
		t.Errorf("another address: %d, want 401", res.status)
	}
	deadline := time.Now().Add(5 * time.Second)
	for from("192.0.2.1", bearer(bad)).status != 401 {
		if time.Now().After(deadline) {
			t.Fatal("the address's refusals were not answered 401 again within 5s")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// A key made through the admin API works at once, is listed without its secret, and is
// refused from the request after its revocation.
func TestOperatorsManageKeysThroughTheAdminAPI(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	res := h.do(http.MethodPost, "/api/v1/admin/keys", `{"userId":12,"scopes":["read","trade"],"name":"desk 12"}`, "Content-Type", "application/json")
	if res.status != 201 {
		t.Fatalf("create: %d %s", res.status, res.body)
	}
	created := decode[struct {
		ID, Key string
		UserID  int64
	}](t, res)
	if !strings.HasPrefix(created.Key, auth.KeyPrefix) || created.UserID != 12 {
		t.Fatalf("created %+v", created)
	}
	if res := h.do(http.MethodGet, "/api/v1/orders", "", "Authorization", bearer(created.Key)); res.status != 200 {
		t.Errorf("the new key: %d", res.status)
	}
	list := h.get("/api/v1/admin/keys?userId=12")
	if strings.Contains(string(list.body), created.Key) || !strings.Contains(string(list.body), created.ID) {
		t.Errorf("the list: %s, want the key's id and never its secret", list.body)
	}
	wantProblem(t, h.do(http.MethodPost, "/api/v1/admin/keys", `{"userId":12,"scopes":["root"]}`, "Content-Type", "application/json"), 400, "VALIDATION_FAILED", "scopes")
	if res := h.do(http.MethodPost, "/api/v1/admin/keys/"+created.ID+"/revoke", ""); res.status != 200 {
		t.Fatalf("revoke: %d %s", res.status, res.body)
	}
	wantProblem(t, h.do(http.MethodGet, "/api/v1/orders", "", "Authorization", bearer(created.Key)), 401, "UNAUTHENTICATED", "")
	wantProblem(t, h.do(http.MethodPost, "/api/v1/admin/keys/nosuchkey/revoke", ""), 404, "API_KEY_NOT_FOUND", "")
}

// Every answer is uncacheable and carries the usual security headers.
func TestAnswersAreNotCachedAndCarrySecurityHeaders(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	o := h.mustPlace(limitBody(1, `"10"`, 1))
	for _, path := range []string{fmt.Sprintf("/api/v1/orders/%d", o.OrderID), "/api/v1/orders", "/api/v1/orders/999999", "/healthz"} {
		res := h.get(path)
		for name, want := range map[string]string{
			"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer",
		} {
			if got := res.header.Get(name); got != want {
				t.Errorf("%s: %s = %q, want %q", path, name, got, want)
			}
		}
	}
}

// A whole key pasted where its id belongs (a revoke's path) is refused and never
// reaches the log.
func TestAKeyInAPathIsNotLogged(t *testing.T) {
	t.Parallel()
	var log bytes.Buffer
	var mu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return log.Write(p)
	}), nil))
	h := newHarnessWith(t, newPool(t), testConfig(), logger)
	key := h.key(3, auth.ScopeRead)
	wantProblem(t, h.do(http.MethodPost, "/api/v1/admin/keys/"+key+"/revoke", ""), 404, "API_KEY_NOT_FOUND", "")
	mu.Lock()
	defer mu.Unlock()
	_, secret, _ := strings.Cut(strings.TrimPrefix(key, auth.KeyPrefix), "_")
	if strings.Contains(log.String(), secret) || !strings.Contains(log.String(), "ofk_[redacted]") {
		t.Errorf("the log:\n%s\nholds the key's secret, or does not show it redacted", log.String())
	}
}

// writerFunc is an io.Writer of a function.
type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }
