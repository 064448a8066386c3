package rowevent

import (
	"fmt"
	"slices"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/sdk"
)

// Table is one table's shape: its columns, primary key and generated
// columns, with everything needed to encode its rows cached. Binlog rows
// (columns from [rowcodec.ColumnsFromTableMap]) and snapshot rows (columns
// from [rowcodec.ColumnFromSchema]) go through the same Table, so both are
// encoded alike. A Table is not safe for concurrent use.
type Table struct {
	db, name string
	cols     []rowcodec.Column
	pk       []int
	// generated marks generated columns, which SQL must not write.
	generated []bool
	wire      []sdk.Column
	pkNames   []string
	// quoted holds each column's `"name":` JSON prefix; heads the cached
	// JSON heads of events per operation, for source headSource.
	quoted     [][]byte
	heads      map[sdk.Op][]byte
	headSource string
	// idents holds each column's quoted SQL identifier; insertHead,
	// updateHead and deleteHead the start of each statement on the table.
	idents                             []string
	insertHead, updateHead, deleteHead string
}

// NewTable builds the table db.name from its columns in order, the indexes
// of its primary key columns in key order (none for a table without one)
// and the names of its generated columns.
func NewTable(db, name string, cols []rowcodec.Column, pk []int, generated map[string]bool) *Table {
	t := &Table{db: db, name: name, cols: cols, pk: pk}
	for _, c := range cols {
		t.generated = append(t.generated, generated[c.Name])
		t.quoted = append(t.quoted, append(rowcodec.AppendJSONString(nil, c.Name), ':'))
		t.wire = append(t.wire, sdk.Column{Name: c.Name, Type: c.TypeName(), Storage: c.Storage(), Charset: c.Charset, Nullable: c.Nullable,
			Generated: generated[c.Name]})
	}
	for _, i := range pk {
		t.pkNames = append(t.pkNames, cols[i].Name)
	}
	var written []string
	for i, c := range cols {
		t.idents = append(t.idents, sdk.QuoteIdent(c.Name))
		if !t.generated[i] {
			written = append(written, t.idents[i])
		}
	}
	t.insertHead = "INSERT INTO " + t.Qualified() + " (" + strings.Join(written, ",") + ") VALUES ("
	t.updateHead = "UPDATE " + t.Qualified() + " SET "
	t.deleteHead = "DELETE FROM " + t.Qualified()
	return t
}

// Database returns the table's database.
func (t *Table) Database() string { return t.db }

// Name returns the table's name.
func (t *Table) Name() string { return t.name }

// Qualified returns `db`.`table`.
func (t *Table) Qualified() string {
	return sdk.QuoteIdent(t.db) + "." + sdk.QuoteIdent(t.name)
}

// Columns returns the table's columns in order; the caller must not
// modify them.
func (t *Table) Columns() []rowcodec.Column { return t.cols }

// PrimaryKey returns the indexes of the primary key columns, in key order.
func (t *Table) PrimaryKey() []int { return t.pk }

// WireColumns returns the columns as events describe them.
func (t *Table) WireColumns() []sdk.Column { return t.wire }

// PrimaryKeyNames returns the names of the primary key columns.
func (t *Table) PrimaryKeyNames() []string { return t.pkNames }

// image is one encoded row image, in column order.
type image struct {
	json []any
	sql  []string
}

// encode fills img with the encoded values of row, reusing its slices.
func (t *Table) encode(img *image, row []any, pos sdk.Position) error {
	if len(row) != len(t.cols) {
		return fmt.Errorf("%w: %s.%s at %s: row image has %d values, table map %d columns", rowcodec.ErrUndecodable, t.db, t.name, pos, len(row), len(t.cols))
	}
	img.json, img.sql = slices.Grow(img.json[:0], len(row))[:len(row)], slices.Grow(img.sql[:0], len(row))[:len(row)]
	for i, v := range row {
		ev, err := rowcodec.Encode(&t.cols[i], v)
		if err != nil {
			return fmt.Errorf("%w: %s.%s column %s (%s) at %s: %v", rowcodec.ErrUndecodable, t.db, t.name, t.cols[i].Name, t.cols[i].TypeName(), pos, err)
		}
		img.json[i] = ev.JSON
		img.sql[i] = ev.SQL
	}
	return nil
}

// Events turns row images of one operation into events, one per row,
// each a copy of base with the table, the operation and the row's place
// (Position.Row) filled in. Rows of sdk.OpUpdate come in pairs, the image
// before and the image after; those of sdk.OpInsert and sdk.OpDelete are
// one image each. The events' bodies share one buffer. A value that
// cannot be represented exactly is an error wrapping
// [rowcodec.ErrUndecodable] that names the table, column and position.
func (t *Table) Events(op sdk.Op, rows [][]any, base sdk.Event) ([]Event, error) {
	step := 1
	switch op {
	case sdk.OpUpdate:
		step = 2
	case sdk.OpInsert, sdk.OpDelete:
	default:
		return nil, fmt.Errorf("row events of %s.%s: operation %q has no row images", t.db, t.name, op)
	}
	n := len(rows) / step
	out := make([]Event, 0, n)
	ends := make([]int, 0, n)
	var (
		first, after image
		bodies       []byte
		sql          = make([]byte, 0, 1024)
	)
	for i := 0; i+step-1 < len(rows); i += step {
		o := Event{Event: base}
		o.Database, o.Table, o.Op = t.db, t.name, op
		o.Position.Row = i / step
		if err := t.encode(&first, rows[i], o.Position); err != nil {
			return nil, err
		}
		switch op {
		case sdk.OpUpdate:
			if err := t.encode(&after, rows[i+1], o.Position); err != nil {
				return nil, err
			}
			bodies = t.appendFields(bodies, &after, &first, &after)
			sql = t.appendUpdateSQL(sql[:0], &first, &after)
		case sdk.OpDelete:
			bodies = t.appendFields(bodies, &first, &first, nil)
			sql = t.appendDeleteSQL(sql[:0], &first)
		default:
			bodies = t.appendFields(bodies, &first, nil, &first)
			sql = t.appendInsertSQL(sql[:0], &first)
		}
		bodies = append(bodies, `"sql":`...)
		bodies = rowcodec.AppendJSONString(bodies, sql)
		ends = append(ends, len(bodies))
		if len(ends) == 1 {
			// Rows of one event are alike: make room for the others.
			bodies = slices.Grow(bodies, len(bodies)*(n-1))
		}
		o.head = t.head(base.Source, op)
		out = append(out, o)
	}
	start := 0
	for i, end := range ends {
		out[i].body = bodies[start:end:end]
		start = end
	}
	return out, nil
}

// appendWhere appends the WHERE clause identifying the row of img: by
// primary key, or by every column with LIMIT 1 when there is none.
func (t *Table) appendWhere(buf []byte, img *image) []byte {
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
func (t *Table) appendMatch(buf []byte, i int, lit string) []byte {
	if t.cols[i].Type == mysql.MYSQL_TYPE_FLOAT && lit != "NULL" {
		buf = append(buf, "CAST("...)
		buf = append(buf, lit...)
		return append(buf, " AS FLOAT)"...)
	}
	return append(buf, lit...)
}

// appendWritten appends the SQL of img's written (not generated) columns,
// comma-separated, each as its literal or, with assign, as `col`=literal.
func (t *Table) appendWritten(buf []byte, img *image, assign bool) []byte {
	first := true
	for i := range t.cols {
		if t.generated[i] {
			continue
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		if assign {
			buf = append(buf, t.idents[i]...)
			buf = append(buf, '=')
		}
		buf = append(buf, img.sql[i]...)
	}
	return buf
}

// appendInsertSQL appends the INSERT statement of img.
func (t *Table) appendInsertSQL(buf []byte, img *image) []byte {
	buf = append(buf, t.insertHead...)
	return append(t.appendWritten(buf, img, false), ')')
}

// appendUpdateSQL appends the UPDATE statement that turns before into
// after.
func (t *Table) appendUpdateSQL(buf []byte, before, after *image) []byte {
	buf = append(buf, t.updateHead...)
	return t.appendWhere(t.appendWritten(buf, after, true), before)
}

// appendDeleteSQL appends the DELETE statement of before.
func (t *Table) appendDeleteSQL(buf []byte, before *image) []byte {
	buf = append(buf, t.deleteHead...)
	return t.appendWhere(buf, before)
}

// appendFields appends the key (from keyImg), before and after fields, each
// followed by a comma.
func (t *Table) appendFields(buf []byte, keyImg, before, after *image) []byte {
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
