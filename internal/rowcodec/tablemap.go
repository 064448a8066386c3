package rowcodec

import (
	"errors"
	"fmt"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
)

// ErrUndecodable means a value or a column could not be represented
// exactly; whoever meets it stops rather than publish a wrong value.
var ErrUndecodable = errors.New("cannot decode row")

// ErrNoColumnNames means a binlog table map carries no column names: the
// server does not write binlog_row_metadata=FULL.
var ErrNoColumnNames = errors.New("table map has no column names: set binlog_row_metadata=FULL")

// ColumnsFromTableMap builds the columns of a binlog TABLE_MAP event written
// with binlog_row_metadata=FULL; collations maps the server's collation ids
// to character set names (information_schema.COLLATIONS). It is the binlog
// twin of [ColumnFromSchema]: both give the same Column for the same column
// definition. It returns [ErrNoColumnNames] when the event has no names.
func ColumnsFromTableMap(tm *replication.TableMapEvent, collations map[uint64]string) ([]Column, error) {
	names := tm.ColumnNameString()
	if len(names) != int(tm.ColumnCount) {
		return nil, fmt.Errorf("%s.%s: %w", tm.Schema, tm.Table, ErrNoColumnNames)
	}
	unsigned := tm.UnsignedMap()
	colls := tm.CollationMap()
	enumColls := tm.EnumSetCollationMap()
	enums := tm.EnumStrValueMap()
	sets := tm.SetStrValueMap()
	cols := make([]Column, tm.ColumnCount)
	for i := range cols {
		typ, meta := realType(tm.ColumnType[i], tm.ColumnMeta[i])
		c := Column{
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
				return nil, fmt.Errorf("column %s.%s.%s has collation id %d unknown to the server", tm.Schema, tm.Table, c.Name, coll)
			}
			c.Charset = cs
		} else if coll, ok := enumColls[i]; ok {
			c.Charset = collations[coll]
		} else if isBytesType(typ) {
			c.Charset = "binary"
		}
		cols[i] = c
	}
	return cols, nil
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
