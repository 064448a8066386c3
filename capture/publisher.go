package capture

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"
	"golang.org/x/sync/semaphore"

	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/rowevent"
	"github.com/databus/databus/sdk"
)

var errTestCrash = errors.New("test crash")

// pending is one entry of the in-order acknowledgement queue: a publish
// whose acknowledgement confirms it and every message sent since the
// previous such publish (size bytes in all), or a transaction boundary whose
// checkpoint becomes durable once everything before it is acknowledged.
type pending struct {
	fut  jetstream.PubAckFuture
	size int64
	cp   *bus.Checkpoint
}

// Acknowledgements are asked for on the last message of every transaction
// and at least every ackEveryMsgs messages or ackEveryBytes bytes; at most
// publishWindow bytes (or two messages, if larger) are unacknowledged.
const (
	ackEveryMsgs  = 128
	ackEveryBytes = 1 << 20
	publishWindow = 16 << 20
	// maxReusedBuf is the largest event buffer kept for the next event.
	maxReusedBuf = 1 << 20
	// ackStallWait is how long a publish waits for a free slot when the
	// client has its maximum of acknowledgements pending; the same as the
	// acknowledgement timeout capture sets.
	ackStallWait = 30 * time.Second
)

// Atomic batches (see [publisher.sendBatched]) are committed at the end of
// a transaction or once they hold maxBatchMsgs messages (the NATS server's
// default limit, jetstream.limits.max_batch_size) or maxBatchBytes bytes.
// Every batch therefore fits the publish window with room to spare: at most
// maxBatchBytes plus one message, and the window holds two messages. A
// batch is also committed before a gap of batchIdle between two of its
// messages: the server abandons a batch that receives nothing for 10s.
const (
	maxBatchMsgs  = 1000
	maxBatchBytes = publishWindow / 2
	batchIdle     = 5 * time.Second
)

// JetStream atomic batch headers (ADR-50); nats.go has no API for them.
const (
	batchIDHeader     = "Nats-Batch-Id"
	batchSeqHeader    = "Nats-Batch-Sequence"
	batchCommitHeader = "Nats-Batch-Commit"
)

// publisher publishes events in order. Every message carries the stream
// sequence it expects to follow (Nats-Expected-Last-Sequence), so a lost or
// reordered publish can never leave a gap: the server rejects everything
// after it and capture restarts from the checkpoint. That chain also lets
// one acknowledgement vouch for every message before it: only the last
// message of a transaction, and every ackEveryMsgs-th, asks for one; the
// others are plain NATS publishes on the same connection, in order.
//
// With atomic set, messages are sent in atomic batches instead, one per
// transaction when it fits (see sendBatched).
type publisher struct {
	js jetstream.JetStream
	kv jetstream.KeyValue
	// cpRev is the checkpoint's revision: the next save replaces it, or
	// fails if another capture wrote one since.
	cpRev uint64
	// lease, when set, must hold for every publish and checkpoint.
	lease  Lease
	source string
	log    *slog.Logger
	// captureID goes in every message's bus.CaptureHeader header.
	captureID string
	// expected is the stream's last sequence before the next publish.
	expected uint64
	// skipThrough is the newest position already in the stream; events at
	// or before it are not published again (only before it when
	// skipPartial: its event's chunks were not all published).
	skipThrough *sdk.Position
	skipPartial bool
	// skipTxn, after a switch to another server, holds the transactions
	// (by GTID) whose events up to the given Txn.Seq are in the stream.
	skipTxn map[string]int
	// maxData is the largest message body; larger events are chunked.
	maxData int
	queue   chan pending
	// window bounds the bytes published and not yet acknowledged; made on
	// the first publish. unackedMsgs and unackedBytes count what was sent
	// since the last message that asked for an acknowledgement.
	window       *semaphore.Weighted
	unackedMsgs  int
	unackedBytes int64
	// atomic publishes in atomic batches; batch is the open one.
	atomic bool
	batch  openBatch
	// buf is reused for every event's JSON: NATS copies the message out
	// before a publish returns.
	buf []byte
	// crashAfter, in tests only, fails every publish after that many
	// messages.
	crashAfter, sent int
}

// openBatch is an atomic batch that is not committed yet; its zero value
// is no batch.
type openBatch struct {
	id      string // unique per attempt: a batch left open by a crash is dropped by the server
	n       int    // messages sent in it
	bytes   int64
	subject string // of the last message, for an end-of-batch commit
	last    time.Time
}

func (p *publisher) publish(o *rowevent.Event) error {
	ev := &o.Event
	if last, ok := p.skipTxn[ev.Txn.ID]; ok && ev.Txn.Seq <= last {
		return nil
	}
	if p.skipThrough != nil {
		c := ev.Position.Compare(*p.skipThrough)
		if c < 0 || c == 0 && !p.skipPartial {
			return nil
		}
	}
	p.skipThrough = nil
	data, err := o.AppendJSON(p.buf[:0])
	if err != nil {
		return fmt.Errorf("encoding event at %s: %w", ev.Position, err)
	}
	if cap(data) <= maxReusedBuf {
		p.buf = data
	}
	subject, id := sdk.Subject(p.source, ev.Database, ev.Table, ev.Op), bus.MsgID(ev.Position)
	if len(data) <= p.maxData {
		// The last message of a transaction with no batch open (a
		// transaction of one message) is atomic without a batch, which
		// would cost the server a staging store of its own.
		if p.atomic && (p.batch.id != "" || !ev.Txn.Last) {
			return p.sendBatched(subject, id, data, ev.Txn.Last)
		}
		return p.send(p.newMsg(subject, id, data), true, ev.Txn.Last)
	}
	// Chunks are never part of an atomic batch: what was batched of the
	// transaction so far is committed first.
	if err := p.endBatch(); err != nil {
		return err
	}
	// Larger than a NATS message: consecutive chunks on the same subject,
	// which the SDK reassembles (docs/events.md). Every chunk is
	// acknowledged: they are large, and a capture killed mid-event leaves
	// exactly the chunks the stream holds.
	// Chunk ids name the attempt (the stream sequence of its first chunk):
	// after a crash mid-event the chunks are published again and must not
	// be dropped as duplicates of the incomplete first attempt.
	n := (len(data) + p.maxData - 1) / p.maxData
	attempt := p.expected + 1
	for i := 1; i <= n; i++ {
		part := data[(i-1)*p.maxData : min(i*p.maxData, len(data))]
		msg := p.newMsg(subject, bus.ChunkID(id, i, attempt), part)
		msg.Header.Set(sdk.ChunkHeader, strconv.Itoa(i)+"/"+strconv.Itoa(n))
		if err := p.send(msg, true, true); err != nil {
			return err
		}
	}
	return nil
}

// newMsg returns the message of one event (or chunk) with its id, following
// the stream's last sequence directly.
func (p *publisher) newMsg(subject, id string, data []byte) *nats.Msg {
	return &nats.Msg{Subject: subject, Data: data, Header: nats.Header{
		jetstream.MsgIDHeader:           {id},
		jetstream.ExpectedLastSeqHeader: {strconv.FormatUint(p.expected, 10)},
		bus.CaptureHeader:               {p.captureID},
	}}
}

// sendBatched publishes one message in the open atomic batch, opening one
// if there is none, and commits the batch with it when it ends the
// transaction or fills the batch. The server stages a batch's messages and
// stores all of them, consecutively, when the commit arrives, or none: a
// consumer never sees part of a transaction that fits one batch. A larger
// transaction is published as several consecutive batches.
//
// Only the first message of a batch carries Nats-Expected-Last-Sequence (the
// server refuses it on later ones); the server checks it at the commit, so
// the chain of expected sequences still runs from batch to batch, and a gap
// inside a batch (a lost message) makes the server drop the whole batch.
// Only the commit asks for an acknowledgement: it confirms every message of
// the batch, and every earlier one. The Nats-Msg-Id of every message is
// checked against the duplicate window at the commit too, where a repeat
// fails the whole batch instead of being dropped alone; capture then
// restarts and skips what the stream holds, as after any failed publish.
func (p *publisher) sendBatched(subject, id string, data []byte, last bool) error {
	if p.batch.id != "" && time.Since(p.batch.last) >= batchIdle {
		if err := p.endBatch(); err != nil {
			return err
		}
	}
	if p.batch.id == "" {
		p.batch = openBatch{id: nuid.Next()}
	}
	b := &p.batch
	b.n++
	b.bytes += int64(len(data))
	b.subject, b.last = subject, time.Now()
	msg := p.newMsg(subject, id, data)
	if b.n > 1 {
		msg.Header.Del(jetstream.ExpectedLastSeqHeader)
	}
	msg.Header.Set(batchIDHeader, b.id)
	msg.Header.Set(batchSeqHeader, strconv.Itoa(b.n))
	commit := last || b.n >= maxBatchMsgs || b.bytes >= maxBatchBytes
	if commit {
		msg.Header.Set(batchCommitHeader, "1")
		p.batch = openBatch{}
	}
	return p.send(msg, true, commit)
}

// endBatch commits the open batch, if any, with an end-of-batch message,
// which the server does not store.
func (p *publisher) endBatch() error {
	b := p.batch
	if b.id == "" {
		return nil
	}
	p.batch = openBatch{}
	return p.send(&nats.Msg{Subject: b.subject, Header: nats.Header{
		batchIDHeader:     {b.id},
		batchSeqHeader:    {strconv.Itoa(b.n + 1)},
		batchCommitHeader: {"eob"},
	}}, false, true)
}

// send publishes msg, which the stream stores as the message after the
// previous one unless it is not stored (an end-of-batch commit), asking
// for an acknowledgement when ack is set or, outside atomic batches, when
// enough went without one. It blocks while the window is full.
func (p *publisher) send(msg *nats.Msg, stored, ack bool) error {
	id := msg.Header.Get(jetstream.MsgIDHeader)
	if p.crashAfter > 0 && p.sent >= p.crashAfter {
		return errTestCrash
	}
	if err := p.checkLease(); err != nil {
		return err
	}
	p.sent++
	if p.window == nil {
		p.window = semaphore.NewWeighted(max(publishWindow, 2*int64(p.maxData)))
	}
	size := int64(len(msg.Data))
	// Never fails: the context does not end, and the acks loop keeps
	// releasing after an error (see acks).
	_ = p.window.Acquire(context.Background(), size)
	p.unackedMsgs++
	p.unackedBytes += size
	// The first message asks too: a server that refuses every message (a
	// full stream) then says why, instead of only that the next one does
	// not follow it. Inside an atomic batch only the commit is answered
	// with an acknowledgement, and it says why.
	if msg.Header.Get(batchIDHeader) == "" {
		ack = ack || p.sent == 1 || p.unackedMsgs >= ackEveryMsgs || p.unackedBytes >= ackEveryBytes
	}
	if !ack {
		if err := p.js.Conn().PublishMsg(msg); err != nil {
			return fmt.Errorf("publishing %s: %w", id, err)
		}
		p.expected++
		return nil
	}
	// The future keeps msg for retries: it must own its data.
	msg.Data = slices.Clone(msg.Data)
	// With the client's maximum of acknowledgements pending, wait for the
	// server (as long as for an acknowledgement) instead of failing after
	// the default 200ms: a server busy committing atomic batches answers
	// in bursts.
	fut, err := p.js.PublishMsgAsync(msg, jetstream.WithStallWait(ackStallWait))
	if err != nil {
		return fmt.Errorf("publishing %s: %w", id, err)
	}
	if stored {
		p.expected++
	}
	p.queue <- pending{fut: fut, size: p.unackedBytes}
	p.unackedMsgs, p.unackedBytes = 0, 0
	return nil
}

// boundary queues a checkpoint that becomes durable after every publish
// queued before it is acknowledged. A transaction's last event asks for an
// acknowledgement, so one covers every message before the boundary; were
// some not covered, the checkpoint is skipped: a later one follows.
func (p *publisher) boundary(cp bus.Checkpoint) {
	if p.unackedMsgs > 0 {
		return
	}
	cp.StreamSeq = p.expected
	p.queue <- pending{cp: &cp}
}

// acks waits for acknowledgements in publish order and saves the
// checkpoint of each completed transaction, at most every interval and
// once more when the queue is closed. It returns the first publish error.
func (p *publisher) acks(ctx context.Context, interval time.Duration) (err error) {
	defer func() {
		if err != nil {
			// Drain the rest so the reader is never blocked, but keep the
			// checkpoint where it is.
			go func() {
				for item := range p.queue {
					p.acked(item)
				}
			}()
		}
	}()
	var (
		latest *bus.Checkpoint
		saved  time.Time
	)
	flush := func() error {
		if latest == nil {
			return nil
		}
		if err := p.checkLease(); err != nil {
			return err
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		rev, err := bus.SaveCheckpoint(sctx, p.kv, *latest, p.cpRev)
		latest, saved = nil, time.Now()
		if errors.Is(err, bus.ErrCheckpointFenced) {
			return fmt.Errorf("%w: %w", ErrLeaseLost, err)
		}
		if err == nil {
			p.cpRev = rev
		}
		return err
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case item, ok := <-p.queue:
			if !ok {
				return flush()
			}
			if item.fut != nil {
				select {
				case <-item.fut.Ok():
					p.acked(item)
				case err := <-item.fut.Err():
					p.acked(item)
					h := item.fut.Msg().Header
					what := h.Get(jetstream.MsgIDHeader)
					if b := h.Get(batchIDHeader); b != "" {
						what = "batch " + b + " (ending with " + what + ")"
					}
					return fmt.Errorf("publish of %s not acknowledged: %w", what, err)
				}
				continue
			}
			latest = item.cp
			if time.Since(saved) >= interval {
				if err := flush(); err != nil {
					return err
				}
			}
		case <-tick.C:
			if err := flush(); err != nil {
				return err
			}
		}
	}
}

// checkLease waits while the lease that capture runs under has expired
// but may be renewed, and returns an error wrapping [ErrLeaseLost] once it
// is lost.
func (p *publisher) checkLease() error {
	if p.lease == nil {
		return nil
	}
	if err := p.lease.Wait(); err != nil {
		return fmt.Errorf("%w: %w", ErrLeaseLost, err)
	}
	return nil
}

// acked frees the window of the messages item's publish covered.
func (p *publisher) acked(item pending) {
	if item.fut != nil {
		p.window.Release(item.size)
	}
}
