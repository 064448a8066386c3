package sdk

import (
	"bufio"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// StateBucket returns the name of the KV bucket that holds a source's
// capture checkpoint, the latest snapshot's id and the snapshot progress of
// durable consumers.
func StateBucket(source string) string { return "databus_" + source }

// SnapshotBucket returns the name of the Object Store bucket that holds a
// source's snapshots.
func SnapshotBucket(source string) string { return "databus_" + source + "_snapshots" }

// LatestSnapshotKey is the key, in [StateBucket], whose value is the id of
// the newest complete snapshot. It is written only after the snapshot's
// manifest, so it never names a partial snapshot.
const LatestSnapshotKey = "snapshot.latest"

// manifestSuffix ends the name of every snapshot's manifest object.
const manifestSuffix = "/manifest.json"

// ManifestName returns the object name of snapshot id's manifest; its data
// objects are named "<id>/data/…" ([SnapshotObjectName]).
func ManifestName(id string) string { return id + manifestSuffix }

// SnapshotObjectName returns the name of data object part of the table at
// index table of snapshot id's manifest: "<id>/data/TTTTT-PPPPPP.jsonl.gz".
func SnapshotObjectName(id string, table, part int) string {
	return fmt.Sprintf("%s/data/%05d-%06d.jsonl.gz", id, table, part)
}

// SnapshotOfObject returns the id of the snapshot an object of
// [SnapshotBucket] belongs to, and whether it is that snapshot's manifest.
func SnapshotOfObject(name string) (id string, manifest bool) {
	if id, ok := strings.CutSuffix(name, manifestSuffix); ok {
		return id, true
	}
	id, _, _ = strings.Cut(name, "/")
	return id, false
}

// SnapshotTxnID returns the transaction id ([Txn.ID]) of the events of
// snapshot id.
func SnapshotTxnID(id string) string { return "snapshot:" + id }

// Manifest describes one complete snapshot (docs/snapshots.md).
type Manifest struct {
	// Version is the snapshot format version, 1.
	Version int `json:"v"`
	// ID names the snapshot; its objects are "<id>/…".
	ID     string `json:"id"`
	Source string `json:"source"`
	// Position is the binlog position the snapshot is consistent with: it
	// holds every transaction committed before it and none after.
	Position Position `json:"pos"`
	// GTIDSet is the server's GTID set at Position, when GTIDs are on.
	GTIDSet string `json:"gtid_set,omitempty"`
	// StreamSeq is the sequence of the last stream message whose event the
	// snapshot contains; changes after the snapshot start at StreamSeq+1.
	StreamSeq uint64          `json:"stream_seq"`
	Started   time.Time       `json:"started"`
	Finished  time.Time       `json:"finished"`
	Tables    []SnapshotTable `json:"tables"`
	Rows      int64           `json:"rows"`
	// Bytes is the size of the row events before compression.
	Bytes int64 `json:"bytes"`
	// StoredBytes is the size of the compressed objects.
	StoredBytes int64 `json:"stored_bytes"`
}

// SnapshotTable is one table of a snapshot.
type SnapshotTable struct {
	Database string `json:"db"`
	Table    string `json:"table"`
	// CreateSQL is the table's schema-qualified CREATE TABLE statement.
	CreateSQL  string           `json:"create_sql"`
	Columns    []Column         `json:"columns"`
	PrimaryKey []string         `json:"pk,omitempty"`
	Rows       int64            `json:"rows"`
	Bytes      int64            `json:"bytes"`
	Objects    []SnapshotObject `json:"objects"`
}

// SnapshotObject is one data object: gzip-compressed JSON lines, one insert
// event (with "snapshot": true) per line.
type SnapshotObject struct {
	Name string `json:"name"`
	Rows int64  `json:"rows"`
	// Bytes and SHA256 are the size and digest of the uncompressed lines.
	Bytes  int64  `json:"bytes"`
	SHA256 string `json:"sha256"`
}

// ErrNoSnapshot is returned when a consumer starts from the snapshot of a
// source that has none yet.
var ErrNoSnapshot = errors.New("no snapshot")

// ErrSnapshotTooOld is returned when the changes that follow a snapshot are
// no longer all in the stream.
var ErrSnapshotTooOld = errors.New("snapshot older than the stream")

// LatestSnapshot returns the manifest of the newest complete snapshot of
// source, or [ErrNoSnapshot].
func LatestSnapshot(ctx context.Context, js jetstream.JetStream, source string) (*Manifest, error) {
	kv, err := js.KeyValue(ctx, StateBucket(source))
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, fmt.Errorf("%w of source %q: bucket %s does not exist (is `databus run` capturing it?)", ErrNoSnapshot, source, StateBucket(source))
	}
	if err != nil {
		return nil, fmt.Errorf("opening bucket %s: %w", StateBucket(source), err)
	}
	e, err := kv.Get(ctx, LatestSnapshotKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, fmt.Errorf("%w of source %q yet: run `databus snapshot`, or wait for the first one `databus run` takes", ErrNoSnapshot, source)
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", LatestSnapshotKey, err)
	}
	return ReadManifest(ctx, js, source, string(e.Value()))
}

// ReadManifest returns the manifest of snapshot id of source.
func ReadManifest(ctx context.Context, js jetstream.JetStream, source, id string) (*Manifest, error) {
	obs, err := js.ObjectStore(ctx, SnapshotBucket(source))
	if err != nil {
		return nil, fmt.Errorf("opening snapshot bucket %s: %w", SnapshotBucket(source), err)
	}
	b, err := obs.GetBytes(ctx, ManifestName(id))
	if err != nil {
		return nil, fmt.Errorf("reading the manifest of snapshot %s: %w", id, err)
	}
	var m Manifest
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("manifest of snapshot %s: %w", id, err)
	}
	if m.Version != 1 {
		return nil, fmt.Errorf("%w: snapshot %s has format version %d; this build reads 1", ErrUnsupportedVersion, id, m.Version)
	}
	return &m, nil
}

// SnapshotProgress is where a durable consumer is in loading a snapshot,
// kept as JSON in [StateBucket] under [SnapshotProgressKey]. Table and
// Object index the manifest (filtered tables included); Row counts the
// lines of that object already acknowledged. A snapshot that a consumer is
// loading (Done false) is never pruned.
type SnapshotProgress struct {
	Snapshot string `json:"snapshot"`
	Table    int    `json:"table"`
	Object   int    `json:"object"`
	Row      int64  `json:"row"`
	Done     bool   `json:"done"`
}

// SnapshotProgressKey returns the key of durable consumer's
// [SnapshotProgress]; [SnapshotProgressKeys] matches every consumer's.
func SnapshotProgressKey(consumer string) string { return "consumer." + consumer + ".snapshot" }

// SnapshotProgressKeys is the KV key filter that matches the
// [SnapshotProgress] of every durable consumer.
const SnapshotProgressKeys = "consumer.*.snapshot"

// snapLoader hands out the rows of a snapshot, in manifest order, before
// the consumer's stream messages.
type snapLoader struct {
	obs  jetstream.ObjectStore
	kv   jetstream.KeyValue
	key  string // progress key; "" for an ephemeral consumer
	man  *Manifest
	keep func(db, table string) bool

	next   SnapshotProgress // the row Next hands out next
	acked  SnapshotProgress // just after the newest acknowledged row
	dirty  bool
	saved  time.Time
	schema bool // the table's schema event was handed out

	obj    jetstream.ObjectResult
	gz     *gzip.Reader
	rd     *bufio.Reader
	open   bool
	cancel context.CancelFunc
}

// row returns the next snapshot event, or nil when the snapshot is done.
func (l *snapLoader) row(ctx context.Context) (*Event, SnapshotProgress, error) {
	for l.next.Table < len(l.man.Tables) {
		t := &l.man.Tables[l.next.Table]
		if !l.keep(t.Database, t.Table) {
			l.nextTable()
			continue
		}
		if !l.schema && l.next.Object == 0 && l.next.Row == 0 {
			l.schema = true
			return l.schemaEvent(t), l.next, nil
		}
		if l.next.Object >= len(t.Objects) {
			l.nextTable()
			continue
		}
		if !l.open {
			if err := l.openObject(ctx, t.Objects[l.next.Object].Name); err != nil {
				return nil, l.next, err
			}
		}
		line, err := l.rd.ReadBytes('\n')
		if err == io.EOF && len(line) == 0 {
			l.closeObject()
			if l.next.Row != t.Objects[l.next.Object].Rows {
				return nil, l.next, fmt.Errorf("snapshot %s object %s: %d rows, the manifest says %d", l.man.ID, t.Objects[l.next.Object].Name, l.next.Row, t.Objects[l.next.Object].Rows)
			}
			l.next.Object++
			l.next.Row = 0
			continue
		}
		if err != nil && err != io.EOF {
			return nil, l.next, fmt.Errorf("reading snapshot %s object %s: %w", l.man.ID, t.Objects[l.next.Object].Name, err)
		}
		ev, err := DecodeEvent(line)
		if err != nil {
			return nil, l.next, fmt.Errorf("snapshot %s object %s row %d: %w", l.man.ID, t.Objects[l.next.Object].Name, l.next.Row, err)
		}
		l.next.Row++
		return ev, l.next, nil
	}
	return nil, l.next, nil
}

func (l *snapLoader) nextTable() {
	l.closeObject()
	l.next = SnapshotProgress{Snapshot: l.man.ID, Table: l.next.Table + 1}
	l.schema = false
}

// schemaEvent announces a table before its rows: a create_table DDL event.
func (l *snapLoader) schemaEvent(t *SnapshotTable) *Event {
	return &Event{
		Version: FormatVersion, Source: l.man.Source, Op: OpDDL, Database: t.Database, Table: t.Table,
		Columns: t.Columns, PrimaryKey: t.PrimaryKey, SQL: t.CreateSQL, Snapshot: true,
		DDL: &DDL{Statement: t.CreateSQL, Kind: "create_table", Qualified: true,
			Tables: []TableRef{{DB: t.Database, Table: t.Table}}},
		Position:  l.man.Position,
		Timestamp: l.man.Started,
		Txn:       Txn{ID: SnapshotTxnID(l.man.ID)},
	}
}

func (l *snapLoader) openObject(ctx context.Context, name string) error {
	// The object is read over several Next calls: its reader must outlive
	// the context of the call that opened it.
	octx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	obj, err := l.obs.Get(octx, name)
	if err != nil {
		cancel()
		return fmt.Errorf("opening snapshot object %s: %w", name, err)
	}
	gz, err := gzip.NewReader(obj)
	if err != nil {
		obj.Close()
		cancel()
		return fmt.Errorf("snapshot object %s: %w", name, err)
	}
	l.obj, l.gz, l.rd, l.open, l.cancel = obj, gz, bufio.NewReaderSize(gz, 256<<10), true, cancel
	// Resuming inside an object: skip the rows already acknowledged.
	for i := int64(0); i < l.next.Row; i++ {
		if _, err := l.rd.ReadBytes('\n'); err != nil {
			return fmt.Errorf("snapshot object %s: skipping to row %d: %w", name, l.next.Row, err)
		}
	}
	return nil
}

func (l *snapLoader) closeObject() {
	if l.open {
		l.gz.Close()
		l.obj.Close()
		l.cancel()
		l.open = false
	}
}

// ack records that the application is done with the row before at.
func (l *snapLoader) ack(at SnapshotProgress) {
	l.acked, l.dirty = at, true
}

// save stores the acknowledged progress, at most every second unless
// force.
func (l *snapLoader) save(ctx context.Context, force bool) error {
	if l.key == "" || !l.dirty || (!force && time.Since(l.saved) < time.Second) {
		return nil
	}
	b, _ := json.Marshal(l.acked)
	if _, err := l.kv.Put(ctx, l.key, b); err != nil {
		return fmt.Errorf("saving snapshot progress: %w", err)
	}
	l.dirty, l.saved = false, time.Now()
	return nil
}

// finish marks the snapshot loaded for good.
func (l *snapLoader) finish(ctx context.Context) error {
	l.closeObject()
	l.acked, l.dirty = SnapshotProgress{Snapshot: l.man.ID, Table: len(l.man.Tables), Done: true}, true
	return l.save(ctx, true)
}

// startSnapshot prepares a consumer that starts from the latest snapshot
// (or continues loading the one it was loading) and returns the stream
// sequence its changes start at. done reports a durable consumer that
// finished loading earlier.
func startSnapshot(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, cfg Config, keep func(db, table string) bool) (l *snapLoader, startSeq uint64, done bool, err error) {
	kv, err := js.KeyValue(ctx, StateBucket(cfg.Source))
	if err != nil {
		return nil, 0, false, fmt.Errorf("%w of source %q: opening bucket %s: %v", ErrNoSnapshot, cfg.Source, StateBucket(cfg.Source), err)
	}
	var prog SnapshotProgress
	if cfg.Name != "" {
		e, err := kv.Get(ctx, SnapshotProgressKey(cfg.Name))
		switch {
		case err == nil:
			if err := json.Unmarshal(e.Value(), &prog); err != nil {
				return nil, 0, false, fmt.Errorf("snapshot progress of consumer %s: %w", cfg.Name, err)
			}
			if prog.Done {
				return nil, 0, true, nil
			}
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return nil, 0, false, fmt.Errorf("reading snapshot progress of consumer %s: %w", cfg.Name, err)
		}
	}
	var man *Manifest
	switch {
	case prog.Snapshot != "":
		man, err = ReadManifest(ctx, js, cfg.Source, prog.Snapshot)
	case cfg.Start.snap != "":
		man, err = ReadManifest(ctx, js, cfg.Source, cfg.Start.snap)
	default:
		man, err = LatestSnapshot(ctx, js, cfg.Source)
	}
	if err != nil {
		return nil, 0, false, err
	}
	info, err := s.Info(ctx)
	if err != nil {
		return nil, 0, false, fmt.Errorf("reading stream %s: %w", StreamName(cfg.Source), err)
	}
	if first := info.State.FirstSeq; info.State.Msgs > 0 && first > man.StreamSeq+1 {
		return nil, 0, false, fmt.Errorf("%w: snapshot %s continues at stream sequence %d, but the stream starts at %d now (retention removed the changes between): take a new snapshot with `databus snapshot`",
			ErrSnapshotTooOld, man.ID, man.StreamSeq+1, first)
	}
	obs, err := js.ObjectStore(ctx, SnapshotBucket(cfg.Source))
	if err != nil {
		return nil, 0, false, fmt.Errorf("opening snapshot bucket %s: %w", SnapshotBucket(cfg.Source), err)
	}
	l = &snapLoader{obs: obs, kv: kv, man: man, keep: keep, next: prog, acked: prog, saved: time.Now()}
	l.next.Snapshot, l.acked.Snapshot = man.ID, man.ID
	if cfg.Name != "" {
		l.key = SnapshotProgressKey(cfg.Name)
		l.dirty = true
		if err := l.save(ctx, true); err != nil { // pins the snapshot against pruning
			return nil, 0, false, err
		}
	}
	return l, man.StreamSeq + 1, false, nil
}
