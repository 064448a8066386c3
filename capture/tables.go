package capture

import (
	"bytes"
	"errors"
	"fmt"
	"slices"

	"github.com/go-mysql-org/go-mysql/replication"

	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/internal/rowevent"
	"github.com/databus/databus/sdk"
)

// binlogTable is a captured table's shape, taken from a binlog table map
// event (binlog_row_metadata=FULL), so rows are always decoded with the
// schema they were written with.
type binlogTable struct {
	*rowevent.Table
	// tableMap is the event this shape was built from, to notice changes.
	tableMap *replication.TableMapEvent
}

// newTable builds a table from a table map event.
func newTable(tm *replication.TableMapEvent, collations map[uint64]string, traits mysqlsrc.ColumnTraits) (*binlogTable, error) {
	cols, err := rowcodec.ColumnsFromTableMap(tm, collations)
	if errors.Is(err, rowcodec.ErrNoColumnNames) {
		return nil, fmt.Errorf("%w: %v", ErrSourceSettings, err)
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUndecodable, err)
	}
	pk := make([]int, len(tm.PrimaryKey))
	for i, k := range tm.PrimaryKey {
		pk[i] = int(k)
	}
	rowcodec.MarkJSON(cols, traits.JSON)
	return &binlogTable{Table: rowevent.NewTable(string(tm.Schema), string(tm.Table), cols, pk, traits.Generated), tableMap: tm}, nil
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

// rowsOp returns the operation of a binlog rows event.
func rowsOp(kind replication.EventType) sdk.Op {
	switch kind {
	case replication.UPDATE_ROWS_EVENTv0, replication.UPDATE_ROWS_EVENTv1, replication.UPDATE_ROWS_EVENTv2, replication.PARTIAL_UPDATE_ROWS_EVENT,
		replication.MARIADB_UPDATE_ROWS_COMPRESSED_EVENT_V1:
		return sdk.OpUpdate
	case replication.DELETE_ROWS_EVENTv0, replication.DELETE_ROWS_EVENTv1, replication.DELETE_ROWS_EVENTv2,
		replication.MARIADB_DELETE_ROWS_COMPRESSED_EVENT_V1:
		return sdk.OpDelete
	}
	return sdk.OpInsert
}
