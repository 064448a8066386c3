package capture_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/configs"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// masterStatus returns the source's current binlog position as FILE:OFFSET
// and its GTID position.
func masterStatus(t *testing.T, db *testenv.MariaDB) (pos, gtid string) {
	t.Helper()
	conn := db.DB(t)
	var file, doDB, ignoreDB string
	var offset uint32
	if err := conn.QueryRow("SHOW MASTER STATUS").Scan(&file, &offset, &doDB, &ignoreDB); err != nil {
		t.Fatal(err)
	}
	if err := conn.QueryRow("SELECT @@gtid_binlog_pos").Scan(&gtid); err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%s:%d", file, offset), gtid
}

func parseStart(t *testing.T, s string) configs.CaptureStart {
	t.Helper()
	st, err := configs.ParseCaptureStart(s)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// ids reads the row events of app.t, and DDL events, as "ddl" or the id.
func ids(t *testing.T, c *sdk.Consumer, n int) string {
	t.Helper()
	var out []string
	for _, e := range testenv.Read(t, c, n) {
		if e.Op == sdk.OpDDL {
			out = append(out, "ddl")
		} else {
			out = append(out, fmt.Sprint(e.Key["id"]))
		}
	}
	return strings.Join(out, " ")
}

// A new capture begins at capture.start: the oldest binlog, a position
// or after a GTID set; every later transaction is captured, none before.
func TestCaptureStartsAtEarliestPositionOrGTID(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1)", "FLUSH BINARY LOGS", "INSERT INTO app.t VALUES (2)")
	pos, gtid := masterStatus(t, r.DB)
	r.DB.Exec(t, "BEGIN", "INSERT INTO app.t VALUES (3)", "INSERT INTO app.t VALUES (4)", "COMMIT", "INSERT INTO app.t VALUES (5)")
	end, endGTID := masterStatus(t, r.DB)

	tests := []struct {
		start string
		want  string
	}{
		{"earliest", "ddl ddl 1 2 3 4 5"},
		{pos, "3 4 5"},
		{gtid, "3 4 5"},
		{"gtid:" + gtid, "3 4 5"},
		{end, ""},
		{endGTID, ""},
	}
	for i, tt := range tests {
		t.Run(tt.start, func(t *testing.T) {
			r.Config.Source = fmt.Sprintf("s%d", i)
			r.Config.Start = parseStart(t, tt.start)
			r.Start(t)
			defer r.Stop(t)
			c := r.Consumer(t, sdk.Config{Name: "app", Start: sdk.StartBeginning, Databases: []string{"app"}})
			// Then the rows the earlier subtests inserted, and a new one.
			r.DB.Exec(t, fmt.Sprintf("INSERT INTO app.t VALUES (%d)", 100+i))
			want := strings.Fields(tt.want)
			for j := 0; j <= i; j++ {
				want = append(want, fmt.Sprint(100+j))
			}
			if got := ids(t, c, len(want)); got != strings.Join(want, " ") {
				t.Errorf("captured %q, want %q", got, strings.Join(want, " "))
			}
			testenv.None(t, c)
			if cp := savedCheckpoint(t, r); cp.Start != r.Config.Start.String() {
				t.Errorf("checkpoint records start %q, want %q", cp.Start, r.Config.Start.String())
			}
		})
	}
}

// A start the source cannot begin at stops capture with ErrBadStart
// naming what is wrong, and writes no checkpoint.
func TestCaptureStartTheSourceDoesNotHave(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1)")
	conn := r.DB.DB(t)
	var file string
	var rowsAt uint32
	rows, err := conn.Query("SHOW BINLOG EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var name, typ, info string
		var pos, sid, endPos uint32
		if err := rows.Scan(&name, &pos, &typ, &sid, &endPos, &info); err != nil {
			t.Fatal(err)
		}
		if typ == "Table_map" && rowsAt == 0 {
			file, rowsAt = name, pos
		}
	}
	rows.Close()
	if rowsAt == 0 {
		t.Fatal("no Table_map event in the binlog")
	}
	tests := []struct {
		start string
		says  []string
	}{
		{fmt.Sprintf("%s:%d", file, rowsAt), []string{"Table_map", "inside a transaction", "Gtid"}},
		{fmt.Sprintf("%s:%d", file, rowsAt+1), []string{"no binlog event begins at offset", "SHOW BINLOG EVENTS"}},
		{"mysql-bin.999999:4", []string{"no binlog mysql-bin.999999", file}},
		{fmt.Sprintf("%s:%d", file, 1<<30), []string{file + " ends at"}},
		{"0-1-999999", []string{"cannot stream from there", "0-1-999999"}},
		{"3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", []string{"not a GTID set of MariaDB", "0-1-42"}},
	}
	for i, tt := range tests {
		t.Run(tt.start, func(t *testing.T) {
			r.Config.Source = fmt.Sprintf("bad%d", i)
			r.Config.Start = parseStart(t, tt.start)
			r.Start(t)
			err := r.Stop(t)
			if !errors.Is(err, capture.ErrBadStart) {
				t.Fatalf("capture.start %s: got %v, want ErrBadStart", tt.start, err)
			}
			t.Log(err)
			for _, s := range append(tt.says, "capture.start", tt.start) {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error does not say %q: %v", s, err)
				}
			}
			if _, err := stateKV(t, r).Get(t.Context(), "capture.checkpoint"); err == nil {
				t.Errorf("a refused start wrote a checkpoint")
			}
		})
	}
}

// capture.start applies to a first start only: the same start resumes
// from the checkpoint, the default resumes too, another start is refused
// unless Recover, which captures again from it without publishing twice
// what the stream has.
func TestCaptureStartWithACheckpoint(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)", "INSERT INTO app.t VALUES (1)")
	pos, _ := masterStatus(t, r.DB)
	r.DB.Exec(t, "INSERT INTO app.t VALUES (2)")
	r.Config.Start = parseStart(t, pos)
	r.Start(t)
	c := r.Consumer(t, sdk.Config{Name: "app", Start: sdk.StartBeginning, Tables: []string{"app.t"}})
	if got := ids(t, c, 1); got != "2" {
		t.Fatalf("captured %q, want 2", got)
	}
	step := func(name string, id int) {
		t.Helper()
		if err := r.Stop(t); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		r.DB.Exec(t, fmt.Sprintf("INSERT INTO app.t VALUES (%d)", id))
		r.Start(t)
		if got := ids(t, c, 1); got != fmt.Sprint(id) {
			t.Errorf("%s: captured %q, want %d", name, got, id)
		}
		testenv.None(t, c)
	}
	step("the same start again", 3)
	r.Config.Start = configs.CaptureStart{Kind: configs.StartNow}
	step("the default start", 4)

	r.Config.Start = parseStart(t, "earliest")
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	r.Start(t)
	err := r.Stop(t)
	if !errors.Is(err, capture.ErrBadStart) {
		t.Fatalf("another start with a checkpoint: got %v, want ErrBadStart", err)
	}
	for _, s := range []string{"earliest", "began at " + pos, "--recover", "remove capture.start"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not say %q: %v", s, err)
		}
	}
	// Recover: capture reads again from the oldest binlog and publishes
	// only what the stream does not have.
	r.Config.Recover = true
	r.DB.Exec(t, "INSERT INTO app.t VALUES (5)")
	r.Start(t)
	if got := ids(t, c, 1); got != "5" {
		t.Errorf("after recovering at another start: captured %q, want 5", got)
	}
	testenv.None(t, c)
	if cp := savedCheckpoint(t, r); cp.Start != "earliest" {
		t.Errorf("checkpoint records start %q, want earliest", cp.Start)
	}
}
