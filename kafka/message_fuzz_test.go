package kafka_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/orderflow/orderflow/kafka"
)

// FuzzDecodeExecution feeds arbitrary record values to the consumer's decoder. It must
// never panic; a refusal wraps kafka.ErrUndecodable, so the consumer sends the record to
// the DLQ; and an accepted message names a real order and survives Encode unchanged.
func FuzzDecodeExecution(f *testing.F) {
	for _, seed := range []string{
		string(kafka.ExecutionMessage{OrderID: 1, UserID: 7, InstrumentID: 101, Side: "BUY", Kind: "LIMIT"}.Encode()),
		string(kafka.ExecutionMessage{OrderID: 1<<63 - 1, UserID: 1, InstrumentID: 103, Side: "SELL", Kind: "MARKET"}.Encode()),
		`{"orderId":5}`,
		`{"orderId":5,"runKey":"3f09a1bc77e2"}`,
		`{"orderId":5,"runKey":"a-b"}`,
		`{"ORDERID":5,"orderType":"\u00e9\ud800"}`,
		`{"orderId":5,"orderId":6}`,
		`{"orderId":5,"unknown":[1,{"a":null}]}`,
		``,
		`null`,
		`[]`,
		`"5"`,
		`{}`,
		`{"orderId":0}`,
		`{"orderId":-1}`,
		`{"orderId":"5"}`,
		`{"orderId":5.5}`,
		`{"orderId":1e3}`,
		`{"orderId":9223372036854775808}`,
		`{"orderId":5,"userId":"x"}`,
		`{"orderId":5}garbage`,
		"{\"orderId\":5,\"orderType\":\"BU\xffY\"}",
		strings.Repeat("[", 20_000),
		`not json at all`,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := kafka.DecodeExecution(b)
		if err != nil {
			if !errors.Is(err, kafka.ErrUndecodable) {
				t.Fatalf("DecodeExecution(%q) = %v, which does not wrap ErrUndecodable", b, err)
			}
			return
		}
		if m.OrderID <= 0 {
			t.Fatalf("DecodeExecution(%q) accepted orderId %d", b, m.OrderID)
		}
		again, err := kafka.DecodeExecution(m.Encode())
		if err != nil {
			t.Fatalf("DecodeExecution(%q).Encode() = %q does not decode: %v", b, m.Encode(), err)
		}
		if again != m {
			t.Fatalf("round trip of %q: %+v became %+v", b, m, again)
		}
	})
}

// The run key becomes part of the run's workflow id: one the id cannot carry is refused,
// so the record goes to the DLQ rather than start a run no order has.
func TestDecodeExecutionTakesTheRunKeyTheIDCanCarry(t *testing.T) {
	m, err := kafka.DecodeExecution([]byte(`{"orderId":5,"runKey":"3f09a1bc77e2"}`))
	if err != nil || m.RunKey != "3f09a1bc77e2" {
		t.Fatalf("DecodeExecution = %+v, %v", m, err)
	}
	for _, key := range []string{"a-b", "a b", "é", strings.Repeat("a", 33), "a/b"} {
		b := kafka.ExecutionMessage{OrderID: 5, RunKey: key}.Encode()
		if _, err := kafka.DecodeExecution(b); !errors.Is(err, kafka.ErrUndecodable) {
			t.Errorf("DecodeExecution(%s) = %v, want ErrUndecodable", b, err)
		}
	}
}
