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
	// Largest sequence in [first, hi] whose event is at or before p; the
	// messages are in position order.
	lo, r := info.State.FirstSeq-1, hi+1
	if info.State.FirstSeq == 0 {
		lo = 0
	}
	for r-lo > 1 {
		mid := lo + (r-lo)/2
		seq, pos, found, err := s.positionFrom(ctx, mid, r)
		if err != nil {
			return 0, err
		}
		switch {
		case !found:
			r = mid
		case pos.Compare(p) <= 0:
			lo = seq
		default:
			r = seq
		}
	}
	return lo, nil
}

// positionFrom returns the first message at or after seq and before end,
// with its event's position.
func (s *snapshotter) positionFrom(ctx context.Context, seq, end uint64) (uint64, sdk.Position, bool, error) {
	for ; seq < end; seq++ {
		m, err := s.stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, sdk.Position{}, false, fmt.Errorf("reading stream message %d: %w", seq, err)
		}
		if m.Subject == sdk.LeaderSubject(s.cfg.Source) {
			continue // not an event
		}
		pos, err := bus.MsgPosition(m)
		if err != nil {
			return 0, sdk.Position{}, false, err
		}
		return seq, pos, true, nil
	}
	return 0, sdk.Position{}, false, nil
}
