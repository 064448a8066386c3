package sdk

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
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

// SnapshotObjectName returns the name of part part of key range rng of
// the table at index table of snapshot id's manifest:
// "<id>/data/TTTTT-RRRRR-PPPPPP.jsonl.gz". A table read whole has the one
// range 0. Readers take the names from the manifest, in its order.
func SnapshotObjectName(id string, table, rng, part int) string {
	return fmt.Sprintf("%s/data/%05d-%05d-%06d.jsonl.gz", id, table, rng, part)
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
// table db.table in snapshot id: each table of a snapshot is one
// transaction, its create_table event first (Txn.Seq 0), then its rows
// (Seq 1 to the table's row count), the last one marked [Txn.Last].
func SnapshotTxnID(id, db, table string) string { return "snapshot:" + id + ":" + db + "." + table }

// SnapshotVersion is the snapshot format version this code writes
// (docs/snapshots.md); it reads versions 1 and 2.
const SnapshotVersion = 2

// Manifest describes one complete snapshot (docs/snapshots.md).
type Manifest struct {
	// Version is the snapshot format version: [SnapshotVersion]. In
	// version 2 a data object's lines are JSON arrays of one row's values,
	// in the order of the table's Columns; in version 1 they were whole
	// insert events.
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

// RowsBefore returns how many of the table's rows its objects before
// object hold.
func (t *SnapshotTable) RowsBefore(object int) int64 {
	var n int64
	for _, o := range t.Objects[:min(object, len(t.Objects))] {
		n += o.Rows
	}
	return n
}

// RowsBefore returns how many rows of the snapshot come before the point p
// names (the rows a reader at p has loaded, filtered tables included).
func (m *Manifest) RowsBefore(p SnapshotProgress) int64 {
	if p.Done {
		return m.Rows
	}
	var n int64
	for i := range m.Tables[:min(p.Table, len(m.Tables))] {
		n += m.Tables[i].Rows
	}
	if p.Table < len(m.Tables) {
		n += m.Tables[p.Table].RowsBefore(p.Object) + p.Row
	}
	return n
}

// SnapshotObject is one data object (a part of a table): gzip-compressed
// JSON lines, one row per line.
type SnapshotObject struct {
	Name string `json:"name"`
	Rows int64  `json:"rows"`
	// Bytes is the size of the uncompressed lines, StoredBytes that of
	// the stored (compressed) object.
	Bytes       int64 `json:"bytes"`
	StoredBytes int64 `json:"stored_bytes,omitempty"`
	// SHA256 is the hex SHA-256 of the stored object (format version 2:
	// the Object Store's own digest of it), or of the uncompressed lines
	// (version 1).
	SHA256 string `json:"sha256"`
}

// ErrNoSnapshot is returned when a consumer starts from the snapshot of a
// source that has none yet.
var ErrNoSnapshot = errors.New("no snapshot")

// ErrSnapshotTooOld is returned when the changes that follow a snapshot are
// no longer all in the stream.
var ErrSnapshotTooOld = errors.New("snapshot older than the stream")

// LatestSnapshot returns the manifest of the newest sound snapshot of
// source: the one [LatestSnapshotKey] names or, when that one is marked
// damaged ([SnapshotDamage]), the newest older one that is not. It returns
// [ErrNoSnapshot] when there is none, saying why.
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
	latest := string(e.Value())
	damage, err := ReadSnapshotDamage(ctx, kv, latest)
	if err != nil {
		return nil, err
	}
	if damage == nil {
		return ReadManifest(ctx, js, source, latest)
	}
	ids, err := SnapshotIDs(ctx, js, source)
	if err != nil {
		return nil, err
	}
	for _, id := range slices.Backward(ids) {
		if id >= latest {
			continue
		}
		if d, err := ReadSnapshotDamage(ctx, kv, id); err != nil || d != nil {
			continue
		}
		return ReadManifest(ctx, js, source, id)
	}
	return nil, fmt.Errorf("%w of source %q is sound: the latest, %s, is damaged (%s: %s) and no older one is kept; take a new one with `databus snapshot`",
		ErrNoSnapshot, source, latest, damage.Object, damage.Error)
}

// SnapshotIDs returns the ids of the snapshots of source that have a
// manifest (the complete ones), oldest first.
func SnapshotIDs(ctx context.Context, js jetstream.JetStream, source string) ([]string, error) {
	obs, err := js.ObjectStore(ctx, SnapshotBucket(source))
	if err != nil {
		return nil, fmt.Errorf("opening snapshot bucket %s: %w", SnapshotBucket(source), err)
	}
	all, err := SnapshotsIn(ctx, obs)
	if err != nil {
		return nil, err
	}
	var ids []string
	for id, complete := range all {
		if complete {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return ids, nil
}

// SnapshotsIn returns the snapshots that have objects in a snapshot
// bucket, each with whether it is complete (has its manifest).
func SnapshotsIn(ctx context.Context, obs jetstream.ObjectStore) (map[string]bool, error) {
	objs, err := obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing the snapshot bucket: %w", err)
	}
	ids := map[string]bool{}
	for _, o := range objs {
		id, manifest := SnapshotOfObject(o.Name)
		ids[id] = ids[id] || manifest
	}
	return ids, nil
}

// ErrSnapshotDamaged is returned when a part of a snapshot is missing or
// does not match its digest. The snapshot is then marked damaged
// ([SnapshotDamage]): consumers that start later load the newest sound
// one instead.
var ErrSnapshotDamaged = errors.New("snapshot damaged")

// SnapshotDamage records, in [StateBucket] under [SnapshotDamageKey], the
// first damage found in a snapshot.
type SnapshotDamage struct {
	Snapshot string    `json:"snapshot"`
	Object   string    `json:"object"`
	Error    string    `json:"error"`
	Found    time.Time `json:"found"`
}

// SnapshotDamageKey returns the key of snapshot id's [SnapshotDamage].
func SnapshotDamageKey(id string) string { return "snapshot.damaged." + id }

// ReadSnapshotDamage returns the damage recorded for snapshot id, or nil
// when it is sound as far as anyone has read.
func ReadSnapshotDamage(ctx context.Context, kv jetstream.KeyValue, id string) (*SnapshotDamage, error) {
	e, err := kv.Get(ctx, SnapshotDamageKey(id))
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", SnapshotDamageKey(id), err)
	}
	var d SnapshotDamage
	if err := json.Unmarshal(e.Value(), &d); err != nil {
		return nil, fmt.Errorf("%s: %w", SnapshotDamageKey(id), err)
	}
	return &d, nil
}

// markDamaged records the first damage found in a snapshot; a record that
// exists already is kept.
func markDamaged(ctx context.Context, kv jetstream.KeyValue, d SnapshotDamage) {
	b, _ := json.Marshal(d)
	_, _ = kv.Create(ctx, SnapshotDamageKey(d.Snapshot), b)
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
	if m.Version < 1 || m.Version > SnapshotVersion {
		return nil, fmt.Errorf("%w: snapshot %s has format version %d; this build reads 1 to %d", ErrUnsupportedVersion, id, m.Version, SnapshotVersion)
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
