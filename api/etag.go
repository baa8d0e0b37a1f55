package api

import (
	"net/http"
	"strconv"
	"strings"

	"github.com/orderflow/orderflow/queries"
)

// etag is an order's entity tag: its version, which every change to what the API shows
// of it increments, so it is a strong validator.
func etag(o queries.Order) string { return `"` + strconv.FormatInt(int64(o.Version), 10) + `"` }

// entityTags parses an If-Match or If-None-Match value (RFC 9110 §13.1): "*", or a comma
// separated list of entity tags, each quoted and perhaps weak (W/). It reports ok false
// for a value that is neither.
func entityTags(value string) (tags []string, any bool, ok bool) {
	value = strings.TrimSpace(value)
	if value == "*" {
		return nil, true, true
	}
	for part := range strings.SplitSeq(value, ",") {
		tag := strings.TrimSpace(part)
		if tag == "" {
			continue
		}
		opaque := strings.TrimPrefix(tag, "W/")
		if len(opaque) < 2 || opaque[0] != '"' || opaque[len(opaque)-1] != '"' || strings.Contains(opaque[1:len(opaque)-1], `"`) {
			return nil, false, false
		}
		tags = append(tags, tag)
	}
	return tags, false, len(tags) > 0
}

// ifMatch reads the request's If-Match header: nil if there is none, else whether an
// order matches it, by the strong comparison If-Match requires (a weak tag never
// matches). A malformed header is a VALIDATION_FAILED error naming it.
func ifMatch(r *http.Request) (match func(queries.Order) bool, err error) {
	values := r.Header.Values("If-Match")
	if len(values) == 0 {
		return nil, nil
	}
	tags, any, ok := entityTags(strings.Join(values, ","))
	if !ok {
		return nil, invalid(fieldError{"If-Match", `must be "*" or a list of entity tags such as "3", as the order's ETag gives`})
	}
	return func(o queries.Order) bool { return any || names(tags, etag(o), false) }, nil
}

// notModified reports whether the request's If-None-Match names the order's current
// tag (weak comparison, as RFC 9110 wants for it), so a GET may answer 304. A malformed
// condition is ignored: the full answer is always right.
func notModified(r *http.Request, o queries.Order) bool {
	values := r.Header.Values("If-None-Match")
	if len(values) == 0 {
		return false
	}
	tags, any, ok := entityTags(strings.Join(values, ","))
	return ok && (any || names(tags, etag(o), true))
}

// names reports whether tags hold current; weak compares weak tags as their strong form.
func names(tags []string, current string, weak bool) bool {
	for _, t := range tags {
		if weak {
			t = strings.TrimPrefix(t, "W/")
		}
		if t == current {
			return true
		}
	}
	return false
}

// preconditionFailed is the 412 of a request whose If-Match no longer names o's version.
func preconditionFailed(o queries.Order) error {
	return newError(codePreconditionFailed, "order %d has changed (its ETag is now %s); nothing was done: read it again and decide", o.ID, etag(o))
}
