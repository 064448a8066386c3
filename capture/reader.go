package capture

import (
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/ddl"
	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/internal/rowevent"
	"github.com/databus/databus/sdk"
	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/google/uuid"
)

// reader turns binlog events into published events, tracking the current
// file and transaction.
type reader struct {
	cfg  Config
	log  *slog.Logger
	info mysqlsrc.ServerInfo
	pub  *publisher
	// committed reports each transaction sent, atEnd that the server had
	// nothing more to send, to the Capturer's status.
	committed func(txnRead)
	atEnd     func(sdk.Position)
	// events counts the current transaction's events by operation.
	events opCounts

	// start is the capture.start the checkpoints record.
	start  string
	file   string
	tables map[uint64]*binlogTable
	// traits looks up the generated and JSON columns of a table.
	traits func(db, table string) (mysqlsrc.ColumnTraits, error)

	inTxn bool
	// crc tells whether events end with a CRC32 (the format description
	// says); alterPhase is the two-phase ALTER flag of the current
	// MariaDB transaction (see [alterPhase]).
	crc        bool
	alterPhase byte
	txnID      string
	gtid       string
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
	r.events.add(o.Op)
	if r.held != nil {
		if err := r.pub.publish(r.held); err != nil {
			return err
		}
	}
	r.held = &o
	return nil
}

// commit ends the transaction; next is the position of the event after it,
// where a restart resumes, and h the header of the event that ends it.
func (r *reader) commit(h *replication.EventHeader, next uint32) error {
	if r.held != nil {
		r.held.Txn.Last = true
		if err := r.pub.publish(r.held); err != nil {
			return err
		}
	}
	r.pub.boundary(r.checkpoint(next))
	t := txnRead{
		next:      sdk.Position{File: r.file, Offset: next, GTID: r.gtid, ServerID: r.info.ServerID, ServerUUID: r.info.ServerUUID},
		gtidSet:   gtidSetString(r.gtidSet),
		published: r.pub.expected, commit: time.Unix(int64(h.Timestamp), 0), events: r.events,
	}
	r.committed(t)
	r.events = opCounts{}
	r.inTxn, r.held, r.seq, r.gtid = false, nil, 0, ""
	return nil
}

// checkpoint is where a restart resumes when everything read so far is
// published: offset in the current file.
func (r *reader) checkpoint(offset uint32) bus.Checkpoint {
	cp := bus.Checkpoint{File: r.file, Offset: offset, GTID: r.gtid, ServerID: r.info.ServerID, ServerUUID: r.info.ServerUUID, CaptureID: r.pub.captureID, Start: r.start}
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
	case *replication.HeartbeatEvent:
		// The server sends one when nothing happened for a while, at the
		// end of what it has: checkpoint there, so that an idle source
		// whose binlog ends with events that are not transactions (a
		// server restart, a binlog checkpoint) still has its checkpoint
		// reach the end, which a snapshot's handoff waits for.
		if h.LogPos != 0 && !r.inTxn && (ev.Filename == "" || ev.Filename == r.file) {
			r.pub.boundary(r.checkpoint(h.LogPos))
			r.atEnd(sdk.Position{File: r.file, Offset: h.LogPos, ServerID: r.info.ServerID, ServerUUID: r.info.ServerUUID})
		}
	case *replication.GTIDEvent:
		if u, err := uuid.FromBytes(ev.SID); err == nil {
			r.gtid = fmt.Sprintf("%s:%d", u, ev.GNO)
		}
		r.inTxn = false
		r.begin(h)
	case *replication.FormatDescriptionEvent:
		r.crc = ev.ChecksumAlgorithm == replication.BINLOG_CHECKSUM_ALG_CRC32
	case *replication.MariadbGTIDEvent:
		r.alterPhase = alterPhase(e.RawData, r.crc)
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
		return r.commit(h, h.LogPos)
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
		return r.commit(h, h.LogPos)
	case ddl.TxnControl:
		return nil
	}
	// DDL or account management: it commits implicitly.
	r.begin(h)
	// binlog_alter_two_phase logs an ALTER when it starts and again when
	// it commits or rolls back: it is published once, at its COMMIT
	// ALTER, when the table changed.
	if kind == ddl.Schema && r.alterPhase&(flStartAlter|flRollbackAlter) == 0 {
		vars := parseQueryVars(q.StatusVars)
		text, err := r.statementText(stmt, vars)
		if err != nil {
			return fmt.Errorf("%w: DDL statement at %s:%d: %v", ErrUndecodable, r.file, h.LogPos, err)
		}
		if ev, ok := r.ddlEvent(h, text, string(q.Schema), vars); ok {
			if err := r.emit(rowevent.Event{Event: ev}); err != nil {
				return err
			}
		}
	}
	// Table shapes may have changed: rebuild them from the next table maps.
	clear(r.tables)
	return r.commit(h, h.LogPos)
}

// ddlEvent builds the event of a DDL statement, and reports whether the
// capture filter selects it: a statement is published when any table or
// database it touches is captured (so a rename into or out of the captured
// set is published).
func (r *reader) ddlEvent(h *replication.EventHeader, stmt, defaultDB string, vars queryVars) (sdk.Event, bool) {
	res := ddl.Qualify(stmt, defaultDB, ddl.ModeOf(vars.sqlMode))
	if res.Err != nil {
		r.log.Warn("DDL published unqualified", "err", res.Err, "default_db", defaultDB, "file", r.file, "offset", h.LogPos)
	}
	info := &sdk.DDL{Statement: stmt, DefaultDB: defaultDB, Kind: res.Kind, Qualified: res.Qualified, Databases: res.Databases}
	if r.info.MariaDB && vars.hasSQLMode {
		if text, ok := ddl.MariaDBSQLMode(vars.sqlMode); ok {
			info.SQLMode = &text
		}
	}
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
		traits, err := r.traits(db, name)
		if err != nil {
			return fmt.Errorf("%w: reading the generated and JSON columns of %s.%s: %v", ErrUnreachable, db, name, err)
		}
		t, err = newTable(ev.Table, r.info.Collations, traits)
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
