package sdk

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Transaction is one source transaction as delivered to a consumer: its
// events that pass the consumer's filters, in order. A transaction of more
// than [Config.MaxTxnEvents] events comes in several parts, of which only
// the last is Complete.
type Transaction struct {
	// ID is the transaction's [Txn.ID] ([SnapshotTxnID] for a snapshot's
	// table).
	ID       string
	Messages []*Message
	// Complete is true when Messages end the transaction.
	Complete bool
}

// Events returns the transaction's events.
func (t *Transaction) Events() []*Event {
	evs := make([]*Event, len(t.Messages))
	for i, m := range t.Messages {
		evs[i] = m.Event
	}
	return evs
}

// Ack acknowledges the whole transaction (or part).
func (t *Transaction) Ack(ctx context.Context) error {
	return t.Messages[len(t.Messages)-1].Ack(ctx)
}

// AckSync is [Transaction.Ack] that waits until the server confirms.
func (t *Transaction) AckSync(ctx context.Context) error {
	return t.Messages[len(t.Messages)-1].AckSync(ctx)
}

// NextTxn blocks until a whole source transaction has arrived and returns
// it, so that an application never acts on half of one. Each table of a
// snapshot comes as one transaction (in parts when large): its
// create_table event, then its rows. Use either NextTxn or
// [Consumer.Next] on a consumer, not both.
//
// A transaction ends with the event capture marked [Txn.Last]. When the
// consumer's filters leave that event out, the transaction ends when an
// event of a later transaction arrives, or when the stream's newest event
// shows that capture has moved past it.
func (c *Consumer) NextTxn(ctx context.Context) (*Transaction, error) {
	first, err := c.take(ctx)
	if err != nil {
		return nil, err
	}
	t := &Transaction{ID: first.Event.Txn.ID, Messages: []*Message{first}}
	snapshot := first.snap != nil
	for {
		last := t.Messages[len(t.Messages)-1]
		if last.Event.Txn.Last {
			t.Complete = true
			return t, nil
		}
		if len(t.Messages) >= c.maxTxn {
			return t, nil
		}
		var m *Message
		if snapshot {
			if m, err = c.nextSnapshotRow(ctx); err == nil && m == nil {
				t.Complete = true // the snapshot is loaded
				return t, nil
			}
		} else {
			var ended bool
			if m, ended, err = c.nextInTxn(ctx, t.ID, last.Sequence); ended {
				t.Complete = true
				return t, nil
			}
		}
		if err != nil {
			return nil, err
		}
		if m.Event.Txn.ID != t.ID || (m.snap != nil) != snapshot {
			c.pending = m
			t.Complete = true
			return t, nil
		}
		t.Messages = append(t.Messages, m)
	}
}

// take returns the message read ahead, or the next one.
func (c *Consumer) take(ctx context.Context) (*Message, error) {
	if m := c.pending; m != nil {
		c.pending = nil
		return m, nil
	}
	return c.Next(ctx)
}

// txnPoll is how long a filtered consumer waits for the next event of a
// transaction before it looks whether capture has moved past it.
const txnPoll = 250 * time.Millisecond

// nextInTxn returns the next event after stream sequence seq of
// transaction id, or ended when the transaction is known to have no more
// events for this consumer.
func (c *Consumer) nextInTxn(ctx context.Context, id string, seq uint64) (m *Message, ended bool, err error) {
	if !c.filtered {
		m, err = c.Next(ctx)
		return m, false, err
	}
	for {
		wctx, cancel := context.WithTimeout(ctx, txnPoll)
		m, err = c.Next(wctx)
		cancel()
		if err == nil || ctx.Err() != nil || !errors.Is(err, context.DeadlineExceeded) {
			return m, false, err
		}
		if ended, err := c.movedPast(ctx, id, seq); ended || err != nil {
			return nil, ended, err
		}
	}
}

// TxnEnded reports whether the transaction of m can have no more events
// for this consumer after m: m is its last event or, for a consumer that
// filters databases or tables (whose filter may hide the last one),
// capture has published past the transaction and nothing of it is left to
// deliver. An application that gathers whole transactions itself asks it
// when no event has come for a while. It may be called while another
// goroutine waits in Next. While NATS cannot answer for a moment
// ([Transient]) it reports false.
func (c *Consumer) TxnEnded(ctx context.Context, m *Message) (bool, error) {
	if m.Event.Txn.Last {
		return true, nil
	}
	if !c.filtered || m.snap != nil {
		return false, nil
	}
	ended, err := c.movedPast(ctx, m.Event.Txn.ID, m.Sequence)
	if Transient(err) && ctx.Err() == nil {
		return false, nil // not known yet: ask again later
	}
	return ended, err
}

// movedPast reports whether transaction id can have no more events for
// this consumer after stream sequence seq: the stream's newest event is
// of a later transaction or is id's last (capture publishes in order, so
// every event of id is in the stream by then), and the server has no
// undelivered event for this consumer and delivered none after seq.
func (c *Consumer) movedPast(ctx context.Context, id string, seq uint64) (bool, error) {
	ev, at, err := c.newestEvent(ctx)
	if err != nil || ev == nil || at <= seq || ev.Txn.ID == id && !ev.Txn.Last {
		return false, err
	}
	c.consMu.Lock()
	cons := c.cons
	c.consMu.Unlock()
	info, err := cons.Info(ctx)
	if err != nil {
		return false, fmt.Errorf("reading consumer state: %w", err)
	}
	return info.NumPending == 0 && info.Delivered.Stream <= seq, nil
}

// newestEvent returns the stream's newest event (joining its chunks) and
// its sequence, or nil when the stream is empty.
func (c *Consumer) newestEvent(ctx context.Context) (*Event, uint64, error) {
	raw, err := c.stream.GetLastMsgForSubject(ctx, EventSubjects(c.source))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading the stream's newest event: %w", err)
	}
	data, at := raw.Data, raw.Sequence
	if h := raw.Header.Get(ChunkHeader); h != "" {
		i, n, err := ParseChunk(h)
		if err != nil {
			return nil, 0, fmt.Errorf("stream sequence %d: %w", at, err)
		}
		if i < n {
			return nil, 0, nil // the event is still being published
		}
		data = nil
		for s := at - uint64(n-1); s <= at; s++ {
			part, err := c.stream.GetMsg(ctx, s)
			if err != nil {
				return nil, 0, fmt.Errorf("reading chunk at stream sequence %d: %w", s, err)
			}
			data = append(data, part.Data...)
		}
	}
	ev, err := DecodeEvent(data)
	if err != nil {
		return nil, 0, fmt.Errorf("stream sequence %d: %w", at, err)
	}
	return ev, at, nil
}
