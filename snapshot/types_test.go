package snapshot_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

// Snapshot rows, read with SELECT, must carry exactly what binlog rows of the
// same data carry: column descriptions and every value.
func TestSnapshotRowsEqualBinlogRows(t *testing.T) {
	r := testenv.NewRig(t)
	r.Start(t)
	r.DB.Exec(t, "CREATE DATABASE torture", testenv.TortureDDL,
		"SET SESSION sql_mode = ''; SET SESSION time_zone = '+05:30'; INSERT INTO torture.t ("+testenv.TortureCols+") VALUES "+strings.Join(testenv.TortureRows, ","))
	// The table's CREATE TABLE, then its four rows.
	binlog := testenv.Read(t, r.Consumer(t, sdk.Config{Start: sdk.StartBeginning, Tables: []string{"torture.t"}}), 5)
	if binlog[0].Op != sdk.OpDDL || binlog[0].DDL.Kind != "create_table" {
		t.Fatalf("first binlog event: %s %.80s, want the CREATE TABLE", binlog[0].Op, binlog[0].SQL)
	}
	binlog = binlog[1:]
	if _, err := r.Snapshot(t.Context(), snapshot.Options{}); err != nil {
		t.Fatalf("snapshot.Take: %v", err)
	}
	c := r.Consumer(t, sdk.Config{Start: sdk.StartSnapshot, Tables: []string{"torture.t"}})
	snap := testenv.Read(t, c, 5)
	if snap[0].Op != sdk.OpDDL || !snap[0].Snapshot || !strings.HasPrefix(snap[0].SQL, "CREATE TABLE IF NOT EXISTS `torture`.`t`") {
		t.Errorf("first snapshot event: %s %v %.80s", snap[0].Op, snap[0].Snapshot, snap[0].SQL)
	}
	for i, ev := range snap[1:] {
		want := binlog[i]
		if !ev.Snapshot || ev.Op != sdk.OpInsert || ev.Key["id"] != want.Key["id"] {
			t.Fatalf("snapshot row %d: %s key %v snapshot=%v; binlog key %v", i, ev.Op, ev.Key, ev.Snapshot, want.Key)
		}
		if a, b := fmt.Sprint(ev.Columns), fmt.Sprint(want.Columns); a != b {
			t.Errorf("columns:\nsnapshot %s\nbinlog   %s", a, b)
		}
		for col, v := range want.After {
			if fmt.Sprintf("%#v", ev.After[col]) != fmt.Sprintf("%#v", v) {
				t.Errorf("row %v column %s: snapshot %.100q, binlog %.100q", ev.Key["id"], col, fmt.Sprint(ev.After[col]), fmt.Sprint(v))
			}
		}
		if ev.SQL != want.SQL {
			t.Errorf("row %v SQL differs:\nsnapshot %.300s\nbinlog   %.300s", ev.Key["id"], ev.SQL, want.SQL)
		}
	}
}
