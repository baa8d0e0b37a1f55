package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/shopspring/decimal"

	"github.com/orderflow/orderflow/order"
)

const (
	// idempotencyKeyHeader names the header that makes POST /api/v1/orders safe to retry.
	idempotencyKeyHeader = "Idempotency-Key"
	// maxIdempotencyKeyLen bounds the key stored with every order.
	maxIdempotencyKeyLen = 128
	// maxPriceScale is the most fraction digits a price may have.
	maxPriceScale = 8
	// maxPriceIntDigits bounds a price's integer digits, so that no client can store a
	// number that no sane instrument trades at.
	maxPriceIntDigits = 18
)

// orderRequest is a validated, normalised order placement.
type orderRequest struct {
	userID       int64
	instrumentID int64
	side         order.Side
	kind         order.Kind
	price        decimal.NullDecimal // Valid only for LIMIT orders
	quantity     int64
	timeInForce  order.TimeInForce
	clientID     string     // clientOrderId; "" for none
	expireAt     *time.Time // GTD: the expiry the client gave; DAY: set by the API
}

// maxGTD bounds how far ahead a GTD order may expire: a run waits that long at most.
const maxGTD = 90 * 24 * time.Hour

// maxClientOrderIDLen bounds clientOrderId, as Alpaca's 128 and Binance's 36 do.
const maxClientOrderIDLen = 64

// hash returns the request's fingerprint, stored with the order so that a replay of
// the same Idempotency-Key can be told apart from a different order reusing it. It
// hashes the normalised values, so 100.5 and "100.50" are the same request. Every part
// but the client order id is a number or a fixed token, so "|" cannot occur inside one;
// the client order id comes last, after its length. A request without one hashes as it
// did before client order ids, so keys used then replay alike.
func (o orderRequest) hash() string {
	price := ""
	if o.price.Valid {
		price = o.price.Decimal.String()
	}
	canonical := fmt.Sprintf("v1|%d|%d|%s|%s|%s|%d|%s",
		o.userID, o.instrumentID, o.side, o.kind, price, o.quantity, o.timeInForce)
	if o.clientID != "" {
		canonical += fmt.Sprintf("|c%d:%s", len(o.clientID), o.clientID)
	}
	if o.expireAt != nil && o.timeInForce == order.GTD { // a DAY's expiry is the API's, not the request's
		canonical += "|e" + o.expireAt.UTC().Format(time.RFC3339Nano)
	}
	sum := sha256.Sum256([]byte(canonical))
	return hex.EncodeToString(sum[:])
}

// orderFields lists the body fields of an order placement, in the order their errors
// are reported.
func orderFields() []string {
	return []string{"userId", "instrumentId", "orderType", "orderKind", "price", "quantity", "timeInForce", "clientOrderId", "expireAt"}
}

// requireJSON refuses a request whose body is not declared as JSON. A charset parameter
// is allowed, but JSON is UTF-8, so only that charset is.
func requireJSON(r *http.Request) error {
	ct := r.Header.Get("Content-Type")
	mediaType, params, err := mime.ParseMediaType(ct)
	if err != nil || mediaType != "application/json" {
		return newError(codeUnsupportedMedia, "Content-Type must be application/json, got %q", ct)
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return newError(codeUnsupportedMedia, "charset must be utf-8, got %q", cs)
	}
	return nil
}

// idempotencyKey returns the request's Idempotency-Key. It must be present, at most
// maxIdempotencyKeyLen characters, and printable ASCII, so that it can be logged and
// compared byte for byte.
func idempotencyKey(r *http.Request) (string, error) {
	key := r.Header.Get(idempotencyKeyHeader)
	if key == "" {
		return "", &apiError{
			code:    codeMissingKey,
			message: "the Idempotency-Key header is required: send a unique value per order, and the same value when retrying",
			fields:  []fieldError{{Field: idempotencyKeyHeader, Message: "is required"}},
		}
	}
	if err := printableID(key, maxIdempotencyKeyLen); err != nil {
		return "", invalid(fieldError{idempotencyKeyHeader, err.Error()})
	}
	return key, nil
}

// decodeOrderRequest reads and validates an order placement body. It returns a
// PAYLOAD_TOO_LARGE, MALFORMED_JSON or VALIDATION_FAILED apiError; a validation error
// names every bad field, unknown fields first (a field sent twice is refused on its own).
//
// Numbers are accepted as JSON numbers or numeric strings (the seed's web client sends
// strings), and never pass through float64: integers are parsed from their text, and
// the price is parsed into a decimal.
//
// userId is required when requireUser is set (the body names the user only in trust-body
// mode); otherwise it may be omitted, and is 0 then.
func decodeOrderRequest(r *http.Request, requireUser bool) (orderRequest, error) {
	fields, err := readObject(r)
	if err != nil {
		return orderRequest{}, err
	}

	errs := unknownFields(fields, orderFields(), "is not a known field")

	bad := func(field, msg string) { errs = append(errs, fieldError{field, msg}) }
	var o orderRequest
	var kindOK bool
	if _, given := fields["userId"]; given || requireUser {
		if o.userID, err = positiveInt(fields["userId"]); err != nil {
			bad("userId", err.Error())
		}
	}
	if o.instrumentID, err = positiveInt(fields["instrumentId"]); err != nil {
		bad("instrumentId", err.Error())
	}
	if s, err := enumString(fields["orderType"], true, "BUY or SELL"); err != nil {
		bad("orderType", err.Error())
	} else if o.side, err = order.ParseSide(s); err != nil {
		bad("orderType", "must be BUY or SELL")
	}
	if s, err := enumString(fields["orderKind"], true, "MARKET or LIMIT"); err != nil {
		bad("orderKind", err.Error())
	} else if o.kind, err = order.ParseKind(s); err != nil {
		bad("orderKind", "must be MARKET or LIMIT")
	} else {
		kindOK = true
	}
	price, hasPrice, priceErr := decimalPrice(fields["price"])
	switch {
	case priceErr != nil:
		bad("price", priceErr.Error())
	case kindOK && o.kind == order.Market && hasPrice:
		bad("price", "must be empty for MARKET orders")
	case kindOK && o.kind == order.Limit && !hasPrice:
		bad("price", "is required for LIMIT orders")
	case hasPrice:
		o.price = decimal.NullDecimal{Decimal: price, Valid: true}
	}
	if o.quantity, err = positiveInt(fields["quantity"]); err != nil {
		bad("quantity", err.Error())
	}
	if s, err := enumString(fields["timeInForce"], false, "GTC, IOC, FOK, DAY or GTD"); err != nil {
		bad("timeInForce", err.Error())
	} else if s != "" {
		if o.timeInForce, err = order.ParseTimeInForce(s); err != nil {
			bad("timeInForce", "must be GTC, IOC, FOK, DAY or GTD")
		} else if kindOK && o.kind == order.Market && o.timeInForce != order.IOC {
			bad("timeInForce", "must be IOC (or omitted) for MARKET orders, which never rest on the book")
		}
	} else if kindOK {
		o.timeInForce = order.DefaultTimeInForce(o.kind)
	}
	raw, given := fields["expireAt"]
	given = given && string(raw) != "null"
	switch {
	case o.timeInForce == order.GTD && !given:
		bad("expireAt", "is required for GTD orders")
	case o.timeInForce != order.GTD && given:
		bad("expireAt", "is only for GTD orders")
	case given:
		var s string
		t, err := time.Parse(time.RFC3339Nano, strings.Trim(string(raw), `"`))
		if json.Unmarshal(raw, &s) != nil || err != nil {
			bad("expireAt", "must be an RFC 3339 time such as 2026-12-24T16:00:00Z")
			break
		}
		if ahead := time.Until(t); ahead <= 0 || ahead > maxGTD {
			bad("expireAt", "must be in the future, at most 90 days ahead")
			break
		}
		o.expireAt = &t
	}
	if raw, given := fields["clientOrderId"]; given && string(raw) != "null" {
		if o.clientID, err = clientOrderID(raw); err != nil {
			bad("clientOrderId", err.Error())
		}
	}
	if len(errs) > 0 {
		return orderRequest{}, invalid(errs...)
	}
	return o, nil
}

// clientOrderID parses a clientOrderId: a JSON string of 1 to maxClientOrderIDLen
// printable ASCII characters, so it can be logged, put in a URL and compared byte for
// byte.
func clientOrderID(raw json.RawMessage) (string, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", errors.New("must be a string")
	}
	if err := printableID(s, maxClientOrderIDLen); err != nil {
		return "", err
	}
	return s, nil
}

// printableID checks an identifier a client chose: 1 to maxLen printable ASCII
// characters.
func printableID(s string, maxLen int) error {
	if s == "" {
		return errors.New("must not be empty")
	}
	if len(s) > maxLen {
		return fmt.Errorf("must be at most %d characters", maxLen)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return errors.New("must contain printable ASCII characters only")
		}
	}
	return nil
}

// unknownFields names, in order, the members of fields that known does not list, each
// with msg.
func unknownFields(fields map[string]json.RawMessage, known []string, msg string) []fieldError {
	var unknown []string
	for name := range fields {
		if !slices.Contains(known, name) {
			unknown = append(unknown, name)
		}
	}
	slices.Sort(unknown)
	errs := make([]fieldError, 0, len(unknown))
	for _, name := range unknown {
		errs = append(errs, fieldError{name, msg})
	}
	return errs
}

// readObject reads the request's body (PAYLOAD_TOO_LARGE past maxBodyBytes) and parses it
// with decodeObject.
func readObject(r *http.Request) (map[string]json.RawMessage, error) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return nil, tooLarge()
		}
		return nil, fmt.Errorf("api: read request body: %w", err)
	}
	return decodeObject(body)
}

// decodeObject parses body as exactly one JSON object, keeping each member's raw text so
// that numbers are never decoded as float64 and unknown members can be named. A member
// that occurs twice is a VALIDATION_FAILED error naming it.
func decodeObject(body []byte) (map[string]json.RawMessage, error) {
	dec := json.NewDecoder(bytes.NewReader(body))
	var fields map[string]json.RawMessage
	if err := dec.Decode(&fields); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch {
		case errors.Is(err, io.EOF):
			return nil, newError(codeMalformedJSON, "request body is empty; send a JSON object")
		case errors.As(err, &typeErr):
			return nil, newError(codeMalformedJSON, "request body must be a JSON object, not %s", typeErr.Value)
		default:
			return nil, &apiError{code: codeMalformedJSON, message: "request body is not valid JSON: " + jsonSyntaxDetail(err), cause: err}
		}
	}
	if fields == nil {
		return nil, newError(codeMalformedJSON, "request body must be a JSON object, not null")
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, newError(codeMalformedJSON, "request body must hold a single JSON object and nothing after it")
	}
	if name, ok := duplicateMember(body); ok {
		// The decoder keeps the last value; the client may have meant the first, so the
		// request is ambiguous rather than valid.
		return nil, invalid(fieldError{name, "appears more than once; send each field once"})
	}
	return fields, nil
}

// duplicateMember returns the first member name that occurs twice in body, a single JSON
// object that has already been parsed. Names are compared after unescaping, so
// "quantity" and "quantit\u0079" are the same member.
func duplicateMember(body []byte) (string, bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	if _, err := dec.Token(); err != nil { // the opening brace
		return "", false
	}
	seen := make(map[string]bool)
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return "", false
		}
		name, _ := tok.(string)
		if seen[name] {
			return name, true
		}
		seen[name] = true
		var value json.RawMessage
		if err := dec.Decode(&value); err != nil {
			return "", false
		}
	}
	return "", false
}

// jsonSyntaxDetail describes where a JSON syntax error is, without echoing the body.
func jsonSyntaxDetail(err error) string {
	var syntaxErr *json.SyntaxError
	if errors.As(err, &syntaxErr) {
		return fmt.Sprintf("syntax error at byte %d", syntaxErr.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return "unexpected end of input"
	}
	return "it cannot be parsed"
}

// numberText returns the text of a JSON number, or of a JSON string holding one. present
// is false for a missing member, null, or "" (the seed's client sends "" for "none").
func numberText(raw json.RawMessage) (text string, present bool, err error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", false, nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", false, errors.New("must be a number or a numeric string")
		}
		if s == "" {
			return "", false, nil
		}
		return s, true, nil
	}
	if raw[0] == '-' || (raw[0] >= '0' && raw[0] <= '9') {
		return string(raw), true, nil // the decoder already checked the number's syntax
	}
	return "", false, errors.New("must be a number or a numeric string")
}

// positiveInt parses a required positive integer. Only plain digits are accepted, so
// 1.5, 1e3 and " 1" are refused rather than silently truncated or reinterpreted.
func positiveInt(raw json.RawMessage) (int64, error) {
	text, present, err := numberText(raw)
	if err != nil {
		return 0, err
	}
	if !present {
		return 0, errors.New("is required")
	}
	if !allDigits(text) { // also refuses a sign: a negative number is not positive anyway
		return 0, errors.New("must be a positive integer")
	}
	n, err := strconv.ParseInt(text, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("must be a positive integer no greater than %d", int64(1<<63-1))
	}
	if n <= 0 {
		return 0, errors.New("must be a positive integer")
	}
	return n, nil
}

// decimalPrice parses an optional positive price with at most maxPriceScale fraction
// digits (trailing zeros do not count). Exponents are refused: they are never needed
// for a valid price, and a huge one would make decimal arithmetic allocate without
// bound.
func decimalPrice(raw json.RawMessage) (d decimal.Decimal, present bool, err error) {
	text, present, err := numberText(raw)
	if err != nil || !present {
		return decimal.Decimal{}, false, err
	}
	intPart, frac, hasDot := strings.Cut(strings.TrimPrefix(text, "-"), ".")
	if !allDigits(intPart) || (hasDot && !allDigits(frac)) {
		return decimal.Decimal{}, true, errors.New("must be a decimal number such as 100.25")
	}
	if len(strings.TrimRight(frac, "0")) > maxPriceScale {
		return decimal.Decimal{}, true, fmt.Errorf("must have at most %d decimal places", maxPriceScale)
	}
	if len(strings.TrimLeft(intPart, "0")) > maxPriceIntDigits {
		return decimal.Decimal{}, true, fmt.Errorf("must have at most %d digits before the decimal point", maxPriceIntDigits)
	}
	d, err = decimal.NewFromString(text)
	if err != nil {
		return decimal.Decimal{}, true, errors.New("must be a decimal number such as 100.25")
	}
	if !d.IsPositive() {
		return decimal.Decimal{}, true, errors.New("must be positive")
	}
	return d, true, nil
}

// enumString returns the string value of an enumerated field; "" when it is absent and
// not required. want names the allowed values for the message.
func enumString(raw json.RawMessage, required bool, want string) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		if required {
			return "", errors.New("is required")
		}
		return "", nil
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", fmt.Errorf("must be %s", want)
	}
	if s == "" && required {
		return "", errors.New("is required")
	}
	return s, nil
}

// allDigits reports whether s is a non-empty run of ASCII digits.
func allDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
