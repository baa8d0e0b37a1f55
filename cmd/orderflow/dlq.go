package main

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/orderflow/orderflow/kafka"
)

const (
	dlqUsage       = "usage: orderflow dlq list [--json] | orderflow dlq replay --offset N [--partition P] | --all"
	dlqListUsage   = "usage: orderflow dlq list [--json]"
	dlqReplayUsage = "usage: orderflow dlq replay --offset N [--partition P] | orderflow dlq replay --all"
)

// runDLQ is `orderflow dlq`: operators look at the records the consumer could not decode
// and, once the cause is fixed, publish them to order-execution again.
//
//	orderflow dlq list [--json]
//	orderflow dlq replay --offset N [--partition P] | --all
func runDLQ(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(dlqUsage)
	}
	switch args[0] {
	case "list":
		return dlqList(ctx, cfg, args[1:], stdout)
	case "replay":
		return dlqReplay(ctx, cfg, args[1:], stdout)
	case "help", "-h", "--help":
		_, err := fmt.Fprintln(stdout, dlqUsage)
		return err
	}
	return fmt.Errorf("unknown dlq command %q; %s", args[0], dlqUsage)
}

// dlqParseFlags parses args into fs. It returns done when the user asked for help (the
// usage is printed, nothing else runs), and folds flag's own message and the usage into
// one error, since main prints errors as one line.
func dlqParseFlags(fs *flag.FlagSet, args []string, usage string, stdout io.Writer) (done bool, err error) {
	fs.SetOutput(new(bytes.Buffer)) // flag's multi-line usage text would repeat the error
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			_, err := fmt.Fprintln(stdout, usage)
			return true, err
		}
		return false, fmt.Errorf("%v; %s", err, usage)
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected argument %q; %s", fs.Arg(0), usage)
	}
	return false, nil
}

func dlqList(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dlq list", flag.ContinueOnError)
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if done, err := dlqParseFlags(fs, args, dlqListUsage, stdout); done || err != nil {
		return err
	}
	client, err := newDLQClient(cfg)
	if err != nil {
		return err
	}
	defer client.Close()
	letters, err := kafka.ListDeadLetters(ctx, client)
	if err != nil {
		return fmt.Errorf("kafka at %s: %w", dlqBrokers(cfg), err)
	}
	if *asJSON {
		// No letters print nothing: a consumer of the lines sees zero objects, not prose.
		enc := json.NewEncoder(stdout)
		for _, d := range letters {
			if err := enc.Encode(newDeadLetterView(d)); err != nil {
				return err
			}
		}
		return nil
	}
	if len(letters) == 0 {
		_, err := fmt.Fprintln(stdout, "no dead letters")
		return err
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PARTITION\tOFFSET\tKEY\tSOURCE\tFAILED-AT\tERROR")
	for _, d := range letters {
		failedAt := "-"
		if !d.FailedAt.IsZero() {
			failedAt = d.FailedAt.UTC().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%d\t%d\t%s\t%s\t%s\t%s\n",
			d.Partition, d.Offset, dlqCell(string(d.Key)), dlqSource(d), failedAt, dlqCell(d.Error))
	}
	return tw.Flush()
}

func dlqReplay(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("dlq replay", flag.ContinueOnError)
	offset := fs.Int64("offset", 0, "DLQ offset of the letter to replay")
	partition := fs.Int("partition", 0, "DLQ partition of that offset (default: the only partition holding it)")
	all := fs.Bool("all", false, "replay every dead letter")
	if done, err := dlqParseFlags(fs, args, dlqReplayUsage, stdout); done || err != nil {
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	switch {
	case set["offset"] == *all:
		return fmt.Errorf("give either --offset or --all; %s", dlqReplayUsage)
	case *all && set["partition"]:
		return fmt.Errorf("--partition goes with --offset, not --all; %s", dlqReplayUsage)
	case set["offset"] && *offset < 0:
		return fmt.Errorf("--offset must be 0 or more; %s", dlqReplayUsage)
	case set["partition"] && *partition < 0:
		return fmt.Errorf("--partition must be 0 or more; %s", dlqReplayUsage)
	}

	client, err := newDLQClient(cfg)
	if err != nil {
		return err
	}
	defer client.Close()
	// Listing first means only letters that exist are replayed: an offset past the end
	// of the DLQ is an error, not a silent no-op.
	letters, err := kafka.ListDeadLetters(ctx, client)
	if err != nil {
		return fmt.Errorf("kafka at %s: %w", dlqBrokers(cfg), err)
	}
	if !*all {
		p := -1
		if set["partition"] {
			p = *partition
		}
		if letters, err = dlqPickLetter(letters, p, *offset); err != nil {
			return err
		}
	}
	replayed, err := kafka.ReplayDeadLetters(ctx, client, letters)
	for _, r := range replayed {
		fmt.Fprintf(stdout, "replayed %s (key %s) as %s/%d/%d\n",
			r.Letter.ID(), dlqCell(string(r.Letter.Key)), kafka.TopicOrderExecution, r.Partition, r.Offset)
	}
	if err != nil {
		return fmt.Errorf("kafka at %s: %w", dlqBrokers(cfg), err)
	}
	_, err = fmt.Fprintf(stdout, "replayed %d dead %s\n", len(replayed), dlqPlural(len(replayed), "letter", "letters"))
	return err
}

// dlqPickLetter returns the letter at partition and offset; partition -1 means whichever
// partition holds that offset, as long as only one does.
func dlqPickLetter(letters []kafka.DeadLetter, partition int, offset int64) ([]kafka.DeadLetter, error) {
	var found []kafka.DeadLetter
	var in []string
	for _, d := range letters {
		if d.Offset == offset && (partition < 0 || int(d.Partition) == partition) {
			found = append(found, d)
			in = append(in, strconv.Itoa(int(d.Partition)))
		}
	}
	switch {
	case len(found) == 1:
		return found, nil
	case len(found) > 1:
		return nil, fmt.Errorf("offset %d exists in partitions %s; choose one with --partition", offset, strings.Join(in, ", "))
	case partition < 0:
		return nil, fmt.Errorf("no dead letter at offset %d in any partition", offset)
	}
	return nil, fmt.Errorf("no dead letter at partition %d offset %d", partition, offset)
}

// newDLQClient connects to the configured brokers.
func newDLQClient(cfg Config) (*kgo.Client, error) {
	client, err := kgo.NewClient(cfg.kafkaOptions()...)
	if err != nil {
		return nil, fmt.Errorf("kafka at %s: %w", dlqBrokers(cfg), err)
	}
	return client, nil
}

// dlqBrokers returns the configured brokers, or the same default as the worker's, so the
// tool reads the DLQ the worker writes.
func dlqBrokers(cfg Config) string {
	if len(cfg.KafkaBrokers) == 0 {
		return defaultKafkaBroker
	}
	return strings.Join(cfg.KafkaBrokers, ",")
}

// deadLetterView is the JSON form of a dead letter. Key and value are strings, not
// base64, because they are the text the consumer could not read.
type deadLetterView struct {
	Partition       int32  `json:"partition"`
	Offset          int64  `json:"offset"`
	Key             string `json:"key"`
	Value           string `json:"value"`
	Error           string `json:"error"`
	SourceTopic     string `json:"sourceTopic,omitempty"`
	SourcePartition int32  `json:"sourcePartition"`
	SourceOffset    int64  `json:"sourceOffset"`
	FailedAt        string `json:"failedAt,omitempty"`
}

func newDeadLetterView(d kafka.DeadLetter) deadLetterView {
	v := deadLetterView{
		Partition: d.Partition, Offset: d.Offset, Key: string(d.Key), Value: string(d.Value), Error: d.Error,
		SourceTopic: d.SourceTopic, SourcePartition: d.SourcePartition, SourceOffset: d.SourceOffset,
	}
	if !d.FailedAt.IsZero() {
		v.FailedAt = d.FailedAt.UTC().Format(time.RFC3339Nano)
	}
	return v
}

// dlqSource says where a letter came from as topic/partition/offset, or "-" if unknown.
func dlqSource(d kafka.DeadLetter) string {
	if d.SourceTopic == "" && d.SourcePartition < 0 && d.SourceOffset < 0 {
		return "-"
	}
	return fmt.Sprintf("%s/%d/%d", cmp.Or(d.SourceTopic, "?"), d.SourcePartition, d.SourceOffset)
}

// dlqCell makes s safe for one table cell: a tab or newline in a key or an error message
// would break the columns, so such text is shown quoted.
func dlqCell(s string) string {
	if s == "" {
		return "-"
	}
	if strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

func dlqPlural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
