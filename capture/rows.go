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

func (t *table) encode(row []any, pos sdk.Position) (image, error) {
	if len(row) != len(t.cols) {
		return image{}, fmt.Errorf("%w: %s.%s at %s: row image has %d values, table map %d columns", ErrUndecodable, t.db, t.name, pos, len(row), len(t.cols))
	}
	img := image{json: make([]any, len(row)), sql: make([]string, len(row))}
	for i, v := range row {
		ev, err := rowcodec.Encode(&t.cols[i], v)
		if err != nil {
			return image{}, fmt.Errorf("%w: %s.%s column %s (%s) at %s: %v", ErrUndecodable, t.db, t.name, t.cols[i].Name, t.cols[i].TypeName(), pos, err)
		}
		img.json[i] = ev.JSON
		img.sql[i] = ev.SQL
	}
	return img, nil
}

// where builds the WHERE clause identifying the row of img: by primary key,
// or by every column with LIMIT 1 when there is none.
func (t *table) where(img image) string {
	var b strings.Builder
	b.WriteString(" WHERE ")
	if len(t.pk) > 0 {
		for n, i := range t.pk {
			if n > 0 {
				b.WriteString(" AND ")
			}
			b.WriteString(rowcodec.QuoteIdent(t.cols[i].Name))
			b.WriteString("=")
			b.WriteString(t.matchLiteral(i, img.sql[i]))
		}
		return b.String()
	}
	for i, c := range t.cols {
		if i > 0 {
			b.WriteString(" AND ")
		}
		b.WriteString(rowcodec.QuoteIdent(c.Name))
		b.WriteString("<=>")
		b.WriteString(t.matchLiteral(i, img.sql[i]))
	}
	b.WriteString(" LIMIT 1")
	return b.String()
}

// matchLiteral returns the literal to compare column i with in a WHERE
// clause. A FLOAT column compares as a double, so its literal is cast to
// FLOAT to match the stored value exactly.
func (t *table) matchLiteral(i int, lit string) string {
	if t.cols[i].Type == mysql.MYSQL_TYPE_FLOAT && lit != "NULL" {
		return "CAST(" + lit + " AS FLOAT)"
	}
	return lit
}

func (t *table) insertSQL(img image) string {
	var cols, vals strings.Builder
	for i, c := range t.cols {
		if t.generated[i] {
			continue
		}
		if cols.Len() > 0 {
			cols.WriteByte(',')
			vals.WriteByte(',')
		}
		cols.WriteString(rowcodec.QuoteIdent(c.Name))
		vals.WriteString(img.sql[i])
	}
	return "INSERT INTO " + t.qualified() + " (" + cols.String() + ") VALUES (" + vals.String() + ")"
}

func (t *table) updateSQL(before, after image) string {
	var b strings.Builder
	b.WriteString("UPDATE ")
	b.WriteString(t.qualified())
	b.WriteString(" SET ")
	first := true
	for i, c := range t.cols {
		if t.generated[i] {
			continue
		}
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteString(rowcodec.QuoteIdent(c.Name))
		b.WriteByte('=')
		b.WriteString(after.sql[i])
	}
	b.WriteString(t.where(before))
	return b.String()
}

func (t *table) deleteSQL(before image) string {
	return "DELETE FROM " + t.qualified() + t.where(before)
}

// rowEvents turns one binlog rows event into databus events, one per row.
func (t *table) rowEvents(kind replication.EventType, rows [][]any, base sdk.Event) ([]outEvent, error) {
	var out []outEvent
	step := 1
	switch kind {
	case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2, replication.PARTIAL_UPDATE_ROWS_EVENT,
		replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1:
		step = 2
	}
	for i := 0; i+step-1 < len(rows); i += step {
		o := outEvent{ev: base}
		o.ev.Database, o.ev.Table = t.db, t.name
		o.ev.Position.Row = i / step
		first, err := t.encode(rows[i], o.ev.Position)
		if err != nil {
			return nil, err
		}
		var body []byte
		var sql string
		switch {
		case step == 2:
			after, err := t.encode(rows[i+1], o.ev.Position)
			if err != nil {
				return nil, err
			}
			o.ev.Op = sdk.OpUpdate
			body = t.appendFields(body, after, &first, &after)
			sql = t.updateSQL(first, after)
		case isDelete(kind):
			o.ev.Op = sdk.OpDelete
			body = t.appendFields(body, first, &first, nil)
			sql = t.deleteSQL(first)
		default:
			o.ev.Op = sdk.OpInsert
			body = t.appendFields(body, first, nil, &first)
			sql = t.insertSQL(first)
		}
		body = append(body, `"sql":`...)
		o.body = appendJSONString(body, sql)
		o.head = t.head(base.Source, o.ev.Op)
		out = append(out, o)
	}
	return out, nil
}

// appendFields appends the key (from keyImg), before and after fields, each
// followed by a comma.
func (t *table) appendFields(buf []byte, keyImg image, before, after *image) []byte {
	buf, wrote := t.appendKey(buf, keyImg)
	if wrote {
		buf = append(buf, ',')
	}
	if before != nil {
		buf = append(buf, `"before":`...)
		buf = append(t.appendImage(buf, *before), ',')
	}
	if after != nil {
		buf = append(buf, `"after":`...)
		buf = append(t.appendImage(buf, *after), ',')
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
