package sdk

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// FormatVersion is the version of the event wire format documented in
// docs/events.md. It changes only when a field changes meaning or
// disappears; new fields may appear without a version change.
const FormatVersion = 1

// Op is the kind of change an [Event] describes.
type Op string

// Operations carried in [Event.Op].
const (
	OpInsert Op = "insert"
	OpUpdate Op = "update"
	OpDelete Op = "delete"
	OpDDL    Op = "ddl"
)

// Event is one change as published into JetStream: one row of an INSERT,
// UPDATE or DELETE, or one DDL statement. Its JSON form is the wire format
// (docs/events.md) that readers in any language decode.
type Event struct {
	// Version is the wire format version, [FormatVersion] for events written
	// by this code.
	Version int `json:"v"`
	// Source is the configured name of the captured server.
	Source string `json:"source"`
	// Op is the kind of change.
	Op Op `json:"op"`
	// Database and Table name the changed table.
	Database string `json:"db"`
	Table    string `json:"table,omitempty"`
	// Columns describes every column of the row images, in table order.
	Columns []Column `json:"columns,omitempty"`
	// PrimaryKey lists the primary key column names; empty when the table
	// has none.
	PrimaryKey []string `json:"pk,omitempty"`
	// Key holds the primary key values of the row (after image for inserts
	// and updates, before image for deletes).
	Key map[string]any `json:"key,omitempty"`
	// Before is the row before the change (updates and deletes), After the
	// row after it (inserts and updates). Values use the per-type encoding of
	// docs/events.md.
	Before map[string]any `json:"before,omitempty"`
	After  map[string]any `json:"after,omitempty"`
	// SQL is a schema-qualified statement that applies this change. For
	// DDL it is the qualified statement when [DDL.Qualified], else the
	// original one.
	SQL string `json:"sql"`
	// DDL describes a DDL statement; nil for row changes.
	DDL *DDL `json:"ddl,omitempty"`
	// Position is where in the binlog this event was read.
	Position Position `json:"pos"`
	// Timestamp is the time the change was written on the source, from the
	// binlog event header (second precision), in UTC.
	Timestamp time.Time `json:"ts"`
	// Txn places the event in its source transaction.
	Txn Txn `json:"txn"`
	// Snapshot marks events read from a snapshot rather than the binlog:
	// each table's schema (a create_table DDL event), then its rows as
	// inserts. Their Position is the snapshot's.
	Snapshot bool `json:"snapshot,omitempty"`

	// head and tuple are a snapshot row's InsertHead and Tuple, worked
	// out when it was read to build its SQL.
	head, tuple string
}

// DDL describes a DDL statement.
type DDL struct {
	// Statement is the statement as the source logged it, converted to
	// UTF-8 from the session's character_set_client.
	Statement string `json:"statement"`
	// DefaultDB is the session's default database when it ran; a statement
	// that is not qualified must run with it selected (USE).
	DefaultDB string `json:"default_db,omitempty"`
	// Kind is "create_table", "alter_table", "drop_table",
	// "truncate_table", "rename_table", "create_index", "drop_index",
	// "create_database", "alter_database", "drop_database", "create_view",
	// "drop_view" or "other".
	Kind string `json:"kind"`
	// Qualified is true when every table name in [Event.SQL] carries its
	// database, so it runs on a target without USE.
	Qualified bool `json:"qualified"`
	// Tables are the tables the statement touches, in statement order (a
	// rename lists old and new names).
	Tables []TableRef `json:"tables,omitempty"`
	// Databases are the databases a database-level statement touches.
	Databases []string `json:"databases,omitempty"`
	// SQLMode is the sql_mode the statement ran under on the source, as
	// SET sql_mode takes it ("" for none; absent when unknown, as from
	// MySQL). It decides how the statement reads (ANSI_QUOTES,
	// NO_BACKSLASH_ESCAPES, ORACLE) and what it creates: run the
	// statement under it.
	SQLMode *string `json:"sql_mode,omitempty"`
}

// TableRef names a table.
type TableRef struct {
	DB    string `json:"db"`
	Table string `json:"table"`
}

// Column describes one column of a row image.
type Column struct {
	Name string `json:"name"`
	// Type is the MySQL type as seen in the binlog, e.g. "int",
	// "bigint unsigned", "decimal(10,2)", "datetime(6)", "varchar", "blob".
	Type string `json:"type"`
	// Storage is the type the server stores the column as when Type
	// names what it holds instead: "longtext" for MariaDB's JSON, whose
	// Type is "json". Empty otherwise.
	Storage string `json:"storage,omitempty"`
	// Charset is the character set of text columns ("utf8mb4", "latin1");
	// "binary" for byte strings. Empty for other types.
	Charset string `json:"charset,omitempty"`
	// Nullable tells whether the column accepts NULL.
	Nullable bool `json:"nullable"`
	// Generated marks a generated (computed) column: its value is in the
	// row images, but the SQL does not write it.
	Generated bool `json:"generated,omitempty"`
}

// Position identifies a place in a source's binlog and the server it belongs
// to. Within one server, positions order events: see [Position.Compare].
type Position struct {
	// File and Offset are the binlog file name and the end offset of the
	// binlog event that carried the change.
	File   string `json:"file"`
	Offset uint32 `json:"offset"`
	// Row is the index of the row within that binlog event (0 for DDL).
	Row int `json:"row"`
	// GTID is the transaction's GTID when GTIDs are on ("0-1-42" on MariaDB,
	// "uuid:42" on MySQL).
	GTID string `json:"gtid,omitempty"`
	// ServerID and ServerUUID identify the server that wrote the binlog.
	ServerID   uint32 `json:"server_id"`
	ServerUUID string `json:"server_uuid,omitempty"`
}

// String returns "file:offset:row".
func (p Position) String() string {
	return fmt.Sprintf("%s:%d:%d", p.File, p.Offset, p.Row)
}

// Compare orders two positions of the same server by binlog file sequence,
// offset and row; it returns -1, 0 or +1.
func (p Position) Compare(q Position) int {
	if c := CompareBinlogFiles(p.File, q.File); c != 0 {
		return c
	}
	switch {
	case p.Offset < q.Offset:
		return -1
	case p.Offset > q.Offset:
		return 1
	case p.Row < q.Row:
		return -1
	case p.Row > q.Row:
		return 1
	}
	return 0
}

// CompareBinlogFiles orders binlog file names ("mysql-bin.000009" before
// "mysql-bin.000010") by their numeric extension, falling back to the text.
func CompareBinlogFiles(a, b string) int {
	na, errA := binlogSeq(a)
	nb, errB := binlogSeq(b)
	if errA == nil && errB == nil {
		switch {
		case na < nb:
			return -1
		case na > nb:
			return 1
		}
		return 0
	}
	return strings.Compare(a, b)
}

func binlogSeq(name string) (uint64, error) {
	i := strings.LastIndexByte(name, '.')
	if i < 0 {
		return 0, fmt.Errorf("binlog file %q has no numeric extension", name)
	}
	return strconv.ParseUint(name[i+1:], 10, 64)
}

// Txn places an event in its source transaction.
type Txn struct {
	// ID is the transaction's GTID, or "file:offset" of its first event when
	// GTIDs are off.
	ID string `json:"id"`
	// Seq is the 0-based index of the event among the transaction's
	// published events.
	Seq int `json:"seq"`
	// Last is true on the transaction's final published event.
	Last bool `json:"last"`
}

// DecodeEvent parses an event from its wire form. Numbers are kept exact
// ([json.Number]).
func DecodeEvent(data []byte) (*Event, error) {
	ev, err := decodeFast(data)
	if err != nil {
		ev = new(Event)
		dec := json.NewDecoder(bytes.NewReader(data))
		dec.UseNumber()
		if err := dec.Decode(ev); err != nil {
			return nil, fmt.Errorf("decoding databus event: %w", err)
		}
	}
	if ev.Version > FormatVersion {
		return nil, fmt.Errorf("%w: event format v%d, this SDK reads up to v%d", ErrUnsupportedVersion, ev.Version, FormatVersion)
	}
	return ev, nil
}

// IdempotentSQL returns a form of [Event.SQL] that can run again without
// error or change: an insert becomes REPLACE INTO (the row is written
// whatever exists under its key); updates and deletes are already
// idempotent because they name the row by its key. Use it when replaying
// events or loading snapshot rows into a target that may hold some of them.
func (e *Event) IdempotentSQL() string {
	if e.Op == OpInsert {
		if rest, ok := strings.CutPrefix(e.SQL, "INSERT INTO "); ok {
			return "REPLACE INTO " + rest
		}
	}
	return e.SQL
}
