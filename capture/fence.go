package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/sdk"
)

// Lease is the capture lease of a node that may be one of several (see
// internal/lease).
type Lease interface {
	// Wait returns nil while the lease is held, waits while it may be
	// renewed still, and returns an error once it is lost.
	Wait() error
	// Term is the lease's term, higher for every new holder.
	Term() uint64
	// Node names the node that holds it.
	Node() string
}

// LeaderMessage is the body of the message a new capture leader publishes
// on [sdk.LeaderSubject] before anything else (see [Capturer.fence]).
type LeaderMessage struct {
	Node string    `json:"node"`
	Term uint64    `json:"term"`
	At   time.Time `json:"at"`
}

// fence checks, at the start of every session, that no node took the
// lease over since this one got it, and makes sure that the node that held
// the lease before can write nothing more. The stream's newest leader
// message tells: one of a higher term means another node leads now
// ([ErrLeaseLost]), whatever this node's clock says of its lease; one of
// this node's term was published by an earlier session. Otherwise, the
// first session of a term saves the checkpoint again over the revision
// read (the old leader's next save names an older one and is refused),
// and publishes the term's leader message right after the stream's last
// message (the old leader's next publish expects an older last sequence
// and is refused). Without a lease there is nothing to fence.
func (c *Capturer) fence(ctx context.Context, stream jetstream.Stream, pub *publisher, cp *bus.Checkpoint) error {
	l := c.cfg.Lease
	if l == nil {
		return nil
	}
	if err := pub.checkLease(); err != nil {
		return err
	}
	last, err := newestLeader(ctx, stream, c.cfg.Source)
	switch {
	case err != nil:
		return err
	case last != nil && last.Term > l.Term():
		return fmt.Errorf("%w: the stream holds the leader message of term %d (node %s), this node's lease is of term %d", ErrLeaseLost, last.Term, last.Node, l.Term())
	case last != nil && last.Term == l.Term():
		return nil
	}
	rev, err := bus.SaveCheckpoint(ctx, pub.kv, *cp, pub.cpRev)
	if err != nil {
		return fmt.Errorf("taking over the checkpoint: %w", err) // retried: it was written just now
	}
	pub.cpRev = rev
	body, err := json.Marshal(LeaderMessage{Node: l.Node(), Term: l.Term(), At: time.Now().UTC()})
	if err != nil {
		return err
	}
	ack, err := pub.js.PublishMsg(ctx, &nats.Msg{Subject: sdk.LeaderSubject(c.cfg.Source), Data: body, Header: nats.Header{
		jetstream.MsgIDHeader:           {"leader:" + strconv.FormatUint(l.Term(), 10) + ":" + pub.captureID},
		jetstream.ExpectedLastSeqHeader: {strconv.FormatUint(pub.expected, 10)},
		bus.CaptureHeader:               {pub.captureID},
	}})
	if err != nil {
		return fmt.Errorf("publishing the leader message of term %d after stream sequence %d: %w", l.Term(), pub.expected, err)
	}
	if !ack.Duplicate {
		pub.expected = ack.Sequence
	}
	c.log.Info("fenced off the previous capture leader", "term", l.Term(), "stream_seq", ack.Sequence)
	return nil
}

// newestLeader returns the stream's newest leader message, nil when it
// has none. It is read from the stream's leader, not a replica that may
// lag.
func newestLeader(ctx context.Context, stream jetstream.Stream, source string) (*LeaderMessage, error) {
	m, err := stream.GetLastMsgForSubject(ctx, sdk.LeaderSubject(source))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the stream's newest leader message: %w", err)
	}
	var lm LeaderMessage
	if err := json.Unmarshal(m.Data, &lm); err != nil {
		return nil, fmt.Errorf("leader message at stream sequence %d: %w", m.Sequence, err)
	}
	return &lm, nil
}

// unstick handles a publish that JetStream refuses again and again
// because a message with its id is "in process" on the stream's leader:
// the stream does not hold the event (capture resumed after the stream's
// last message), but the leader keeps the id of a message it never stored
// (seen with nats-server 2.15 on clustered streams after leader changes
// under load) until its duplicate window ends. A leader change clears it,
// so after the second such failure in a row capture asks the stream's
// leader to step down.
func (c *Capturer) unstick(ctx context.Context, err error) {
	if !bus.MsgIDInProcess(err) {
		c.inProcess = 0
		return
	}
	if c.inProcess++; c.inProcess < 2 {
		return
	}
	c.inProcess = 0
	js, jerr := jetstream.New(c.nc)
	if jerr == nil {
		sctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		jerr = bus.StepDown(sctx, js, sdk.StreamName(c.cfg.Source), "")
	}
	c.log.Warn("the stream's leader holds the id of a message it did not store: asked it to hand over its leadership, which clears it", "err", jerr)
}
