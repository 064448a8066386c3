package sdk

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// EventsLostError is returned (wrapping [ErrEventsLost]) by
// [Consumer.Next], [Consumer.NextTxn] and the iterators when the stream no
// longer holds events the consumer had not read yet: the stream's
// retention limits (max_bytes, max_age, max_msgs) removed them first. The
// consumer cannot go on without a hole in what it has seen; start it again
// from a snapshot. Each later call returns the same error.
type EventsLostError struct {
	// Stream is the source's stream.
	Stream string
	// First and Last bound the removed stream sequences the consumer had
	// not read.
	First, Last uint64
	// Filtered is true for a consumer with database or table filters:
	// some of the removed events may not have matched them.
	Filtered bool
}

func (e *EventsLostError) Error() string {
	s := fmt.Sprintf("%v: stream %s no longer holds sequences %d to %d, which this consumer had not read: its retention limits (max_bytes, max_age or max_msgs) removed them", ErrEventsLost, e.Stream, e.First, e.Last)
	if e.Filtered {
		s += " (some may not have matched this consumer's filters)"
	}
	return s + "; start again from a snapshot, and give the stream more room or read faster"
}

func (e *EventsLostError) Unwrap() error { return ErrEventsLost }

// AckedKey is the key, in [StateBucket], where a durable consumer records
// the newest stream sequence it acknowledged (decimal). The server's own
// acknowledgement floor moves past events that retention removed, so it
// cannot tell whether a durable consumer missed some while it was away;
// this record can.
func AckedKey(consumer string) string { return "consumer." + consumer + ".acked" }

// Reading ahead to check many deliveries against one look at the stream's
// head: at most readAhead messages, and only those that have already
// arrived (readAheadWait).
const (
	readAhead     = 1024
	readAheadWait = 100 * time.Microsecond
	// ackedSaveEvery is how often a durable consumer records its
	// acknowledged sequence while reading.
	ackedSaveEvery = time.Second
)

// receive returns the next delivered message and its stream sequence,
// after checking that the stream did not drop events this consumer had
// not read before it. A delivery that skips sequences (normal for a
// filtered consumer, and for one after an operator deleted messages) is
// checked against the stream's first sequence: skipped sequences below it
// were removed by retention. One look at the stream checks every message
// that has already arrived.
func (c *Consumer) receive(ctx context.Context) (jetstream.Msg, *jetstream.MsgMetadata, error) {
	if c.lost != nil {
		return nil, nil, c.lost
	}
	if len(c.ahead) == 0 {
		if err := c.aheadErr; err != nil {
			c.aheadErr = nil
			return nil, nil, err
		}
		m, err := c.iter.Next(jetstream.NextContext(ctx))
		if err != nil {
			return nil, nil, err
		}
		a, err := newArrival(m)
		if err != nil {
			return nil, nil, err
		}
		c.ahead = append(c.ahead, a)
		if c.next > 0 && a.meta.Sequence.Stream > c.next {
			c.readAhead()
			if err := c.checkGaps(ctx); err != nil {
				return nil, nil, err
			}
		}
	}
	a := c.ahead[0]
	c.ahead[0] = arrival{}
	c.ahead = c.ahead[1:]
	m, meta := a.msg, a.meta
	if s := meta.Sequence.Stream; s >= c.next {
		c.next = s + 1
	}
	if len(c.ahead) == 0 && c.lostAt != nil {
		c.lost, c.lostAt = c.lostAt, nil
	}
	return m, meta, nil
}

// arrival is a delivered message with its metadata.
type arrival struct {
	msg  jetstream.Msg
	meta *jetstream.MsgMetadata
}

func newArrival(m jetstream.Msg) (arrival, error) {
	meta, err := m.Metadata()
	if err != nil {
		return arrival{}, fmt.Errorf("reading delivery metadata of %s: %w", m.Subject(), err)
	}
	return arrival{m, meta}, nil
}

// readAhead appends to c.ahead the messages that have already arrived.
func (c *Consumer) readAhead() {
	for len(c.ahead) < readAhead {
		m, err := c.iter.Next(jetstream.NextMaxWait(readAheadWait))
		if err == nil {
			var a arrival
			if a, err = newArrival(m); err == nil {
				c.ahead = append(c.ahead, a)
				continue
			}
		}
		if !errors.Is(err, nats.ErrTimeout) {
			c.aheadErr = err
		}
		return
	}
}

// checkGaps looks at the stream's first sequence once and checks every
// message in c.ahead: all arrived before the look, so a sequence skipped
// before one of them that is below the first sequence was removed before
// the server could deliver it. The messages before the first such gap are
// kept; the gap becomes the consumer's error once they are handed out.
func (c *Consumer) checkGaps(ctx context.Context) error {
	st, err := c.streamState(ctx)
	if err != nil {
		return err
	}
	first := st.FirstSeq
	next := c.next
	for i, a := range c.ahead {
		seq := a.meta.Sequence.Stream
		if seq > next && first > next {
			c.lostAt = &EventsLostError{Stream: StreamName(c.source), First: next, Last: min(first, seq) - 1, Filtered: c.filtered}
			clear(c.ahead[i:])
			c.ahead = c.ahead[:i]
			c.aheadErr = nil
			if i == 0 {
				c.lost, c.lostAt = c.lostAt, nil
				return c.lost
			}
			return nil
		}
		next = max(next, seq+1)
	}
	return nil
}

// checkStart checks, before the first delivery, that the stream still
// holds the event the consumer resumes at (c.next).
func (c *Consumer) checkStart(ctx context.Context) error {
	if c.next <= 1 {
		return nil
	}
	st, err := c.streamState(ctx)
	if err != nil {
		return err
	}
	if st.FirstSeq > c.next && c.next <= st.LastSeq {
		c.lost = &EventsLostError{Stream: StreamName(c.source), First: c.next, Last: st.FirstSeq - 1, Filtered: c.filtered}
	}
	return nil
}

// streamState reads where the stream begins and ends now, waiting while
// NATS cannot answer for a moment ([Transient]).
func (c *Consumer) streamState(ctx context.Context) (jetstream.StreamState, error) {
	backoff := 100 * time.Millisecond
	for {
		info, err := c.stream.Info(ctx)
		if err == nil {
			return info.State, nil
		}
		if !Transient(err) || ctx.Err() != nil || c.closed.Load() {
			return jetstream.StreamState{}, fmt.Errorf("reading stream %s: %w", StreamName(c.source), err)
		}
		select {
		case <-ctx.Done():
			return jetstream.StreamState{}, fmt.Errorf("reading stream %s: %w", StreamName(c.source), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

// errCodeClusterNotAvailable is nats-server's JSClusterNotAvailErr: the
// JetStream cluster has no leader for the request yet.
const errCodeClusterNotAvailable jetstream.ErrorCode = 10008

// Transient reports whether err is NATS or JetStream unable to answer for
// a moment, and worth trying again: a request that timed out or found no
// responder, a connection being re-established, or a JetStream cluster
// electing a leader (after one of its servers died). The SDK's own reads
// wait through these; an application can use it for its own calls.
func Transient(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return apiErr.ErrorCode == errCodeClusterNotAvailable
	}
	return errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrNoResponders) ||
		errors.Is(err, jetstream.ErrNoStreamResponse) || errors.Is(err, nats.ErrConnectionReconnecting) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrServerShutdown)
}

// durableFloor returns where a durable consumer resumes: after the
// server's acknowledgement floor, or after the consumer's own record of
// what it acknowledged ([AckedKey]) when that is lower (the server moves
// its floor past events retention removed).
func (c *Consumer) durableFloor(ctx context.Context, server uint64) uint64 {
	if c.kv == nil {
		return server
	}
	e, err := c.kv.Get(ctx, AckedKey(c.ccfg.Durable))
	if err != nil {
		return server
	}
	own, err := strconv.ParseUint(string(e.Value()), 10, 64)
	if err != nil {
		return server
	}
	c.ackMu.Lock()
	c.savedAck = own
	c.ackMu.Unlock()
	return min(own, server)
}

// saveAcked records a durable consumer's acknowledged sequence, at most
// every ackedSaveEvery unless force. It is best effort: without the
// record, a durable consumer resumes after the server's floor.
func (c *Consumer) saveAcked(ctx context.Context, force bool) {
	c.ackMu.Lock() // Close saves on another goroutine than Next
	defer c.ackMu.Unlock()
	acked := c.acked.Load()
	if c.kv == nil || acked <= c.savedAck || !force && time.Since(c.ackSavedAt) < ackedSaveEvery {
		return
	}
	c.ackSavedAt = time.Now()
	if _, err := c.kv.Put(ctx, AckedKey(c.ccfg.Durable), []byte(strconv.FormatUint(acked, 10))); err != nil {
		c.kv = nil // not allowed or not there: do not stall every read on it
		return
	}
	c.savedAck = acked
}
