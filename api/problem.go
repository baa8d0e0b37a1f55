package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5/middleware"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// errorCode is the seed's machine-readable errorCode. Each code has exactly one HTTP
// status and title, given by describe; clients switch on the code, not on the message.
type errorCode string

// The error codes the API answers with.
const (
	codeValidation         errorCode = "VALIDATION_FAILED"
	codeMalformedJSON      errorCode = "MALFORMED_JSON"
	codePayloadTooLarge    errorCode = "PAYLOAD_TOO_LARGE"
	codeUnsupportedMedia   errorCode = "UNSUPPORTED_MEDIA_TYPE"
	codeMissingKey         errorCode = "MISSING_IDEMPOTENCY_KEY"
	codeKeyReused          errorCode = "IDEMPOTENCY_KEY_REUSED"
	codeKeyInFlight        errorCode = "IDEMPOTENCY_KEY_IN_FLIGHT"
	codePreconditionFailed errorCode = "PRECONDITION_FAILED"
	codeClientOrderIDInUse errorCode = "CLIENT_ORDER_ID_IN_USE"
	codeOrderNotFound      errorCode = "ORDER_NOT_FOUND"
	codeOrderTerminal      errorCode = "ORDER_TERMINAL"
	codeOrderNotParked     errorCode = "ORDER_NOT_PARKED"
	codeOrderNotAmendable  errorCode = "ORDER_NOT_AMENDABLE"
	codeAmendBelowFilled   errorCode = "QUANTITY_NOT_ABOVE_FILLED"
	codeInstrumentNotFound errorCode = "INSTRUMENT_NOT_FOUND"
	codeNotFound           errorCode = "NOT_FOUND"
	codeKeyNotFound        errorCode = "API_KEY_NOT_FOUND"
	codeUnauthenticated    errorCode = "UNAUTHENTICATED"
	codeForbidden          errorCode = "FORBIDDEN"
	codeTooManyRequests    errorCode = "TOO_MANY_REQUESTS"
	codeOverloaded         errorCode = "OVERLOADED"
	codeMethodNotAllowed   errorCode = "METHOD_NOT_ALLOWED"
	codeUnavailable        errorCode = "SERVICE_UNAVAILABLE"
	codeInternal           errorCode = "INTERNAL_ERROR"
)

// describe is the one code → HTTP status table, with the problem type's title (RFC 9457
// wants the title to be the same for every occurrence of a type).
func (c errorCode) describe() (status int, title string) {
	switch c {
	case codeValidation:
		return http.StatusBadRequest, "Validation failed"
	case codeMalformedJSON:
		return http.StatusBadRequest, "Malformed JSON"
	case codeMissingKey:
		return http.StatusBadRequest, "Missing Idempotency-Key"
	case codePayloadTooLarge:
		return http.StatusRequestEntityTooLarge, "Payload too large"
	case codeUnsupportedMedia:
		return http.StatusUnsupportedMediaType, "Unsupported media type"
	case codeKeyReused:
		return http.StatusUnprocessableEntity, "Idempotency-Key reused"
	case codeOrderNotFound:
		return http.StatusNotFound, "Order not found"
	case codeInstrumentNotFound:
		return http.StatusNotFound, "Instrument not found"
	case codeNotFound:
		return http.StatusNotFound, "Not found"
	case codeKeyNotFound:
		return http.StatusNotFound, "API key not found"
	case codeUnauthenticated:
		return http.StatusUnauthorized, "Authentication required"
	case codeForbidden:
		return http.StatusForbidden, "Forbidden"
	case codeTooManyRequests:
		return http.StatusTooManyRequests, "Too many requests"
	case codeOverloaded:
		return http.StatusServiceUnavailable, "Overloaded"
	case codeClientOrderIDInUse:
		return http.StatusConflict, "Client order id in use"
	case codePreconditionFailed:
		return http.StatusPreconditionFailed, "Precondition failed"
	case codeKeyInFlight:
		return http.StatusConflict, "Idempotency-Key in flight"
	case codeOrderTerminal:
		return http.StatusConflict, "Order is terminal"
	case codeOrderNotParked:
		return http.StatusConflict, "Order is not parked"
	case codeOrderNotAmendable:
		return http.StatusConflict, "Order cannot be amended"
	case codeAmendBelowFilled:
		return http.StatusConflict, "Quantity not above the filled quantity"
	case codeMethodNotAllowed:
		return http.StatusMethodNotAllowed, "Method not allowed"
	case codeUnavailable:
		return http.StatusServiceUnavailable, "Service unavailable"
	default:
		return http.StatusInternalServerError, "Internal error"
	}
}

// problemType is the RFC 9457 type URI of c: a URN, since the types are not (yet)
// documented at a resolvable address.
func (c errorCode) problemType() string {
	return "urn:orderflow:problem:" + strings.ToLower(strings.ReplaceAll(string(c), "_", "-"))
}

// fieldError names one request field (or header, or query parameter) and what is wrong
// with it.
type fieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// apiError is an outcome the client must be told about: its code picks the status, its
// message is shown verbatim, and its cause is only logged.
type apiError struct {
	code       errorCode
	message    string
	fields     []fieldError
	cause      error
	retryAfter time.Duration // > 0: sent as Retry-After (seconds)
	challenge  string        // sent as WWW-Authenticate
}

func (e *apiError) Error() string {
	if e.cause != nil {
		return fmt.Sprintf("%s: %s: %v", e.code, e.message, e.cause)
	}
	return fmt.Sprintf("%s: %s", e.code, e.message)
}

func (e *apiError) Unwrap() error { return e.cause }

// newError returns an apiError with a formatted message.
func newError(code errorCode, format string, args ...any) *apiError {
	return &apiError{code: code, message: fmt.Sprintf(format, args...)}
}

// invalid returns a VALIDATION_FAILED error naming every field in fields; the first one
// is the problem's `field`.
func invalid(fields ...fieldError) *apiError {
	msgs := make([]string, len(fields))
	for i, f := range fields {
		msgs[i] = f.Field + ": " + f.Message
	}
	return &apiError{code: codeValidation, message: strings.Join(msgs, "; "), fields: fields}
}

// orderNotFound is the error for an order id that does not exist.
func orderNotFound(id int64) *apiError {
	return newError(codeOrderNotFound, "order %d not found", id)
}

// problem is an RFC 9457 problem+json body carrying the seed's error fields alongside
// the standard ones, so both kinds of client can read it.
type problem struct {
	Type      string       `json:"type"`
	Title     string       `json:"title"`
	Status    int          `json:"status"`
	Detail    string       `json:"detail"`
	Instance  string       `json:"instance"`
	ErrorCode errorCode    `json:"errorCode"`
	Message   string       `json:"message"`
	TimeStamp string       `json:"timeStamp"`
	Path      string       `json:"path"`
	RequestID string       `json:"requestId,omitempty"`
	Field     string       `json:"field,omitempty"`
	Errors    []fieldError `json:"errors,omitempty"`
}

// fail is the one place that turns an error into an HTTP answer. Errors that are not an
// apiError are classified here: a missing row is a 404, a database that cannot be
// reached (or a deadline passed while waiting for it) is a 503 the client may retry,
// and anything else is a 500 whose cause is logged and never shown.
func (s *server) fail(w http.ResponseWriter, r *http.Request, err error) {
	var ae *apiError
	switch {
	case errors.As(err, &ae):
	case errors.Is(err, pgx.ErrNoRows):
		ae = &apiError{code: codeNotFound, message: "resource not found", cause: err}
	case unavailable(err):
		ae = &apiError{code: codeUnavailable, message: "the service is temporarily unavailable; retry later", cause: err}
	default:
		ae = &apiError{code: codeInternal, message: "internal error; it has been logged", cause: err}
	}
	status, title := ae.code.describe()
	ctx := r.Context()
	switch {
	case status >= 500 && ae.code == codeInternal:
		s.logger.ErrorContext(ctx, "request failed", "error", err, "path", r.URL.Path, "request_id", middleware.GetReqID(ctx))
	case status >= 500 && ae.code != codeOverloaded: // refusals are counted by the metrics, not logged one by one
		s.logger.WarnContext(ctx, "request failed", "error", err, "path", r.URL.Path, "request_id", middleware.GetReqID(ctx))
	}
	p := problem{
		Type:      ae.code.problemType(),
		Title:     title,
		Status:    status,
		Detail:    ae.message,
		Instance:  r.URL.Path,
		ErrorCode: ae.code,
		Message:   ae.message,
		TimeStamp: formatTime(time.Now()),
		Path:      r.URL.Path,
		RequestID: middleware.GetReqID(ctx),
		Errors:    ae.fields,
	}
	if len(ae.fields) > 0 {
		p.Field = ae.fields[0].Field
	}
	body, mErr := json.Marshal(p)
	if mErr != nil {
		// Cannot happen for this struct; answer without a body rather than recurse.
		s.logger.ErrorContext(ctx, "encode problem", "error", mErr)
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/problem+json")
	h.Set("Cache-Control", "no-store")
	h.Del("Location")
	if ae.challenge != "" {
		h.Set("WWW-Authenticate", ae.challenge)
	}
	if ae.retryAfter > 0 {
		h.Set("Retry-After", strconv.Itoa(max(1, seconds(ae.retryAfter)))) // rounded up: a client obeying it is not early
	}
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// unavailable reports whether err means the database could not be reached or did not
// answer in time: the request may succeed if retried, so it is a 503, not a 500.
func unavailable(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, context.Canceled) {
		return true
	}
	var connectErr *pgconn.ConnectError
	if errors.As(err, &connectErr) || pgconn.Timeout(err) || pgconn.SafeToRetry(err) {
		return true
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08 is "connection exception"; 57P01-57P03 are shutdowns and "cannot
		// connect now"; 53300 is too_many_connections.
		return strings.HasPrefix(pgErr.Code, "08") || pgErr.Code == "57P01" || pgErr.Code == "57P02" ||
			pgErr.Code == "57P03" || pgErr.Code == "53300"
	}
	var netErr net.Error
	return errors.As(err, &netErr) || errors.Is(err, net.ErrClosed) ||
		errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF)
}

// respond writes v as a JSON body with the given status.
func (s *server) respond(w http.ResponseWriter, r *http.Request, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		s.fail(w, r, fmt.Errorf("api: encode response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// slogDiscard is used when NewServer is given no logger, so that logging never needs a
// nil check.
func slogDiscard() *slog.Logger { return slog.New(slog.DiscardHandler) }
