package capture_test

import (
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/internal/testenv"

	"github.com/databus/databus/sdk"
)

func TestEveryTypeRoundTripsThroughTheEmittedSQL(t *testing.T) {
	r, target := newMirror(t, "CREATE DATABASE torture", testenv.TortureDDL)
	c := r.Consumer(t, sdk.Config{Start: sdk.StartBeginning, Tables: []string{"torture.t"}})

	// The writer's session time zone must not leak into TIMESTAMP values.
	r.DB.Exec(t, "SET SESSION sql_mode = '', time_zone = '+05:30'",
		"SET SESSION sql_mode = ''; SET SESSION time_zone = '+05:30'; INSERT INTO torture.t ("+testenv.TortureCols+") VALUES "+strings.Join(testenv.TortureRows, ","),
		"SET SESSION sql_mode = ''; UPDATE torture.t SET id = 30, vc = 'moved', bi = bi - 1 WHERE id = 3",
		"SET SESSION sql_mode = ''; UPDATE torture.t SET j = '[]', st = '', e = 'a', b64 = b'1010', f = 1.5e-45 WHERE id = 1",
		"DELETE FROM torture.t WHERE id = 4",
		"INSERT INTO torture.t (id, i) VALUES (5, 41)",
	)
	evs := testenv.Read(t, c, 8)

	// Apply on the target under settings that break naive SQL.
	conn, err := target.DB(t).Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, s := range []string{"SET SESSION sql_mode = 'STRICT_ALL_TABLES,NO_BACKSLASH_ESCAPES,NO_AUTO_VALUE_ON_ZERO'", "SET SESSION time_zone = '+00:00'", "SET NAMES latin1"} {
		if _, err := conn.ExecContext(t.Context(), s); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range evs {
		checkStatement(t, e)
		if _, err := conn.ExecContext(t.Context(), e.SQL); err != nil {
			t.Fatalf("target rejects %.300s: %v", e.SQL, err)
		}
	}
	if a, b := r.DB.Checksum(t, "torture.t"), target.Checksum(t, "torture.t"); a != b {
		t.Errorf("CHECKSUM TABLE differs: source %s, target %s", a, b)
	}
	src, dst := dumpRows(t, r.DB.DB(t), "torture.t"), dumpRows(t, target.DB(t), "torture.t")
	if len(src) != len(dst) {
		t.Fatalf("rows: source %d, target %d", len(src), len(dst))
	}
	for i := range src {
		s, d := strings.Fields(src[i]), strings.Fields(dst[i])
		for j := range s {
			if s[j] != d[j] {
				t.Errorf("row %d: source %.200s, target %.200s", i, s[j], d[j])
			}
		}
	}

	// A few JSON values a reader relies on.
	after := evs[1].After
	for col, want := range map[string]any{
		"biu": "18446744073709551615", "bi": "9223372036854775807",
		"d65": "99999999999999999999999999999999999.999999999999999999999999999999",
		"b64": "18446744073709551615", "tm": "838:59:59", "ts0": "2038-01-18 21:44:07",
		"l1": "café ÿ €", "bn": "AP8A/wD/AP8=", "e": "c d", "st": "x,y,z",
	} {
		if fmt.Sprint(after[col]) != fmt.Sprint(want) {
			t.Errorf("column %s: got %#v, want %#v", col, after[col], want)
		}
	}
	if got := evs[0].After["dt"]; got != "0000-00-00" {
		t.Errorf("zero date: got %#v", got)
	}
	if got := evs[3].After["vc"]; got != nil {
		t.Errorf("NULL: got %#v", got)
	}
}

// checkStatement checks that the statement built from e's values (what
// apply runs) is the SQL capture wrote.
func checkStatement(t *testing.T, e *sdk.Event) {
	t.Helper()
	got, err := e.Statement()
	if err != nil {
		t.Fatalf("building the statement of %.300s: %v", e.SQL, err)
	}
	if got != e.SQL {
		t.Errorf("statement built from the values differs from the event's SQL:\n got %.500s\nwant %.500s", got, e.SQL)
	}
}

// dumpRows returns every row as text with each value hex-encoded, in primary
// key order.
func dumpRows(t *testing.T, db *sql.DB, table string) []string {
	t.Helper()
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(t.Context(), "SET time_zone = '+00:00'"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.QueryContext(t.Context(), "SELECT * FROM "+table+" ORDER BY 1")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.RawBytes, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		var b strings.Builder
		for i, v := range vals {
			if v == nil {
				fmt.Fprintf(&b, "%s=NULL ", cols[i])
			} else {
				fmt.Fprintf(&b, "%s=%x ", cols[i], []byte(v))
			}
		}
		out = append(out, b.String())
	}
	return out
}

func TestTablesWithoutOrWithCompositeKeys(t *testing.T) {
	r, target := newMirror(t, "CREATE DATABASE k",
		"CREATE TABLE k.nopk (a INT, f FLOAT, d DOUBLE, s VARCHAR(10), b BLOB)",
		"CREATE TABLE k.comp (a INT, b VARCHAR(5), v INT, PRIMARY KEY (a, b))")
	c := r.Consumer(t, sdk.Config{Start: sdk.StartBeginning, Databases: []string{"k"}})
	r.DB.Exec(t,
		"INSERT INTO k.nopk VALUES (1, 0.1, 0.1, 'x', X'00'), (1, 0.1, 0.1, 'x', X'00'), (2, NULL, NULL, NULL, NULL), (3, 3.4e38, 1e-300, 'z', '')",
		"UPDATE k.nopk SET s = 'y' WHERE a = 1 LIMIT 1",
		"DELETE FROM k.nopk WHERE a = 2",
		"UPDATE k.nopk SET f = 1.25 WHERE a = 3",
		"INSERT INTO k.comp VALUES (1, 'a', 1), (1, 'b', 2)",
		"UPDATE k.comp SET b = 'c', v = 3 WHERE a = 1 AND b = 'a'",
		"DELETE FROM k.comp WHERE b = 'b'",
	)
	for _, e := range testenv.Read(t, c, 11) {
		checkStatement(t, e)
		res, err := target.DB(t).Exec(e.SQL)
		if err != nil {
			t.Fatalf("%s: %v", e.SQL, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Errorf("%s: changed %d rows on the target, want 1", e.SQL, n)
		}
	}
	for _, table := range []string{"k.nopk", "k.comp"} {
		if a, b := r.DB.Checksum(t, table), target.Checksum(t, table); a != b {
			t.Errorf("%s: CHECKSUM TABLE source %s, target %s\n%v\n%v", table, a, b, dumpRows(t, r.DB.DB(t), table), dumpRows(t, target.DB(t), table))
		}
	}
}

func TestUnrepresentableValueStopsCaptureNamingTheColumn(t *testing.T) {
	r := testenv.NewRig(t)
	// cp1250 has no character 0x81: the server stores the byte but
	// converts it to '?'.
	r.DB.Exec(t, "CREATE DATABASE odd", "CREATE TABLE odd.t (id INT PRIMARY KEY, name VARCHAR(10) CHARACTER SET cp1250)")
	r.Start(t)
	r.DB.Exec(t, "INSERT INTO odd.t VALUES (1, CAST(X'618162' AS CHAR CHARACTER SET cp1250))")
	var err error
	testenv.Eventually(t, 20*time.Second, func() error {
		if r.Status().Streaming {
			return fmt.Errorf("still streaming")
		}
		return nil
	})
	err = r.Stop(t)
	if !errors.Is(err, capture.ErrUndecodable) {
		t.Fatalf("got %v, want ErrUndecodable", err)
	}
	for _, s := range []string{"odd.t", "name", "cp1250", "81", "mysql-bin."} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not name %q: %v", s, err)
		}
	}
}
