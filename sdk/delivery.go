package sdk

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startAt sets the consumer's deliver policy from cfg.Start; a start at a
// snapshot prepares its loader, and the stream follows the snapshot.
func (c *Consumer) startAt(ctx context.Context, js jetstream.JetStream, cfg Config) error {
	switch cfg.Start.kind {
	case kindBeginning, kindNow:
		// The beginning and now are pinned to sequences, so that events
		// retention removes before the first delivery are noticed too.
		st, err := c.streamState(ctx)
		if err != nil {
			return err
		}
		c.next = st.LastSeq + 1
		if cfg.Start.kind == kindBeginning {
			c.next = max(1, min(st.FirstSeq, c.next))
		}
		c.ccfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		c.ccfg.OptStartSeq = c.next
	case kindSequence:
		c.ccfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		c.ccfg.OptStartSeq = cfg.Start.seq
		c.next = cfg.Start.seq
	case kindTime, kindGTID, kindPosition:
		if c.durable {
			if _, err := c.stream.Consumer(ctx, cfg.Name); err == nil {
				return nil // it resumes where it stopped (bindDurable)
			}
		}
		seq, err := c.seekStart(ctx, cfg.Start)
		if err != nil {
			return err
		}
		c.ccfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		c.ccfg.OptStartSeq = seq
		c.next = seq
	case kindSnapshot:
		keep := func(db, table string) bool {
			return (len(cfg.Databases) == 0 && len(cfg.Tables) == 0) || slices.Contains(cfg.Databases, db) || slices.Contains(cfg.Tables, db+"."+table)
		}
		l, seq, done, err := startSnapshot(ctx, js, c.stream, cfg, keep)
		if err != nil {
			return err
		}
		if !done {
			c.snap = l
		}
		c.ccfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
		c.ccfg.OptStartSeq = seq
		c.next = seq
	}
	return nil
}

// bindDurable binds the durable consumer name when it exists and resumes
// it after its last acknowledged event, or deletes it when the
// application's own position (resumeAt) decides where to start.
func (c *Consumer) bindDurable(ctx context.Context, name string, filters []string, resumeAt uint64) error {
	existing, err := c.stream.Consumer(ctx, name)
	switch {
	case err == nil && resumeAt > 0:
		// The application's own position wins over the server's.
		if err := c.stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return fmt.Errorf("replacing consumer %s: %w", name, err)
		}
	case err == nil:
		cons, floor, err := resume(ctx, c.stream, existing, filters)
		if err != nil {
			return fmt.Errorf("resuming consumer %s: %w", name, err)
		}
		c.setCons(cons)
		if floor = c.durableFloor(ctx, floor); floor > 0 {
			c.next = floor + 1
		}
	case !errors.Is(err, jetstream.ErrConsumerNotFound):
		return fmt.Errorf("looking up consumer %s: %w", name, err)
	}
	return nil
}

func (c *Consumer) startDelivery(ctx context.Context) error {
	if err := c.create(ctx); err != nil {
		return err
	}
	c.reconnects, c.delivered = c.nc.Stats().Reconnects, 0
	if info := c.cons.CachedInfo(); info != nil {
		// The next delivery follows the consumer's last one.
		c.floor, c.delivered = max(c.floor, info.AckFloor.Stream), info.Delivered.Consumer
	}
	// Bound what the server pushes ahead by bytes, not count: a count of
	// large events (or chunks of one) could exceed the server's per-client
	// pending limit and get the connection closed as a slow consumer.
	var err error
	c.iter, err = c.cons.Messages(jetstream.PullMaxBytes(max(16<<20, 2*int(c.nc.MaxPayload()))))
	if err != nil {
		return fmt.Errorf("starting delivery: %w", err)
	}
	return nil
}

var (
	errReconnected  = errors.New("reconnected to NATS")
	errLostInFlight = errors.New("messages the server delivered did not arrive")
)

// lostDelivery reports whether err means the server stopped delivering to
// this consumer (a NATS restart or failover, the consumer deleted) rather
// than a problem with the events.
func lostDelivery(err error) bool {
	return errors.Is(err, jetstream.ErrNoHeartbeat) || errors.Is(err, jetstream.ErrConsumerDeleted) ||
		errors.Is(err, jetstream.ErrConsumerNotFound) || errors.Is(err, nats.ErrDisconnected) ||
		errors.Is(err, jetstream.ErrServerShutdown)
}

// restartDelivery binds the consumer again after the server stopped
// delivering to it, retrying with backoff until it succeeds or ctx ends.
// A consumer the server lost is created again after the last acknowledged
// event; events handed over since are skipped when they come again.
func (c *Consumer) restartDelivery(ctx context.Context, cause error) error {
	c.iter.Stop()
	clear(c.ahead)
	// A removal found after the messages read ahead is found again
	// (c.next is unchanged), once those messages come again.
	c.ahead, c.aheadErr, c.lostAt = c.ahead[:0], nil, nil
	backoff := 250 * time.Millisecond
	for {
		err := c.rebind(ctx)
		if err == nil {
			if err = c.startDelivery(ctx); err == nil {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("receiving event: %w (binding the consumer again: %w)", cause, err)
		case <-time.After(backoff):
		}
		if c.closed.Load() {
			return ErrClosed
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// rebind replaces the server's consumer with one that starts right after
// the last acknowledged event. After a reconnect the server's record of
// what it delivered cannot be trusted: messages in flight when the
// connection broke count as delivered, and a cumulative acknowledgement of
// a later event would cover them without the application having seen them.
func (c *Consumer) rebind(ctx context.Context) error {
	floor := max(c.acked.Load(), c.floor)
	name := c.ccfg.Durable
	if !c.durable && c.cons != nil {
		name = c.cons.CachedInfo().Name
	}
	if name != "" {
		if old, err := c.stream.Consumer(ctx, name); err == nil {
			if info, err := old.Info(ctx); err == nil {
				floor = max(floor, info.AckFloor.Stream)
			}
		}
		if err := c.stream.DeleteConsumer(ctx, name); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return err
		}
	}
	cfg := c.ccfg
	cfg.DeliverPolicy, cfg.OptStartSeq = jetstream.DeliverByStartSequencePolicy, floor+1
	cons, err := c.stream.CreateOrUpdateConsumer(ctx, cfg)
	if err != nil {
		return err
	}
	c.setCons(cons)
	return nil
}

// setCons replaces the server-side consumer that delivers.
func (c *Consumer) setCons(cons jetstream.Consumer) {
	c.consMu.Lock()
	defer c.consMu.Unlock()
	c.cons = cons
}

// resume prepares an existing durable consumer for a new run. Events that
// an earlier run received but did not acknowledge would come back only
// after their ack wait, behind newer events; to keep commit order the
// consumer is recreated to start right after its acknowledged floor
// (acknowledgements are cumulative, so the floor is exact). Changed filters
// are applied the same way.
func resume(ctx context.Context, s jetstream.Stream, existing jetstream.Consumer, filters []string) (jetstream.Consumer, uint64, error) {
	info, err := existing.Info(ctx)
	if err != nil {
		return nil, 0, err
	}
	floor := info.AckFloor.Stream
	if info.NumAckPending == 0 && slices.Equal(normalizeFilters(info.Config), filters) && info.Config.AckPolicy == jetstream.AckAllPolicy {
		return existing, floor, nil
	}
	cfg := info.Config
	cfg.FilterSubject = ""
	cfg.FilterSubjects = filters
	cfg.DeliverPolicy = jetstream.DeliverByStartSequencePolicy
	cfg.OptStartSeq = info.AckFloor.Stream + 1
	cfg.OptStartTime = nil
	if err := s.DeleteConsumer(ctx, cfg.Durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
		return nil, 0, err
	}
	cons, err := s.CreateConsumer(ctx, cfg)
	return cons, floor, err
}

// LastSequence returns the sequence of the newest event in the stream of
// source (0 when it is empty), to pin a "now" start point.
func LastSequence(ctx context.Context, nc *nats.Conn, source string) (uint64, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return 0, fmt.Errorf("opening JetStream: %w", err)
	}
	s, err := js.Stream(ctx, StreamName(source))
	if errors.Is(err, jetstream.ErrStreamNotFound) {
		return 0, fmt.Errorf("%w: stream %s (is `databus run` capturing source %q?)", ErrNoStream, StreamName(source), source)
	}
	if err != nil {
		return 0, fmt.Errorf("looking up stream %s: %w", StreamName(source), err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading stream %s: %w", StreamName(source), err)
	}
	return info.State.LastSeq, nil
}

func normalizeFilters(cfg jetstream.ConsumerConfig) []string {
	if cfg.FilterSubject != "" {
		return []string{cfg.FilterSubject}
	}
	return cfg.FilterSubjects
}

// filterSubjects turns database and table filters into non-overlapping
// subject filters, sorted. No filters means every event of the stream.
func filterSubjects(source string, dbs, tables []string) ([]string, error) {
	if len(dbs) == 0 && len(tables) == 0 {
		return []string{EventSubjects(source)}, nil
	}
	var out []string
	for _, db := range dbs {
		if db == "" {
			return nil, errors.New("database filter: empty database name")
		}
		out = append(out, FilterSubject(source, db, "", ""))
	}
	for _, t := range tables {
		db, table, ok := strings.Cut(t, ".")
		if !ok || db == "" || table == "" {
			return nil, fmt.Errorf("table filter %q: want db.table", t)
		}
		if slices.Contains(dbs, db) {
			continue // already covered by the database filter
		}
		out = append(out, FilterSubject(source, db, table, ""))
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}
