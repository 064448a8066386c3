package snapshot

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/sdk"
)

// handoff waits until capture has published every change before the
// snapshot's position, then returns the stream sequence of the last message
// whose event the snapshot contains.
func (s *snapshotter) handoff(ctx context.Context) (uint64, error) {
	p := s.man.Position
	p.Row = 0
	deadline := time.Now().Add(s.opt.HandoffTimeout)
	var hi uint64
	for {
		cp, err := bus.LoadCheckpoint(ctx, s.kv)
		if err != nil {
			return 0, err
		}
		if cp != nil && cp.ServerID == p.ServerID && (sdk.Position{File: cp.File, Offset: cp.Offset}).Compare(p) >= 0 {
			hi = cp.StreamSeq
			break
		}
		var id string
		if cp != nil {
			id = cp.CaptureID
		}
		last, seq, _, err := bus.LastPublished(ctx, s.stream, bus.Own{CaptureID: id})
		if err != nil {
			return 0, err
		}
		if last != nil && last.Compare(p) > 0 {
			hi = seq
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("capture of source %s has not reached the snapshot's binlog position %s within %s: is `databus run` running for this source?",
				s.cfg.Source, p, s.opt.HandoffTimeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		s.report(false)
	}
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading stream info: %w", err)
	}
	// The last message whose event is at or before p.
	first := max(info.State.FirstSeq, 1)
	last, _, err := sdk.SearchStream(ctx, first-1, hi+1, func(ctx context.Context, seq uint64) (bool, bool, error) {
		m, err := s.stream.GetMsg(ctx, seq)
		switch {
		case errors.Is(err, jetstream.ErrMsgNotFound):
			return false, false, nil
		case err != nil:
			return false, false, fmt.Errorf("reading stream message %d: %w", seq, err)
		case m.Subject == sdk.LeaderSubject(s.cfg.Source):
			return false, false, nil // not an event
		}
		pos, err := bus.MsgPosition(m)
		return err == nil && pos.Compare(p) <= 0, err == nil, err
	})
	return last, err
}
