package snapshot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/nats-io/nats.go"
)

// Schedule takes the snapshots of a running capture: a first one when the
// source has none, one every Interval, and one each time Recovered
// receives (capture resumed from a checkpoint it could not follow, leaving
// a gap that consumers can only cross with a new snapshot). A snapshot that
// fails is logged and tried again at the next occasion; capture goes on.
type Schedule struct {
	Config  Config
	Options Options
	// OnStart takes a snapshot at start when the source has none.
	OnStart bool
	// Interval is the time between snapshots; 0 takes none on a timer.
	Interval  time.Duration
	Recovered <-chan struct{}
	Logger    *slog.Logger
}

// Run takes snapshots through nc until ctx ends.
func (s *Schedule) Run(ctx context.Context, nc *nats.Conn) {
	log := s.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if s.OnStart {
		exists, err := Exists(ctx, nc, s.Config.Source)
		if err != nil && ctx.Err() == nil {
			log.Warn("looking for an existing snapshot", "err", err)
		}
		if err == nil && !exists {
			s.take(ctx, nc, log)
		}
	}
	var tick <-chan time.Time
	if s.Interval > 0 {
		t := time.NewTicker(s.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			s.take(ctx, nc, log)
		case <-s.Recovered:
			log.Warn("taking a new snapshot: capture recovered from a checkpoint it could not resume")
			s.take(ctx, nc, log)
		}
	}
}

// take takes one snapshot and logs how it went.
func (s *Schedule) take(ctx context.Context, nc *nats.Conn, log *slog.Logger) {
	log.Info("snapshot starting")
	opt := s.Options
	opt.Progress = func(p Progress) {
		if p.Phase == "reading" {
			log.Info("snapshot progress", "id", p.ID, "tables", fmt.Sprintf("%d/%d", p.TablesDone, p.Tables), "rows", p.Rows)
		}
	}
	man, err := Take(ctx, s.Config, nc, opt)
	switch {
	case err == nil:
		log.Info("snapshot complete", "id", man.ID, "tables", len(man.Tables), "rows", man.Rows,
			"stored_bytes", man.StoredBytes, "pos", man.Position.String(), "stream_seq", man.StreamSeq)
	case ctx.Err() != nil:
	case errors.Is(err, ErrRunning):
		log.Info("snapshot skipped", "reason", err)
	default:
		log.Warn("snapshot failed", "err", err)
	}
}
