package capture

import (
	"bytes"
	"fmt"
	"slices"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/sdk"
)

// table is a captured table's shape, taken from a binlog table map event
// (binlog_row_metadata=FULL), so rows are always decoded with the schema
// they were written with.
type table struct {
	db, name string
	cols     []rowcodec.Column
	pk       []int
	// generated marks generated columns, which SQL must not write.
	generated []bool
	wire      []sdk.Column
	// quoted holds each column's `"name":` JSON prefix; heads the cached
	// JSON heads of events per operation.
	quoted  [][]byte
	heads   map[sdk.Op][]byte
	pkNames []string
	// idents holds each column's quoted SQL identifier; insertHead,
	// updateHead and deleteHead the start of each statement on the table.
	idents                             []string
	insertHead, updateHead, deleteHead string
	// tableMap is the event this shape was built from, to notice changes.
	tableMap *replication.TableMapEvent
}

// newTable builds a table from a table map event.
func newTable(tm *replication.TableMapEvent, collations map[uint64]string, generated map[string]bool) (*table, error) {
	names := tm.ColumnNameString()
	if len(names) != int(tm.ColumnCount) {
		return nil, fmt.Errorf("%w: table map of %s.%s has no column names: set binlog_row_metadata=FULL", ErrSourceSettings, tm.Schema, tm.Table)
	}
	unsigned := tm.UnsignedMap()
	colls := tm.CollationMap()
	enumColls := tm.EnumSetCollationMap()
	enums := tm.EnumStrValueMap()
	sets := tm.SetStrValueMap()
	cols := make([]rowcodec.Column, tm.ColumnCount)
	for i := range cols {
		typ, meta := realType(tm.ColumnType[i], tm.ColumnMeta[i])
		c := rowcodec.Column{
			Name:     names[i],
			Type:     typ,
			Meta:     meta,
			Unsigned: unsigned[i],
			Enum:     enums[i],
			Set:      sets[i],
		}
		_, c.Nullable = tm.Nullable(i)
		if coll, ok := colls[i]; ok {
			cs, known := collations[coll]
			if !known {
				return nil, fmt.Errorf("%w: column %s.%s.%s has collation id %d unknown to the server", ErrUndecodable, tm.Schema, tm.Table, c.Name, coll)
			}
			c.Charset = cs
		} else if coll, ok := enumColls[i]; ok {
			c.Charset = collations[coll]
		} else if isBytesType(typ) {
			c.Charset = "binary"
		}
		cols[i] = c
	}
	pk := make([]int, len(tm.PrimaryKey))
	for i, k := range tm.PrimaryKey {
		pk[i] = int(k)
	}
	t := buildTable(string(tm.Schema), string(tm.Table), cols, pk, generated)
	t.tableMap = tm
	return t, nil
}

// buildTable assembles a table from its columns, the indexes of its
// primary key columns and the names of its generated columns; binlog rows
// and snapshot rows share it, so both encode the same way.
func buildTable(db, name string, cols []rowcodec.Column, pk []int, generated map[string]bool) *table {
	t := &table{db: db, name: name, cols: cols, pk: pk}
	for _, c := range cols {
		t.generated = append(t.generated, generated[c.Name])
		t.quoted = append(t.quoted, append(appendJSONString(nil, c.Name), ':'))
		t.wire = append(t.wire, sdk.Column{Name: c.Name, Type: c.TypeName(), Charset: c.Charset, Nullable: c.Nullable, Generated: generated[c.Name]})
	}
	for _, i := range pk {
		t.pkNames = append(t.pkNames, cols[i].Name)
	}
	var written []string
	for i, c := range cols {
		t.idents = append(t.idents, rowcodec.QuoteIdent(c.Name))
		if !t.generated[i] {
			written = append(written, t.idents[i])
		}
	}
	t.insertHead = "INSERT INTO " + t.qualified() + " (" + strings.Join(written, ",") + ") VALUES ("
	t.updateHead = "UPDATE " + t.qualified() + " SET "
	t.deleteHead = "DELETE FROM " + t.qualified()
	return t
}

// sameShape reports whether a table built from table map a is the one
// newTable builds from b: it compares everything newTable reads. The server
// writes a table map before the rows of every transaction, so comparing
// keeps one table (and its cached JSON heads and generated columns) across
// transactions instead of rebuilding it each time.
func sameShape(a, b *replication.TableMapEvent) bool {
	if a == b {
		return true
	}
	strs := func(x, y [][]byte) bool { return slices.EqualFunc(x, y, bytes.Equal) }
	return bytes.Equal(a.Schema, b.Schema) && bytes.Equal(a.Table, b.Table) &&
		bytes.Equal(a.ColumnType, b.ColumnType) && slices.Equal(a.ColumnMeta, b.ColumnMeta) &&
		bytes.Equal(a.NullBitmap, b.NullBitmap) && bytes.Equal(a.SignednessBitmap, b.SignednessBitmap) &&
		slices.Equal(a.DefaultCharset, b.DefaultCharset) && slices.Equal(a.ColumnCharset, b.ColumnCharset) &&
		slices.Equal(a.EnumSetDefaultCharset, b.EnumSetDefaultCharset) &&
		slices.Equal(a.EnumSetColumnCharset, b.EnumSetColumnCharset) &&
		strs(a.ColumnName, b.ColumnName) && slices.EqualFunc(a.EnumStrValue, b.EnumStrValue, strs) &&
		slices.EqualFunc(a.SetStrValue, b.SetStrValue, strs) &&
		slices.Equal(a.PrimaryKey, b.PrimaryKey)
}

// isBytesType reports types that hold bytes without a collation in the table
// map: BLOB-family columns carry one only when they are text.
func isBytesType(typ byte) bool {
	switch typ {
	case mysql.MYSQL_TYPE_BLOB, mysql.MYSQL_TYPE_VARCHAR, mysql.MYSQL_TYPE_VAR_STRING, mysql.MYSQL_TYPE_STRING:
		return true
	}
	return false
}

// realType undoes MySQL's packing of ENUM and SET into MYSQL_TYPE_STRING.
func realType(typ byte, meta uint16) (byte, uint16) {
	if typ == mysql.MYSQL_TYPE_STRING && meta >= 256 {
		if b0 := byte(meta >> 8); b0 == mysql.MYSQL_TYPE_ENUM || b0 == mysql.MYSQL_TYPE_SET {
			return b0, meta
		}
	}
	return typ, meta
}

// qualified returns `db`.`table`.
func (t *table) qualified() string {
	return rowcodec.QuoteIdent(t.db) + "." + rowcodec.QuoteIdent(t.name)
}

// image is one encoded row image, in column order.
type image struct {
	json []any
	sql  []string
}

// encode fills img with the encoded values of row, reusing its slices.
func (t *table) encode(img *image, row []any, pos sdk.Position) error {
	if len(row) != len(t.cols) {
		return fmt.Errorf("%w: %s.%s at %s: row image has %d values, table map %d columns", ErrUndecodable, t.db, t.name, pos, len(row), len(t.cols))
	}
	img.json, img.sql = slices.Grow(img.json[:0], len(row))[:len(row)], slices.Grow(img.sql[:0], len(row))[:len(row)]
	for i, v := range row {
		ev, err := rowcodec.Encode(&t.cols[i], v)
		if err != nil {
			return fmt.Errorf("%w: %s.%s column %s (%s) at %s: %v", ErrUndecodable, t.db, t.name, t.cols[i].Name, t.cols[i].TypeName(), pos, err)
		}
		img.json[i] = ev.JSON
		img.sql[i] = ev.SQL
	}
	return nil
}

// appendWhere appends the WHERE clause identifying the row of img: by
// primary key, or by every column with LIMIT 1 when there is none.
func (t *table) appendWhere(buf []byte, img *image) []byte {
	buf = append(buf, " WHERE "...)
	if len(t.pk) > 0 {
		for n, i := range t.pk {
			if n > 0 {
				buf = append(buf, " AND "...)
			}
			buf = append(buf, t.idents[i]...)
			buf = append(buf, '=')
			buf = t.appendMatch(buf, i, img.sql[i])
		}
		return buf
	}
	for i := range t.cols {
		if i > 0 {
			buf = append(buf, " AND "...)
		}
		buf = append(buf, t.idents[i]...)
		buf = append(buf, "<=>"...)
		buf = t.appendMatch(buf, i, img.sql[i])
	}
	return append(buf, " LIMIT 1"...)
}

// appendMatch appends the literal to compare column i with in a WHERE
// clause. A FLOAT column compares as a double, so its literal is cast to
// FLOAT to match the stored value exactly.
func (t *table) appendMatch(buf []byte, i int, lit string) []byte {
	if t.cols[i].Type == mysql.MYSQL_TYPE_FLOAT && lit != "NULL" {
		buf = append(buf, "CAST("...)
		buf = append(buf, lit...)
		return append(buf, " AS FLOAT)"...)
	}
	return append(buf, lit...)
}

// appendInsertSQL appends the INSERT statement of img.
func (t *table) appendInsertSQL(buf []byte, img *image) []byte {
	buf = append(buf, t.insertHead...)
	first := true
	for i := range t.cols {
		if t.generated[i] {
			continue
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = append(buf, img.sql[i]...)
	}
	return append(buf, ')')
}

// appendUpdateSQL appends the UPDATE statement that turns before into
// after.
func (t *table) appendUpdateSQL(buf []byte, before, after *image) []byte {
	buf = append(buf, t.updateHead...)
	first := true
	for i := range t.cols {
		if t.generated[i] {
			continue
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = append(buf, t.idents[i]...)
		buf = append(buf, '=')
		buf = append(buf, after.sql[i]...)
	}
	return t.appendWhere(buf, before)
}

// appendDeleteSQL appends the DELETE statement of before.
func (t *table) appendDeleteSQL(buf []byte, before *image) []byte {
	buf = append(buf, t.deleteHead...)
	return t.appendWhere(buf, before)
}

// rowEvents turns one binlog rows event into databus events, one per row.
// The events' bodies share one buffer.
func (t *table) rowEvents(kind replication.EventType, rows [][]any, base sdk.Event) ([]outEvent, error) {
	step := 1
	switch kind {
	case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2, replication.PARTIAL_UPDATE_ROWS_EVENT,
		replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1:
		step = 2
	}
	n := len(rows) / step
	out := make([]outEvent, 0, n)
	ends := make([]int, 0, n)
	var (
		first, after image
		bodies       []byte
		sql          = make([]byte, 0, 1024)
	)
	for i := 0; i+step-1 < len(rows); i += step {
		o := outEvent{ev: base}
		o.ev.Database, o.ev.Table = t.db, t.name
		o.ev.Position.Row = i / step
		if err := t.encode(&first, rows[i], o.ev.Position); err != nil {
			return nil, err
		}
		switch {
		case step == 2:
			if err := t.encode(&after, rows[i+1], o.ev.Position); err != nil {
				return nil, err
			}
			o.ev.Op = sdk.OpUpdate
			bodies = t.appendFields(bodies, &after, &first, &after)
			sql = t.appendUpdateSQL(sql[:0], &first, &after)
		case isDelete(kind):
			o.ev.Op = sdk.OpDelete
			bodies = t.appendFields(bodies, &first, &first, nil)
			sql = t.appendDeleteSQL(sql[:0], &first)
		default:
			o.ev.Op = sdk.OpInsert
			bodies = t.appendFields(bodies, &first, nil, &first)
			sql = t.appendInsertSQL(sql[:0], &first)
		}
		bodies = append(bodies, `"sql":`...)
		bodies = appendJSONString(bodies, sql)
		ends = append(ends, len(bodies))
		if len(ends) == 1 {
			// Rows of one event are alike: make room for the others.
			bodies = slices.Grow(bodies, len(bodies)*(n-1))
		}
		o.head = t.head(base.Source, o.ev.Op)
		out = append(out, o)
	}
	start := 0
	for i, end := range ends {
		out[i].body = bodies[start:end:end]
		start = end
	}
	return out, nil
}

// appendFields appends the key (from keyImg), before and after fields, each
// followed by a comma.
func (t *table) appendFields(buf []byte, keyImg, before, after *image) []byte {
	buf, wrote := t.appendKey(buf, keyImg)
	if wrote {
		buf = append(buf, ',')
	}
	if before != nil {
		buf = append(buf, `"before":`...)
		buf = append(t.appendImage(buf, before), ',')
	}
	if after != nil {
		buf = append(buf, `"after":`...)
		buf = append(t.appendImage(buf, after), ',')
	}
	return buf
}

func isDelete(kind replication.EventType) bool {
	switch kind {
	case replication.DELETE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2,
		replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1:
		return true
	}
	return false
}
