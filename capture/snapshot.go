package capture

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/ddl"
	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/sdk"
)

// ErrSnapshotRunning is returned when a snapshot of the source is already
// being taken.
var ErrSnapshotRunning = errors.New("a snapshot is already running")

// ErrSnapshotAbandoned is returned when a snapshot could not be completed;
// the previous latest snapshot stays the latest.
var ErrSnapshotAbandoned = errors.New("snapshot abandoned")

// SnapshotOptions tunes [TakeSnapshot].
type SnapshotOptions struct {
	// Keep is how many complete snapshots are kept; 2 when zero. A
	// snapshot a durable consumer is still loading is never deleted.
	Keep int
	// ObjectBytes is the uncompressed size at which a data object is
	// closed and the next one started; 32 MiB when zero.
	ObjectBytes int64
	// HandoffTimeout bounds the wait for capture to publish every change
	// up to the snapshot's position; 2 minutes when zero.
	HandoffTimeout time.Duration
	// Progress, when set, is called about every second and after each
	// table.
	Progress func(SnapshotProgress)
}

// SnapshotProgress reports how far a snapshot is.
type SnapshotProgress struct {
	ID                 string
	Tables, TablesDone int
	// Table is the table being read, "db.table".
	Table string
	Rows  int64
	// RowsEstimate is the server's estimate of the rows to read.
	RowsEstimate int64
	Bytes        int64
	Elapsed      time.Duration
	// Phase is "reading", "handoff" (waiting for capture to reach the
	// snapshot's position) or "done".
	Phase string
}

const (
	snapshotLockKey   = "snapshot.running"
	lockStaleAfter    = 30 * time.Second
	lockHeartbeat     = 5 * time.Second
	systemSchemasList = "'mysql','information_schema','performance_schema','sys'"
)

// TakeSnapshot reads every captured table of the source inside one
// consistent read view, stores the rows in the source's Object Store bucket
// and, once complete, publishes the snapshot as the latest with the binlog
// position, GTID set and stream sequence it is consistent with. It needs
// `databus run` to be capturing the source: the stream sequence is known
// only once capture has published every change before the snapshot's
// position.
func TakeSnapshot(ctx context.Context, cfg Config, nc *nats.Conn, opt SnapshotOptions) (*sdk.Manifest, error) {
	if opt.Keep <= 0 {
		opt.Keep = 2
	}
	if opt.ObjectBytes <= 0 {
		opt.ObjectBytes = 32 << 20
	}
	if opt.HandoffTimeout <= 0 {
		opt.HandoffTimeout = 2 * time.Minute
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	stream, kv, err := ensureStream(ctx, js, cfg.Source, cfg.Stream)
	if err != nil {
		return nil, err
	}
	obs, err := js.CreateOrUpdateObjectStore(ctx, jetstream.ObjectStoreConfig{
		Bucket:      sdk.SnapshotBucket(cfg.Source),
		Description: "databus snapshots of source " + cfg.Source,
		Storage:     jetstream.FileStorage,
		Replicas:    max(cfg.Stream.Replicas, 1),
	})
	if err != nil {
		return nil, fmt.Errorf("creating snapshot bucket %s: %w", sdk.SnapshotBucket(cfg.Source), err)
	}
	s := &snapshotter{cfg: cfg, opt: opt, js: js, kv: kv, obs: obs, stream: stream,
		man: sdk.Manifest{Version: 1, Source: cfg.Source, Started: time.Now().UTC()}}
	s.man.ID = s.man.Started.Format("20060102T150405Z")
	s.prog.ID = s.man.ID

	unlock, err := s.lock(ctx)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := s.removePartial(ctx); err != nil {
		return nil, err
	}
	if err := s.take(ctx); err != nil {
		s.removeSnapshot(context.WithoutCancel(ctx), s.man.ID)
		return nil, fmt.Errorf("%w: snapshot %s of source %s: %w (the previous latest snapshot stays the latest)", ErrSnapshotAbandoned, s.man.ID, cfg.Source, err)
	}
	if err := s.prune(ctx); err != nil {
		return &s.man, fmt.Errorf("snapshot %s is complete, but removing old snapshots failed: %w", s.man.ID, err)
	}
	return &s.man, nil
}

// HasSnapshot reports whether source has a complete snapshot.
func HasSnapshot(ctx context.Context, nc *nats.Conn, source string) (bool, error) {
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
	opt    SnapshotOptions
	js     jetstream.JetStream
	kv     jetstream.KeyValue
	obs    jetstream.ObjectStore
	stream jetstream.Stream
	man    sdk.Manifest
	prog   SnapshotProgress
	shown  time.Time
}

type snapshotLock struct {
	ID        string    `json:"id"`
	Host      string    `json:"host"`
	PID       int       `json:"pid"`
	Heartbeat time.Time `json:"heartbeat"`
}

// lock makes this the only snapshot of the source being taken. A lock whose
// holder stopped renewing it (killed) is taken over.
func (s *snapshotter) lock(ctx context.Context) (unlock func(), err error) {
	host, _ := os.Hostname()
	me := snapshotLock{ID: s.man.ID, Host: host, PID: os.Getpid()}
	value := func() []byte {
		me.Heartbeat = time.Now().UTC()
		b, _ := json.Marshal(me)
		return b
	}
	rev, err := s.kv.Create(ctx, snapshotLockKey, value())
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := s.kv.Get(ctx, snapshotLockKey)
		if gerr != nil {
			return nil, fmt.Errorf("reading the snapshot lock: %w", gerr)
		}
		var other snapshotLock
		_ = json.Unmarshal(e.Value(), &other)
		if age := time.Since(other.Heartbeat); age < lockStaleAfter {
			return nil, fmt.Errorf("%w: snapshot %s of source %s, started by pid %d on %s, was alive %s ago; wait for it to finish",
				ErrSnapshotRunning, other.ID, s.cfg.Source, other.PID, other.Host, age.Round(time.Second))
		}
		rev, err = s.kv.Update(ctx, snapshotLockKey, value(), e.Revision())
	}
	if err != nil {
		return nil, fmt.Errorf("taking the snapshot lock: %w", err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(lockHeartbeat)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				if r, err := s.kv.Update(ctx, snapshotLockKey, value(), rev); err == nil {
					rev = r
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		_ = s.kv.Delete(context.WithoutCancel(ctx), snapshotLockKey, jetstream.LastRevision(rev))
	}, nil
}

// snapshotIDs lists the snapshots in the bucket and whether each is
// complete (has its manifest).
func (s *snapshotter) snapshotIDs(ctx context.Context) (map[string]bool, error) {
	objs, err := s.obs.List(ctx)
	if errors.Is(err, jetstream.ErrNoObjectsFound) {
		return map[string]bool{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("listing snapshot objects: %w", err)
	}
	ids := map[string]bool{}
	for _, o := range objs {
		id, rest, _ := strings.Cut(o.Name, "/")
		ids[id] = ids[id] || rest == "manifest.json"
	}
	return ids, nil
}

// removePartial deletes what interrupted snapshots left behind.
func (s *snapshotter) removePartial(ctx context.Context) error {
	ids, err := s.snapshotIDs(ctx)
	if err != nil {
		return err
	}
	for id, complete := range ids {
		if !complete {
			s.removeSnapshot(ctx, id)
		}
	}
	return nil
}

// removeSnapshot deletes every object of snapshot id, the manifest first so
// that it is never seen half deleted.
func (s *snapshotter) removeSnapshot(ctx context.Context, id string) {
	_ = s.obs.Delete(ctx, sdk.ManifestName(id))
	objs, err := s.obs.List(ctx)
	if err != nil {
		return
	}
	for _, o := range objs {
		if strings.HasPrefix(o.Name, id+"/") {
			_ = s.obs.Delete(ctx, o.Name)
		}
	}
}

// prune keeps the newest opt.Keep complete snapshots and any a durable
// consumer is still loading.
func (s *snapshotter) prune(ctx context.Context) error {
	ids, err := s.snapshotIDs(ctx)
	if err != nil {
		return err
	}
	var complete []string
	for id, ok := range ids {
		if ok {
			complete = append(complete, id)
		}
	}
	slices.Sort(complete)
	if len(complete) <= s.opt.Keep {
		return nil
	}
	pinned := map[string]bool{}
	keys, err := s.kv.ListKeysFiltered(ctx, "consumer.*.snapshot")
	if err != nil {
		return fmt.Errorf("listing consumer snapshot progress: %w", err)
	}
	for k := range keys.Keys() {
		e, err := s.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var p struct {
			Snapshot string `json:"snapshot"`
			Done     bool   `json:"done"`
		}
		if json.Unmarshal(e.Value(), &p) == nil && !p.Done {
			pinned[p.Snapshot] = true
		}
	}
	for _, id := range complete[:len(complete)-s.opt.Keep] {
		if !pinned[id] {
			s.removeSnapshot(ctx, id)
		}
	}
	return nil
}

// take reads the tables and publishes the snapshot.
func (s *snapshotter) take(ctx context.Context) error {
	db, err := connect(ctx, s.cfg.MySQL)
	if err != nil {
		return err
	}
	defer db.Close()
	info, err := inspect(ctx, db)
	if err != nil {
		return err
	}
	conn, err := db.Conn(ctx)
	if err != nil {
		return classify(s.cfg.MySQL, err)
	}
	defer conn.Close()
	if err := s.begin(ctx, conn, info); err != nil {
		return err
	}
	tables, err := s.tables(ctx, conn)
	if err != nil {
		return err
	}
	s.prog.Tables, s.prog.Phase = len(tables), "reading"
	for i := range tables {
		if err := s.readTable(ctx, conn, tables[i]); err != nil {
			return err
		}
		s.prog.TablesDone++
		s.report(true)
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
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
		return fmt.Errorf("storing the manifest: %w", err)
	}
	if _, err := s.kv.PutString(ctx, sdk.LatestSnapshotKey, s.man.ID); err != nil {
		return fmt.Errorf("publishing the snapshot as the latest: %w", err)
	}
	s.prog.Phase = "done"
	s.report(true)
	return nil
}

// begin opens the consistent read view and records the binlog position and
// GTID set it matches. MariaDB reports the position of a consistent
// snapshot without any lock; MySQL needs FLUSH TABLES WITH READ LOCK for
// the moment it takes to start the transaction.
func (s *snapshotter) begin(ctx context.Context, conn *sql.Conn, info ServerInfo) error {
	for _, q := range []string{
		"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
		"SET NAMES binary",
		"SET time_zone = '+00:00'",
		"SET SESSION net_write_timeout = 3600",
	} {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("%s: %w", q, err)
		}
	}
	pos := sdk.Position{ServerID: info.ServerID, ServerUUID: info.ServerUUID}
	if info.Flavor() == "mariadb" {
		if _, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
			return fmt.Errorf("starting the snapshot transaction: %w", err)
		}
		var name, file, offset string
		if err := conn.QueryRowContext(ctx, "SHOW STATUS LIKE 'binlog_snapshot_file'").Scan(&name, &file); err != nil {
			return fmt.Errorf("reading binlog_snapshot_file: %w", err)
		}
		if err := conn.QueryRowContext(ctx, "SHOW STATUS LIKE 'binlog_snapshot_position'").Scan(&name, &offset); err != nil {
			return fmt.Errorf("reading binlog_snapshot_position: %w", err)
		}
		if _, err := fmt.Sscan(offset, &pos.Offset); err != nil || file == "" {
			return fmt.Errorf("%w: the server reports no binlog snapshot position (file %q, offset %q): is log_bin on?", ErrSourceSettings, file, offset)
		}
		pos.File = file
		var gtids sql.NullString
		if err := conn.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", file, pos.Offset).Scan(&gtids); err == nil {
			s.man.GTIDSet = gtids.String
		}
	} else {
		if _, err := conn.ExecContext(ctx, "FLUSH TABLES WITH READ LOCK"); err != nil {
			return fmt.Errorf("FLUSH TABLES WITH READ LOCK (needs the RELOAD privilege): %w", err)
		}
		_, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY")
		if err == nil {
			var file string
			file, pos.Offset, err = masterStatus(ctx, conn, info)
			pos.File = file
			if err == nil {
				_ = conn.QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_executed").Scan(&s.man.GTIDSet)
			}
		}
		if _, uerr := conn.ExecContext(ctx, "UNLOCK TABLES"); err == nil {
			err = uerr
		}
		if err != nil {
			return fmt.Errorf("starting the snapshot transaction: %w", err)
		}
	}
	s.man.Position = pos
	return nil
}

type snapTable struct {
	t        *table
	estimate int64
}

// tables lists the captured base tables with their columns and keys.
func (s *snapshotter) tables(ctx context.Context, conn *sql.Conn) ([]snapTable, error) {
	type key struct{ db, name string }
	var order []key
	estimates := map[key]int64{}
	err := queryEach(ctx, conn, "SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES "+
		"WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ("+systemSchemasList+") ORDER BY TABLE_SCHEMA, TABLE_NAME",
		func(v []string) error {
			k := key{v[0], v[1]}
			if s.cfg.Filter.Table(k.db, k.name) {
				order = append(order, k)
				var n int64
				fmt.Sscan(v[2], &n)
				estimates[k] = n
				s.prog.RowsEstimate += n
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	cols := map[key][]rowcodec.Column{}
	generated := map[key]map[string]bool{}
	err = queryEach(ctx, conn, "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, COALESCE(CHARACTER_SET_NAME, ''), IS_NULLABLE, EXTRA "+
		"FROM information_schema.COLUMNS WHERE TABLE_SCHEMA NOT IN ("+systemSchemasList+") ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
		func(v []string) error {
			k := key{v[0], v[1]}
			if _, ok := estimates[k]; !ok {
				return nil
			}
			c, err := rowcodec.ColumnFromSchema(v[2], v[3], v[4], v[5], v[6] == "YES")
			if err != nil {
				return fmt.Errorf("%w: %s.%s: %v", ErrUndecodable, k.db, k.name, err)
			}
			cols[k] = append(cols[k], c)
			if strings.Contains(strings.ToUpper(v[7]), "GENERATED") {
				if generated[k] == nil {
					generated[k] = map[string]bool{}
				}
				generated[k][c.Name] = true
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	pkNames := map[key][]string{}
	err = queryEach(ctx, conn, "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS "+
		"WHERE INDEX_NAME = 'PRIMARY' AND TABLE_SCHEMA NOT IN ("+systemSchemasList+") ORDER BY TABLE_SCHEMA, TABLE_NAME, SEQ_IN_INDEX",
		func(v []string) error {
			k := key{v[0], v[1]}
			pkNames[k] = append(pkNames[k], v[2])
			return nil
		})
	if err != nil {
		return nil, err
	}
	out := make([]snapTable, 0, len(order))
	for _, k := range order {
		var pk []int
		for _, name := range pkNames[k] {
			i := slices.IndexFunc(cols[k], func(c rowcodec.Column) bool { return c.Name == name })
			if i < 0 {
				return nil, fmt.Errorf("%s.%s changed while the snapshot started: primary key column %s is not among its columns", k.db, k.name, name)
			}
			pk = append(pk, i)
		}
		out = append(out, snapTable{t: buildTable(k.db, k.name, cols[k], pk, generated[k]), estimate: estimates[k]})
	}
	return out, nil
}

// queryEach runs q and calls f with each row's values as strings (NULL as
// "").
func queryEach(ctx context.Context, conn *sql.Conn, q string, f func([]string) error) error {
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return err
	}
	raw := make([]sql.RawBytes, len(names))
	dest := make([]any, len(names))
	for i := range raw {
		dest[i] = &raw[i]
	}
	vals := make([]string, len(names))
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		for i, r := range raw {
			vals[i] = string(r)
		}
		if err := f(vals); err != nil {
			return err
		}
	}
	return rows.Err()
}

// changedTableErr explains the errors InnoDB gives when a table changed
// after the snapshot's read view was opened.
func changedTableErr(t *table, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && (me.Number == 1412 || me.Number == 1146) {
		return fmt.Errorf("table %s was altered, created or dropped while the snapshot was being read (%v): run the snapshot again", t.qualified(), err)
	}
	return fmt.Errorf("reading %s: %w", t.qualified(), err)
}

// readTable writes one table's schema and rows.
func (s *snapshotter) readTable(ctx context.Context, conn *sql.Conn, st snapTable) error {
	t := st.t
	s.prog.Table = t.db + "." + t.name
	var name, create string
	if err := conn.QueryRowContext(ctx, "SHOW CREATE TABLE "+t.qualified()).Scan(&name, &create); err != nil {
		return changedTableErr(t, err)
	}
	entry := sdk.SnapshotTable{Database: t.db, Table: t.name, CreateSQL: qualifyCreate(create, t), Columns: t.wire, PrimaryKey: t.pkNames}

	exprs := make([]string, len(t.cols))
	for i := range t.cols {
		exprs[i] = rowcodec.SelectExpr(&t.cols[i])
	}
	q := "SELECT " + strings.Join(exprs, ", ") + " FROM " + t.qualified()
	if len(t.pk) > 0 {
		keys := make([]string, len(t.pk))
		for i, k := range t.pk {
			keys[i] = rowcodec.QuoteIdent(t.cols[k].Name)
		}
		q += " ORDER BY " + strings.Join(keys, ", ")
	}
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return changedTableErr(t, err)
	}
	defer rows.Close()
	raw := make([]sql.RawBytes, len(t.cols))
	dest := make([]any, len(t.cols))
	for i := range raw {
		dest[i] = &raw[i]
	}
	vals := make([]any, len(t.cols))
	base := sdk.Event{Version: sdk.FormatVersion, Source: s.cfg.Source, Position: s.man.Position,
		Timestamp: s.man.Started, Txn: sdk.Txn{ID: "snapshot:" + s.man.ID}, Snapshot: true}
	var w *objectWriter
	var line []byte
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return changedTableErr(t, err)
		}
		for i := range raw {
			v, err := rowcodec.FromText(&t.cols[i], raw[i])
			if err != nil {
				return fmt.Errorf("%w: %s column %s (%s): %v", ErrUndecodable, t.qualified(), t.cols[i].Name, t.cols[i].TypeName(), err)
			}
			vals[i] = v
		}
		evs, err := t.rowEvents(replication.WRITE_ROWS_EVENTv2, [][]any{vals}, base)
		if err != nil {
			return err
		}
		evs[0].ev.Txn.Seq = int(entry.Rows)
		if line, err = evs[0].encode(line[:0]); err != nil {
			return err
		}
		line = append(line, '\n')
		if w == nil {
			w = s.newObject(ctx, fmt.Sprintf("%s/data/%05d-%06d.jsonl.gz", s.man.ID, len(s.man.Tables), len(entry.Objects)))
		}
		if err := w.write(line); err != nil {
			return err
		}
		entry.Rows++
		s.prog.Rows++
		s.prog.Bytes += int64(len(line))
		if w.bytes >= s.opt.ObjectBytes {
			if err := s.closeObject(w, &entry); err != nil {
				return err
			}
			w = nil
		}
		s.report(false)
	}
	if err := rows.Err(); err != nil {
		if w != nil {
			w.abort(err)
		}
		return changedTableErr(t, err)
	}
	if w != nil {
		if err := s.closeObject(w, &entry); err != nil {
			return err
		}
	}
	s.man.Tables = append(s.man.Tables, entry)
	s.man.Rows += entry.Rows
	s.man.Bytes += entry.Bytes
	return nil
}

// qualifyCreate turns SHOW CREATE TABLE's output into a statement that
// runs on a target without USE and without failing when the table exists.
func qualifyCreate(create string, t *table) string {
	prefix := "CREATE TABLE " + rowcodec.QuoteIdent(t.name) + " "
	if rest, ok := strings.CutPrefix(create, prefix); ok {
		return "CREATE TABLE IF NOT EXISTS " + t.qualified() + " " + rest
	}
	if r := ddl.Qualify(create, t.db); r.Qualified {
		return r.SQL
	}
	return create
}

// objectWriter streams gzip-compressed lines into one Object Store object.
type objectWriter struct {
	name  string
	pw    *io.PipeWriter
	gz    *gzip.Writer
	sum   hash.Hash
	rows  int64
	bytes int64
	done  chan putResult
}

type putResult struct {
	info *jetstream.ObjectInfo
	err  error
}

func (s *snapshotter) newObject(ctx context.Context, name string) *objectWriter {
	pr, pw := io.Pipe()
	w := &objectWriter{name: name, pw: pw, sum: sha256.New(), done: make(chan putResult, 1)}
	w.gz, _ = gzip.NewWriterLevel(pw, gzip.BestSpeed)
	go func() {
		info, err := s.obs.Put(ctx, jetstream.ObjectMeta{Name: name}, pr)
		pr.CloseWithError(err)
		w.done <- putResult{info, err}
	}()
	return w
}

func (w *objectWriter) write(line []byte) error {
	if _, err := w.gz.Write(line); err != nil {
		return fmt.Errorf("storing snapshot object %s: %w", w.name, err)
	}
	w.sum.Write(line)
	w.rows++
	w.bytes += int64(len(line))
	return nil
}

func (w *objectWriter) abort(err error) {
	w.pw.CloseWithError(err)
	<-w.done
}

func (s *snapshotter) closeObject(w *objectWriter, entry *sdk.SnapshotTable) error {
	err := w.gz.Close()
	w.pw.CloseWithError(err)
	res := <-w.done
	if err == nil {
		err = res.err
	}
	if err != nil {
		return fmt.Errorf("storing snapshot object %s (is the JetStream store full?): %w", w.name, err)
	}
	entry.Objects = append(entry.Objects, sdk.SnapshotObject{Name: w.name, Rows: w.rows, Bytes: w.bytes, SHA256: hex.EncodeToString(w.sum.Sum(nil))})
	entry.Bytes += w.bytes
	s.man.StoredBytes += int64(res.info.Size)
	return nil
}

func (s *snapshotter) report(force bool) {
	if s.opt.Progress == nil || (!force && time.Since(s.shown) < time.Second) {
		return
	}
	s.shown = time.Now()
	s.prog.Elapsed = time.Since(s.man.Started)
	s.opt.Progress(s.prog)
}

// handoff waits until capture has published every change before the
// snapshot's position, then returns the stream sequence of the last message
// whose event the snapshot contains.
func (s *snapshotter) handoff(ctx context.Context) (uint64, error) {
	p := s.man.Position
	p.Row = 0
	deadline := time.Now().Add(s.opt.HandoffTimeout)
	var hi uint64
	for {
		cp, err := loadCheckpoint(ctx, s.kv)
		if err != nil {
			return 0, err
		}
		if cp != nil && cp.ServerID == p.ServerID && (sdk.Position{File: cp.File, Offset: cp.Offset}).Compare(p) >= 0 {
			hi = cp.StreamSeq
			break
		}
		last, seq, _, err := lastPublished(ctx, s.stream)
		if err != nil {
			return 0, err
		}
		if last != nil && last.Compare(p) > 0 {
			hi = seq
			break
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("capture of source %s has not reached the snapshot's binlog position %s within %s: is `databus run` running for this source?",
				s.cfg.Source, p, s.opt.HandoffTimeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
		s.report(false)
	}
	info, err := s.stream.Info(ctx)
	if err != nil {
		return 0, fmt.Errorf("reading stream info: %w", err)
	}
	// Largest sequence in [first, hi] whose event is at or before p; the
	// messages are in position order.
	lo, r := info.State.FirstSeq-1, hi+1
	if info.State.FirstSeq == 0 {
		lo = 0
	}
	for r-lo > 1 {
		mid := lo + (r-lo)/2
		seq, pos, found, err := s.positionFrom(ctx, mid, r)
		if err != nil {
			return 0, err
		}
		switch {
		case !found:
			r = mid
		case pos.Compare(p) <= 0:
			lo = seq
		default:
			r = seq
		}
	}
	return lo, nil
}

// positionFrom returns the first message at or after seq and before end,
// with its event's position.
func (s *snapshotter) positionFrom(ctx context.Context, seq, end uint64) (uint64, sdk.Position, bool, error) {
	for ; seq < end; seq++ {
		m, err := s.stream.GetMsg(ctx, seq)
		if errors.Is(err, jetstream.ErrMsgNotFound) {
			continue
		}
		if err != nil {
			return 0, sdk.Position{}, false, fmt.Errorf("reading stream message %d: %w", seq, err)
		}
		pos, err := parseMsgID(m.Header.Get(jetstream.MsgIDHeader))
		if err != nil {
			return 0, sdk.Position{}, false, fmt.Errorf("stream message %d: %w", seq, err)
		}
		return seq, pos, true, nil
	}
	return 0, sdk.Position{}, false, nil
}
