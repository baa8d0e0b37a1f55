package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/orderflow/orderflow/orderbook"
	"github.com/orderflow/orderflow/queries"
)

const instrumentsUsage = "usage: orderflow instruments list | halt ID | resume ID"

// runInstruments is `orderflow instruments`: list the instruments, and halt or resume
// one. It calls the order-book service over PostgreSQL alone, so it works when the API
// is down; a halt takes effect between two steps of matching, as
// orderbook.Service.HaltInstrument says, and needs no word to the workflows.
func runInstruments(ctx context.Context, cfg Config, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New(instrumentsUsage)
	}
	var id int64
	switch args[0] {
	case "list":
		if len(args) != 1 {
			return fmt.Errorf("unexpected argument %q; %s", args[1], instrumentsUsage)
		}
	case "halt", "resume":
		if len(args) != 2 {
			return fmt.Errorf("%s needs exactly one instrument id; %s", args[0], instrumentsUsage)
		}
		var err error
		if id, err = strconv.ParseInt(args[1], 10, 64); err != nil || id <= 0 {
			return fmt.Errorf("instrument id %q is not a positive integer", args[1])
		}
	default:
		return fmt.Errorf("unknown instruments command %q; %s", args[0], instrumentsUsage)
	}

	pool, err := openPool(ctx, cfg, "orderflow-instruments")
	if err != nil {
		return err
	}
	defer pool.Close()
	book := orderbook.New(pool, nil, orderbook.Config{})
	if args[0] == "list" {
		ins, err := book.Instruments(ctx)
		if err != nil {
			return err
		}
		return printInstruments(stdout, ins)
	}

	set, effect := book.HaltInstrument, "it matches nothing and new orders for it are rejected until it is resumed"
	if args[0] == "resume" {
		set, effect = book.ResumeInstrument, "it trades again, its resting orders included"
	}
	in, err := set(ctx, id)
	if errors.Is(err, orderbook.ErrInstrumentNotFound) {
		return fmt.Errorf("instrument %d does not exist", id)
	}
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(stdout, "instrument %d (%s) is %s: %s\n", in.ID, in.Symbol, in.Status, effect)
	return err
}

// printInstruments prints the instruments and their trading rules as a table.
func printInstruments(stdout io.Writer, ins []queries.Instrument) error {
	if len(ins) == 0 {
		_, err := fmt.Fprintln(stdout, "no instruments")
		return err
	}
	var b bytes.Buffer
	tw := tabwriter.NewWriter(&b, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSYMBOL\tSTATUS\tTICK\tLOT\tMIN QTY\tMAX QTY")
	for _, in := range ins {
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%d\t%d\n", in.ID, in.Symbol, in.Status, in.TickSize, in.LotSize, in.MinQuantity, in.MaxQuantity)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err := stdout.Write(b.Bytes())
	return err
}
