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

// tortureDDL has a column of every type databus promises to carry exactly.
const tortureDDL = `CREATE TABLE torture.t (
 id INT NOT NULL PRIMARY KEY,
 ti TINYINT, tiu TINYINT UNSIGNED, si SMALLINT, siu SMALLINT UNSIGNED, mi MEDIUMINT, miu MEDIUMINT UNSIGNED,
 i INT, iu INT UNSIGNED, bi BIGINT, biu BIGINT UNSIGNED,
 d65 DECIMAL(65,30), d0 DECIMAL(20,0), dn DECIMAL(5,2),
 f FLOAT, dbl DOUBLE,
 b1 BIT(1), b13 BIT(13), b64 BIT(64),
 dt DATE, dtm0 DATETIME, dtm6 DATETIME(6), ts0 TIMESTAMP NULL DEFAULT NULL, ts6 TIMESTAMP(6) NULL DEFAULT NULL,
 tm TIME, tm6 TIME(6), yr YEAR,
 c CHAR(10), vc VARCHAR(300), tx TEXT, lt LONGTEXT, l1 VARCHAR(50) CHARACTER SET latin1,
 bn BINARY(8), vb VARBINARY(300), bl BLOB, lb LONGBLOB,
 j JSON, e ENUM('a','b','c d'), st SET('x','y','z'),
 g GEOMETRY, pt POINT,
 gv BIGINT AS (i + 1) VIRTUAL, gs BIGINT AS (i * 2) STORED
) DEFAULT CHARSET=utf8mb4`

// tortureCols are the columns written by the test (not the generated ones).
const tortureCols = "id,ti,tiu,si,siu,mi,miu,i,iu,bi,biu,d65,d0,dn,f,dbl,b1,b13,b64,dt,dtm0,dtm6,ts0,ts6,tm,tm6,yr,c,vc,tx,lt,l1,bn,vb,bl,lb,j,e,st,g,pt"

var tortureRows = []string{
	// minimums, negatives, zero dates
	`(1,-128,0,-32768,0,-8388608,0,-2147483648,0,-9223372036854775808,0,
	 '-99999999999999999999999999999999999.999999999999999999999999999999',-99999999999999999999,-999.99,
	 -3.40282e38,-1.7976931348623157e308,0,0,0,
	 '0000-00-00','0000-00-00 00:00:00','0000-00-00 00:00:00.000000','1970-01-01 05:30:01','1970-01-01 05:30:01.000001',
	 '-838:59:59','-838:59:58.999999',1901,
	 '', '', '', '', '', '', '', '', '',
	 '{}','a','',ST_GeomFromText('POINT(0 0)'),ST_GeomFromText('POINT(-1.5 2.25)'))`,
	// maximums, awkward text and bytes
	`(2,127,255,32767,65535,8388607,16777215,2147483647,4294967295,9223372036854775807,18446744073709551615,
	 '99999999999999999999999999999999999.999999999999999999999999999999',99999999999999999999,999.99,
	 3.40282e38,1.7976931348623157e308,1,8191,18446744073709551615,
	 '9999-12-31','9999-12-31 23:59:59','9999-12-31 23:59:59.999999','2038-01-19 03:14:07','2038-01-19 03:14:07.999999',
	 '838:59:59','838:59:58.999999',2155,
	 'quote''s','back\\slash "dq" \0 nul \n\r\t \Z end','😀 emoji 𝄞 ünïcödé 中文','` + strings.Repeat("long text ", 3000) + `','café ÿ €',
	 X'00FF00FF00FF00FF',X'00010203FEFF5C27',X'C328',REPEAT(X'DEADBEEF',100000),
	 '{"a":[1,2.5,"x",null,true],"big":123456789012345678901234567890,"u":"\\u00e9😀","nested":{"k":{}}}','c d','x,y,z',
	 ST_GeomFromText('POLYGON((0 0,10 0,10 10,0 10,0 0),(2 2,3 2,3 3,2 3,2 2))'),ST_GeomFromText('POINT(1e10 -1e-10)'))`,
	// ordinary values and partial dates
	`(3,1,2,3,4,5,6,7,8,9,10,'0.000000000000000000000000000001',0,0.01,
	 0.1,0.1,1,1,1,
	 '2024-00-00','2024-02-29 12:00:00','2024-02-29 12:00:00.5','2024-06-01 12:00:00','2024-06-01 12:00:00.123456',
	 '00:00:00','100:00:00.000001',0,
	 'a','b','c','d','e',X'61',X'62',X'63',X'64',
	 'null','b','x',NULL,NULL)`,
	// NULL everywhere it is allowed
	`(4,` + strings.Repeat("NULL,", 39) + `NULL)`,
}

func TestEveryTypeRoundTripsThroughTheEmittedSQL(t *testing.T) {
	r, target := newMirror(t, "CREATE DATABASE torture", tortureDDL)
	c := r.consumer(t, sdk.Config{Start: sdk.StartBeginning, Tables: []string{"torture.t"}})

	// The writer's session time zone must not leak into TIMESTAMP values.
	r.db.Exec(t, "SET SESSION sql_mode = '', time_zone = '+05:30'",
		"SET SESSION sql_mode = ''; SET SESSION time_zone = '+05:30'; INSERT INTO torture.t ("+tortureCols+") VALUES "+strings.Join(tortureRows, ","),
		"SET SESSION sql_mode = ''; UPDATE torture.t SET id = 30, vc = 'moved', bi = bi - 1 WHERE id = 3",
		"SET SESSION sql_mode = ''; UPDATE torture.t SET j = '[]', st = '', e = 'a', b64 = b'1010', f = 1.5e-45 WHERE id = 1",
		"DELETE FROM torture.t WHERE id = 4",
		"INSERT INTO torture.t (id, i) VALUES (5, 41)",
	)
	evs := read(t, c, 8)

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
		if _, err := conn.ExecContext(t.Context(), e.SQL); err != nil {
			t.Fatalf("target rejects %.300s: %v", e.SQL, err)
		}
	}
	if a, b := checksumTable(t, r.db.DB(t), "torture.t"), checksumTable(t, target.DB(t), "torture.t"); a != b {
		t.Errorf("CHECKSUM TABLE differs: source %s, target %s", a, b)
	}
	src, dst := dumpRows(t, r.db.DB(t), "torture.t"), dumpRows(t, target.DB(t), "torture.t")
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

func checksumTable(t *testing.T, db *sql.DB, table string) string {
	t.Helper()
	var name string
	var sum sql.NullString
	if err := db.QueryRow("CHECKSUM TABLE "+table).Scan(&name, &sum); err != nil {
		t.Fatal(err)
	}
	return sum.String
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
	c := r.consumer(t, sdk.Config{Start: sdk.StartBeginning, Databases: []string{"k"}})
	r.db.Exec(t,
		"INSERT INTO k.nopk VALUES (1, 0.1, 0.1, 'x', X'00'), (1, 0.1, 0.1, 'x', X'00'), (2, NULL, NULL, NULL, NULL), (3, 3.4e38, 1e-300, 'z', '')",
		"UPDATE k.nopk SET s = 'y' WHERE a = 1 LIMIT 1",
		"DELETE FROM k.nopk WHERE a = 2",
		"UPDATE k.nopk SET f = 1.25 WHERE a = 3",
		"INSERT INTO k.comp VALUES (1, 'a', 1), (1, 'b', 2)",
		"UPDATE k.comp SET b = 'c', v = 3 WHERE a = 1 AND b = 'a'",
		"DELETE FROM k.comp WHERE b = 'b'",
	)
	for _, e := range read(t, c, 11) {
		res, err := target.DB(t).Exec(e.SQL)
		if err != nil {
			t.Fatalf("%s: %v", e.SQL, err)
		}
		if n, _ := res.RowsAffected(); n != 1 {
			t.Errorf("%s: changed %d rows on the target, want 1", e.SQL, n)
		}
	}
	for _, table := range []string{"k.nopk", "k.comp"} {
		if a, b := checksumTable(t, r.db.DB(t), table), checksumTable(t, target.DB(t), table); a != b {
			t.Errorf("%s: CHECKSUM TABLE source %s, target %s\n%v\n%v", table, a, b, dumpRows(t, r.db.DB(t), table), dumpRows(t, target.DB(t), table))
		}
	}
}

func TestUnrepresentableValueStopsCaptureNamingTheColumn(t *testing.T) {
	r := newRig(t)
	r.db.Exec(t, "CREATE DATABASE odd", "CREATE TABLE odd.t (id INT PRIMARY KEY, name VARCHAR(10) CHARACTER SET sjis)")
	r.Start(t)
	r.db.Exec(t, "INSERT INTO odd.t VALUES (1, 'abc')")
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
	for _, s := range []string{"odd.t", "name", "sjis", "mysql-bin."} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error does not name %q: %v", s, err)
		}
	}
}

// Snapshot rows, read with SELECT, must carry exactly what binlog rows of the
// same data carry: column descriptions and every value.
func TestSnapshotRowsEqualBinlogRows(t *testing.T) {
	r := newRig(t)
	r.Start(t)
	r.db.Exec(t, "CREATE DATABASE torture", tortureDDL,
		"SET SESSION sql_mode = ''; SET SESSION time_zone = '+05:30'; INSERT INTO torture.t ("+tortureCols+") VALUES "+strings.Join(tortureRows, ","))
	binlog := read(t, r.consumer(t, sdk.Config{Start: sdk.StartBeginning, Tables: []string{"torture.t"}}), 4)
	if _, err := capture.TakeSnapshot(t.Context(), r.Config, r.nc, capture.SnapshotOptions{}); err != nil {
		t.Fatalf("TakeSnapshot: %v", err)
	}
	c := r.consumer(t, sdk.Config{Start: sdk.StartSnapshot, Tables: []string{"torture.t"}})
	snap := read(t, c, 5)
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
