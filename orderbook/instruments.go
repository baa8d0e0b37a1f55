package orderbook

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

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
