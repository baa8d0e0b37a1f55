// Package kafka carries orders from PostgreSQL to Temporal: the outbox relay publishes
// the outbox to the order-execution topic, and the consumer starts one workflow per
// message. Undecodable messages go to the dead-letter topic.
package kafka

import (
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/orderflow/orderflow/orderbook"
)

// Topics. The order-book service writes the outbox messages of new orders, so the
// topic they go to is named there.
const (
	TopicOrderExecution = orderbook.ExecutionTopic
	TopicDLQ            = TopicOrderExecution + ".dlq"
)

// ExecutionMessage asks for an order to be executed. The key of its record is the order
// id, so all messages about one order stay on one partition.
type ExecutionMessage struct {
	OrderID      int64  `json:"orderId"`
	UserID       int64  `json:"userId"`
	InstrumentID int64  `json:"instrumentId"`
	Side         string `json:"orderType"`
	Kind         string `json:"orderKind"`
	// RunKey names the order's run with its id (order.WorkflowID); messages of orders
	// placed before run keys existed have none.
	RunKey string `json:"runKey,omitempty"`
}

// Key returns the record key for m.
func (m ExecutionMessage) Key() string { return strconv.FormatInt(m.OrderID, 10) }

// Encode returns m's JSON form.
func (m ExecutionMessage) Encode() []byte {
	b, _ := json.Marshal(m) // cannot fail: only integers and strings
	return b
}

// ErrUndecodable marks a message that can never be processed; it belongs in the DLQ.
var ErrUndecodable = errors.New("undecodable execution message")

// DecodeExecution parses an execution message, returning an error wrapping ErrUndecodable
// if it is not one.
func DecodeExecution(b []byte) (ExecutionMessage, error) {
	var m ExecutionMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("%w: %v", ErrUndecodable, err)
	}
	if m.OrderID <= 0 {
		return m, fmt.Errorf("%w: orderId must be a positive integer", ErrUndecodable)
	}
	if len(m.RunKey) > 32 || strings.IndexFunc(m.RunKey, notAlphanumeric) >= 0 {
		return m, fmt.Errorf("%w: runKey must be at most 32 ASCII letters and digits", ErrUndecodable)
	}
	return m, nil
}

func notAlphanumeric(r rune) bool {
	return (r < '0' || r > '9') && (r < 'a' || r > 'z') && (r < 'A' || r > 'Z')
}
