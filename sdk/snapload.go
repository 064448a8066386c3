package sdk

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// snapLoader hands out the rows of a snapshot, in manifest order, before
// the consumer's stream messages. It reads one data object (a part of
// bounded size) at a time, whole, and checks it against the manifest's
// digest before handing out any of its rows: a consumer may take as long
// as it likes over a row, and nothing of a damaged part reaches it.
type snapLoader struct {
	js   jetstream.JetStream
	obs  jetstream.ObjectStore
	kv   jetstream.KeyValue
	key  string // progress key; "" for an ephemeral consumer
	man  *Manifest
	keep func(db, table string) bool

	next SnapshotProgress // the row Next hands out next
	// mu guards acked, dirty and saved: an application may acknowledge
	// rows on another goroutine than the one calling Next.
	mu     sync.Mutex
	acked  SnapshotProgress // just after the newest acknowledged row
	dirty  bool
	saved  time.Time
	schema bool // the table's schema event was handed out

	// ahead decodes the rows of the object loaded, if one is (open), not
	// handed out yet. seq0 is the Txn.Seq of the object's first row.
	ahead *decoder
	open  bool
	seq0  int64
	// tbl caches what building the current table's events needs.
	tbl *snapTable
	// quit, closed by stop (the consumer's Close, from any goroutine),
	// ends the decoding goroutine.
	quit     chan struct{}
	quitOnce sync.Once
}

// stop ends decoding; it is safe to call from any goroutine, more than
// once.
func (l *snapLoader) stop() { l.quitOnce.Do(func() { close(l.quit) }) }

// closeObject stops decoding the object loaded.
func (l *snapLoader) closeObject() {
	if l.ahead != nil {
		close(l.ahead.stop)
		l.ahead = nil
	}
	l.open = false
}

// snapTable is what building one table's row events needs.
type snapTable struct {
	t      *SnapshotTable
	txnID  string
	insert string // the table's Event.InsertHead
	pk     []int
}

func newSnapTable(id string, t *SnapshotTable) (*snapTable, error) {
	st := &snapTable{t: t, txnID: SnapshotTxnID(id, t.Database, t.Table)}
	var err error
	if st.insert, err = (&Event{Database: t.Database, Table: t.Table, Columns: t.Columns}).InsertHead(); err != nil {
		return nil, err
	}
	for i, c := range t.Columns {
		if slices.Contains(t.PrimaryKey, c.Name) {
			st.pk = append(st.pk, i)
		}
	}
	return st, nil
}

// row returns the next snapshot event, or nil when the snapshot is done.
func (l *snapLoader) row(ctx context.Context) (*Event, SnapshotProgress, error) {
	for l.next.Table < len(l.man.Tables) {
		t := &l.man.Tables[l.next.Table]
		if !l.keep(t.Database, t.Table) {
			l.nextTable()
			continue
		}
		if l.tbl == nil || l.tbl.t != t {
			tbl, err := newSnapTable(l.man.ID, t)
			if err != nil {
				return nil, l.next, fmt.Errorf("snapshot %s: %w", l.man.ID, err)
			}
			l.tbl = tbl
		}
		if !l.schema && l.next.Object == 0 && l.next.Row == 0 {
			l.schema = true
			return l.schemaEvent(t), l.next, nil
		}
		if l.next.Object >= len(t.Objects) {
			l.nextTable()
			continue
		}
		obj := &t.Objects[l.next.Object]
		if !l.open {
			if err := l.load(ctx, t, l.next.Object); err != nil {
				return nil, l.next, err
			}
		}
		ev, err := l.ahead.next()
		if ev == nil && err == nil {
			select {
			case <-l.quit:
				return nil, l.next, ErrClosed // the decoder stopped early
			default:
			}
			l.closeObject()
			l.next.Object++
			l.next.Row = 0
			continue
		}
		if err != nil {
			// The digest matched: the snapshot was written so.
			return nil, l.next, fmt.Errorf("snapshot %s object %s row %d: %w", l.man.ID, obj.Name, l.next.Row, err)
		}
		seq := l.seq0 + l.next.Row
		ev.Txn = Txn{ID: l.tbl.txnID, Seq: int(seq), Last: seq == t.Rows}
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

// schemaEvent announces a table before its rows: a create_table DDL event,
// the first of the table's transaction.
func (l *snapLoader) schemaEvent(t *SnapshotTable) *Event {
	return &Event{
		Version: FormatVersion, Source: l.man.Source, Op: OpDDL, Database: t.Database, Table: t.Table,
		Columns: t.Columns, PrimaryKey: t.PrimaryKey, SQL: t.CreateSQL, Snapshot: true,
		DDL: &DDL{Statement: t.CreateSQL, Kind: "create_table", Qualified: true,
			Tables: []TableRef{{DB: t.Database, Table: t.Table}}},
		Position:  l.man.Position,
		Timestamp: l.man.Started,
		Txn:       Txn{ID: l.tbl.txnID, Seq: 0, Last: t.Rows == 0},
	}
}

// load reads data object i of table t whole, checks it against the
// manifest and skips the rows already acknowledged. A part that is
// missing or does not match is an [ErrSnapshotDamaged] error, and the
// snapshot is marked damaged.
func (l *snapLoader) load(ctx context.Context, t *SnapshotTable, i int) error {
	obj := &t.Objects[i]
	data, err := l.fetch(ctx, obj)
	if err != nil {
		return err
	}
	for r := int64(0); r < l.next.Row; r++ {
		_, data, _ = bytes.Cut(data, []byte{'\n'})
	}
	l.closeObject()
	l.ahead, l.open = decodeRows(l.man, l.tbl, data, l.quit), true
	l.seq0 = 1 + t.RowsBefore(i)
	return nil
}

// fetch returns the uncompressed lines of obj after checking their
// digest and row count.
func (l *snapLoader) fetch(ctx context.Context, obj *SnapshotObject) ([]byte, error) {
	info, err := l.obs.GetInfo(ctx, obj.Name)
	if errors.Is(err, jetstream.ErrObjectNotFound) {
		return nil, l.damaged(ctx, obj, errors.New("the object is missing"))
	}
	if err != nil {
		return nil, fmt.Errorf("reading snapshot %s object %s: %w", l.man.ID, obj.Name, err)
	}
	// A missing chunk would leave the read waiting for it until it times
	// out: count them first.
	if missing := l.missingChunks(ctx, info); missing != nil {
		return nil, l.damaged(ctx, obj, missing)
	}
	// The Object Store gives a read without a deadline 5 s: allow a slow
	// link 1 MiB/s for the object's stored size, and 30 s at least.
	fctx, cancel := context.WithTimeout(ctx, 30*time.Second+time.Duration(info.Size>>20)*time.Second)
	defer cancel()
	stored, err := l.obs.GetBytes(fctx, obj.Name)
	if err != nil {
		if errors.Is(err, jetstream.ErrDigestMismatch) || errors.Is(err, jetstream.ErrObjectNotFound) {
			return nil, l.damaged(ctx, obj, err)
		}
		return nil, fmt.Errorf("reading snapshot %s object %s: %w", l.man.ID, obj.Name, err)
	}
	if l.man.Version >= 2 {
		if sum := sha256.Sum256(stored); hex.EncodeToString(sum[:]) != obj.SHA256 {
			return nil, l.damaged(ctx, obj, fmt.Errorf("%d stored bytes with SHA-256 %x, the manifest says %s", len(stored), sum, obj.SHA256))
		}
	}
	gz, err := gzip.NewReader(bytes.NewReader(stored))
	if err != nil {
		return nil, l.damaged(ctx, obj, fmt.Errorf("not gzip: %w", err))
	}
	data := make([]byte, 0, obj.Bytes+bytes.MinRead) // ReadFrom wants MinRead free before its last read
	buf := bytes.NewBuffer(data)
	// One byte more than the manifest says shows a longer object.
	if _, err := io.Copy(buf, io.LimitReader(gz, obj.Bytes+1)); err != nil {
		return nil, l.damaged(ctx, obj, fmt.Errorf("decompressing: %w", err))
	}
	data = buf.Bytes()
	if int64(len(data)) != obj.Bytes {
		return nil, l.damaged(ctx, obj, fmt.Errorf("%d bytes uncompressed, the manifest says %d", len(data), obj.Bytes))
	}
	if l.man.Version == 1 {
		if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != obj.SHA256 {
			return nil, l.damaged(ctx, obj, fmt.Errorf("%d bytes with SHA-256 %x, the manifest says %s", len(data), sum, obj.SHA256))
		}
	}
	if n := int64(bytes.Count(data, []byte{'\n'})); n != obj.Rows {
		return nil, l.damaged(ctx, obj, fmt.Errorf("%d rows, the manifest says %d", n, obj.Rows))
	}
	return data, nil
}

// missingChunks tells whether the stream behind the Object Store holds
// fewer chunks of the object than its description says.
func (l *snapLoader) missingChunks(ctx context.Context, info *jetstream.ObjectInfo) error {
	stream, err := l.js.Stream(ctx, "OBJ_"+SnapshotBucket(l.man.Source))
	if err != nil {
		return nil
	}
	subj := "$O." + SnapshotBucket(l.man.Source) + ".C." + info.NUID
	si, err := stream.Info(ctx, jetstream.WithSubjectFilter(subj))
	if err != nil {
		return nil
	}
	if have := si.State.Subjects[subj]; have != uint64(info.Chunks) {
		return fmt.Errorf("the Object Store holds %d of its %d chunks", have, info.Chunks)
	}
	return nil
}

// damaged marks the snapshot damaged and returns the error naming it and
// the part.
func (l *snapLoader) damaged(ctx context.Context, obj *SnapshotObject, cause error) error {
	markDamaged(context.WithoutCancel(ctx), l.kv, SnapshotDamage{Snapshot: l.man.ID, Object: obj.Name, Error: cause.Error(), Found: time.Now().UTC()})
	return fmt.Errorf("%w: snapshot %s of source %s, part %s: %v; it is marked damaged, and consumers that start from now on load the newest sound snapshot (take a new one with `databus snapshot`)",
		ErrSnapshotDamaged, l.man.ID, l.man.Source, obj.Name, cause)
}

// ack records that the application is done with the row before at.
func (l *snapLoader) ack(at SnapshotProgress) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.acked.Done { // an acknowledgement arriving after the load finished
		l.acked, l.dirty = at, true
	}
}

// save stores the acknowledged progress, at most every second unless
// force.
func (l *snapLoader) save(ctx context.Context, force bool) error {
	l.mu.Lock()
	if l.key == "" || !l.dirty || (!force && time.Since(l.saved) < time.Second) {
		l.mu.Unlock()
		return nil
	}
	b, _ := json.Marshal(l.acked)
	l.dirty, l.saved = false, time.Now()
	l.mu.Unlock()
	if _, err := l.kv.Put(ctx, l.key, b); err != nil {
		l.mu.Lock()
		l.dirty = true
		l.mu.Unlock()
		return fmt.Errorf("saving snapshot progress: %w", err)
	}
	return nil
}

// finish marks the snapshot loaded for good.
func (l *snapLoader) finish(ctx context.Context) error {
	l.closeObject()
	l.mu.Lock()
	l.acked, l.dirty = SnapshotProgress{Snapshot: l.man.ID, Table: len(l.man.Tables), Done: true}, true
	l.mu.Unlock()
	return l.save(ctx, true)
}

// startSnapshot prepares a consumer that starts from the latest sound
// snapshot (or continues loading the one it was loading) and returns the
// stream sequence its changes start at. done reports a durable consumer
// that finished loading earlier.
func startSnapshot(ctx context.Context, js jetstream.JetStream, s jetstream.Stream, cfg Config, keep func(db, table string) bool) (l *snapLoader, startSeq uint64, done bool, err error) {
	kv, err := js.KeyValue(ctx, StateBucket(cfg.Source))
	if err != nil {
		return nil, 0, false, fmt.Errorf("%w of source %q: opening bucket %s: %v", ErrNoSnapshot, cfg.Source, StateBucket(cfg.Source), err)
	}
	var prog SnapshotProgress
	if cfg.ResumeSnapshot != nil {
		p, err := cfg.ResumeSnapshot(ctx)
		if err != nil {
			return nil, 0, false, fmt.Errorf("reading the application's snapshot position: %w", err)
		}
		if p != nil {
			prog = *p
		}
	}
	if cfg.Name != "" && prog.Snapshot == "" {
		e, err := kv.Get(ctx, SnapshotProgressKey(cfg.Name))
		switch {
		case err == nil:
			if err := json.Unmarshal(e.Value(), &prog); err != nil {
				return nil, 0, false, fmt.Errorf("snapshot progress of consumer %s: %w", cfg.Name, err)
			}
		case !errors.Is(err, jetstream.ErrKeyNotFound):
			return nil, 0, false, fmt.Errorf("reading snapshot progress of consumer %s: %w", cfg.Name, err)
		}
	}
	if prog.Done {
		return nil, 0, true, nil
	}
	var man *Manifest
	switch {
	case prog.Snapshot != "":
		// Half loaded: only the same snapshot continues it.
		man, err = ReadManifest(ctx, js, cfg.Source, prog.Snapshot)
		if err == nil {
			var d *SnapshotDamage
			if d, err = ReadSnapshotDamage(ctx, kv, man.ID); err == nil && d != nil {
				err = fmt.Errorf("%w: consumer %s was loading snapshot %s, which is damaged (%s: %s); the rows it loaded are sound, but the rest cannot be read: start over from the newest sound snapshot (empty the target, delete the consumer and key %s of bucket %s)",
					ErrSnapshotDamaged, cfg.Name, man.ID, d.Object, d.Error, SnapshotProgressKey(cfg.Name), StateBucket(cfg.Source))
			}
		}
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
	l = &snapLoader{js: js, obs: obs, kv: kv, man: man, keep: keep, next: prog, acked: prog, saved: time.Now(), quit: make(chan struct{})}
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

// decodeValues appends the values of a stored row, a JSON array of nulls,
// numbers and strings, to vals as [json.Decoder] with UseNumber decodes
// them (nil, json.Number, string). Anything else is an error.
func decodeValues(line []byte, vals []any) ([]any, error) {
	s := &scanner{data: line}
	start := len(vals)
	for n := 0; ; n++ {
		ok, err := s.more(n, '[', ']')
		if err == nil && ok {
			var v any
			if v, err = s.value(); err == nil {
				vals = append(vals, v)
				continue
			}
		}
		if err == nil && s.peek() == 0 {
			return vals, nil
		}
		return decodeValuesSlowly(line, vals[:start])
	}
}

// decodeValuesSlowly is decodeValues with encoding/json, for rows the
// scanner leaves to it (escapes it does not decode, malformed input).
func decodeValuesSlowly(line []byte, vals []any) ([]any, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.UseNumber()
	var row []any
	if err := dec.Decode(&row); err != nil {
		return nil, fmt.Errorf("decoding row: %w: %.80q", err, line)
	}
	if dec.More() {
		return nil, fmt.Errorf("decoding row: data after the array: %.80q", line)
	}
	for i, v := range row {
		switch v.(type) {
		case nil, string, json.Number:
		default:
			return nil, fmt.Errorf("decoding row: value %d is a %T, want null, a number or a string: %.80q", i+1, v, line)
		}
	}
	return append(vals, row...), nil
}
