package sdk

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// maxAckPending is how many events a consumer may hold unacknowledged.
const maxAckPending = 10_000

// Consumer reads events of one source. It is safe to call [Consumer.Close]
// from another goroutine; Next, Events and Handle are meant for one
// goroutine.
type Consumer struct {
	nc      *nats.Conn
	ownConn bool
	// cons is set on the goroutine calling Next (or at Connect), under
	// consMu, which readers on other goroutines ([Consumer.TxnEnded]) take.
	consMu  sync.Mutex
	cons    jetstream.Consumer
	iter    jetstream.MessagesContext
	durable bool
	// lastSeq is the stream sequence of the newest message handed to the
	// application; redeliveries at or below it are dropped.
	lastSeq uint64
	// acked is the newest stream sequence the application acknowledged.
	acked atomic.Uint64
	// stream and filtered serve [Consumer.NextTxn].
	stream   jetstream.Stream
	source   string
	filtered bool
	maxTxn   int
	// pending is a message NextTxn read ahead of its transaction.
	pending *Message
	// ccfg is the consumer's configuration, to create it again after the
	// acknowledged floor it had when bound (or the last acknowledgement).
	ccfg  jetstream.ConsumerConfig
	floor uint64
	// reconnects is the connection's reconnect count when delivery
	// started.
	reconnects uint64
	// delivered is the consumer (delivery) sequence of the last message
	// received, or the consumer's last delivery when delivery started.
	delivered uint64
	// chunks collects the parts of an event split over several messages.
	chunks []byte
	nChunk int
	// snap hands out snapshot rows before the stream's messages.
	snap *snapLoader
	// create creates the JetStream consumer unless it exists.
	create func(context.Context) error
	// next is the stream sequence the consumer must see next, 0 until
	// known; ahead holds messages received and checked for removed events
	// before them, not handed out yet, and aheadErr an error met while
	// reading them. lostAt is the removal found after the messages in
	// ahead; lost, once set, is returned by every later call (see gap.go).
	next     uint64
	ahead    []arrival
	aheadErr error
	lostAt   *EventsLostError
	lost     error
	// kv is the source's state bucket, where a durable consumer records
	// what it acknowledged (savedAck, at ackSavedAt); ackMu guards the
	// three.
	ackMu      sync.Mutex
	kv         jetstream.KeyValue
	savedAck   uint64
	ackSavedAt time.Time

	closeOnce sync.Once
	closed    atomic.Bool
}

// Message is one delivered event with its acknowledgement handle.
type Message struct {
	// Event is the decoded change.
	Event *Event
	// Subject is the subject the event was published to.
	Subject string
	// Sequence is the event's sequence number in the source's stream.
	Sequence uint64
	// Delivered counts deliveries of this message, 1 the first time.
	Delivered uint64
	// Pending is how many messages of the stream that match the
	// consumer's filter follow this one, as the server counted when it
	// delivered it: 0 when the consumer has caught up. Snapshot events
	// have none.
	Pending uint64
	msg     jetstream.Msg
	c       *Consumer
	// Snapshot is set on the events of a snapshot, which have no stream
	// sequence: the loading position just after this event. Store it in
	// the same database transaction as the event's effects and return it
	// from [Config.ResumeSnapshot] to continue right after it.
	Snapshot *SnapshotProgress
	snap     *snapLoader
}

// Ack tells the server the application is done with the message and with
// every message delivered before it (acknowledgements are cumulative); a
// durable consumer restarted later resumes after it. Ack does not wait for
// the server: an acknowledgement lost in a crash means the message is
// delivered again (at-least-once). [Message.AckSync] waits.
func (m *Message) Ack(ctx context.Context) error {
	if m.snap != nil {
		m.snap.ack(*m.Snapshot)
		return nil
	}
	if err := m.msg.Ack(); err != nil {
		return fmt.Errorf("acknowledging stream sequence %d: %w", m.Sequence, err)
	}
	m.acked()
	return nil
}

// acked records that m and everything before it are acknowledged.
func (m *Message) acked() {
	for {
		old := m.c.acked.Load()
		if m.Sequence <= old || m.c.acked.CompareAndSwap(old, m.Sequence) {
			return
		}
	}
}

// AckSync is [Message.Ack] that waits until the server confirms.
func (m *Message) AckSync(ctx context.Context) error {
	if m.snap != nil {
		m.snap.ack(*m.Snapshot)
		return m.snap.save(ctx, true)
	}
	if err := m.msg.DoubleAck(ctx); err != nil {
		return fmt.Errorf("acknowledging stream sequence %d: %w", m.Sequence, err)
	}
	m.acked()
	return nil
}

// Nak asks the server to deliver the message again, after delay.
func (m *Message) Nak(delay time.Duration) error {
	if m.snap != nil {
		return errors.New("a snapshot row cannot be delivered again on its own: close the consumer without acknowledging it and connect again")
	}
	return m.msg.NakWithDelay(delay)
}

// Connect binds a consumer to the stream of cfg.Source, creating the durable
// consumer cfg.Name when it does not exist. It returns [ErrNoStream] when the
// source has never been captured.
func Connect(ctx context.Context, cfg Config) (*Consumer, error) {
	filters, resumeAt, err := cfg.prepare(ctx)
	if err != nil {
		return nil, err
	}
	c := &Consumer{nc: cfg.Conn, durable: cfg.Name != "", filtered: len(cfg.Databases)+len(cfg.Tables) > 0, maxTxn: cfg.MaxTxnEvents, source: cfg.Source}
	if err := c.open(ctx, cfg, filters, resumeAt); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// prepare fills in cfg's defaults, checks it and asks the application
// where it stands (Resume). It returns the consumer's filter subjects and
// the sequence the application's position resumes at, 0 for none.
func (cfg *Config) prepare(ctx context.Context) (filters []string, resumeAt uint64, err error) {
	if cfg.Source == "" {
		cfg.Source = "default"
	}
	if cfg.AckWait == 0 {
		cfg.AckWait = 30 * time.Second
	}
	if filters, err = filterSubjects(cfg.Source, cfg.Databases, cfg.Tables); err != nil {
		return nil, 0, err
	}
	switch {
	case cfg.MaxTxnEvents == 0:
		cfg.MaxTxnEvents = 5000
	case cfg.MaxTxnEvents < 0 || cfg.MaxTxnEvents > maxAckPending:
		return nil, 0, fmt.Errorf("MaxTxnEvents %d: want 1 to %d", cfg.MaxTxnEvents, maxAckPending)
	}
	if cfg.Resume != nil {
		seq, err := cfg.Resume(ctx)
		if err != nil {
			return nil, 0, fmt.Errorf("reading the application's position (Resume): %w", err)
		}
		if seq > 0 {
			cfg.Start, resumeAt = StartAtSequence(seq+1), seq+1
		}
	}
	return filters, resumeAt, nil
}

// open connects (unless given a connection), finds the stream, prepares
// the start point and binds or creates the server-side consumer.
func (c *Consumer) open(ctx context.Context, cfg Config, filters []string, resumeAt uint64) error {
	if c.nc == nil {
		url := cfg.URL
		if url == "" {
			url = nats.DefaultURL
		}
		// A server that hangs (frozen, partitioned) is left for another
		// of the URL's within 15s, not after nats.go's default of 4
		// minutes.
		opts := append([]nats.Option{nats.Name("databus-sdk"), nats.MaxReconnects(-1), nats.PingInterval(5 * time.Second), nats.MaxPingsOutstanding(3)},
			cfg.Options...)
		if cfg.TLS != nil {
			opts = append(opts, nats.Secure(cfg.TLS))
		}
		nc, err := nats.Connect(url, opts...)
		if err != nil {
			return fmt.Errorf("connecting to NATS at %s: %w", RedactURL(url), err)
		}
		c.nc, c.ownConn = nc, true
	}
	js, err := jetstream.New(c.nc)
	if err != nil {
		return fmt.Errorf("opening JetStream: %w", err)
	}
	stream := StreamName(cfg.Source)
	s, err := js.Stream(ctx, stream)
	if err != nil {
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return fmt.Errorf("%w: stream %s (is `databus run` capturing source %q?)", ErrNoStream, stream, cfg.Source)
		}
		return fmt.Errorf("looking up stream %s: %w", stream, err)
	}
	c.stream = s
	if c.durable {
		c.kv, _ = js.KeyValue(ctx, StateBucket(cfg.Source)) // without it, resume after the server's floor
	}
	c.ccfg = jetstream.ConsumerConfig{
		Durable:        cfg.Name,
		AckPolicy:      jetstream.AckAllPolicy, // an Ack covers every event before it
		AckWait:        cfg.AckWait,
		MaxAckPending:  maxAckPending,
		FilterSubjects: filters,
	}
	if !c.durable {
		c.ccfg.InactiveThreshold = time.Minute
	}
	if err := c.startAt(ctx, js, cfg); err != nil {
		return err
	}
	if c.durable {
		if err := c.bindDurable(ctx, cfg.Name, filters, resumeAt); err != nil {
			return err
		}
	}
	ccfg := c.ccfg
	c.create = func(ctx context.Context) error {
		if c.cons != nil {
			return nil
		}
		cons, err := s.CreateOrUpdateConsumer(ctx, ccfg)
		if err != nil {
			return fmt.Errorf("creating consumer %q on %s: %w", cfg.Name, stream, err)
		}
		c.setCons(cons)
		return nil
	}
	// An ephemeral consumer is created once its snapshot is loaded: the
	// server would delete it as inactive during a long load.
	if c.snap == nil || c.durable {
		if err := c.create(ctx); err != nil {
			return err
		}
	}
	if c.snap == nil { // else once the snapshot is loaded
		if err := c.checkStart(ctx); err != nil {
			return err
		}
		return c.startDelivery(ctx)
	}
	return nil
}

// Next blocks until the next event arrives, ctx ends, or the consumer is
// closed ([ErrClosed]).
func (c *Consumer) Next(ctx context.Context) (*Message, error) {
	if c.snap != nil {
		m, err := c.nextSnapshotRow(ctx)
		if m != nil || err != nil {
			return m, err
		}
	}
	c.saveAcked(ctx, false)
	for {
		m, meta, err := c.receive(ctx)
		if err != nil {
			if errors.Is(err, ErrEventsLost) {
				return nil, err
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) || c.closed.Load() {
				return nil, ErrClosed
			}
			if ctxErr := ctx.Err(); ctxErr != nil {
				return nil, ctxErr
			}
			if lostDelivery(err) {
				if err := c.restartDelivery(ctx, err); err != nil {
					return nil, err
				}
				continue
			}
			return nil, fmt.Errorf("receiving event: %w", err)
		}
		if n := c.nc.Stats().Reconnects; n != c.reconnects {
			// Messages may have been lost in flight: deliver again from
			// the last acknowledged event (this one included).
			if err := c.restartDelivery(ctx, errReconnected); err != nil {
				return nil, err
			}
			continue
		}
		if d := meta.Sequence.Consumer; d != c.delivered+1 {
			// The server delivered messages that never arrived (lost
			// between servers of a cluster, without a reconnect of this
			// connection): deliver again from the last acknowledged event.
			if err := c.restartDelivery(ctx, fmt.Errorf("%w: deliveries %d to %d", errLostInFlight, c.delivered+1, d-1)); err != nil {
				return nil, err
			}
			continue
		}
		c.delivered = meta.Sequence.Consumer
		if meta.Sequence.Stream <= c.lastSeq {
			// A redelivery of an event already handed to the application:
			// its acknowledgement (cumulative) covers it, or already did
			// and was lost, in which case it is sent again.
			if meta.Sequence.Stream <= c.acked.Load() {
				_ = m.Ack()
			}
			continue
		}
		data := m.Data()
		if h := m.Headers().Get(ChunkHeader); h != "" {
			i, n, err := ParseChunk(h)
			if err != nil {
				return nil, fmt.Errorf("stream sequence %d: %w", meta.Sequence.Stream, err)
			}
			if i == 1 {
				c.chunks, c.nChunk = c.chunks[:0], 0 // also restarts a sequence cut short by a capture crash
			}
			if i != c.nChunk+1 {
				continue // a chunk of a sequence whose start this consumer did not see
			}
			c.chunks, c.nChunk = append(c.chunks, data...), i
			if i < n {
				continue
			}
			data, c.chunks, c.nChunk = c.chunks, nil, 0
		}
		ev, err := DecodeEvent(data)
		if err != nil {
			return nil, fmt.Errorf("stream sequence %d on %s: %w", meta.Sequence.Stream, m.Subject(), err)
		}
		c.lastSeq = meta.Sequence.Stream
		return &Message{
			Event:     ev,
			Subject:   m.Subject(),
			Sequence:  meta.Sequence.Stream,
			Delivered: meta.NumDelivered,
			Pending:   meta.NumPending,
			msg:       m,
			c:         c,
		}, nil
	}
}

// nextSnapshotRow returns the next snapshot event, or nil when the
// snapshot is loaded (and the consumer moves on to the stream).
func (c *Consumer) nextSnapshotRow(ctx context.Context) (*Message, error) {
	if c.closed.Load() {
		return nil, ErrClosed
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := c.snap.save(ctx, false); err != nil {
		return nil, err
	}
	ev, at, err := c.snap.row(ctx)
	if err != nil {
		return nil, err
	}
	if ev != nil {
		return &Message{Event: ev, Subject: Subject(ev.Source, ev.Database, ev.Table, ev.Op), Delivered: 1, snap: c.snap, Snapshot: &at}, nil
	}
	if err := c.snap.finish(ctx); err != nil {
		return nil, err
	}
	c.snap = nil
	return nil, c.startDelivery(ctx)
}

// Events returns an iterator over messages; it ends when ctx ends or the
// consumer is closed, and yields any other error once before ending.
func (c *Consumer) Events(ctx context.Context) iter.Seq2[*Message, error] {
	return func(yield func(*Message, error) bool) {
		for {
			m, err := c.Next(ctx)
			if err != nil {
				if errors.Is(err, ErrClosed) || ctx.Err() != nil {
					return
				}
				yield(nil, err)
				return
			}
			if !yield(m, nil) {
				return
			}
		}
	}
}

// Handle calls h for each event until ctx ends, the consumer is closed or h
// fails. A nil return from h acknowledges the event; an error stops Handle
// and is returned, leaving the event unacknowledged so that it is delivered
// again.
func (c *Consumer) Handle(ctx context.Context, h func(context.Context, *Event) error) error {
	for {
		m, err := c.Next(ctx)
		if err != nil {
			if errors.Is(err, ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := h(ctx, m.Event); err != nil {
			return fmt.Errorf("handling stream sequence %d: %w", m.Sequence, err)
		}
		if err := m.Ack(ctx); err != nil {
			return err
		}
	}
}

// Close stops delivery and closes the connection the consumer opened. It is
// safe to call more than once.
func (c *Consumer) Close() {
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		if c.snap != nil {
			_ = c.snap.save(ctx, true)
			c.snap.stop()
		}
		c.saveAcked(ctx, true)
		cancel()
		if c.iter != nil {
			c.iter.Stop()
		}
		switch {
		case c.ownConn && c.nc != nil:
			_ = c.nc.Drain() // sends pending acknowledgements first
		case c.nc != nil:
			_ = c.nc.FlushTimeout(5 * time.Second)
		}
	})
}
