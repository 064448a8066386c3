package capture

import (
	"bytes"
	"cmp"
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
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/klauspost/compress/gzip"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/ddl"
	"github.com/databus/databus/internal/filter"
	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/internal/rowevent"
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
	// Parallel is how many tables are read at the same time, each on a
	// connection of its own inside the same read view; the number of CPUs,
	// at most 4, when zero. 1 reads the tables one after the other.
	Parallel int
	// Progress, when set, is called about every second and after each
	// table, from one goroutine at a time.
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
	// Readers is how many tables are read at the same time:
	// SnapshotOptions.Parallel, or fewer when there are fewer tables or
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
		quoted[i] = rowcodec.QuoteString(db)
	}
	return strings.Join(quoted, ",")
}()

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
	if opt.Parallel <= 0 {
		opt.Parallel = min(runtime.NumCPU(), 4)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, fmt.Errorf("opening JetStream: %w", err)
	}
	stream, kv, err := bus.Ensure(ctx, js, cfg.Source, cfg.Stream)
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
	// bufs holds the buffers of lines on their way to the compressor; nil
	// ones are allocated on first use. Their number bounds the memory.
	bufs chan []byte

	// mu guards man's totals, prog and shown while tables are read in
	// parallel.
	mu    sync.Mutex
	man   sdk.Manifest
	prog  SnapshotProgress
	shown time.Time
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
	rev, err := s.kv.Create(ctx, bus.SnapshotLockKey, value())
	if errors.Is(err, jetstream.ErrKeyExists) {
		e, gerr := s.kv.Get(ctx, bus.SnapshotLockKey)
		if gerr != nil {
			return nil, fmt.Errorf("reading the snapshot lock: %w", gerr)
		}
		var other snapshotLock
		_ = json.Unmarshal(e.Value(), &other)
		if age := time.Since(other.Heartbeat); age < lockStaleAfter {
			return nil, fmt.Errorf("%w: snapshot %s of source %s, started by pid %d on %s, was alive %s ago; wait for it to finish",
				ErrSnapshotRunning, other.ID, s.cfg.Source, other.PID, other.Host, age.Round(time.Second))
		}
		rev, err = s.kv.Update(ctx, bus.SnapshotLockKey, value(), e.Revision())
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
				if r, err := s.kv.Update(ctx, bus.SnapshotLockKey, value(), rev); err == nil {
					rev = r
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		_ = s.kv.Delete(context.WithoutCancel(ctx), bus.SnapshotLockKey, jetstream.LastRevision(rev))
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
		id, manifest := sdk.SnapshotOfObject(o.Name)
		ids[id] = ids[id] || manifest
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
	keys, err := s.kv.ListKeysFiltered(ctx, sdk.SnapshotProgressKeys)
	if err != nil {
		return fmt.Errorf("listing consumer snapshot progress: %w", err)
	}
	for k := range keys.Keys() {
		e, err := s.kv.Get(ctx, k)
		if err != nil {
			continue
		}
		var p sdk.SnapshotProgress
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
	db, err := mysqlsrc.Connect(ctx, s.cfg.MySQL)
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(s.opt.Parallel + 1)
	info, err := mysqlsrc.Inspect(ctx, db)
	if err != nil {
		return err
	}
	conns, err := s.begin(ctx, db, info)
	if err != nil {
		return err
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if testHookViewOpened != nil {
		testHookViewOpened()
	}
	tables, err := s.tables(ctx, conns[0])
	if err != nil {
		return err
	}
	if err := s.holdTables(ctx, conns[0], info, tables); err != nil {
		return err
	}
	for len(conns) > max(len(tables), 1) {
		last := conns[len(conns)-1]
		_, _ = last.ExecContext(ctx, "ROLLBACK")
		last.Close()
		conns = conns[:len(conns)-1]
	}
	s.prog.Tables, s.prog.Readers, s.prog.Phase = len(tables), len(conns), "reading"
	s.man.Tables = make([]sdk.SnapshotTable, len(tables))
	for i := range tables {
		tables[i].index = i
	}
	s.bufs = make(chan []byte, 3*len(conns))
	for range cap(s.bufs) {
		s.bufs <- nil
	}
	if err := s.readTables(ctx, conns, tables); err != nil {
		return err
	}
	for _, c := range conns {
		if _, err := c.ExecContext(ctx, "COMMIT"); err != nil {
			return fmt.Errorf("ending the snapshot transaction: %w", err)
		}
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

// begin opens the consistent read view on up to opt.Parallel connections
// and records the binlog position and GTID set it matches. MariaDB reports
// the position of a consistent snapshot without any lock; MySQL needs FLUSH
// TABLES WITH READ LOCK for the moment it takes to start the transactions.
func (s *snapshotter) begin(ctx context.Context, db *sql.DB, info mysqlsrc.ServerInfo) ([]*sql.Conn, error) {
	conns := make([]*sql.Conn, 0, s.opt.Parallel)
	closeAll := func() {
		for _, c := range conns {
			_, _ = c.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
			c.Close()
		}
	}
	for range s.opt.Parallel {
		conn, err := db.Conn(ctx)
		if err != nil {
			closeAll()
			return nil, mysqlsrc.Classify(s.cfg.MySQL, err)
		}
		conns = append(conns, conn)
		for _, q := range []string{
			"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
			"SET NAMES binary",
			"SET time_zone = '+00:00'",
			"SET SESSION net_write_timeout = 3600",
		} {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				closeAll()
				return nil, fmt.Errorf("%s: %w", q, err)
			}
		}
	}
	pos := sdk.Position{ServerID: info.ServerID, ServerUUID: info.ServerUUID}
	var err error
	if info.Flavor() == "mariadb" {
		var kept int
		kept, pos.File, pos.Offset, err = beginMariaDB(ctx, conns)
		if err == nil {
			for _, c := range conns[kept:] {
				_, _ = c.ExecContext(ctx, "ROLLBACK")
				c.Close()
			}
			conns = conns[:kept]
			var gtids sql.NullString
			if err := conns[0].QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", pos.File, pos.Offset).Scan(&gtids); err == nil {
				s.man.GTIDSet = gtids.String
			}
		}
	} else {
		pos.File, pos.Offset, err = s.beginMySQL(ctx, conns, info)
	}
	if err != nil {
		closeAll()
		return nil, err
	}
	s.man.Position = pos
	return conns, nil
}

// snapshotAttempts is how often MariaDB's parallel read views are opened
// again when writes committed between them.
const snapshotAttempts = 5

// beginMariaDB starts a consistent snapshot on every connection at the same
// moment and returns the binlog position of the read view. MariaDB gives
// each connection a view of its own: views with the same binlog snapshot
// position hold the same committed transactions (the position is taken
// under the lock that orders commits), so the connections are reordered to
// put the largest group of equal positions first and kept is its size. When
// writes committed between the views, they are opened again, up to
// snapshotAttempts times; then the group (at worst one connection) is used.
func beginMariaDB(ctx context.Context, conns []*sql.Conn) (kept int, file string, offset uint32, err error) {
	type view struct {
		file   string
		offset uint32
	}
	views := make([]view, len(conns))
	for attempt := 1; ; attempt++ {
		var g errgroup.Group
		for i, conn := range conns {
			g.Go(func() error {
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
				views[i] = view{file: file}
				if _, err := fmt.Sscan(offset, &views[i].offset); err != nil || file == "" {
					return fmt.Errorf("%w: the server reports no binlog snapshot position (file %q, offset %q): is log_bin on?", ErrSourceSettings, file, offset)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return 0, "", 0, err
		}
		count := map[view]int{}
		best := views[0]
		for _, v := range views {
			count[v]++
			if count[v] > count[best] {
				best = v
			}
		}
		if count[best] == len(conns) || attempt == snapshotAttempts {
			reordered := make([]*sql.Conn, 0, len(conns))
			for _, same := range []bool{true, false} {
				for i, v := range views {
					if (v == best) == same {
						reordered = append(reordered, conns[i])
					}
				}
			}
			copy(conns, reordered)
			return count[best], best.file, best.offset, nil
		}
		for _, conn := range conns {
			if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
				return 0, "", 0, fmt.Errorf("retrying the snapshot transaction: %w", err)
			}
		}
	}
}

// beginMySQL starts a consistent snapshot on every connection under FLUSH
// TABLES WITH READ LOCK, so that all see the same transactions, and returns
// the binlog position they match.
func (s *snapshotter) beginMySQL(ctx context.Context, conns []*sql.Conn, info mysqlsrc.ServerInfo) (file string, offset uint32, err error) {
	if _, err := conns[0].ExecContext(ctx, "FLUSH TABLES WITH READ LOCK"); err != nil {
		return "", 0, fmt.Errorf("FLUSH TABLES WITH READ LOCK (needs the RELOAD privilege): %w", err)
	}
	for _, conn := range conns {
		if _, err = conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
			break
		}
	}
	if err == nil {
		file, offset, err = mysqlsrc.MasterStatus(ctx, conns[0], info)
		if err == nil {
			_ = conns[0].QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_executed").Scan(&s.man.GTIDSet)
		}
	}
	if _, uerr := conns[0].ExecContext(ctx, "UNLOCK TABLES"); err == nil {
		err = uerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("starting the snapshot transaction: %w", err)
	}
	return file, offset, nil
}

type snapTable struct {
	t        *rowevent.Table
	estimate int64
	// index is the table's place in the manifest.
	index int
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
		out = append(out, snapTable{t: rowevent.NewTable(k.db, k.name, cols[k], pk, generated[k]), estimate: estimates[k]})
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

// testHookViewOpened, in tests only, runs right after a snapshot opened
// its read view.
var testHookViewOpened func()

// holdTables keeps the schema of every table as the read view sees it
// until the snapshot ends. Opening a table inside the transaction takes a
// metadata lock that makes DDL on it wait for the snapshot's end; a DDL
// statement that slipped in between the opening of the read view and these
// locks would leave the schema newer than the rows, so the binlog between
// the two is checked for one.
func (s *snapshotter) holdTables(ctx context.Context, conn *sql.Conn, info mysqlsrc.ServerInfo, tables []snapTable) error {
	for _, st := range tables {
		rows, err := conn.QueryContext(ctx, "SELECT 1 FROM "+st.t.Qualified()+" LIMIT 0")
		if err != nil {
			return changedTableErr(st.t, err)
		}
		rows.Close()
	}
	file, offset, err := mysqlsrc.MasterStatus(ctx, conn, info)
	if err != nil {
		return err
	}
	from := s.man.Position
	for from.File != file || from.Offset < offset {
		stmt, next, err := ddlIn(ctx, conn, from, file, offset)
		if err != nil {
			return err
		}
		if stmt != "" {
			return fmt.Errorf("a DDL statement ran while the snapshot started (%q): run the snapshot again", stmt)
		}
		if next == from {
			break
		}
		from = next
	}
	return nil
}

// ddlIn looks for a DDL statement among up to 1000 binlog events from at,
// not beyond endFile:endOffset. It returns the first one found and where
// the next look starts: the next file once at's file is read to its end.
func ddlIn(ctx context.Context, conn *sql.Conn, at sdk.Position, endFile string, endOffset uint32) (string, sdk.Position, error) {
	rows, err := conn.QueryContext(ctx, fmt.Sprintf("SHOW BINLOG EVENTS IN %s FROM %d LIMIT 1000", rowcodec.QuoteString(at.File), at.Offset))
	if err != nil {
		return "", at, fmt.Errorf("reading the binlog the snapshot started in (needs BINLOG MONITOR on MariaDB, REPLICATION SLAVE on MySQL): %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var logName, typ, serverID, info string
		var pos, end uint32
		if err := rows.Scan(&logName, &pos, &typ, &serverID, &end, &info); err != nil {
			return "", at, fmt.Errorf("SHOW BINLOG EVENTS: %w", err)
		}
		n++
		if at.File == endFile && pos >= endOffset {
			return "", sdk.Position{File: endFile, Offset: endOffset}, rows.Err()
		}
		if typ == "Query" && isDDL(info) {
			return info, at, nil
		}
		at.Offset = end
	}
	if err := rows.Err(); err != nil {
		return "", at, err
	}
	if n < 1000 && at.File != endFile {
		// The end of this file: go on with the next one.
		files, err := mysqlsrc.BinaryLogs(ctx, conn)
		if err != nil {
			return "", at, err
		}
		if i := slices.Index(files, at.File); i >= 0 && i+1 < len(files) {
			return "", sdk.Position{File: files[i+1], Offset: 4}, nil
		}
	}
	return "", at, nil
}

// isDDL tells a DDL statement from the statements that frame row changes
// in the binlog.
func isDDL(info string) bool {
	stmt := strings.TrimSpace(info)
	if strings.HasPrefix(stmt, "use ") {
		if _, rest, ok := strings.Cut(stmt, ";"); ok {
			stmt = strings.TrimSpace(rest)
		}
	}
	word, _, _ := strings.Cut(strings.ToUpper(stmt), " ")
	switch word {
	case "BEGIN", "COMMIT", "ROLLBACK", "XA", "SAVEPOINT", "":
		return false
	}
	return true
}

// changedTableErr explains the errors InnoDB gives when a table changed
// after the snapshot's read view was opened.
func changedTableErr(t *rowevent.Table, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && (me.Number == 1412 || me.Number == 1146) {
		return fmt.Errorf("table %s was altered, created or dropped while the snapshot was being read (%v): run the snapshot again", t.Qualified(), err)
	}
	return fmt.Errorf("reading %s: %w", t.Qualified(), err)
}

// readTables reads the tables, each of the connections one table at a
// time; in parallel the largest tables go first.
func (s *snapshotter) readTables(ctx context.Context, conns []*sql.Conn, tables []snapTable) error {
	order := make([]int, len(tables))
	for i := range order {
		order[i] = i
	}
	if len(conns) > 1 {
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(tables[b].estimate, tables[a].estimate) })
	}
	next := make(chan int, len(order))
	for _, i := range order {
		next <- i
	}
	close(next)
	g, gctx := errgroup.WithContext(ctx)
	for _, conn := range conns {
		g.Go(func() error {
			for i := range next {
				if err := s.readTable(gctx, conn, tables[i]); err != nil {
					return err
				}
				s.progress(true, func(p *SnapshotProgress) { p.TablesDone++ })
			}
			return nil
		})
	}
	return g.Wait()
}

// readTable writes one table's schema and rows into s.man.Tables[st.index].
// Several run at the same time, each on its own connection.
func (s *snapshotter) readTable(ctx context.Context, conn *sql.Conn, st snapTable) (err error) {
	t := st.t
	cols := t.Columns()
	s.progress(false, func(p *SnapshotProgress) { p.Table = t.Database() + "." + t.Name() })
	var name, create string
	if err := conn.QueryRowContext(ctx, "SHOW CREATE TABLE "+t.Qualified()).Scan(&name, &create); err != nil {
		return changedTableErr(t, err)
	}
	entry := sdk.SnapshotTable{Database: t.Database(), Table: t.Name(), CreateSQL: qualifyCreate(create, t), Columns: t.WireColumns(), PrimaryKey: t.PrimaryKeyNames()}

	exprs := make([]string, len(cols))
	for i := range cols {
		exprs[i] = rowcodec.SelectExpr(&cols[i])
	}
	q := "SELECT " + strings.Join(exprs, ", ") + " FROM " + t.Qualified()
	if pk := t.PrimaryKey(); len(pk) > 0 {
		keys := make([]string, len(pk))
		for i, k := range pk {
			keys[i] = rowcodec.QuoteIdent(cols[k].Name)
		}
		q += " ORDER BY " + strings.Join(keys, ", ")
	}
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return changedTableErr(t, err)
	}
	defer rows.Close()
	raw := make([]sql.RawBytes, len(cols))
	dest := make([]any, len(cols))
	for i := range raw {
		dest[i] = &raw[i]
	}
	vals := make([]any, len(cols))
	base := sdk.Event{Version: sdk.FormatVersion, Source: s.cfg.Source, Position: s.man.Position,
		Timestamp: s.man.Started, Txn: sdk.Txn{ID: sdk.SnapshotTxnID(s.man.ID)}, Snapshot: true}
	var w *objectWriter
	defer func() {
		if w != nil && err != nil {
			w.abort(err)
		}
	}()
	var line []byte
	var pendRows, pendBytes int64
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return changedTableErr(t, err)
		}
		for i := range raw {
			v, err := rowcodec.FromText(&cols[i], raw[i])
			if err != nil {
				return fmt.Errorf("%w: %s column %s (%s): %v", ErrUndecodable, t.Qualified(), cols[i].Name, cols[i].TypeName(), err)
			}
			vals[i] = v
		}
		evs, err := t.Events(sdk.OpInsert, [][]any{vals}, base)
		if err != nil {
			return err
		}
		evs[0].Txn.Seq = int(entry.Rows)
		if line, err = evs[0].AppendJSON(line[:0]); err != nil {
			return err
		}
		line = append(line, '\n')
		if w == nil {
			w = s.newObject(ctx, sdk.SnapshotObjectName(s.man.ID, st.index, len(entry.Objects)))
		}
		if err := w.write(ctx, line); err != nil {
			return err
		}
		entry.Rows++
		pendRows++
		pendBytes += int64(len(line))
		if w.bytes >= s.opt.ObjectBytes {
			err := s.closeObject(w, &entry)
			w = nil
			if err != nil {
				return err
			}
		}
		if pendRows == 1000 {
			s.progress(false, func(p *SnapshotProgress) { p.Rows += pendRows; p.Bytes += pendBytes })
			pendRows, pendBytes = 0, 0
		}
	}
	if err := rows.Err(); err != nil {
		return changedTableErr(t, err)
	}
	if w != nil {
		err := s.closeObject(w, &entry)
		w = nil
		if err != nil {
			return err
		}
	}
	s.man.Tables[st.index] = entry
	s.progress(false, func(p *SnapshotProgress) { p.Rows += pendRows; p.Bytes += pendBytes })
	s.mu.Lock()
	s.man.Rows += entry.Rows
	s.man.Bytes += entry.Bytes
	s.mu.Unlock()
	return nil
}

// qualifyCreate turns SHOW CREATE TABLE's output into a statement that
// runs on a target without USE and without failing when the table exists.
func qualifyCreate(create string, t *rowevent.Table) string {
	prefix := "CREATE TABLE " + rowcodec.QuoteIdent(t.Name()) + " "
	if rest, ok := strings.CutPrefix(create, prefix); ok {
		return "CREATE TABLE IF NOT EXISTS " + t.Qualified() + " " + rest
	}
	if r := ddl.Qualify(create, t.Database()); r.Qualified {
		return r.SQL
	}
	return create
}

// chunkBytes is the size of the buffers of lines handed from a table's
// reader to the goroutine compressing and storing its object.
const chunkBytes = 1 << 20

// objectWriter streams lines into one Object Store object. The reading
// goroutine appends lines to a buffer taken from the snapshot's pool and
// hands full buffers over; the goroutine storing the object hashes and
// compresses them as the Object Store reads, and returns them to the pool.
// Reading MySQL and compressing thus run at the same time, with at most the
// pool's buffers in flight.
type objectWriter struct {
	name  string
	pool  chan []byte
	buf   []byte
	full  chan []byte
	stop  chan struct{} // closed by abort, after abortErr is set
	rows  int64
	bytes int64

	abortErr error
	// finished is closed when the object is stored or has failed; info,
	// sum and err are set before.
	finished chan struct{}
	info     *jetstream.ObjectInfo
	sum      []byte
	err      error
}

func (s *snapshotter) newObject(ctx context.Context, name string) *objectWriter {
	w := &objectWriter{name: name, pool: s.bufs, full: make(chan []byte, 2), stop: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(w.finished)
		r := &compressor{w: w, sum: sha256.New()}
		r.gz, _ = gzip.NewWriterLevel(&r.out, gzip.BestSpeed)
		w.info, w.err = s.obs.Put(ctx, jetstream.ObjectMeta{Name: name}, r)
		w.sum = r.sum.Sum(nil)
	}()
	return w
}

// write appends line to the object.
func (w *objectWriter) write(ctx context.Context, line []byte) error {
	if w.buf == nil {
		select {
		case w.buf = <-w.pool:
		case <-ctx.Done():
			return ctx.Err()
		}
		if w.buf == nil {
			w.buf = make([]byte, 0, chunkBytes+chunkBytes/8)
		}
	}
	w.buf = append(w.buf, line...)
	w.rows++
	w.bytes += int64(len(line))
	if len(w.buf) >= chunkBytes {
		return w.flush()
	}
	return nil
}

// flush hands the buffer to the storing goroutine.
func (w *objectWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	select {
	case w.full <- w.buf:
		w.buf = nil
		return nil
	case <-w.finished:
		if w.err == nil {
			w.err = errors.New("stored before its end")
		}
		return fmt.Errorf("storing snapshot object %s: %w", w.name, w.err)
	}
}

// release returns a buffer to the pool; a buffer grown by a huge row is
// dropped so that the pool stays small.
func (w *objectWriter) release(b []byte) {
	if cap(b) > 4*chunkBytes {
		b = nil
	}
	w.pool <- b[:0]
}

// abort stops storing the object (the Object Store deletes what it stored)
// and returns its buffers to the pool.
func (w *objectWriter) abort(err error) {
	w.abortErr = err
	close(w.stop)
	<-w.finished
	for {
		select {
		case b := <-w.full:
			w.release(b)
		default:
			if w.buf != nil {
				w.release(w.buf)
				w.buf = nil
			}
			return
		}
	}
}

func (s *snapshotter) closeObject(w *objectWriter, entry *sdk.SnapshotTable) error {
	err := w.flush()
	if w.buf != nil {
		w.release(w.buf)
		w.buf = nil
	}
	if err == nil {
		close(w.full)
		<-w.finished
		err = w.err
	}
	if err != nil {
		return fmt.Errorf("storing snapshot object %s (is the JetStream store full?): %w", w.name, err)
	}
	entry.Objects = append(entry.Objects, sdk.SnapshotObject{Name: w.name, Rows: w.rows, Bytes: w.bytes, SHA256: hex.EncodeToString(w.sum)})
	entry.Bytes += w.bytes
	s.mu.Lock()
	s.man.StoredBytes += int64(w.info.Size)
	s.mu.Unlock()
	return nil
}

// compressor is the io.Reader the Object Store reads an object from: the
// gzip of the buffers handed over, hashed and compressed as they are read.
type compressor struct {
	w   *objectWriter
	gz  *gzip.Writer
	out bytes.Buffer
	sum hash.Hash
	eof bool
}

func (r *compressor) Read(p []byte) (int, error) {
	for r.out.Len() == 0 && !r.eof {
		select {
		case b, ok := <-r.w.full:
			if !ok {
				if err := r.gz.Close(); err != nil {
					return 0, err
				}
				r.eof = true
				continue
			}
			r.sum.Write(b)
			_, err := r.gz.Write(b)
			r.w.release(b)
			if err != nil {
				return 0, err
			}
		case <-r.w.stop:
			return 0, r.w.abortErr
		}
	}
	if r.out.Len() == 0 {
		return 0, io.EOF
	}
	return r.out.Read(p)
}

// report calls opt.Progress when forced or a second after the last time.
func (s *snapshotter) report(force bool) {
	s.progress(force, nil)
}

// progress applies f to the progress and reports it when due; it is safe
// to call from the goroutines reading tables.
func (s *snapshotter) progress(force bool, f func(*SnapshotProgress)) {
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

// handoff waits until capture has published every change before the
// snapshot's position, then returns the stream sequence of the last message
// whose event the snapshot contains.
func (s *snapshotter) handoff(ctx context.Context) (uint64, error) {
	p := s.man.Position
	p.Row = 0
	deadline := time.Now().Add(s.opt.HandoffTimeout)
	var hi uint64
	for {
		cp, err := bus.LoadCheckpoint(ctx, s.kv)
		if err != nil {
			return 0, err
		}
		if cp != nil && cp.ServerID == p.ServerID && (sdk.Position{File: cp.File, Offset: cp.Offset}).Compare(p) >= 0 {
			hi = cp.StreamSeq
			break
		}
		last, seq, _, err := bus.LastPublished(ctx, s.stream)
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
		pos, err := bus.MsgPosition(m)
		if err != nil {
			return 0, sdk.Position{}, false, err
		}
		return seq, pos, true, nil
	}
	return 0, sdk.Position{}, false, nil
}
