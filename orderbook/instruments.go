package orderbook

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/orderflow/orderflow/order"
	"github.com/orderflow/orderflow/queries"
)

// Instrument statuses, as PostgreSQL stores them.
const (
	InstrumentActive = "ACTIVE"
	InstrumentHalted = "HALTED"
)

// Instruments lists every instrument, by id.
func (s *Service) Instruments(ctx context.Context) ([]queries.Instrument, error) {
	ins, err := s.q.ListInstruments(ctx)
	if err != nil {
		return nil, fmt.Errorf("list instruments: %w", err)
	}
	return ins, nil
}

// HaltInstrument stops matching on instrument id. It waits for a match in progress to
// commit, so it takes effect between two steps of matching, never inside one. From then
// on nothing trades on it: an order that reaches matching has its remainder cancelled
// (reason INSTRUMENT_HALTED), orders resting on it stay there (their owners may cancel
// them) and trade again after ResumeInstrument, and validation rejects new orders.
// Halting a halted instrument changes nothing. It returns ErrInstrumentNotFound.
func (s *Service) HaltInstrument(ctx context.Context, id int64) (queries.Instrument, error) {
	return s.setInstrumentStatus(ctx, id, InstrumentHalted)
}

// ResumeInstrument lets instrument id trade again; resuming an active one changes
// nothing. It returns ErrInstrumentNotFound.
func (s *Service) ResumeInstrument(ctx context.Context, id int64) (queries.Instrument, error) {
	return s.setInstrumentStatus(ctx, id, InstrumentActive)
}

func (s *Service) setInstrumentStatus(ctx context.Context, id int64, status string) (queries.Instrument, error) {
	in, err := s.q.SetInstrumentStatus(ctx, queries.SetInstrumentStatusParams{ID: id, Status: status})
	if errors.Is(err, pgx.ErrNoRows) {
		return in, fmt.Errorf("instrument %d: %w", id, ErrInstrumentNotFound)
	}
	if err != nil {
		return in, fmt.Errorf("set instrument %d %s: %w", id, status, err)
	}
	s.log.Info("instrument status set", "instrument_id", id, "status", status)
	return in, nil
}

// Book is an instrument's book aggregated by price level, each side best first, read in
// one snapshot so the two sides agree.
type Book struct {
	Instrument queries.Instrument
	Bids, Asks []queries.GetBookDepthRow
}

// Depth returns instrument id's book, at most levels price levels a side, or
// ErrInstrumentNotFound.
func (s *Service) Depth(ctx context.Context, id int64, levels int) (Book, error) {
	var b Book
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		q := queries.New(tx)
		var err error
		if b.Instrument, err = q.GetInstrument(ctx, id); errors.Is(err, pgx.ErrNoRows) {
			return fmt.Errorf("instrument %d: %w", id, ErrInstrumentNotFound)
		} else if err != nil {
			return fmt.Errorf("read instrument %d: %w", id, err)
		}
		if b.Bids, err = q.GetBookDepth(ctx, queries.GetBookDepthParams{InstrumentID: id, Side: string(order.Buy), MaxLevels: int32(levels)}); err != nil {
			return fmt.Errorf("read the bids of instrument %d: %w", id, err)
		}
		if b.Asks, err = q.GetBookDepth(ctx, queries.GetBookDepthParams{InstrumentID: id, Side: string(order.Sell), MaxLevels: int32(levels)}); err != nil {
			return fmt.Errorf("read the asks of instrument %d: %w", id, err)
		}
		return nil
	})
	return b, err
}
