package sdk

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// ErrStartNotKept is returned by [Connect] for a start point at a time,
// GTID or binlog position that the stream cannot serve: older than its
// first event, or past its newest one.
var ErrStartNotKept = errors.New("start point not in the stream")

// eventMark is what a start point is compared with: an event's commit
// time and position.
type eventMark struct {
	TS  time.Time `json:"ts"`
	Pos Position  `json:"pos"`
}

func (e eventMark) String() string {
	s := fmt.Sprintf("committed %s at %s:%d", e.TS.UTC().Format(time.RFC3339), e.Pos.File, e.Pos.Offset)
	if e.Pos.GTID != "" {
		s += ", GTID " + e.Pos.GTID
	}
	return s
}

// seekStart returns the stream sequence a start at a time, GTID set or
// binlog position begins at: one past the last event before the point,
// found by binary search on the stream (the events are in binlog order).
func (c *Consumer) seekStart(ctx context.Context, start Start) (uint64, error) {
	var set gtidSet
	if start.kind == kindGTID {
		var err error
		if set, err = parseGTIDSet(start.gtids); err != nil {
			return 0, fmt.Errorf("start point %s: %w", start, err)
		}
	}
	before := func(e eventMark) bool {
		switch start.kind {
		case kindTime:
			return e.TS.Before(start.at.Truncate(time.Second))
		case kindGTID:
			in, _ := set.contains(e.Pos.GTID)
			return in
		default:
			return compareOffsets(e.Pos, start.pos) <= 0
		}
	}
	st, err := c.streamState(ctx)
	if err != nil {
		return 0, err
	}
	end := st.LastSeq + 1
	firstSeq, first, found, err := c.eventFrom(ctx, max(st.FirstSeq, 1), end)
	if err != nil {
		return 0, err
	}
	if !found {
		return 0, fmt.Errorf("%w: start point %s: stream %s holds no events yet", ErrStartNotKept, start, StreamName(c.source))
	}
	if start.kind == kindGTID && first.Pos.GTID == "" {
		return 0, fmt.Errorf("start point %s: the stream's events carry no GTIDs (GTIDs are off on the source): start at a time or a binlog position", start)
	}
	lo, next, err := SearchStream(ctx, firstSeq-1, end, func(ctx context.Context, seq uint64) (bool, bool, error) {
		e, ok, err := c.eventAt(ctx, seq)
		return ok && before(e), ok, err
	})
	if err != nil {
		return 0, err
	}
	if lo < firstSeq {
		// No kept event is before the point: events after the point and
		// before the first kept one may be gone, unless a GTID set ends
		// right before the first one or the first one has the point's
		// time.
		var adjacent bool
		switch start.kind {
		case kindGTID:
			_, adjacent = set.contains(first.Pos.GTID)
		case kindTime:
			adjacent = !first.TS.After(start.at)
		}
		if !adjacent {
			return 0, fmt.Errorf("%w: start point %s is older than the first event stream %s keeps (sequence %d, %s): start there (beginning) or at a later point",
				ErrStartNotKept, start, StreamName(c.source), firstSeq, first)
		}
	}
	if next == end {
		if err := c.checkNotPast(ctx, start, set, firstSeq, end); err != nil {
			return 0, err
		}
	}
	return lo + 1, nil
}

// checkNotPast returns an error when start, after every event of the
// stream, is past its newest one: a position or GTID capture has not
// published (yet), or a time in the future. A time up to now starts
// after the newest event.
func (c *Consumer) checkNotPast(ctx context.Context, start Start, set gtidSet, from, end uint64) error {
	seq := end - 1
	var last eventMark
	for ; seq >= from; seq-- {
		e, ok, err := c.eventAt(ctx, seq)
		if err != nil {
			return err
		}
		if ok {
			last = e
			break
		}
	}
	var past bool
	switch start.kind {
	case kindTime:
		past = start.at.After(time.Now())
	case kindGTID:
		past = set.beyond(last.Pos.GTID)
	case kindPosition:
		past = compareOffsets(last.Pos, start.pos) < 0
	}
	if !past {
		return nil
	}
	return fmt.Errorf("%w: start point %s is past the newest event of stream %s (sequence %d, %s): nothing after it is published yet; "+
		"start at now to read what comes next (transactions on tables capture leaves out are not in the stream)",
		ErrStartNotKept, start, StreamName(c.source), seq, last)
}

// compareOffsets orders binlog positions by file and offset alone: the
// rows of one row event share its end offset.
func compareOffsets(a, b Position) int {
	if c := CompareBinlogFiles(a.File, b.File); c != 0 {
		return c
	}
	return cmp.Compare(a.Offset, b.Offset)
}

// eventFrom returns the first event message at or after seq and before
// end, with its mark.
func (c *Consumer) eventFrom(ctx context.Context, seq, end uint64) (uint64, eventMark, bool, error) {
	for ; seq < end; seq++ {
		e, ok, err := c.eventAt(ctx, seq)
		if err != nil || ok {
			return seq, e, ok, err
		}
	}
	return 0, eventMark{}, false, nil
}

// eventAt reads the stream message at seq and its event's mark: ok is
// false for a message removed, a control message or a chunk of a large
// event (whose first part may not hold the mark).
func (c *Consumer) eventAt(ctx context.Context, seq uint64) (eventMark, bool, error) {
	m, err := c.stream.GetMsg(ctx, seq)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return eventMark{}, false, nil
	}
	if err != nil {
		return eventMark{}, false, fmt.Errorf("reading message %d of stream %s: %w", seq, StreamName(c.source), err)
	}
	if m.Subject == LeaderSubject(c.source) || m.Header.Get(ChunkHeader) != "" {
		return eventMark{}, false, nil
	}
	var e eventMark
	if err := json.Unmarshal(m.Data, &e); err != nil || e.Pos.File == "" {
		return eventMark{}, false, nil
	}
	return e, true, nil
}

// SearchProbe judges the stream message at seq for [SearchStream]: ok is
// false for one that cannot be judged (removed, a control message, a chunk
// of a large event), which the search steps over; before reports whether
// its event is before the point.
type SearchProbe func(ctx context.Context, seq uint64) (before, ok bool, err error)

// SearchStream finds where a point of the source (a position, a GTID set,
// a commit time) lies in a databus stream by binary search, one probe (a
// direct get) per step: the stream's events are in binlog order, so those
// before the point are a prefix. It returns last, the largest sequence in
// (lo, hi) whose event is before the point (lo when none is), and next,
// the first judged one after it that is not (hi when none is). The caller
// knows lo's event, if any, is before the point and hi's is not (or hi is
// past the stream's end).
func SearchStream(ctx context.Context, lo, hi uint64, probe SearchProbe) (last, next uint64, err error) {
	for hi-lo > 1 {
		mid := lo + (hi-lo)/2
		seq, before, found := uint64(0), false, false
		for s := mid; s < hi && !found; s++ {
			b, ok, err := probe(ctx, s)
			if err != nil {
				return 0, 0, err
			}
			seq, before, found = s, b, ok
		}
		switch {
		case !found:
			hi = mid
		case before:
			lo = seq
		default:
			hi = seq
		}
	}
	return lo, hi, nil
}
