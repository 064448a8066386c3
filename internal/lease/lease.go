package lease

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/databus/databus/internal/bus"
)

// ErrLost is returned by [Lease.Check] once the lease has expired or
// another node has taken it, and is the cause of the context [Elector.Run]
// gives the leader when that happens.
var ErrLost = errors.New("capture lease lost: another node may be capturing")

// DefaultTTL is how long a lease lasts without renewal.
const DefaultTTL = 3 * time.Second

// Record is the lease as stored in the key-value bucket (JSON). Each new
// holder raises Term; Released marks a lease given up at shutdown, which
// the next node may take at once.
type Record struct {
	Node     string `json:"node"`
	Instance string `json:"instance"`
	Term     uint64 `json:"term"`
	// TTL is the holder's lease duration: standbys wait that long without
	// a renewal before they take over.
	TTL      string    `json:"ttl"`
	Renewed  time.Time `json:"renewed"`
	Released bool      `json:"released,omitempty"`
}

// ReadFromLeader returns the lease record stored under key in bucket, or
// nil when there is none, as the bucket's stream leader has it: a direct
// get (kv.Get) may be answered by a replica that lags or hangs.
func ReadFromLeader(ctx context.Context, nc *nats.Conn, bucket, key string) (*Record, error) {
	value, _, err := bus.GetFromLeader(ctx, nc, bucket, key)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading lease %s: %w", key, err)
	}
	var r Record
	if err := json.Unmarshal(value, &r); err != nil {
		return nil, fmt.Errorf("lease %s in bucket %s is corrupt: %w", key, bucket, err)
	}
	return &r, nil
}

// Config configures an [Elector].
type Config struct {
	// Key is the lease's key in the bucket.
	Key string
	// Node names this node in the lease record (for status and logs).
	Node string
	// TTL is the lease duration; DefaultTTL when zero. The holder renews
	// every TTL/3; a standby takes over after seeing no renewal for TTL.
	TTL    time.Duration
	Logger *slog.Logger
	// OnChange, if set, is called with true when this node becomes the
	// leader and false when it stops being one.
	OnChange func(leading bool)
	// Conn, when set, is the connection over which the lease is read from
	// the bucket's stream leader (see [ReadFromLeader]); without it, from
	// any replica (kv.Get).
	Conn *nats.Conn
}

// Elector campaigns for a lease in a JetStream key-value bucket and runs
// the leader's work while it holds it.
//
// Safety rests on the bucket's compare-and-set: every write of the lease
// names the revision it replaces, so two nodes never both succeed from the
// same revision. A standby takes over only after the revision it sees has
// not changed for a whole TTL by its own clock; the holder counts its TTL
// from before it sent the renewal that the standby saw, so its lease ends
// (see [Lease.Check]) before any standby can take over. Clocks are never
// compared between nodes, only their rates are assumed alike.
type Elector struct {
	cfg      Config
	kv       jetstream.KeyValue
	instance string
	log      *slog.Logger
}

// New returns an elector for the lease cfg.Key in kv.
func New(cfg Config, kv jetstream.KeyValue) *Elector {
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Elector{cfg: cfg, kv: kv, instance: nuid.Next(), log: log}
}

// Lease is a held lease. Its methods are safe for concurrent use.
type Lease struct {
	term  uint64
	node  string
	begun time.Time // monotonic base of until
	until atomic.Int64
	rev   uint64        // owned by the holding goroutine
	ended chan struct{} // closed once the lease is lost for good
}

// Term returns the lease's term: higher for every new holder.
func (l *Lease) Term() uint64 { return l.term }

// Node returns the holder's node name.
func (l *Lease) Node() string { return l.node }

// Check returns nil while the lease is held and [ErrLost] once it has
// expired by this node's clock or was lost to another node.
func (l *Lease) Check() error {
	if time.Since(l.begun) >= time.Duration(l.until.Load()) {
		return ErrLost
	}
	return nil
}

// Wait returns nil at once while the lease is held. Once it has expired
// by this node's clock, it waits: the holder keeps renewing it, and a
// renewal still succeeds when no other node took the lease meanwhile (the
// bucket did not answer for a while, as during a leader election in the
// NATS cluster). It returns [ErrLost] once the lease is lost for good. A
// leader calls it before every write that only the leader may make.
func (l *Lease) Wait() error {
	for {
		if l.Check() == nil {
			return nil
		}
		select {
		case <-l.ended:
			return ErrLost
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// extend makes the lease valid until sent+ttl, sent being when the
// renewal that succeeded was sent.
func (l *Lease) extend(sent time.Time, ttl time.Duration) {
	l.until.Store(int64(sent.Sub(l.begun) + ttl))
}

// expire ends the lease now.
func (l *Lease) expire() { l.until.Store(0) }

// Run campaigns until this node holds the lease, runs lead with a context
// that ends when the lease is lost to another node (its cause is
// [ErrLost]), and
// campaigns again when lead returns because of that. Run returns nil when
// ctx ends, and lead's error when lead fails while still leading; in both
// cases a lease still held is released, so a standby takes over at once.
func (e *Elector) Run(ctx context.Context, lead func(ctx context.Context, l *Lease) error) error {
	for {
		l, err := e.acquire(ctx)
		if err != nil {
			return nil // ctx ended
		}
		e.log.Info("leading: this node captures", "term", l.term, "node", e.cfg.Node)
		if e.cfg.OnChange != nil {
			e.cfg.OnChange(true)
		}
		lctx, cancel := context.WithCancelCause(ctx)
		var wg sync.WaitGroup
		wg.Go(func() {
			e.hold(lctx, l)
			cancel(ErrLost)
		})
		err = lead(lctx, l)
		lost := errors.Is(context.Cause(lctx), ErrLost) || errors.Is(err, ErrLost)
		cancel(nil)
		wg.Wait()
		if e.cfg.OnChange != nil {
			e.cfg.OnChange(false)
		}
		if !lost || ctx.Err() != nil {
			e.release(l)
		}
		switch {
		case ctx.Err() != nil:
			return nil
		case lost:
			e.log.Warn("lost the capture lease: standing by", "term", l.term)
		default:
			return err
		}
	}
}

// acquire waits until this node holds the lease, or ctx ends.
func (e *Elector) acquire(ctx context.Context) (*Lease, error) {
	poll := min(max(e.cfg.TTL/12, 50*time.Millisecond), 250*time.Millisecond)
	var (
		seenRev  uint64
		seenAt   time.Time
		reported string
	)
	for {
		l, holder, err := e.try(ctx, &seenRev, &seenAt)
		switch {
		case l != nil:
			return l, nil
		case err != nil && ctx.Err() == nil:
			if msg := err.Error(); msg != reported {
				e.log.Warn("campaigning for the capture lease", "err", err)
				reported = msg
			}
		case holder != "" && holder != reported:
			e.log.Info("standing by: another node captures", "leader", holder)
			reported = holder
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(poll):
		}
	}
}

// try makes one attempt at the lease. seenRev and seenAt remember the
// revision last seen and since when (by this node's clock) it has not
// changed. It returns the lease when taken, or the holder's node.
func (e *Elector) try(ctx context.Context, seenRev *uint64, seenAt *time.Time) (*Lease, string, error) {
	rctx, cancel := context.WithTimeout(ctx, e.cfg.TTL)
	defer cancel()
	value, rev, err := e.get(rctx)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return e.take(rctx, 0, 1)
	}
	if err != nil {
		// Unable to read, this node cannot tell whether the holder
		// renews: the bucket may be electing a leader, when the holder
		// cannot renew either. The holder gets a whole TTL again from
		// the next read.
		*seenRev = 0
		return nil, "", fmt.Errorf("reading the lease: %w", err)
	}
	var r Record
	if err := json.Unmarshal(value, &r); err != nil {
		// Not a lease this version wrote: wait it out like any other.
		r = Record{Node: "(unreadable lease)"}
	}
	if rev != *seenRev {
		*seenRev, *seenAt = rev, time.Now()
	}
	ttl, err := time.ParseDuration(r.TTL)
	if err != nil || ttl <= 0 {
		ttl = e.cfg.TTL
	}
	if !r.Released && time.Since(*seenAt) < ttl {
		return nil, r.Node, nil
	}
	l, holder, err := e.take(rctx, rev, r.Term+1)
	if err != nil {
		// The bucket takes no writes now: neither could the holder renew.
		// It gets a whole TTL again once the bucket answers, and does not
		// lose the lease to a standby that was merely faster.
		*seenRev = 0
	}
	return l, holder, err
}

// get reads the lease's value and revision.
func (e *Elector) get(ctx context.Context) ([]byte, uint64, error) {
	if e.cfg.Conn != nil {
		return bus.GetFromLeader(ctx, e.cfg.Conn, e.kv.Bucket(), e.cfg.Key)
	}
	entry, err := e.kv.Get(ctx, e.cfg.Key)
	if err != nil {
		return nil, 0, err
	}
	return entry.Value(), entry.Revision(), nil
}

// take writes a lease of term over revision rev (0: the key must not
// exist). Losing the race to another node is not an error.
func (e *Elector) take(ctx context.Context, rev, term uint64) (*Lease, string, error) {
	l := &Lease{term: term, node: e.cfg.Node, begun: time.Now(), ended: make(chan struct{})}
	sent := time.Now()
	var err error
	if rev == 0 {
		l.rev, err = e.kv.Create(ctx, e.cfg.Key, e.record(term, false))
	} else {
		l.rev, err = e.kv.Update(ctx, e.cfg.Key, e.record(term, false), rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return nil, "", nil // another node was faster
	}
	if err != nil {
		return nil, "", fmt.Errorf("taking the lease: %w", err)
	}
	l.extend(sent, e.cfg.TTL)
	return l, "", nil
}

func (e *Elector) record(term uint64, released bool) []byte {
	b, _ := json.Marshal(Record{Node: e.cfg.Node, Instance: e.instance, Term: term, TTL: e.cfg.TTL.String(), Renewed: time.Now().UTC(), Released: released})
	return b
}

// hold renews l every TTL/3 until ctx ends or another node took it; then
// it expires l for good. A lease that expired because the bucket did not
// answer in time is renewed as soon as it answers again, if no other node
// took it meanwhile (the compare-and-set says so).
func (e *Elector) hold(ctx context.Context, l *Lease) {
	defer close(l.ended)
	defer l.expire()
	every := e.cfg.TTL / 3
	t := time.NewTimer(every)
	defer t.Stop()
	paused := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if l.Check() != nil && !paused {
			e.log.Warn("the capture lease expired before it could be renewed: capture pauses until it is renewed or another node takes it", "term", l.term)
			paused = true
		}
		sent := time.Now()
		wait := time.Duration(l.until.Load()) - sent.Sub(l.begun)
		if wait <= 0 {
			wait = every
		}
		rctx, cancel := context.WithTimeout(ctx, wait)
		rev, err := e.kv.Update(rctx, e.cfg.Key, e.record(l.term, false), l.rev)
		cancel()
		switch {
		case err == nil:
			l.rev = rev
			l.extend(sent, e.cfg.TTL)
			t.Reset(every)
			if paused {
				e.log.Info("renewed the capture lease: capture goes on", "term", l.term)
				paused = false
			}
		case errors.Is(err, jetstream.ErrKeyRevisionMismatch):
			e.log.Warn("another node took the capture lease", "term", l.term)
			return
		default:
			if ctx.Err() != nil {
				return
			}
			if !paused {
				e.log.Warn("renewing the capture lease", "err", err, "term", l.term)
			}
			t.Reset(every / 10) // try again soon: the lease runs out
		}
	}
}

// release gives the lease up, if this node still holds it, so that a
// standby takes over without waiting for it to expire.
func (e *Elector) release(l *Lease) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if _, err := e.kv.Update(ctx, e.cfg.Key, e.record(l.term, true), l.rev); err != nil {
		e.log.Debug("releasing the capture lease", "err", err)
	}
}
