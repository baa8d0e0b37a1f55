package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/devstack"
	"github.com/orderflow/orderflow/kafka"
)

// dlqGetenv returns the environment `orderflow dlq` needs to reach the stack.
func (s *stack) dlqGetenv() func(string) string {
	env := map[string]string{"KAFKA_BROKERS": strings.Join(s.brokers, ","), "DATABASE_URL": s.dbURL}
	return func(k string) string { return env[k] }
}

// dlqRun runs the binary's run with args against the stack and returns its output.
func (s *stack) dlqRun(t *testing.T, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := run(ctx, args, s.dlqGetenv(), &out)
	return out.String(), err
}

// dlqLetters is `orderflow dlq list --json`, decoded.
func (s *stack) dlqLetters(t *testing.T) []deadLetterView {
	t.Helper()
	out, err := s.dlqRun(t, "dlq", "list", "--json")
	if err != nil {
		t.Fatalf("dlq list --json: %v", err)
	}
	var letters []deadLetterView
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var d deadLetterView
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("dlq list --json printed %q, not one JSON object per line: %v", sc.Text(), err)
		}
		letters = append(letters, d)
	}
	return letters
}

// dlqEventually calls cond until it holds, failing the test with what it last said at the
// deadline.
func dlqEventually(t *testing.T, timeout time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := cond()
		if ok {
			return
		}
		select {
		case <-deadline.C:
			t.Fatalf("not true after %s: %s", timeout, last)
		case <-tick.C:
		}
	}
}

func TestAMessageKcatSendsThatIsNotJSONShowsUpInDLQList(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		t.Fatalf("this test needs kcat, a real Kafka client, on PATH (Debian package kcat): %v", err)
	}
	key := fmt.Sprintf("kcat-poison-%d", time.Now().UnixNano())
	const value = "not json, sent by kcat"
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, kcat, "-b", s.brokers[0], "-P", "-t", kafka.TopicOrderExecution, "-k", key)
	cmd.Stdin = strings.NewReader(value + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("kcat -P: %v\n%s", err, out)
	}

	var got deadLetterView
	dlqEventually(t, 30*time.Second, func() (bool, string) {
		for _, d := range s.dlqLetters(t) {
			if d.Key == key {
				got = d
				return true, ""
			}
		}
		return false, "the message kcat sent is not in `dlq list --json`"
	})
	if got.Error == "" || got.Value != value || got.SourceTopic != kafka.TopicOrderExecution ||
		got.SourcePartition < 0 || got.SourceOffset < 0 || got.FailedAt == "" {
		t.Errorf("letter = %+v, want the value kcat sent, an error, its source and when it failed", got)
	}

	table, err := s.dlqRun(t, "dlq", "list")
	if err != nil {
		t.Fatalf("dlq list: %v", err)
	}
	header := strings.Fields(strings.SplitN(table, "\n", 2)[0])
	if want := []string{"PARTITION", "OFFSET", "KEY", "SOURCE", "FAILED-AT", "ERROR"}; !equal(header, want) {
		t.Errorf("table header = %v, want %v", header, want)
	}
	row := fmt.Sprintf("%d %d %s %s/%d/%d ", got.Partition, got.Offset, key, got.SourceTopic, got.SourcePartition, got.SourceOffset)
	if !strings.Contains(strings.Join(strings.Fields(table), " "), row) {
		t.Errorf("table has no row starting %q:\n%s", row, table)
	}
}

// dlqReplayedLine is one line `orderflow dlq replay` prints per replayed letter.
var dlqReplayedLine = regexp.MustCompile(`^replayed order-execution\.dlq/(\d+)/(\d+) \(key (\S+)\) as order-execution/(\d+)/(\d+)$`)

func TestDLQReplayOfAMessageForARunningOrderChangesNothing(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	inst := s.newInstrument(t)
	id := s.mustPlace(t, limit(1, inst, "BUY", "10", 5))
	before := s.waitStatus(t, id, "EXECUTING") // rests: the instrument's book is empty
	events := s.eventTypes(t, id)

	// The order's message, as if starting its run had failed once and it went to the DLQ.
	msg := kafka.ExecutionMessage{OrderID: id, UserID: 1, InstrumentID: inst, Side: "BUY", Kind: "LIMIT"}
	letter := &kgo.Record{
		Topic: kafka.TopicDLQ, Key: []byte(msg.Key()), Value: msg.Encode(),
		Headers: []kgo.RecordHeader{
			{Key: kafka.HeaderError, Value: []byte("start order run: temporal unavailable")},
			{Key: kafka.HeaderSourceTopic, Value: []byte(kafka.TopicOrderExecution)},
			{Key: kafka.HeaderFailedAt, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		},
	}
	if err := s.producer(t).ProduceSync(context.Background(), letter).FirstErr(); err != nil {
		t.Fatal(err)
	}

	out, err := s.dlqRun(t, "dlq", "replay",
		"--offset", strconv.FormatInt(letter.Offset, 10), "--partition", strconv.Itoa(int(letter.Partition)))
	if err != nil {
		t.Fatalf("dlq replay: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || lines[1] != "replayed 1 dead letter" {
		t.Fatalf("dlq replay printed %q, want one replayed line and the total", out)
	}
	m := dlqReplayedLine.FindStringSubmatch(lines[0])
	if m == nil || m[1] != strconv.Itoa(int(letter.Partition)) || m[2] != strconv.FormatInt(letter.Offset, 10) || m[3] != msg.Key() {
		t.Fatalf("dlq replay printed %q, want it to name DLQ %d/%d and key %s", lines[0], letter.Partition, letter.Offset, msg.Key())
	}
	partition, _ := strconv.ParseInt(m[4], 10, 32)
	offset, _ := strconv.ParseInt(m[5], 10, 64)
	s.waitConsumed(t, int32(partition), offset)

	if n := s.runs(t, id); n != 1 {
		t.Errorf("%d runs after the replay, want 1", n)
	}
	after := s.get(t, id)
	if after.OrderStatus != before.OrderStatus || after.RemainingQuantity != before.RemainingQuantity {
		t.Errorf("after the replay the order is %s with %d remaining, want %s with %d",
			after.OrderStatus, after.RemainingQuantity, before.OrderStatus, before.RemainingQuantity)
	}
	if got := s.eventTypes(t, id); !equal(got, events) {
		t.Errorf("events after the replay = %v, want %v", got, events)
	}
	// The consumer read the replay as a valid message: it did not dead-letter it again.
	var again int
	for _, d := range s.dlqLetters(t) {
		if d.Key == msg.Key() {
			again++
		}
	}
	if again != 1 {
		t.Errorf("the DLQ holds %d letters for order %d, want only the one put there", again, id)
	}
}

func TestDLQReplayOfAnOffsetThatIsNotThereFails(t *testing.T) {
	t.Parallel()
	s := needStack(t)
	const far = "1099511627776" // past the end of any partition of the test's DLQ
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--offset", far, "--partition", "0"}, "no dead letter at partition 0 offset " + far},
		{[]string{"--offset", far}, "no dead letter at offset " + far + " in any partition"},
	} {
		out, err := s.dlqRun(t, append([]string{"dlq", "replay"}, tc.args...)...)
		if err == nil || err.Error() != tc.want {
			t.Errorf("dlq replay %v = %v, want error %q", tc.args, err, tc.want)
		}
		if out != "" {
			t.Errorf("dlq replay %v printed %q, want nothing", tc.args, out)
		}
	}
}

func TestDLQCommandsRejectBadArguments(t *testing.T) {
	t.Parallel()
	// No broker answers here: each mistake must be reported before connecting.
	getenv := func(k string) string {
		if k == "KAFKA_BROKERS" {
			return "127.0.0.1:1"
		}
		return ""
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"dlq"}, "usage: orderflow dlq"},
		{[]string{"dlq", "purge"}, `unknown dlq command "purge"`},
		{[]string{"dlq", "list", "--yaml"}, "flag provided but not defined: -yaml"},
		{[]string{"dlq", "list", "extra"}, `unexpected argument "extra"`},
		{[]string{"dlq", "replay"}, "give either --offset or --all"},
		{[]string{"dlq", "replay", "--partition", "1"}, "give either --offset or --all"},
		{[]string{"dlq", "replay", "--offset", "3", "--all"}, "give either --offset or --all"},
		{[]string{"dlq", "replay", "--all", "--partition", "1"}, "--partition goes with --offset"},
		{[]string{"dlq", "replay", "--offset", "-1"}, "--offset must be 0 or more"},
		{[]string{"dlq", "replay", "--offset", "x"}, `invalid value "x" for flag -offset`},
	} {
		var out bytes.Buffer
		err := run(context.Background(), tc.args, getenv, &out)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%v = %v, want one line starting %q", tc.args, err, tc.want)
		}
	}
}

func TestDLQListAndReplayAllOnABrokerOfTheirOwn(t *testing.T) {
	t.Parallel()
	// --all replays every letter, so it runs against a broker no other test writes to.
	k, err := devstack.StartKafka(devstack.KafkaOptions{Topics: []string{kafka.TopicOrderExecution, kafka.TopicDLQ}})
	if err != nil {
		t.Fatal(err)
	}
	defer k.Close()
	s := &stack{brokers: k.Addrs()} // dlq needs nothing but the brokers
	for _, args := range [][]string{{"dlq", "list"}, {"dlq", "list", "--json"}, {"dlq", "replay", "--all"}} {
		want := map[string]string{"list": "no dead letters\n", "--json": "", "--all": "replayed 0 dead letters\n"}[args[len(args)-1]]
		if out, err := s.dlqRun(t, args...); err != nil || out != want {
			t.Errorf("%v on an empty DLQ = %q, %v; want %q", args, out, err, want)
		}
	}

	p, err := kgo.NewClient(kgo.SeedBrokers(k.Addrs()...), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	letters := []*kgo.Record{
		{Topic: kafka.TopicDLQ, Partition: 0, Key: []byte("a"), Value: []byte("1")},
		{Topic: kafka.TopicDLQ, Partition: 2, Key: []byte("b"), Value: []byte("2")},
		{Topic: kafka.TopicDLQ, Partition: 2, Key: []byte("c"), Value: []byte("3")},
	}
	if err := p.ProduceSync(context.Background(), letters...).FirstErr(); err != nil {
		t.Fatal(err)
	}
	// Offset 0 is in two partitions: replaying it needs --partition.
	if _, err := s.dlqRun(t, "dlq", "replay", "--offset", "0"); err == nil ||
		err.Error() != "offset 0 exists in partitions 0, 2; choose one with --partition" {
		t.Errorf("dlq replay --offset 0 = %v, want it to ask for --partition", err)
	}
	out, err := s.dlqRun(t, "dlq", "replay", "--all")
	if err != nil {
		t.Fatalf("dlq replay --all: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || lines[3] != "replayed 3 dead letters" {
		t.Fatalf("dlq replay --all printed %q, want three replayed lines and the total", out)
	}
	for i, want := range []string{"order-execution.dlq/0/0 (key a)", "order-execution.dlq/2/0 (key b)", "order-execution.dlq/2/1 (key c)"} {
		if !strings.HasPrefix(lines[i], "replayed "+want+" as order-execution/") {
			t.Errorf("line %d = %q, want it to replay %s", i, lines[i], want)
		}
	}
}
