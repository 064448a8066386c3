// Package streamsearch finds where a point of the source lies in a databus
// stream: the stream's events are in binlog order, so the events before a
// point (a position, a GTID set, a commit time) are a prefix of it, found
// by binary search with one direct get per probe.
package streamsearch

import "context"

// Probe judges the message at seq: ok is false for a message that cannot
// be judged (removed, a control message, a chunk of a large event), which
// the search steps over; before reports whether its event is before the
// point.
type Probe func(ctx context.Context, seq uint64) (before, ok bool, err error)

// LastBefore returns last, the largest sequence in (lo, hi) whose event is
// before the point (lo when none is), and next, the first judged one after
// it that is not (hi when none is). The caller knows lo's event, if any, is
// before the point and hi's is not (or hi is past the stream's end).
func LastBefore(ctx context.Context, lo, hi uint64, probe Probe) (last, next uint64, err error) {
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
