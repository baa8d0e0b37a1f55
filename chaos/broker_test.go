package chaos_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/kafka"
)

// TestChaosBrokerRestartKeepsTopicsMessagesAndOffsets checks what the broker scenario
// relies on: `orderflow broker`, restarted on the same data folder, still has its topics,
// every message it acknowledged and the consumer groups' committed offsets — after a
// graceful stop and after kill -9.
func TestChaosBrokerRestartKeepsTopicsMessagesAndOffsets(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the broker as a process; skipped with -short")
	}
	ctx := context.Background()
	bin := orderflowBinary(t)
	dir := t.TempDir()
	port := freePort(t)
	addr := "127.0.0.1:" + strconv.Itoa(port)
	broker := &process{
		name: "broker", bin: bin, args: []string{"broker"}, log: filepath.Join(dir, "broker.log"),
		env: append(os.Environ(), "DATA_DIR="+filepath.Join(dir, "data"), "DEV_KAFKA_PORT="+strconv.Itoa(port), "LOG_LEVEL=warn"),
	}
	t.Cleanup(func() { _ = broker.stop() })
	kc, err := kgo.NewClient(kgo.SeedBrokers(addr), kgo.RecordPartitioner(kgo.ManualPartitioner()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kc.Close)
	adm := kadm.NewClient(kc)
	start := func() {
		t.Helper()
		if err := broker.start(); err != nil {
			t.Fatal(err)
		}
		err := waitUntil(ctx, readyTimeout, "broker ready", func() (bool, error) {
			if !broker.running() {
				return false, fmt.Errorf("the broker exited; see %s", broker.log)
			}
			cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			topics, err := adm.ListTopics(cctx)
			return err == nil && topics.Has(kafka.TopicOrderExecution) && topics.Has(kafka.TopicDLQ), nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	const group = "chaos-probe"
	produced := 0
	// produce appends n records to partition 0 and commits the group's offset at the
	// end of them, as a consumer that has processed them would.
	produce := func(n int) {
		t.Helper()
		for range n {
			produced++
			rec := &kgo.Record{Topic: kafka.TopicOrderExecution, Partition: 0, Value: []byte("m" + strconv.Itoa(produced))}
			if err := kc.ProduceSync(ctx, rec).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
		offsets := kadm.Offsets{}
		offsets.Add(kadm.Offset{Topic: kafka.TopicOrderExecution, Partition: 0, At: int64(produced), LeaderEpoch: -1})
		if err := adm.CommitAllOffsets(ctx, group, offsets); err != nil {
			t.Fatal(err)
		}
	}
	// verify checks the restarted broker has every record and the committed offset.
	verify := func(how string) {
		t.Helper()
		// The client may still hold a connection to the process that was stopped, and
		// its first request after the restart may fail on it: a request is retried while
		// it fails, for a while, as a consumer would.
		var got kadm.OffsetResponses
		var ends kadm.ListedOffsets
		err := waitUntil(ctx, 30*time.Second, "the restarted broker to answer", func() (bool, error) {
			var err error
			if got, err = adm.FetchOffsets(ctx, group); err != nil {
				return false, nil
			}
			ends, err = adm.ListEndOffsets(ctx, kafka.TopicOrderExecution)
			return err == nil, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if o, ok := got.Lookup(kafka.TopicOrderExecution, 0); !ok || o.At != int64(produced) {
			t.Errorf("after %s: committed offset %+v, want %d", how, o, produced)
		}
		if o, ok := ends.Lookup(kafka.TopicOrderExecution, 0); !ok || o.Offset != int64(produced) {
			t.Errorf("after %s: end offset %+v, want %d", how, o, produced)
		}
		c, err := kgo.NewClient(kgo.SeedBrokers(addr),
			kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{kafka.TopicOrderExecution: {0: kgo.NewOffset().AtStart()}}))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var values []string
		for len(values) < produced && pctx.Err() == nil {
			c.PollFetches(pctx).EachRecord(func(r *kgo.Record) { values = append(values, string(r.Value)) })
		}
		for i, v := range values {
			if want := "m" + strconv.Itoa(i+1); v != want {
				t.Errorf("after %s: record %d is %q, want %q", how, i, v, want)
			}
		}
		if len(values) != produced {
			t.Errorf("after %s: read %d records back, want %d", how, len(values), produced)
		}
	}

	start()
	produce(10)
	if err := broker.stop(); err != nil {
		t.Fatal(err)
	}
	start()
	verify("a graceful stop (SIGTERM)")
	produce(5)
	if err := broker.kill(); err != nil {
		t.Fatal(err)
	}
	start()
	verify("kill -9")
}
