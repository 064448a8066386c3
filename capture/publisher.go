package capture

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/semaphore"

	"github.com/databus/databus/sdk"
)

// StreamConfig configures the source's JetStream stream.
type StreamConfig struct {
	Replicas        int
	MaxAge          time.Duration
	MaxBytes        int64
	DuplicateWindow time.Duration
}

// Checkpoint is where capture resumes: the start of the first transaction
// not yet fully acknowledged by JetStream.
type Checkpoint struct {
	File   string `json:"file"`
	Offset uint32 `json:"offset"`
	GTID   string `json:"last_gtid,omitempty"`
	// GTIDSet is MariaDB's GTID position at the checkpoint (the last GTID
	// of each domain), with which capture resumes on another server.
	GTIDSet    string    `json:"gtid_set,omitempty"`
	ServerID   uint32    `json:"server_id"`
	ServerUUID string    `json:"server_uuid,omitempty"`
	StreamSeq  uint64    `json:"stream_seq"`
	Updated    time.Time `json:"updated"`
}

// CheckpointKey is the key of the checkpoint in the state bucket.
const CheckpointKey = "capture.checkpoint"

// StateBucket returns the name of the KV bucket that holds a source's
// capture state.
func StateBucket(source string) string { return sdk.StateBucket(source) }

// MsgID returns the deterministic Nats-Msg-Id of the event at pos.
func MsgID(pos sdk.Position) string {
	return strconv.FormatUint(uint64(pos.ServerID), 10) + ":" + pos.File + ":" +
		strconv.FormatUint(uint64(pos.Offset), 10) + ":" + strconv.Itoa(pos.Row)
}

// ensureStream creates or updates the source's stream and state bucket.
func ensureStream(ctx context.Context, js jetstream.JetStream, source string, sc StreamConfig) (jetstream.Stream, jetstream.KeyValue, error) {
	cfg := jetstream.StreamConfig{
		Name:        sdk.StreamName(source),
		Description: "databus change events of source " + source,
		Subjects:    []string{sdk.StreamSubjects(source)},
		Storage:     jetstream.FileStorage,
		Replicas:    sc.Replicas,
		MaxAge:      sc.MaxAge,
		MaxBytes:    sc.MaxBytes,
		Duplicates:  sc.DuplicateWindow,
		Discard:     jetstream.DiscardOld,
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = -1
	}
	s, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("creating stream %s: %w", cfg.Name, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      StateBucket(source),
		Description: "databus capture state of source " + source,
		History:     1,
		Replicas:    sc.Replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("creating state bucket %s: %w", StateBucket(source), err)
	}
	return s, kv, nil
}

// loadCheckpoint returns the saved checkpoint, or nil when there is none.
func loadCheckpoint(ctx context.Context, kv jetstream.KeyValue) (*Checkpoint, error) {
	e, err := kv.Get(ctx, CheckpointKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		return nil, fmt.Errorf("checkpoint in bucket %s is corrupt: %w", kv.Bucket(), err)
	}
	return &cp, nil
}

func saveCheckpoint(ctx context.Context, kv jetstream.KeyValue, cp Checkpoint) error {
	cp.Updated = time.Now().UTC()
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, CheckpointKey, b); err != nil {
		return fmt.Errorf("saving checkpoint %s:%d: %w", cp.File, cp.Offset, err)
	}
	return nil
}

var errTestCrash = errors.New("test crash")

// parseMsgID reverses [MsgID] (ignoring a chunk suffix "#i@attempt").
func parseMsgID(id string) (sdk.Position, error) {
	id, _, _ = strings.Cut(id, "#")
	parts := strings.Split(id, ":")
	if len(parts) < 4 {
		return sdk.Position{}, fmt.Errorf("message id %q is not server:file:offset:row", id)
	}
	n := len(parts)
	sid, err1 := strconv.ParseUint(parts[0], 10, 32)
	off, err2 := strconv.ParseUint(parts[n-2], 10, 32)
	row, err3 := strconv.Atoi(parts[n-1])
	if err := errors.Join(err1, err2, err3); err != nil {
		return sdk.Position{}, fmt.Errorf("message id %q: %w", id, err)
	}
	return sdk.Position{ServerID: uint32(sid), File: strings.Join(parts[1:n-2], ":"), Offset: uint32(off), Row: row}, nil
}

// lastPublished returns the position of the newest event in the stream and
// the stream's last sequence, or a nil position when the stream holds none.
// complete is false when the newest message is a chunk of an event whose
// other chunks were never published: that event must be published again.
func lastPublished(ctx context.Context, s jetstream.Stream) (pos *sdk.Position, seq uint64, complete bool, err error) {
	info, err := s.Info(ctx)
	if err != nil {
		return nil, 0, false, fmt.Errorf("reading stream info: %w", err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil, last, true, nil
	}
	m, err := s.GetMsg(ctx, last)
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, last, true, nil
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("reading stream message %d: %w", last, err)
	}
	if chunk := m.Header.Get(sdk.ChunkHeader); chunk != "" {
		p, err := parseMsgID(m.Header.Get(jetstream.MsgIDHeader))
		if err != nil {
			return nil, 0, false, fmt.Errorf("last stream message %d: %w", last, err)
		}
		i, n, err := sdk.ParseChunk(chunk)
		if err != nil {
			return nil, 0, false, fmt.Errorf("last stream message %d: %w", last, err)
		}
		return &p, last, i == n, nil
	}
	ev, err := sdk.DecodeEvent(m.Data)
	if err != nil {
		return nil, 0, false, fmt.Errorf("last stream message %d: %w", last, err)
	}
	return &ev.Position, last, true, nil
}

// pending is one entry of the in-order acknowledgement queue: a publish
// whose acknowledgement confirms it and every message sent since the
// previous such publish (size bytes in all), or a transaction boundary whose
// checkpoint becomes durable once everything before it is acknowledged.
type pending struct {
	fut  jetstream.PubAckFuture
	size int64
	cp   *Checkpoint
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
)

// publisher publishes events in order. Every message carries the stream
// sequence it expects to follow (Nats-Expected-Last-Sequence), so a lost or
// reordered publish can never leave a gap: the server rejects everything
// after it and capture restarts from the checkpoint. That chain also lets
// one acknowledgement vouch for every message before it: only the last
// message of a transaction, and every ackEveryMsgs-th, asks for one; the
// others are plain NATS publishes on the same connection, in order.
type publisher struct {
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	source string
	log    *slog.Logger
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
	// buf is reused for every event's JSON: NATS copies the message out
	// before a publish returns.
	buf []byte
	// crashAfter, in tests only, fails every publish after that many
	// messages.
	crashAfter, sent int
}

func (p *publisher) publish(o *outEvent) error {
	ev := &o.ev
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
	data, err := o.encode(p.buf[:0])
	if err != nil {
		return fmt.Errorf("encoding event at %s: %w", ev.Position, err)
	}
	if cap(data) <= maxReusedBuf {
		p.buf = data
	}
	subject, id := sdk.Subject(p.source, ev.Database, ev.Table, ev.Op), MsgID(ev.Position)
	if len(data) <= p.maxData {
		return p.send(subject, id, data, "", ev.Txn.Last)
	}
	// Larger than a NATS message: consecutive chunks on the same subject,
	// which the SDK reassembles (docs/events.md). Every chunk is
	// acknowledged: they are large, and a capture killed mid-event leaves
	// exactly the chunks the stream holds.
	// Chunk ids name the attempt (the stream sequence of its first chunk):
	// after a crash mid-event the chunks are published again and must not
	// be dropped as duplicates of the incomplete first attempt.
	n := (len(data) + p.maxData - 1) / p.maxData
	attempt := "@" + strconv.FormatUint(p.expected+1, 10)
	for i := 1; i <= n; i++ {
		part := data[(i-1)*p.maxData : min(i*p.maxData, len(data))]
		if err := p.send(subject, id+"#"+strconv.Itoa(i)+attempt, part, strconv.Itoa(i)+"/"+strconv.Itoa(n), true); err != nil {
			return err
		}
	}
	return nil
}

// send publishes one message that must follow the previous one directly,
// asking for an acknowledgement when ack is set or enough went without
// one. It blocks while the window is full.
func (p *publisher) send(subject, id string, data []byte, chunk string, ack bool) error {
	if p.crashAfter > 0 && p.sent >= p.crashAfter {
		return errTestCrash
	}
	p.sent++
	if p.window == nil {
		p.window = semaphore.NewWeighted(max(publishWindow, 2*int64(p.maxData)))
	}
	size := int64(len(data))
	// Never fails: the context does not end, and the acks loop keeps
	// releasing after an error (see acks).
	_ = p.window.Acquire(context.Background(), size)
	p.unackedMsgs++
	p.unackedBytes += size
	// The first message asks too: a server that refuses every message (a
	// full stream) then says why, instead of only that the next one does
	// not follow it.
	ack = ack || p.sent == 1 || p.unackedMsgs >= ackEveryMsgs || p.unackedBytes >= ackEveryBytes

	msg := &nats.Msg{Subject: subject, Data: data, Header: nats.Header{
		jetstream.MsgIDHeader:           {id},
		jetstream.ExpectedLastSeqHeader: {strconv.FormatUint(p.expected, 10)},
	}}
	if chunk != "" {
		msg.Header.Set(sdk.ChunkHeader, chunk)
	}
	if !ack {
		if err := p.js.Conn().PublishMsg(msg); err != nil {
			return fmt.Errorf("publishing %s: %w", id, err)
		}
		p.expected++
		return nil
	}
	// The future keeps msg for retries: it must own its data.
	msg.Data = slices.Clone(data)
	fut, err := p.js.PublishMsgAsync(msg)
	if err != nil {
		return fmt.Errorf("publishing %s: %w", id, err)
	}
	p.expected++
	p.queue <- pending{fut: fut, size: p.unackedBytes}
	p.unackedMsgs, p.unackedBytes = 0, 0
	return nil
}

// boundary queues a checkpoint that becomes durable after every publish
// queued before it is acknowledged. A transaction's last event asks for an
// acknowledgement, so one covers every message before the boundary; were
// some not covered, the checkpoint is skipped: a later one follows.
func (p *publisher) boundary(cp Checkpoint) {
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
		latest *Checkpoint
		saved  time.Time
	)
	flush := func() error {
		if latest == nil {
			return nil
		}
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		err := saveCheckpoint(sctx, p.kv, *latest)
		latest, saved = nil, time.Now()
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
					return fmt.Errorf("publish of %s not acknowledged: %w", item.fut.Msg().Header.Get(jetstream.MsgIDHeader), err)
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

// acked frees the window of the messages item's publish covered.
func (p *publisher) acked(item pending) {
	if item.fut != nil {
		p.window.Release(item.size)
	}
}
