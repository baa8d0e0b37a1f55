package api

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/orderflow/orderflow/auth"
)

// echoRequestID returns the request id to the client, so a user reporting a problem
// can quote the id that is in our logs.
func echoRequestID(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id := middleware.GetReqID(r.Context()); id != "" {
			w.Header().Set(middleware.RequestIDHeader, id)
		}
		next.ServeHTTP(w, r)
	})
}

// accessLog writes one structured log line per request.
func (s *server) accessLog(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		status := ww.Status()
		if status == 0 {
			status = http.StatusOK // nothing written: net/http answers 200
		}
		level := slog.LevelInfo
		if status >= 500 {
			level = slog.LevelWarn
		}
		attrs := []slog.Attr{
			slog.String("method", r.Method),
			slog.String("path", redactKeys(r.URL.Path)),
			slog.Int("status", status),
			slog.Int("bytes", ww.BytesWritten()),
			slog.Duration("duration", time.Since(start)),
			slog.String("request_id", middleware.GetReqID(r.Context())),
			slog.String("remote", r.RemoteAddr),
		}
		// Routing has filled the route context by now; lines about one order carry its
		// id, so a log search for an order finds its HTTP requests too.
		if id, err := strconv.ParseInt(chi.URLParam(r, "id"), 10, 64); err == nil && id > 0 {
			attrs = append(attrs, slog.Int64("order_id", id))
		}
		s.logger.LogAttrs(r.Context(), level, "http request", attrs...)
	})
}

// redactKeys cuts what follows an API key's prefix in a path (an operator may paste a
// whole key where its id belongs), so that no secret reaches the log.
func redactKeys(path string) string {
	if i := strings.Index(path, auth.KeyPrefix); i >= 0 {
		rest := path[i+len(auth.KeyPrefix):]
		end := strings.IndexByte(rest, '/')
		if end < 0 {
			end = len(rest)
		}
		return path[:i] + auth.KeyPrefix + "[redacted]" + redactKeys(rest[end:])
	}
	return path
}

// recoverer turns a panic in a handler into a logged stack trace and a generic 500
// problem body, so a bug neither kills the connection silently nor leaks internals.
func (s *server) recoverer(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			rec := recover()
			// http.ErrAbortHandler is a handler's deliberate way to abort a response;
			// it is not a bug, so it is neither logged nor answered.
			if rec == nil || rec == http.ErrAbortHandler {
				return
			}
			s.logger.ErrorContext(r.Context(), "panic serving request",
				"panic", fmt.Sprint(rec), "stack", string(debug.Stack()),
				"request_id", middleware.GetReqID(r.Context()))
			if ww, ok := w.(middleware.WrapResponseWriter); ok && ww.Status() != 0 {
				return // headers are gone; nothing useful can be added
			}
			s.fail(w, r, newError(codeInternal, "internal error; it has been logged"))
		}()
		next.ServeHTTP(w, r)
	})
}

// timeout gives every request a deadline, so a stuck database call ends as a 503
// instead of holding the client and a pool connection forever. An event stream lasts as
// long as its client and bounds its own database calls and writes instead.
func (s *server) timeout(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if streamPath(r) {
			next.ServeHTTP(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.RequestTimeout)
		defer cancel()
		next.ServeHTTP(w, r.WithContext(ctx))
	})
}

// limitBody bounds request bodies to maxBodyBytes. A declared length over the limit is
// refused before reading; an undeclared one is cut off by http.MaxBytesReader, whose
// error the decoder turns into the same 413.
func (s *server) limitBody(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > maxBodyBytes {
			s.fail(w, r, tooLarge())
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		next.ServeHTTP(w, r)
	})
}

// tooLarge is the error for a body over maxBodyBytes.
func tooLarge() *apiError {
	return newError(codePayloadTooLarge, "request body exceeds %d bytes", maxBodyBytes)
}
