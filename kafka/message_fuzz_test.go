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
