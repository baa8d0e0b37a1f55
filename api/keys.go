package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/orderflow/orderflow/auth"
)

// keyView is an API key as the admin routes show it: never its secret.
type keyView struct {
	ID         string   `json:"id"`
	UserID     int64    `json:"userId"`
	Name       string   `json:"name"`
	Scopes     []string `json:"scopes"`
	CreatedAt  string   `json:"createdAt"`
	LastUsedAt *string  `json:"lastUsedAt"`
	RevokedAt  *string  `json:"revokedAt"`
}

// createdKeyView is a new key: the one answer that carries the key itself.
type createdKeyView struct {
	keyView
	Key string `json:"key"`
}

func newKeyView(k auth.Key) keyView {
	v := keyView{ID: k.ID, UserID: k.UserID, Name: k.Name, Scopes: make([]string, len(k.Scopes)), CreatedAt: formatTime(k.CreatedAt)}
	for i, sc := range k.Scopes {
		v.Scopes[i] = string(sc)
	}
	if k.LastUsedAt != nil {
		t := formatTime(*k.LastUsedAt)
		v.LastUsedAt = &t
	}
	if k.RevokedAt != nil {
		t := formatTime(*k.RevokedAt)
		v.RevokedAt = &t
	}
	return v
}

// keys returns the key store, or SERVICE_UNAVAILABLE in trust-body mode, which has none.
func (s *server) keys() (*auth.Keys, error) {
	if s.cfg.Auth == nil || s.cfg.Auth.Keys == nil {
		return nil, newError(codeUnavailable, "API keys are not available: this server does not authenticate")
	}
	return s.cfg.Auth.Keys, nil
}

// createKey handles POST /api/v1/admin/keys: {"userId": 7, "scopes": ["read","trade"],
// "name": "..."}. The answer is the only time the key is shown.
func (s *server) createKey(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.keys()
	if err != nil {
		return err
	}
	if err := requireJSON(r); err != nil {
		return err
	}
	fields, err := readObject(r)
	if err != nil {
		return err
	}
	var errs []fieldError
	for name := range fields {
		if name != "userId" && name != "scopes" && name != "name" {
			errs = append(errs, fieldError{name, "is not a known field"})
		}
	}
	user, uerr := positiveInt(fields["userId"])
	if uerr != nil {
		errs = append(errs, fieldError{"userId", uerr.Error()})
	}
	var names []string
	var scopes []auth.Scope
	if json.Unmarshal(fields["scopes"], &names) != nil || len(names) == 0 {
		errs = append(errs, fieldError{"scopes", "is required: a non-empty array of read, trade and admin"})
	} else {
		for _, n := range names {
			sc, err := auth.ParseScopes(n)
			if err != nil || len(sc) != 1 {
				errs = append(errs, fieldError{"scopes", fmt.Sprintf("%q is not one of read, trade and admin", n)})
				break
			}
			scopes = append(scopes, sc[0])
		}
	}
	var name string
	if raw, ok := fields["name"]; ok && json.Unmarshal(raw, &name) != nil {
		errs = append(errs, fieldError{"name", "must be a string"})
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	key, rec, err := keys.Create(r.Context(), user, name, scopes)
	if err != nil {
		var bad *auth.KeyError
		if errors.As(err, &bad) {
			return invalid(fieldError{bad.Field, bad.Message})
		}
		return fmt.Errorf("api: %w", err)
	}
	s.logger.InfoContext(r.Context(), "api key created", "key_id", rec.ID, "user_id", rec.UserID, "by", callerOf(r).name())
	w.Header().Set("Location", "/api/v1/admin/keys?userId="+strconv.FormatInt(rec.UserID, 10))
	s.respond(w, r, http.StatusCreated, createdKeyView{keyView: newKeyView(rec), Key: key})
	return nil
}

// listKeys handles GET /api/v1/admin/keys[?userId=N], oldest first.
func (s *server) listKeys(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.keys()
	if err != nil {
		return err
	}
	var user int64
	if v := r.URL.Query().Get("userId"); v != "" {
		if user, err = strconv.ParseInt(v, 10, 64); err != nil || user <= 0 {
			return invalid(fieldError{"userId", "must be a positive integer"})
		}
	}
	list, err := keys.List(r.Context(), user)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	out := make([]keyView, len(list))
	for i, k := range list {
		out[i] = newKeyView(k)
	}
	s.respond(w, r, http.StatusOK, out)
	return nil
}

// revokeKey handles POST /api/v1/admin/keys/{keyId}/revoke: the key is refused from the
// next request on by this replica, and by the others once they no longer remember it
// valid (AUTH_KEY_CACHE_TTL). Revoking a revoked key answers it as it is.
func (s *server) revokeKey(w http.ResponseWriter, r *http.Request) error {
	keys, err := s.keys()
	if err != nil {
		return err
	}
	id := chi.URLParam(r, "keyId")
	k, err := keys.Revoke(r.Context(), id)
	if errors.Is(err, auth.ErrKeyNotFound) {
		return newError(codeKeyNotFound, "API key %q not found", id)
	}
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	s.logger.InfoContext(r.Context(), "api key revoked", "key_id", k.ID, "user_id", k.UserID, "by", callerOf(r).name())
	s.respond(w, r, http.StatusOK, newKeyView(k))
	return nil
}
