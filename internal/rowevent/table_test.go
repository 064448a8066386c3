package rowevent

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"

	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/sdk"
)

// The fast JSON of row events must decode to what the event says: the
// fields, values and SQL a reader of the stream relies on, equal to the
// marshalled form of the same sdk.Event.
func TestRowEventsDecodeToTheirEvent(t *testing.T) {
	cols := []rowcodec.Column{
		{Name: "id", Type: mysql.MYSQL_TYPE_LONGLONG, Unsigned: true},
		{Name: "name", Type: mysql.MYSQL_TYPE_VARCHAR, Charset: "utf8mb4", Nullable: true},
		{Name: "twice", Type: mysql.MYSQL_TYPE_LONG, Nullable: true},
	}
	tb := NewTable("shop", "t\"1", cols, []int{0}, map[string]bool{"twice": true})
	base := sdk.Event{Version: sdk.FormatVersion, Source: "main", Timestamp: time.Date(2026, 11, 30, 1, 2, 3, 0, time.UTC),
		Position: sdk.Position{File: "bin.000001", Offset: 99, GTID: "0-1-5", ServerID: 1}}
	tests := []struct {
		op      sdk.Op
		rows    [][]any
		wantSQL []string
	}{
		{sdk.OpInsert, [][]any{{uint64(1), "a\"\n", int32(2)}, {uint64(2), nil, nil}}, []string{
			"INSERT INTO `shop`.`t\"1` (`id`,`name`) VALUES (1,_utf8mb4 X'61220a')",
			"INSERT INTO `shop`.`t\"1` (`id`,`name`) VALUES (2,NULL)",
		}},
		{sdk.OpUpdate, [][]any{{uint64(1), "a", int32(2)}, {uint64(3), "b", int32(6)}}, []string{
			"UPDATE `shop`.`t\"1` SET `id`=3,`name`='b' WHERE `id`=1",
		}},
		{sdk.OpDelete, [][]any{{uint64(3), "b", int32(6)}}, []string{
			"DELETE FROM `shop`.`t\"1` WHERE `id`=3",
		}},
	}
	for _, tt := range tests {
		evs, err := tb.Events(tt.op, tt.rows, base)
		if err != nil {
			t.Fatalf("%s: %v", tt.op, err)
		}
		if len(evs) != len(tt.wantSQL) {
			t.Fatalf("%s: %d events, want %d", tt.op, len(evs), len(tt.wantSQL))
		}
		for i, e := range evs {
			e.Txn = sdk.Txn{ID: "0-1-5", Seq: i, Last: i == len(evs)-1}
			fast, err := e.AppendJSON(nil)
			if err != nil {
				t.Fatal(err)
			}
			got, err := sdk.DecodeEvent(fast)
			if err != nil {
				t.Fatalf("%s row %d: %v in %s", tt.op, i, err, fast)
			}
			if got.SQL != tt.wantSQL[i] {
				t.Errorf("%s row %d: sql %s, want %s", tt.op, i, got.SQL, tt.wantSQL[i])
			}
			if got.Op != tt.op || got.Database != "shop" || got.Table != "t\"1" || got.Position.Row != i || got.Txn != e.Txn {
				t.Errorf("%s row %d: %s %s.%s row %d txn %+v", tt.op, i, got.Op, got.Database, got.Table, got.Position.Row, got.Txn)
			}
			// The same event marshalled the slow way decodes identically.
			e.Key, e.Before, e.After, e.SQL, e.Columns, e.PrimaryKey = got.Key, got.Before, got.After, got.SQL, got.Columns, got.PrimaryKey
			slow, err := json.Marshal(&e.Event)
			if err != nil {
				t.Fatal(err)
			}
			want, err := sdk.DecodeEvent(slow)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Errorf("%s row %d:\nfast %s\nslow %s", tt.op, i, fast, slow)
			}
		}
	}
	if _, err := tb.Events(sdk.OpDDL, nil, base); err == nil {
		t.Error("Events accepted a DDL operation")
	}
}
