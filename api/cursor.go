package api

import (
	"encoding/base64"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// cursorPageView answers GET /api/v1/orders in cursor mode (limit or cursor given).
type cursorPageView struct {
	Content []orderView `json:"content"`
	Limit   int         `json:"limit"`
	Order   string      `json:"order"` // desc (newest first) or asc
	// NextCursor continues the walk; absent on its last page.
	NextCursor string `json:"nextCursor,omitempty"`
}

// cursor is where a keyset walk of the list stands: its direction and the last id it
// listed. Clients get it opaque (base64url of "v1|desc|123") and send it back as is.
type cursor struct {
	desc   bool
	lastID int64
}

func (c cursor) String() string {
	dir := "asc"
	if c.desc {
		dir = "desc"
	}
	return base64.RawURLEncoding.EncodeToString([]byte("v1|" + dir + "|" + strconv.FormatInt(c.lastID, 10)))
}

// parseCursor reads a cursor a client sent back.
func parseCursor(s string) (cursor, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return cursor{}, false
	}
	parts := strings.Split(string(raw), "|")
	if len(parts) != 3 || parts[0] != "v1" || (parts[1] != "asc" && parts[1] != "desc") {
		return cursor{}, false
	}
	id, err := strconv.ParseInt(parts[2], 10, 64)
	if err != nil || id <= 0 {
		return cursor{}, false
	}
	return cursor{desc: parts[1] == "desc", lastID: id}, true
}

// cursorMode reports whether a list request asks for a keyset page rather than the
// original numbered one.
func cursorMode(v url.Values) bool { return v.Has("limit") || v.Has("cursor") }

// listOrdersByCursor serves GET /api/v1/orders?limit=…[&cursor=…][&order=desc|asc]: a
// page by id from where the cursor stands, newest first unless order=asc, with the
// list's filters. It holds still while orders are placed: a page never repeats or skips
// an order that existed when the walk began.
func (s *server) listOrdersByCursor(w http.ResponseWriter, r *http.Request) error {
	v := r.URL.Query()
	var errs []fieldError
	bad := func(field, msg string) { errs = append(errs, fieldError{field, msg}) }
	for _, p := range []string{"page", "size", "sort"} {
		if v.Has(p) {
			bad(p, "belongs to the numbered pages; a cursor walk (limit, cursor, order) always goes by id")
		}
	}
	limit := defaultPageSize
	if s := v.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxPageSize {
			bad("limit", fmt.Sprintf("must be an integer from 1 to %d", maxPageSize))
		} else {
			limit = n
		}
	}
	desc := true
	switch o := v.Get("order"); o {
	case "", "desc":
	case "asc":
		desc = false
	default:
		bad("order", "must be desc (newest first) or asc")
	}
	var after *int64
	if raw := v.Get("cursor"); raw != "" {
		c, ok := parseCursor(raw)
		switch {
		case !ok:
			bad("cursor", "is not a cursor this API gave out; send nextCursor back unchanged")
		case v.Has("order") && c.desc != desc:
			bad("order", "differs from the cursor's: a walk keeps the direction it began with")
		default:
			desc, after = c.desc, &c.lastID
		}
	}
	// The filters are the numbered list's.
	filters := url.Values{}
	for _, p := range []string{"userId", "instrumentId", "status"} {
		if v.Has(p) {
			filters[p] = v[p]
		}
	}
	lq, err := parseListQuery(filters)
	if err != nil {
		return err
	}
	if len(errs) > 0 {
		return invalid(errs...)
	}
	if err := restrictToCaller(r, &lq); err != nil {
		return err
	}
	lq.q.Desc, lq.q.Limit = desc, int32(limit+1) // one more tells whether a next page exists
	orders, err := s.book.ListOrdersByID(r.Context(), lq.q, after)
	if err != nil {
		return fmt.Errorf("api: %w", err)
	}
	page := cursorPageView{Limit: limit, Order: "asc"}
	if desc {
		page.Order = "desc"
	}
	if len(orders) > limit {
		orders = orders[:limit]
		page.NextCursor = cursor{desc: desc, lastID: orders[limit-1].ID}.String()
	}
	if page.Content, err = s.orderViews(r.Context(), orders...); err != nil {
		return err
	}
	s.respond(w, r, http.StatusOK, page)
	return nil
}
