package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/databus/databus/configs"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/ddl"
	"github.com/databus/databus/internal/filter"
	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/internal/rowevent"
	"github.com/databus/databus/sdk"
)

// Config configures a [Capturer].
type Config struct {
	// Source names the captured server in stream and subject names.
	Source string
	MySQL  mysqlsrc.Config
	Filter filter.Filter
	Stream bus.StreamConfig
	// RetryMax is the longest wait between reconnection attempts;
	// configs.DefaultRetryMax when zero.
	RetryMax time.Duration
	// CheckpointInterval is how often the checkpoint is saved while events
	// flow; 1s when zero.
	CheckpointInterval time.Duration
	// Recover makes capture start from the server's current position,
	// instead of stopping, when the checkpoint cannot be resumed because
	// its binlog was purged ([ErrBinlogPurged]) or it belongs to another
	// server ([ErrServerChanged]). OnRecover, if set, is then called with
	// the reason: the changes in between are lost to the stream, so
	// consumers need a new snapshot.
	Recover   bool
	OnRecover func(reason error)
	Logger    *slog.Logger

	// crashAfter, in tests only, makes a session fail every publish after
	// that many messages, as a killed capture would stop (see fatal).
	crashAfter int
}

// Capturer reads the source's binlog and publishes every change of the
// captured tables into the source's JetStream stream.
type Capturer struct {
	cfg Config
	nc  *nats.Conn
	log *slog.Logger

	mu     sync.Mutex
	status Status
}

// Status is a snapshot of what the capturer is doing.
type Status struct {
	// Streaming is true while the binlog is being read.
	Streaming bool
	// Checkpoint is the last saved checkpoint.
	Position sdk.Position
	// Published counts events published since start.
	Published uint64
	// LastError is the error of the last failed attempt, if any.
	LastError string
}

// New returns a capturer publishing through nc.
func New(cfg Config, nc *nats.Conn) *Capturer {
	if cfg.MySQL.ServerID == 0 {
		cfg.MySQL.ServerID = mysqlsrc.DeriveServerID(cfg.Source)
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = configs.DefaultRetryMax
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = time.Second
	}
	if cfg.MySQL.ConnectTimeout == 0 {
		cfg.MySQL.ConnectTimeout = configs.DefaultConnectTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Capturer{cfg: cfg, nc: nc, log: log.With("component", "capture", "source", cfg.Source)}
}

// Status returns what the capturer is doing now.
func (c *Capturer) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status
}

// Run captures until ctx ends (returning nil) or a fatal error: bad
// credentials ([ErrAccessDenied]), unusable server settings
// ([ErrSourceSettings]), a row that cannot be decoded ([ErrUndecodable]) or a
// checkpoint of another server ([ErrServerChanged]). Other failures (MySQL or
// NATS unreachable, a rejected publish) are logged and retried with
// exponential backoff from the last checkpoint.
func (c *Capturer) Run(ctx context.Context) error {
	backoff := 500 * time.Millisecond
	for {
		started := time.Now()
		err := c.session(ctx)
		if bus.StorageFull(err) {
			err = fmt.Errorf("JetStream has no room for more events (raise nats.max_store or the account's JetStream storage limit, or free the NATS server's disk); "+
				"capture keeps its checkpoint and goes on when there is room: %w", err)
		}
		c.mu.Lock()
		c.status.Streaming = false
		if err != nil {
			c.status.LastError = err.Error()
		}
		c.mu.Unlock()
		if ctx.Err() != nil {
			return nil
		}
		if fatal(err) {
			return err
		}
		if time.Since(started) > time.Minute {
			backoff = 500 * time.Millisecond
		}
		c.log.Warn("capture interrupted, retrying from the checkpoint", "err", err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.cfg.RetryMax)
	}
}

// session connects, resumes from the checkpoint and streams until an error
// or the end of ctx.
func (c *Capturer) session(ctx context.Context) error {
	cctx, cancel := context.WithTimeout(ctx, c.cfg.MySQL.ConnectTimeout+5*time.Second)
	defer cancel()
	dbh, err := mysqlsrc.Connect(cctx, c.cfg.MySQL)
	if err != nil {
		return err
	}
	defer dbh.Close()
	db := dbh
	info, err := mysqlsrc.Inspect(cctx, db)
	if err != nil {
		return err
	}
	checks, err := mysqlsrc.Preflight(cctx, db, c.cfg.MySQL, info)
	if err != nil {
		return err
	}
	if err := mysqlsrc.FailedChecks(checks); err != nil {
		return err
	}

	js, err := jetstream.New(c.nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return fmt.Errorf("opening JetStream: %w", err)
	}
	stream, kv, err := bus.Ensure(cctx, js, c.cfg.Source, c.cfg.Stream)
	if err != nil {
		return err
	}
	cp, err := bus.LoadCheckpoint(cctx, kv)
	if err != nil {
		return err
	}
	var recovered error
	var byGTID mysql.GTIDSet
	if cp != nil {
		err := resumable(cctx, db, c.cfg, info, *cp)
		switch {
		case err == nil:
		case errors.Is(err, ErrServerChanged) && info.MariaDB && cp.GTIDSet != "":
			// Another server of the same replication domain (after a
			// failover): resume after the checkpoint's GTIDs.
			if byGTID, err = mysql.ParseMariadbGTIDSet(cp.GTIDSet); err != nil {
				return fmt.Errorf("checkpoint GTID set %q: %w", cp.GTIDSet, err)
			}
			c.log.Warn("source server changed: resuming by GTID", "gtid_set", cp.GTIDSet,
				"old_server_id", cp.ServerID, "server_id", info.ServerID)
		case c.cfg.Recover && (errors.Is(err, ErrBinlogPurged) || errors.Is(err, ErrServerChanged)):
			c.log.Warn("the checkpoint cannot be resumed: capturing from the current position (recover)", "reason", err)
			cp, recovered = nil, err
		default:
			return err
		}
	}
	if cp == nil {
		file, pos, err := mysqlsrc.MasterStatus(cctx, db, info)
		if err != nil {
			return err
		}
		cp = &bus.Checkpoint{File: file, Offset: pos, ServerID: info.ServerID, ServerUUID: info.ServerUUID}
		if err := bus.SaveCheckpoint(cctx, kv, *cp); err != nil {
			return err
		}
		c.log.Info("no checkpoint: starting at the current binlog position", "file", file, "offset", pos)
	}
	if recovered != nil && c.cfg.OnRecover != nil {
		c.cfg.OnRecover(recovered)
	}
	lastPos, lastSeq, complete, err := bus.LastPublished(cctx, stream)
	if err != nil {
		return err
	}
	if lastPos != nil && lastPos.ServerID != info.ServerID {
		lastPos = nil
	}
	var skipTxn map[string]int
	if byGTID != nil {
		// What the old server published after the checkpoint comes again
		// from this one under the same GTIDs, at other positions.
		if skipTxn, err = publishedAfter(cctx, c.nc, c.cfg.Source, cp.StreamSeq, lastSeq); err != nil {
			return err
		}
	}
	gtidSet, err := c.gtidSet(cctx, db, info, cp, byGTID)
	if err != nil {
		return err
	}

	host, portStr, _ := net.SplitHostPort(c.cfg.MySQL.Addr)
	port, _ := strconv.Atoi(portStr)
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID:                c.cfg.MySQL.ServerID,
		Flavor:                  info.Flavor(),
		Host:                    host,
		Port:                    uint16(port),
		User:                    c.cfg.MySQL.User,
		Password:                c.cfg.MySQL.Password,
		TimestampStringLocation: time.UTC,
		HeartbeatPeriod:         5 * time.Second,
		ReadTimeout:             30 * time.Second,
		DisableRetrySync:        true,
		Logger:                  slog.New(slog.DiscardHandler),
		EventCacheCount:         256, // bounded read-ahead: memory stays flat
	})
	defer syncer.Close()
	var streamer *replication.BinlogStreamer
	if byGTID != nil {
		streamer, err = syncer.StartSyncGTID(byGTID)
	} else {
		streamer, err = syncer.StartSync(mysql.Position{Name: cp.File, Pos: cp.Offset})
	}
	if err != nil {
		return fmt.Errorf("%w: starting binlog stream at %s:%d (GTIDs %s): %v", ErrUnreachable, cp.File, cp.Offset, cp.GTIDSet, err)
	}
	c.log.Info("capturing", "server", info.Version, "file", cp.File, "offset", cp.Offset, "gtid_set", gtidSet, "stream_last_seq", lastSeq)

	// A NATS server before 2.12 ignores allow_atomic: the stream says
	// whether it took effect.
	atomic := stream.CachedInfo().Config.AllowAtomicPublish
	if c.cfg.Stream.AtomicTransactions && !atomic {
		c.log.Warn("the NATS server does not support atomic batch publish (2.12+ needed): a consumer can see part of a transaction")
	}
	pub := &publisher{
		js: js, kv: kv, source: c.cfg.Source, log: c.log,
		expected: lastSeq, skipThrough: lastPos, skipPartial: !complete, skipTxn: skipTxn,
		maxData:    int(c.nc.MaxPayload()) - 16<<10, // room for headers
		queue:      make(chan pending, 8192),
		atomic:     atomic,
		crashAfter: c.cfg.crashAfter,
	}
	r := &reader{cfg: c.cfg, log: c.log, info: info, pub: pub, file: cp.File, tables: map[uint64]*binlogTable{}, status: c, gtidSet: gtidSet,
		generated: func(db, table string) (map[string]bool, error) { return mysqlsrc.GeneratedColumns(ctx, dbh, db, table) }}

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pub.acks(gctx, c.cfg.CheckpointInterval) })
	g.Go(func() error {
		defer close(pub.queue)
		c.mu.Lock()
		c.status.Streaming = true
		c.mu.Unlock()
		for {
			ev, err := streamer.GetEvent(gctx)
			if err != nil {
				if gctx.Err() != nil {
					return nil // stopping: let acks drain and save
				}
				return fmt.Errorf("%w: reading binlog after %s: %v", ErrUnreachable, r.file, err)
			}
			if err := r.handle(ev); err != nil {
				return err
			}
		}
	})
	err = g.Wait()
	if err != nil {
		return err
	}
	return ctx.Err()
}

// reader turns binlog events into published events, tracking the current
// file and transaction.
type reader struct {
	cfg    Config
	log    *slog.Logger
	info   mysqlsrc.ServerInfo
	pub    *publisher
	status *Capturer

	file   string
	tables map[uint64]*binlogTable
	// generated looks up the generated columns of a table.
	generated func(db, table string) (map[string]bool, error)

	inTxn bool
	txnID string
	gtid  string
	// gtidSet is MariaDB's GTID position after the last transaction read.
	gtidSet mysql.GTIDSet
	seq     int
	held    *rowevent.Event
	lastTS  time.Time
}

func (r *reader) position(h *replication.EventHeader) sdk.Position {
	return sdk.Position{File: r.file, Offset: h.LogPos, GTID: r.gtid, ServerID: r.info.ServerID, ServerUUID: r.info.ServerUUID}
}

func (r *reader) begin(h *replication.EventHeader) {
	if r.inTxn {
		return
	}
	r.inTxn, r.seq, r.held = true, 0, nil
	if r.gtid != "" {
		r.txnID = r.gtid
	} else {
		r.txnID = fmt.Sprintf("%s:%d", r.file, h.LogPos-h.EventSize)
	}
}

// emit numbers ev within its transaction and publishes the event held
// before it: the newest is held back until it is known whether it is the
// transaction's last.
func (r *reader) emit(o rowevent.Event) error {
	o.Txn = sdk.Txn{ID: r.txnID, Seq: r.seq}
	r.seq++
	if r.held != nil {
		if err := r.pub.publish(r.held); err != nil {
			return err
		}
	}
	r.held = &o
	return nil
}

// commit ends the transaction; next is the position of the event after it,
// where a restart resumes.
func (r *reader) commit(next uint32) error {
	if r.held != nil {
		r.held.Txn.Last = true
		if err := r.pub.publish(r.held); err != nil {
			return err
		}
	}
	r.pub.boundary(r.checkpoint(next))
	r.status.mu.Lock()
	r.status.status.Position = sdk.Position{File: r.file, Offset: next, GTID: r.gtid, ServerID: r.info.ServerID, ServerUUID: r.info.ServerUUID}
	r.status.status.Published = r.pub.expected
	r.status.mu.Unlock()
	r.inTxn, r.held, r.seq, r.gtid = false, nil, 0, ""
	return nil
}

// checkpoint is where a restart resumes when everything read so far is
// published: offset in the current file.
func (r *reader) checkpoint(offset uint32) bus.Checkpoint {
	cp := bus.Checkpoint{File: r.file, Offset: offset, GTID: r.gtid, ServerID: r.info.ServerID, ServerUUID: r.info.ServerUUID}
	if r.gtidSet != nil {
		cp.GTIDSet = r.gtidSet.String()
	}
	return cp
}

func (r *reader) base(h *replication.EventHeader) sdk.Event {
	return sdk.Event{
		Version:   sdk.FormatVersion,
		Source:    r.cfg.Source,
		Position:  r.position(h),
		Timestamp: time.Unix(int64(h.Timestamp), 0).UTC(),
	}
}

func (r *reader) handle(e *replication.BinlogEvent) error {
	h := e.Header
	switch ev := e.Event.(type) {
	case *replication.RotateEvent:
		r.file = string(ev.NextLogName)
		if h.LogPos != 0 && !r.inTxn {
			// The server moved to a new file (the rotate that starts
			// every stream is artificial and has no position): checkpoint
			// there, so an idle or filtered-out source never leaves the
			// checkpoint in a file that may be purged.
			r.pub.boundary(r.checkpoint(uint32(ev.Position)))
		}
	case *replication.GTIDEvent:
		if u, err := uuid.FromBytes(ev.SID); err == nil {
			r.gtid = fmt.Sprintf("%s:%d", u, ev.GNO)
		}
		r.inTxn = false
		r.begin(h)
	case *replication.MariadbGTIDEvent:
		r.gtid = ev.GTID.String()
		if r.gtidSet != nil {
			if err := r.gtidSet.Update(r.gtid); err != nil {
				return fmt.Errorf("GTID %s at %s:%d: %w", r.gtid, r.file, h.LogPos, err)
			}
		}
		r.inTxn = false
		r.begin(h)
	case *replication.QueryEvent:
		return r.query(h, ev)
	case *replication.XIDEvent:
		return r.commit(h.LogPos)
	case *replication.RowsEvent:
		return r.rows(e.Header, ev)
	}
	return nil
}

func (r *reader) query(h *replication.EventHeader, q *replication.QueryEvent) error {
	stmt := strings.TrimSpace(string(q.Query))
	kind := ddl.Classify(stmt)
	switch kind {
	case ddl.Begin:
		r.begin(h)
		return nil
	case ddl.End:
		return r.commit(h.LogPos)
	case ddl.TxnControl:
		return nil
	}
	// DDL or account management: it commits implicitly.
	r.begin(h)
	if kind == ddl.Schema {
		if ev, ok := r.ddlEvent(h, stmt, string(q.Schema)); ok {
			if err := r.emit(rowevent.Event{Event: ev}); err != nil {
				return err
			}
		}
	}
	// Table shapes may have changed: rebuild them from the next table maps.
	clear(r.tables)
	return r.commit(h.LogPos)
}

// ddlEvent builds the event of a DDL statement, and reports whether the
// capture filter selects it: a statement is published when any table or
// database it touches is captured (so a rename into or out of the captured
// set is published).
func (r *reader) ddlEvent(h *replication.EventHeader, stmt, defaultDB string) (sdk.Event, bool) {
	res := ddl.Qualify(stmt, defaultDB)
	if res.Err != nil {
		r.log.Warn("DDL published unqualified", "err", res.Err, "default_db", defaultDB, "file", r.file, "offset", h.LogPos)
	}
	info := &sdk.DDL{Statement: stmt, DefaultDB: defaultDB, Kind: res.Kind, Qualified: res.Qualified, Databases: res.Databases}
	captured := false
	for _, t := range res.Tables {
		info.Tables = append(info.Tables, sdk.TableRef{DB: t.DB, Table: t.Table})
		captured = captured || r.cfg.Filter.Table(t.DB, t.Table)
	}
	for _, db := range res.Databases {
		captured = captured || r.cfg.Filter.Database(db)
	}
	if len(res.Tables) == 0 && len(res.Databases) == 0 {
		captured = defaultDB == "" || r.cfg.Filter.Database(defaultDB)
	}
	ev := r.base(h)
	ev.Op, ev.SQL, ev.DDL, ev.Database = sdk.OpDDL, res.SQL, info, defaultDB
	switch {
	case len(info.Tables) > 0:
		ev.Database, ev.Table = info.Tables[0].DB, info.Tables[0].Table
	case len(info.Databases) > 0:
		ev.Database = info.Databases[0]
	}
	return ev, captured
}

func (r *reader) rows(h *replication.EventHeader, ev *replication.RowsEvent) error {
	if ev.Table == nil {
		return fmt.Errorf("%w: rows event at %s:%d without a table map", ErrUndecodable, r.file, h.LogPos)
	}
	db, name := string(ev.Table.Schema), string(ev.Table.Table)
	if !r.cfg.Filter.Table(db, name) {
		return nil
	}
	t := r.tables[ev.TableID]
	if t == nil || !sameShape(t.tableMap, ev.Table) {
		gen, err := r.generated(db, name)
		if err != nil {
			return fmt.Errorf("%w: reading generated columns of %s.%s: %v", ErrUnreachable, db, name, err)
		}
		t, err = newTable(ev.Table, r.info.Collations, gen)
		if err != nil {
			return err
		}
		r.tables[ev.TableID] = t
	}
	r.begin(h)
	events, err := t.Events(rowsOp(h.EventType), ev.Rows, r.base(h))
	if err != nil {
		return err
	}
	for _, e := range events {
		if err := r.emit(e); err != nil {
			return err
		}
	}
	return nil
}

// gtidSet is MariaDB's GTID position at cp (nil on MySQL): byGTID when
// resuming by GTID, else what the server says of cp's file and offset.
func (c *Capturer) gtidSet(ctx context.Context, db *sql.DB, info mysqlsrc.ServerInfo, cp *bus.Checkpoint, byGTID mysql.GTIDSet) (mysql.GTIDSet, error) {
	if !info.MariaDB {
		return nil, nil
	}
	if byGTID != nil {
		return byGTID.Clone(), nil
	}
	var pos sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", cp.File, cp.Offset).Scan(&pos); err != nil {
		return nil, fmt.Errorf("reading the GTID position of %s:%d: %w", cp.File, cp.Offset, err)
	}
	set, err := mysql.ParseMariadbGTIDSet(pos.String)
	if err != nil {
		return nil, fmt.Errorf("GTID position %q of %s:%d: %w", pos.String, cp.File, cp.Offset, err)
	}
	return set, nil
}

// publishedAfter reads the stream's events after sequence from through
// to and returns, by transaction (GTID), the highest Txn.Seq among them.
func publishedAfter(ctx context.Context, nc *nats.Conn, source string, from, to uint64) (map[string]int, error) {
	if to <= from {
		return nil, nil
	}
	c, err := sdk.Connect(ctx, sdk.Config{Conn: nc, Source: source, Start: sdk.StartAtSequence(from + 1)})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	out := map[string]int{}
	for {
		// The newest message may be a chunk of an event never finished:
		// the stream has nothing more to give when Next waits in vain.
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := c.Next(wctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading what the previous server published after stream sequence %d: %w", from, err)
		}
		if seq, ok := out[m.Event.Txn.ID]; !ok || m.Event.Txn.Seq > seq {
			out[m.Event.Txn.ID] = m.Event.Txn.Seq
		}
		if m.Sequence >= to {
			return out, nil
		}
	}
}
