package order

import (
	"strconv"
	"strings"
)

// WorkflowID names the Temporal workflow of the order with id and run key: order-<id>-<key>,
// or order-<id> for an order placed before run keys existed (key ""). The key makes the
// name unique across the database's lifetimes (schema 0007): an id that comes back after
// a restore comes back with another key.
func WorkflowID(id int64, runKey string) string {
	s := "order-" + strconv.FormatInt(id, 10)
	if runKey != "" {
		s += "-" + runKey
	}
	return s
}

// ParseWorkflowID is WorkflowID's inverse; ok is false for a name WorkflowID cannot make.
func ParseWorkflowID(wid string) (id int64, runKey string, ok bool) {
	rest, found := strings.CutPrefix(wid, "order-")
	if !found {
		return 0, "", false
	}
	digits, runKey, _ := strings.Cut(rest, "-")
	id, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || id <= 0 || strconv.FormatInt(id, 10) != digits || strings.Contains(runKey, "-") {
		return 0, "", false
	}
	if runKey == "" && strings.HasSuffix(rest, "-") {
		return 0, "", false
	}
	return id, runKey, true
}
