package kafka

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
)

// Headers of dead letters: the consumer writes the first five, a replay writes the last.
const (
	HeaderError           = "error"
	HeaderSourceTopic     = "source-topic"
	HeaderSourcePartition = "source-partition"
	HeaderSourceOffset    = "source-offset"
	HeaderFailedAt        = "failed-at"
	HeaderReplayedFrom    = "replayed-from"
)

// DeadLetter is one record of the dead-letter topic: the original key and value, where
// it sits in the DLQ, and what its headers say about why and where it failed.
type DeadLetter struct {
	Partition int32 // in the DLQ
	Offset    int64 // in the DLQ
	Key       []byte
	Value     []byte
	Error     string
	// SourceTopic, SourcePartition and SourceOffset say where the record was when it
	// failed; SourcePartition and SourceOffset are -1 when the header is missing, since 0
	// is a real partition and offset.
	SourceTopic     string
	SourcePartition int32
	SourceOffset    int64
	FailedAt        time.Time // zero when the header is missing or unreadable
}

// ID returns where the letter sits, "order-execution.dlq/<partition>/<offset>": the value
// of a replay's replayed-from header.
func (d DeadLetter) ID() string {
	return fmt.Sprintf("%s/%d/%d", TopicDLQ, d.Partition, d.Offset)
}

// ListDeadLetters returns every record of the dead-letter topic that exists when it is
// called, ordered by partition and offset. It reads each partition from its start up to
// the high watermark measured at the call, so it ends even while the consumer keeps
// adding letters. It reads without a consumer group and commits nothing, so listing
// never changes what anyone else sees. client supplies the connection options and must
// not be a consumer itself.
func ListDeadLetters(ctx context.Context, client *kgo.Client) ([]DeadLetter, error) {
	adm := kadm.NewClient(client)
	ends, err := listOffsets(ctx, adm.ListEndOffsets)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: end offsets: %w", err)
	}
	starts, err := listOffsets(ctx, adm.ListStartOffsets)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: start offsets: %w", err)
	}
	from := map[int32]kgo.Offset{}
	for p, end := range ends {
		if start := starts[p]; start < end {
			from[p] = kgo.NewOffset().At(start)
		}
	}
	if len(from) == 0 {
		return nil, nil // nothing to read; a consumer would wait forever for a first record
	}

	reader, err := kgo.NewClient(append(client.Opts(),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{TopicDLQ: from}))...)
	if err != nil {
		return nil, fmt.Errorf("list dead letters: %w", err)
	}
	defer reader.Close()

	var letters []DeadLetter
	for len(from) > 0 {
		fetches := reader.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return nil, fmt.Errorf("list dead letters: %w", err)
		}
		if errs := fetches.Errors(); len(errs) > 0 {
			e := errs[0]
			return nil, fmt.Errorf("list dead letters: partition %d: %w", e.Partition, e.Err)
		}
		fetches.EachRecord(func(r *kgo.Record) {
			end := ends[r.Partition]
			if r.Offset >= end {
				return // added after the call; the next listing shows it
			}
			letters = append(letters, deadLetterOf(r))
			// Offsets in the DLQ are contiguous (plain producers, no compaction), so the
			// record just below the end is the last one to wait for.
			if r.Offset >= end-1 {
				delete(from, r.Partition)
			}
		})
	}
	slices.SortFunc(letters, func(a, b DeadLetter) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	return letters, nil
}

// listOffsets returns the DLQ's offsets per partition from one of kadm's listings.
func listOffsets(ctx context.Context, list func(context.Context, ...string) (kadm.ListedOffsets, error)) (map[int32]int64, error) {
	listed, err := list(ctx, TopicDLQ)
	if err != nil {
		return nil, err
	}
	// A missing topic is reported as an error on partition -1, so this catches it too.
	if err := listed.Error(); err != nil {
		return nil, fmt.Errorf("topic %s: %w", TopicDLQ, err)
	}
	out := map[int32]int64{}
	listed.Each(func(o kadm.ListedOffset) { out[o.Partition] = o.Offset })
	return out, nil
}

// deadLetterOf reads a DLQ record. Headers are parsed leniently: a letter someone wrote
// by hand is still listed and can still be replayed.
func deadLetterOf(r *kgo.Record) DeadLetter {
	d := DeadLetter{
		Partition: r.Partition, Offset: r.Offset, Key: r.Key, Value: r.Value,
		SourcePartition: -1, SourceOffset: -1,
	}
	for _, h := range r.Headers {
		v := string(h.Value)
		switch h.Key {
		case HeaderError:
			d.Error = v
		case HeaderSourceTopic:
			d.SourceTopic = v
		case HeaderSourcePartition:
			if p, err := strconv.ParseInt(v, 10, 32); err == nil {
				d.SourcePartition = int32(p)
			}
		case HeaderSourceOffset:
			if o, err := strconv.ParseInt(v, 10, 64); err == nil {
				d.SourceOffset = o
			}
		case HeaderFailedAt:
			if t, err := time.Parse(time.RFC3339Nano, v); err == nil {
				d.FailedAt = t
			}
		}
	}
	return d
}

// Replayed is a dead letter published again, and where the new record landed.
type Replayed struct {
	Letter    DeadLetter
	Partition int32 // in order-execution
	Offset    int64 // in order-execution
}

// ReplayDeadLetters publishes each letter's key and value to order-execution again, with
// a replayed-from header naming the letter, and returns where each one landed. The key
// is unchanged, so a replay lands on its order's partition, behind the order's other
// messages. A letter whose order already has a run needs no special case: the consumer
// treats a duplicate start as success. On a partial failure it returns the letters that
// were published together with the error.
func ReplayDeadLetters(ctx context.Context, client *kgo.Client, letters []DeadLetter) ([]Replayed, error) {
	if len(letters) == 0 {
		return nil, nil
	}
	records := make([]*kgo.Record, len(letters))
	for i, d := range letters {
		records[i] = &kgo.Record{
			Topic:   TopicOrderExecution,
			Key:     d.Key,
			Value:   d.Value,
			Headers: []kgo.RecordHeader{{Key: HeaderReplayedFrom, Value: []byte(d.ID())}},
		}
	}
	// ProduceSync answers in the order the broker acknowledged, not the order given, so
	// each result is matched to its letter by record.
	failed := map[*kgo.Record]error{}
	for _, res := range client.ProduceSync(ctx, records...) {
		if res.Err != nil {
			failed[res.Record] = res.Err
		}
	}
	var replayed []Replayed
	var first error
	for i, r := range records {
		if err, ok := failed[r]; ok {
			if first == nil {
				first = fmt.Errorf("%s: %w", letters[i].ID(), err)
			}
			continue
		}
		replayed = append(replayed, Replayed{Letter: letters[i], Partition: r.Partition, Offset: r.Offset})
	}
	if first != nil {
		// One failure usually means all of them (the broker is down): report it once.
		return replayed, fmt.Errorf("replay dead letters: %d of %d not published; first %w", len(failed), len(records), first)
	}
	return replayed, nil
}
