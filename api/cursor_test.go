package api_test

import (
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
)

type cursorPage struct {
	Content    []orderBody `json:"content"`
	Limit      int         `json:"limit"`
	Order      string      `json:"order"`
	NextCursor string      `json:"nextCursor"`
}

func TestACursorWalkStaysExactWhileOrdersArePlaced(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	existing := map[int64]bool{}
	for range 30 {
		existing[h.mustPlace(limitBody(4, `"10"`, 1)).OrderID] = true
	}
	for _, order := range []string{"desc", "asc"} {
		t.Run(order, func(t *testing.T) {
			// Another client keeps placing orders all through the walk.
			stop := make(chan struct{})
			var placed atomic.Int64
			var wg sync.WaitGroup
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					h.mustPlace(limitBody(4, `"10"`, 1))
					placed.Add(1)
				}
			})
			seen := map[int64]int{}
			var last int64
			q := url.Values{"limit": {"7"}, "order": {order}, "userId": {"4"}}
			for pages := 0; ; pages++ {
				if pages > 100 {
					t.Fatal("the walk did not end")
				}
				res := h.get("/api/v1/orders?" + q.Encode())
				if res.status != http.StatusOK {
					t.Fatalf("page %d: %d %s", pages, res.status, res.body)
				}
				page := decode[cursorPage](t, res)
				if page.Order != order || page.Limit != 7 || len(page.Content) > 7 {
					t.Fatalf("page %d: order %q, limit %d, %d orders", pages, page.Order, page.Limit, len(page.Content))
				}
				for _, o := range page.Content {
					seen[o.OrderID]++
					if last != 0 && (order == "desc" && o.OrderID >= last || order == "asc" && o.OrderID <= last) {
						t.Errorf("order %d after %d in a %s walk", o.OrderID, last, order)
					}
					last = o.OrderID
				}
				// Ascending, the walk would follow the placer for ever: stop it once the
				// orders that existed are behind, and let the walk finish.
				if order == "asc" && placed.Load() > 0 {
					select {
					case <-stop:
					default:
						if seen[maxID(existing)] > 0 {
							close(stop)
						}
					}
				}
				if page.NextCursor == "" {
					break
				}
				q = url.Values{"limit": {"7"}, "cursor": {page.NextCursor}, "userId": {"4"}}
			}
			select {
			case <-stop:
			default:
				close(stop)
			}
			wg.Wait()
			for id := range existing {
				if seen[id] != 1 {
					t.Errorf("order %d, placed before the walk, was listed %d times", id, seen[id])
				}
			}
			for id, n := range seen {
				if n != 1 {
					t.Errorf("order %d was listed %d times", id, n)
				}
			}
			if placed.Load() == 0 {
				t.Error("no order was placed during the walk: the test proved nothing")
			}
		})
	}
}

func maxID(ids map[int64]bool) int64 {
	var m int64
	for id := range ids {
		m = max(m, id)
	}
	return m
}

func TestACursorIsRefusedWhenItIsNotOneTheAPIGave(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.mustPlace(limitBody(1, `"10"`, 1))
	for query, field := range map[string]string{
		"limit=0":                     "limit",
		"limit=501":                   "limit",
		"cursor=bm90IGEgY3Vyc29y":     "cursor",
		"cursor=%2A%2A":               "cursor",
		"limit=5&sort=price,asc":      "sort",
		"limit=5&page=2":              "page",
		"limit=5&order=sideways":      "order",
		"limit=5&status=NOT_A_STATUS": "status",
	} {
		wantProblem(t, h.get("/api/v1/orders?"+query), http.StatusBadRequest, "VALIDATION_FAILED", field)
	}
	first := decode[cursorPage](t, h.get("/api/v1/orders?limit=1&userId=1"))
	if len(first.Content) != 1 || first.NextCursor != "" {
		t.Errorf("a one-order list: %+v, want the order and no next cursor", first)
	}
}
