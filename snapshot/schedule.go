package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/sdk"
)

// Schedule takes the snapshots of a running capture: a first one when the
// source has none (tried again with backoff until one succeeds), one every
// Interval, and one each time Recovered receives (capture resumed from a
// checkpoint it could not follow, leaving a gap that consumers can only
// cross with a new snapshot). A later snapshot that fails is logged and
// tried again at the next occasion; capture goes on. How the last attempt
// went is kept under bus.SnapshotAttemptKey for `databus status`.
type Schedule struct {
	Config  Config
	Options Options
	// OnStart takes a snapshot at start when the source has no sound one.
	OnStart bool
	// Interval is the time between snapshots; 0 takes none on a timer.
	Interval  time.Duration
	Recovered <-chan struct{}
	Logger    *slog.Logger
	// FirstRetry is the first wait before the first snapshot is tried
	// again; it doubles up to MaxRetry. 1 s and 1 minute when zero.
	FirstRetry, MaxRetry time.Duration
	// Observe, when set, is told how every attempt went, the scheduled
	// ones and those of [Schedule.TakeNow].
	Observe func(Result)

	mu sync.Mutex
	// busy is set while the schedule takes a snapshot; published once it
	// is the latest and only older ones are being deleted; idle is closed
	// when busy is cleared. progress is the snapshot's progress, once
	// reported.
	busy, published bool
	idle            chan struct{}
	progress        *Progress
}

// Result is how one snapshot attempt went: its manifest, or why it failed.
type Result struct {
	Manifest *sdk.Manifest
	Err      error
	Took     time.Duration
}

// Running returns the progress of the snapshot this schedule is taking,
// and false when it takes none.
func (s *Schedule) Running() (Progress, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.progress == nil {
		return Progress{}, false
	}
	return *s.progress, true
}

// Busy reports whether the schedule is taking a snapshot that is not
// published yet. One that is published, while the snapshots beyond
// Options.Keep are deleted, does not count: TakeNow waits for it.
func (s *Schedule) Busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.busy && !s.published
}

// TakeNow takes a snapshot now, as the schedule takes one, and returns its
// manifest; published, when set, is called as soon as it is the latest
// (Options.Published). It fails with [ErrRunning] while another is being
// taken, and waits for one that is published and only deleting older
// ones.
func (s *Schedule) TakeNow(ctx context.Context, nc *nats.Conn, published func(*sdk.Manifest)) (*sdk.Manifest, error) {
	return s.take(ctx, nc, nil, published)
}

// Run takes snapshots through nc until ctx ends.
func (s *Schedule) Run(ctx context.Context, nc *nats.Conn) {
	if s.OnStart {
		s.first(ctx, nc)
	}
	var tick <-chan time.Time
	if s.Interval > 0 {
		t := time.NewTicker(s.Interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			_, _ = s.take(ctx, nc, nil, nil)
		case <-s.Recovered:
			s.log().Warn("taking a new snapshot: capture recovered from a checkpoint it could not resume")
			_, _ = s.take(ctx, nc, nil, nil)
		}
	}
}

// first takes the first snapshot when the source has no sound one,
// trying again with backoff until one succeeds or ctx ends: consumers that
// start from a snapshot wait for it.
func (s *Schedule) first(ctx context.Context, nc *nats.Conn) {
	wait := orDefault(s.FirstRetry, time.Second)
	for {
		exists, err := Exists(ctx, nc, s.Config.Source)
		if err == nil && exists {
			return
		}
		next := time.Now().Add(wait)
		if err != nil {
			err = fmt.Errorf("looking for an existing snapshot: %w", err)
			s.record(ctx, nc, bus.SnapshotAttempt{State: "failed", Error: err.Error(), At: time.Now().UTC(), NextTry: &next})
		} else if _, err = s.take(ctx, nc, &next, nil); err == nil {
			return
		}
		if ctx.Err() != nil {
			return
		}
		s.log().Warn("no snapshot yet: the first one is tried again", "in", wait, "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, orDefault(s.MaxRetry, time.Minute))
	}
}

func (s *Schedule) log() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

// orDefault returns d, or def when d is zero.
func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

// take takes one snapshot, logs how it went and records it; next, when
// set, is when a failed one is tried again; published is
// Options.Published.
func (s *Schedule) take(ctx context.Context, nc *nats.Conn, next *time.Time, published func(*sdk.Manifest)) (*sdk.Manifest, error) {
	s.mu.Lock()
	for s.busy && s.published {
		idle := s.idle
		s.mu.Unlock()
		select {
		case <-idle:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		s.mu.Lock()
	}
	if s.busy {
		s.mu.Unlock()
		return nil, fmt.Errorf("%w: this node is taking one", ErrRunning)
	}
	s.busy, s.published, s.idle = true, false, make(chan struct{})
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		s.busy, s.published, s.progress = false, false, nil
		close(s.idle)
		s.mu.Unlock()
	}()
	log := s.log()
	log.Info("snapshot starting")
	// Recorded while the snapshot starts; the outcome is recorded after.
	recorded := make(chan struct{})
	go func() {
		defer close(recorded)
		s.record(ctx, nc, bus.SnapshotAttempt{State: "running", At: time.Now().UTC()})
	}()
	opt := s.Options
	opt.Published = func(man *sdk.Manifest) {
		s.mu.Lock()
		s.published = true
		s.mu.Unlock()
		for _, f := range []func(*sdk.Manifest){s.Options.Published, published} {
			if f != nil {
				f(man)
			}
		}
	}
	opt.Progress = func(p Progress) {
		s.mu.Lock()
		s.progress = &p
		s.mu.Unlock()
		if p.Phase == "reading" {
			log.Info("snapshot progress", "id", p.ID, "tables", fmt.Sprintf("%d/%d", p.TablesDone, p.Tables), "rows", p.Rows)
		}
	}
	started := time.Now()
	man, err := Take(ctx, s.Config, nc, opt)
	<-recorded
	if s.Observe != nil && !errors.Is(err, ErrRunning) && ctx.Err() == nil {
		s.Observe(Result{Manifest: man, Err: err, Took: time.Since(started)})
	}
	switch {
	case err == nil:
		log.Info("snapshot complete", "id", man.ID, "tables", len(man.Tables), "rows", man.Rows,
			"stored_bytes", man.StoredBytes, "pos", man.Position.String(), "stream_seq", man.StreamSeq)
		s.record(ctx, nc, bus.SnapshotAttempt{State: "done", ID: man.ID, At: time.Now().UTC()})
		return man, nil
	case ctx.Err() != nil:
		return nil, err
	case errors.Is(err, ErrRunning):
		// Another process's: how it goes is its own to record.
		log.Info("snapshot skipped", "reason", err)
		return nil, err
	default:
		log.Warn("snapshot failed", "err", err)
	}
	s.record(ctx, nc, bus.SnapshotAttempt{State: "failed", Error: err.Error(), At: time.Now().UTC(), NextTry: next})
	return nil, err
}

// record keeps how the last attempt went in the state bucket, when it can.
func (s *Schedule) record(ctx context.Context, nc *nats.Conn, a bus.SnapshotAttempt) {
	if ctx.Err() != nil {
		return
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return
	}
	kv, err := js.KeyValue(ctx, sdk.StateBucket(s.Config.Source))
	if err != nil {
		return
	}
	b, _ := json.Marshal(a)
	_, _ = kv.Put(ctx, bus.SnapshotAttemptKey, b)
}
