package snapshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/configs"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/filter"
	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/sdk"
)

// Config says which source's tables a snapshot covers, how to read them
// and where its stream is.
type Config struct {
	// Source names the source in stream, bucket and subject names.
	Source string
	MySQL  mysqlsrc.Config
	// Filter selects the tables, as it does for capture.
	Filter filter.Filter
	// Stream configures the stream, the state bucket and the snapshot
	// bucket (its replicas) when they do not exist yet.
	Stream bus.StreamConfig
}

// Options tunes [Take].
type Options struct {
	// Keep is how many complete snapshots are kept;
	// configs.DefaultSnapshotKeep when zero. A
	// snapshot a durable consumer is still loading is never deleted.
	Keep int
	// ObjectBytes is the uncompressed size at which a data object (a
	// part) is closed and the next one started; 8 MiB when zero. A
	// consumer holds one part in memory while it loads it.
	ObjectBytes int64
	// HandoffTimeout bounds the wait for capture to publish every change
	// up to the snapshot's position; 2 minutes when zero.
	HandoffTimeout time.Duration
	// Parallel is how many key ranges (or whole tables) are read at the
	// same time, each on a connection of its own inside the same read
	// view; the number of CPUs, at most 4, when zero. A large table whose
	// primary key starts with an integer column is split into ranges of
	// it; 1 reads the tables whole, one after the other.
	Parallel int
	// Progress, when set, is called about every second and after each
	// table, from one goroutine at a time.
	Progress func(Progress)
	// Published, when set, is called with the manifest once the snapshot
	// is complete and published as the latest, before the snapshots
	// beyond Keep are deleted: whoever waits for the snapshot need not
	// wait for that. Take returns when they are deleted.
	Published func(*sdk.Manifest)
}

// Progress reports how far a snapshot is.
type Progress struct {
	ID                 string
	Tables, TablesDone int
	// Table is the table being read, "db.table".
	Table string
	Rows  int64
	// RowsEstimate is the server's estimate of the rows to read.
	RowsEstimate int64
	// Spans is how many key ranges and whole tables there are to read.
	Spans int
	// Readers is how many spans are read at the same time:
	// Options.Parallel, or fewer when there are fewer tables or
	// when writes kept committing while the read views were opened.
	Readers int
	Bytes   int64
	Elapsed time.Duration
	// Phase is "reading", "handoff" (waiting for capture to reach the
	// snapshot's position) or "done".
	Phase string
}

const (
	lockStaleAfter = 30 * time.Second
	lockHeartbeat  = 5 * time.Second
)

// systemSchemasList is filter.SystemDatabases as an SQL list.
var systemSchemasList = func() string {
	quoted := make([]string, len(filter.SystemDatabases))
	for i, db := range filter.SystemDatabases {
		quoted[i] = sdk.QuoteString(db)
	}
	return strings.Join(quoted, ",")
}()

// Take reads every captured table of the source inside one
// consistent read view, stores the rows in the source's Object Store bucket
// and, once complete, publishes the snapshot as the latest with the binlog
// position, GTID set and stream sequence it is consistent with. It needs
// `databus run` to be capturing the source: the stream sequence is known
// only once capture has published every change before the snapshot's
// position.
func Take(ctx context.Context, cfg Config, nc *nats.Conn, opt Options) (*sdk.Manifest, error) {
	if opt.Keep <= 0 {
		opt.Keep = configs.DefaultSnapshotKeep
	}
	if cfg.MySQL.ConnectTimeout == 0 {
		cfg.MySQL.ConnectTimeout = configs.DefaultConnectTimeout
	}
	if opt.ObjectBytes <= 0 {
		opt.ObjectBytes = 8 << 20
	}
	if opt.HandoffTimeout <= 0 {
		opt.HandoffTimeout = 2 * time.Minute
	}
	if opt.Parallel <= 0 {
		opt.Parallel = min(runtime.NumCPU(), 4)
	}
	// MySQL's connections open while the NATS side is set up.
	// Returning before take stops it and closes what it opened.
	openCtx, stopOpening := context.WithCancel(ctx)
	opened := make(chan openedSource, 1)
	go func() {
		src, err := openSource(openCtx, cfg.MySQL, opt.Parallel)
		opened <- openedSource{src, err}
	}()
	defer func() {
		stopOpening()
		if o, ok := <-opened; ok && o.src != nil {
			o.src.close(ctx)
		}
	}()
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	// The stream and state bucket, and the snapshot bucket, at the same
	// time.
	var obs jetstream.ObjectStore
	bucket := make(chan error, 1)
	go func() {
		var err error
		obs, err = snapshotBucket(ctx, js, cfg)
		bucket <- err
	}()
	stream, kv, err := bus.Ensure(ctx, js, cfg.Source, cfg.Stream, nil)
	if berr := <-bucket; err == nil {
		err = berr
	}
	if err != nil {
		return nil, err
	}
	s := &snapshotter{cfg: cfg, opt: opt, js: js, kv: kv, obs: obs, stream: stream,
		man: sdk.Manifest{Version: sdk.SnapshotVersion, Source: cfg.Source}}
	if err := s.newID(ctx); err != nil {
		return nil, err
	}

	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	// What interrupted snapshots left is removed while this one is read.
	type cleanup struct {
		c   catalog
		err error
	}
	cleaned := make(chan cleanup, 1)
	go func() {
		c, err := s.removePartial(ctx)
		cleaned <- cleanup{c, err}
	}()
	if err := s.take(ctx, opened); err != nil {
		<-cleaned
		s.removeSnapshot(context.WithoutCancel(ctx), s.man.ID, nil)
		return nil, fmt.Errorf("%w: snapshot %s of source %s: %w (the previous latest snapshot stays the latest)", ErrAbandoned, s.man.ID, cfg.Source, err)
	}
	cl := <-cleaned
	if opt.Published != nil {
		opt.Published(&s.man)
	}
	if cl.err != nil {
		return &s.man, fmt.Errorf("snapshot %s is complete, but removing what interrupted snapshots left failed: %w", s.man.ID, cl.err)
	}
	if err := s.prune(ctx, cl.c); err != nil {
		return &s.man, fmt.Errorf("snapshot %s is complete, but removing old snapshots failed: %w", s.man.ID, err)
	}
	return &s.man, nil
}

// newID names the snapshot after the second it starts in. Ids are to the
// second and name the objects: a snapshot that follows one of the same
// second waits for the next, rather than write over its objects.
func (s *snapshotter) newID(ctx context.Context) error {
	for {
		now := time.Now().UTC()
		id := now.Format("20060102T150405Z")
		_, err := s.obs.GetInfo(ctx, sdk.ManifestName(id))
		switch {
		case errors.Is(err, jetstream.ErrObjectNotFound):
			s.man.Started, s.man.ID, s.prog.ID = now, id, id
			return nil
		case err != nil:
			return fmt.Errorf("looking up snapshot %s: %w", id, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(now.Truncate(time.Second).Add(time.Second).Sub(now)):
		}
	}
}

// snapshotBucket opens source's snapshot bucket, creating it, or changing
// its replicas, when it is not as configured. What exists is only looked
// up: that needs the bucket's stream leader alone, not the cluster's meta
// leader.
func snapshotBucket(ctx context.Context, js jetstream.JetStream, cfg Config) (jetstream.ObjectStore, error) {
	name, replicas := sdk.SnapshotBucket(cfg.Source), max(cfg.Stream.Replicas, 1)
	if obs, err := js.ObjectStore(ctx, name); err == nil {
		if st, err := obs.Status(ctx); err == nil && st.Replicas() == replicas && st.Storage() == jetstream.FileStorage {
			return obs, nil
		}
	}
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      name,
		Description: "databus snapshots of source " + cfg.Source,
		Storage:     jetstream.FileStorage,
		Replicas:    replicas,
	})
	if err != nil {
		return nil, fmt.Errorf("creating snapshot bucket %s: %w", name, err)
	}
	return obs, nil
}

// Exists reports whether source has a complete snapshot.
func Exists(ctx context.Context, nc *nats.Conn, source string) (bool, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return false, err
	}
	_, err = sdk.LatestSnapshot(ctx, js, source)
	if errors.Is(err, sdk.ErrNoSnapshot) {
		return false, nil
	}
	return err == nil, err
}

type snapshotter struct {
	cfg    Config
	opt    Options
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	obs    jetstream.ObjectStore
	stream jetstream.Stream
	// bufs holds the buffers of lines on their way to the compressor; nil
	// ones are allocated on first use. Their number bounds the memory.
	bufs chan []byte

	// mu guards man's totals, prog and shown while tables are read in
	// parallel.
	mu    sync.Mutex
	man   sdk.Manifest
	prog  Progress
	shown time.Time
}

// openedSource is what openSource returned.
type openedSource struct {
	src *source
	err error
}

// take reads the tables, on the connections that come from opened, and
// publishes the snapshot.
func (s *snapshotter) take(ctx context.Context, opened chan openedSource) error {
	o := <-opened
	close(opened)
	if o.err != nil {
		return o.err
	}
	defer o.src.close(ctx)
	info, v := o.src.info, o.src.v
	if err := s.begin(ctx, o.src); err != nil {
		return err
	}
	if testHookViewOpened != nil {
		testHookViewOpened()
	}
	tables, err := s.tables(ctx, v.meta, info)
	if err != nil {
		return err
	}
	if err := s.holdTables(ctx, v, info, tables); err != nil {
		return err
	}
	s.man.Tables = make([]sdk.SnapshotTable, len(tables))
	for i := range tables {
		tables[i].index = i
	}
	spans, err := s.plan(ctx, v.meta, tables, len(v.readers))
	if err != nil {
		return err
	}
	v.keep(ctx, max(len(spans), 1))
	s.prog.Tables, s.prog.Spans, s.prog.Readers, s.prog.Phase = len(tables), len(spans), len(v.readers), "reading"
	s.bufs = make(chan []byte, 3*len(v.readers))
	for range cap(s.bufs) {
		s.bufs <- kept.buffer()
	}
	defer kept.keepBuffers(s.bufs)
	if err := s.readSpans(ctx, v.readers, spans); err != nil {
		return err
	}
	if err := v.end(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("ending the snapshot transaction: %w", err)
	}
	s.prog.Phase = "handoff"
	s.report(true)
	s.man.StreamSeq, err = s.handoff(ctx)
	if err != nil {
		return err
	}
	s.man.Finished = time.Now().UTC()
	b, _ := json.MarshalIndent(&s.man, "", "  ")
	if _, err := s.obs.PutBytes(ctx, sdk.ManifestName(s.man.ID), b); err != nil {
		return s.storeErr(sdk.ManifestName(s.man.ID), err)
	}
	if _, err := s.kv.PutString(ctx, sdk.LatestSnapshotKey, s.man.ID); err != nil {
		return fmt.Errorf("publishing the snapshot as the latest: %w", err)
	}
	s.prog.Phase = "done"
	s.report(true)
	return nil
}

// report calls opt.Progress when forced or a second after the last time.
func (s *snapshotter) report(force bool) {
	s.progress(force, nil)
}

// progress applies f to the progress and reports it when due; it is safe
// to call from the goroutines reading tables.
func (s *snapshotter) progress(force bool, f func(*Progress)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if f != nil {
		f(&s.prog)
	}
	if s.opt.Progress == nil || (!force && time.Since(s.shown) < time.Second) {
		return
	}
	s.shown = time.Now()
	s.prog.Elapsed = time.Since(s.man.Started)
	s.opt.Progress(s.prog)
}
