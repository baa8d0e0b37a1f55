package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/orderflow/orderflow/auth"
	"github.com/orderflow/orderflow/queries"
)

// caller is who a request acts for. trusted is the trust-body mode: no credential, the
// body's user id believed, every order visible and every route open.
type caller struct {
	auth.Principal
	trusted bool
}

type callerKey struct{}

// callerOf returns the caller the authenticate middleware found.
func callerOf(r *http.Request) caller {
	c, _ := r.Context().Value(callerKey{}).(caller) // set on every /api/v1 route
	return c
}

// seesAll reports whether the caller reads every user's orders.
func (c caller) seesAll() bool { return c.trusted || c.Admin() }

// sees reports whether the caller may know that o exists.
func (c caller) sees(o queries.Order) bool { return c.seesAll() || o.UserID == c.UserID }

// name is who the audit trail records as having asked: the principal, never a value from
// the request.
func (c caller) name() string {
	if c.trusted {
		return "unauthenticated"
	}
	return c.String()
}

// details is an event's details naming who asked.
func (c caller) details() []byte {
	b, _ := json.Marshal(map[string]string{"requestedBy": c.name()}) // strings cannot fail to encode
	return b
}

// challenge is the WWW-Authenticate challenge of every 401 and 403.
const challenge = `Bearer realm="orderflow"`

// authenticate finds the caller of every /api/v1 request from its Authorization header
// (or, in trust-body mode, believes the request). A missing or refused credential is 401
// with a WWW-Authenticate challenge. Refused credentials are charged to their source
// address: once its bucket is spent, a refusal is 429 with Retry-After instead, telling a
// client that retries a bad credential (or guesses) to back off. A credential that checks
// out is never refused, so a guesser behind the same proxy as real clients cannot lock
// them out.
func (s *server) authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.cfg.TrustBody {
			c := caller{Principal: auth.Principal{Scopes: []auth.Scope{auth.ScopeRead, auth.ScopeTrade, auth.ScopeAdmin}}, trusted: true}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, c)))
			return
		}
		token, err := auth.BearerToken(r.Header.Get("Authorization"))
		if errors.Is(err, auth.ErrNoCredential) {
			s.fail(w, r, &apiError{code: codeUnauthenticated, challenge: challenge,
				message: "a credential is required: send Authorization: Bearer <API key or token>"})
			return
		}
		var p auth.Principal
		if err == nil {
			if s.cfg.Auth == nil {
				err = auth.ErrInvalidCredential
			} else {
				p, err = s.cfg.Auth.Authenticate(r.Context(), token)
			}
		}
		switch {
		case errors.Is(err, auth.ErrMalformedHeader), errors.Is(err, auth.ErrInvalidCredential):
			s.refuse(w, r, err, token)
			return
		case err != nil:
			s.fail(w, r, fmt.Errorf("api: authenticate: %w", err))
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, caller{Principal: p})))
	})
}

// refuse answers a refused credential: 401, or 429 once its address has spent its
// bucket. An address refused 429 is logged at most once a minute, with the key's public
// id at most, never the token.
func (s *server) refuse(w http.ResponseWriter, r *http.Request, err error, token string) {
	addr := sourceAddress(r)
	v := s.failures.take(addressKey(addr))
	if !v.allowed {
		if s.refusalLogs.take(addressKey(addr)).allowed {
			keyID, _, _ := auth.ParseKey(token)
			s.logger.WarnContext(r.Context(), "refused credentials from one address beyond its limit; answering 429",
				"remote", addr, "key_id", keyID, "error", err)
		}
		s.fail(w, r, tooMany(v, "refused credentials from this address"))
		return
	}
	msg := "the credential is not valid (unknown, revoked, expired or malformed)"
	if errors.Is(err, auth.ErrMalformedHeader) {
		msg = err.Error()
	}
	s.fail(w, r, &apiError{code: codeUnauthenticated, message: msg, cause: err, challenge: challenge + `, error="invalid_token"`})
}

// guard admits a caller holding one of scopes (403 otherwise) and within its rate limit
// (429 otherwise), answering with the RateLimit headers either way.
func (s *server) guard(limit *limiter, scopes ...auth.Scope) func(http.Handler) http.Handler {
	names := make([]string, len(scopes))
	for i, sc := range scopes {
		names[i] = string(sc)
	}
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			c := callerOf(r)
			if !c.trusted && !c.holdsAny(scopes) {
				s.fail(w, r, &apiError{code: codeForbidden,
					message:   fmt.Sprintf("this credential lacks the scope this route needs: %s", strings.Join(names, " or ")),
					challenge: fmt.Sprintf(`%s, error="insufficient_scope", scope=%q`, challenge, strings.Join(names, " "))})
				return
			}
			key := userKey(c.UserID)
			if c.trusted {
				key = "address:" + sourceAddress(r)
			}
			v := limit.take(key)
			limit.setHeaders(w.Header(), v)
			if !v.allowed {
				s.fail(w, r, tooMany(v, limit.name+" requests"))
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

func (c caller) holdsAny(scopes []auth.Scope) bool {
	for _, sc := range scopes {
		if c.Has(sc) {
			return true
		}
	}
	return false
}

// securityHeaders sets what every answer carries: nothing of it may be cached (order data
// belongs to one user), sniffed, framed or sent on as a referrer; over TLS, HSTS.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Cache-Control", "no-store")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Content-Security-Policy", "default-src 'none'; frame-ancestors 'none'")
		h.Set("Referrer-Policy", "no-referrer")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=63072000")
		}
		next.ServeHTTP(w, r)
	})
}
