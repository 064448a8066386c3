package capture_test

import (
	"database/sql"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// ddlScript runs in one session whose default database is shop, so table
// names are unqualified unless they name another database.
var ddlScript = []string{
	"CREATE DATABASE crm",
	"USE shop",
	"CREATE TABLE orders (id INT PRIMARY KEY, customer VARCHAR(40) NOT NULL DEFAULT 'anon', total DECIMAL(10,2)) DEFAULT CHARSET=utf8mb4",
	"INSERT INTO orders VALUES (1, 'a', 1.5), (2, 'b', 2.5)",
	"CREATE TABLE IF NOT EXISTS orders (x INT)",
	"CREATE TABLE orders_copy LIKE orders",
	"CREATE TABLE orders_big AS SELECT * FROM orders WHERE total > 2",
	"ALTER TABLE orders ADD COLUMN note TEXT AFTER customer, ADD COLUMN created DATETIME(3) NULL FIRST",
	"INSERT INTO orders (id, customer, note, total) VALUES (3, 'c', 'n', 3.5)",
	"ALTER TABLE orders MODIFY total DECIMAL(12,3) NOT NULL DEFAULT 0, DROP COLUMN created",
	"CREATE INDEX by_customer ON orders (customer, total)",
	"CREATE UNIQUE INDEX u_note ON orders (note(20))",
	"DROP INDEX u_note ON orders",
	"ALTER TABLE orders_copy RENAME TO orders_archive",
	"INSERT INTO orders_archive (id, customer, total) SELECT id, customer, total FROM orders",
	"RENAME TABLE orders TO orders_tmp, orders_archive TO orders, orders_tmp TO orders_archive",
	"UPDATE orders SET total = total + 1",
	"TRUNCATE orders_big",
	"CREATE TABLE crm.people (id BIGINT UNSIGNED PRIMARY KEY, email VARCHAR(100) UNIQUE)",
	"INSERT INTO crm.people VALUES (18446744073709551615, 'x@y')",
	"RENAME TABLE crm.people TO shop.people",
	"DROP TABLE orders_big",
	"CREATE TABLE orders_big (k VARCHAR(10) PRIMARY KEY, v JSON)",
	"INSERT INTO orders_big VALUES ('k', '{\"a\":1}')",
	"ALTER DATABASE crm CHARACTER SET utf8mb4",
	"CREATE VIEW big_orders AS SELECT id, total FROM orders WHERE total > 2",
	"CREATE TRIGGER orders_bi BEFORE INSERT ON orders FOR EACH ROW SET NEW.customer = UPPER(NEW.customer)",
	"INSERT INTO orders (id, customer, total) VALUES (9, 'lower', 1)",
	"DROP VIEW big_orders",
	// DDL reads and means what it does under the session's sql_mode.
	`SET SESSION sql_mode = 'ANSI_QUOTES'`,
	`CREATE TABLE "quoted" (a VARCHAR(5) DEFAULT 'x"y', "b" INT)`,
	`SET SESSION sql_mode = 'ORACLE'`,
	`CREATE TABLE ora (a VARCHAR2(10), n NUMBER(5), d DATE)`,
	`SET SESSION sql_mode = DEFAULT`,
	`CREATE TABLE esc (a VARCHAR(9) DEFAULT 'it\'s', d NCHAR(3))`,
	// The log holds a statement in the session's character set; the event
	// carries it in UTF-8.
	"SET NAMES cp1251",
	"CREATE TABLE cyr (a VARCHAR(5) CHARACTER SET cp1251 DEFAULT '\xcf\xf0\xe8', b VARCHAR(5) CHARACTER SET utf8mb4 DEFAULT '\xcf\xf0\xe8') COMMENT '\xcf\xf0\xe8\xe2\xe5\xf2'",
	"SET NAMES utf8mb4",
	"DROP DATABASE crm",
}

func TestDDLIsQualifiedAndMirrorsWithoutUSE(t *testing.T) {
	r := testenv.NewRig(t)
	target := testenv.StartMariaDB(t)
	r.DB.Exec(t, "CREATE DATABASE shop")
	target.Exec(t, "CREATE DATABASE shop")
	r.Start(t)
	c := r.Consumer(t, sdk.Config{Start: sdk.StartBeginning})
	r.DB.Exec(t, ddlScript...)
	// Every statement of the script is one event except the row changes.
	var events []*sdk.Event
	kinds := map[string]bool{}
	ctxDeadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(ctxDeadline) {
		evs := testenv.ReadUntilQuiet(t, c, 500*time.Millisecond)
		if len(evs) == 0 {
			break
		}
		events = append(events, evs...)
	}
	conn, err := target.DB(t).Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, e := range events {
		if e.Op != sdk.OpDDL {
			if _, err := conn.ExecContext(t.Context(), e.SQL); err != nil {
				t.Fatalf("row change %s: %v", e.SQL, err)
			}
			continue
		}
		kinds[e.DDL.Kind] = true
		switch e.DDL.Kind {
		case "create_view", "drop_view", "other":
			// Passed through: run in the statement's default database.
			if e.DDL.Qualified {
				t.Errorf("%s: pass-through statement marked qualified", e.DDL.Statement)
			}
			if _, err := conn.ExecContext(t.Context(), "USE `"+e.DDL.DefaultDB+"`"); err != nil {
				t.Fatal(err)
			}
		default:
			if !e.DDL.Qualified {
				t.Errorf("%s: not qualified", e.DDL.Statement)
			}
			// No default database: the statement must name every table.
			if _, err := conn.ExecContext(t.Context(), "USE mysql"); err != nil {
				t.Fatal(err)
			}
		}
		// As databus apply does: under the source's sql_mode.
		if e.DDL.SQLMode == nil {
			t.Fatalf("%s: no sql_mode", e.DDL.Statement)
		}
		if _, err := conn.ExecContext(t.Context(), "SET SESSION sql_mode = ?", *e.DDL.SQLMode); err != nil {
			t.Fatal(err)
		}
		if _, err := conn.ExecContext(t.Context(), e.SQL); err != nil {
			t.Fatalf("target rejects DDL %q (from %q): %v", e.SQL, e.DDL.Statement, err)
		}
	}
	for _, k := range []string{"create_table", "alter_table", "drop_table", "truncate_table", "rename_table", "create_index",
		"drop_index", "create_database", "alter_database", "drop_database", "create_view", "drop_view", "other"} {
		if !kinds[k] {
			t.Errorf("no DDL event of kind %s", k)
		}
	}
	for _, table := range []string{"orders", "orders_archive", "orders_big", "people", "quoted", "ora", "esc", "cyr"} {
		a, b := showCreate(t, r.DB.DB(t), "shop", table), showCreate(t, target.DB(t), "shop", table)
		if a != b {
			t.Errorf("SHOW CREATE TABLE shop.%s differs:\nsource %s\ntarget %s", table, a, b)
		}
		if a, b := r.DB.Checksum(t, "shop."+table), target.Checksum(t, "shop."+table); a != b {
			t.Errorf("shop.%s: CHECKSUM source %s, target %s", table, a, b)
		}
	}

	for _, e := range events {
		if e.Op == sdk.OpDDL && strings.HasPrefix(e.DDL.Statement, "CREATE TABLE cyr") && !strings.Contains(e.SQL, "COMMENT 'Привет'") {
			t.Errorf("cp1251 statement: sql is %q, want its text in UTF-8", e.SQL)
		}
	}

	// Subjects let a consumer take only DDL, and a rename names both sides.
	var rename *sdk.Event
	for _, e := range events {
		if e.Op == sdk.OpDDL && strings.HasPrefix(e.DDL.Statement, "RENAME TABLE crm.people") {
			rename = e
		}
	}
	if rename == nil || fmt.Sprint(rename.DDL.Tables) != "[{crm people} {shop people}]" {
		t.Errorf("rename across databases: got %+v", rename)
	}
	js, _ := jetstream.New(r.NC)
	s, err := js.Stream(t.Context(), "DATABUS_test")
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context(), jetstream.WithSubjectFilter("databus.test.*.*.ddl"))
	if err != nil {
		t.Fatal(err)
	}
	nDDL := 0
	for _, e := range events {
		if e.Op == sdk.OpDDL {
			nDDL++
		}
	}
	if got := len(info.State.Subjects); got == 0 || nDDL < 20 {
		t.Errorf("DDL subjects: %d distinct, %d DDL events", got, nDDL)
	}
}

func showCreate(t *testing.T, db *sql.DB, schema, table string) string {
	t.Helper()
	var name, stmt string
	if err := db.QueryRow("SHOW CREATE TABLE `"+schema+"`.`"+table+"`").Scan(&name, &stmt); err != nil {
		t.Fatalf("SHOW CREATE TABLE %s.%s: %v", schema, table, err)
	}
	return stmt
}

func TestReplayFromBeforeALTERsDecodesWithTheOldSchema(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, a VARCHAR(10), b INT)")
	r.Start(t)
	first := r.Status().Position // not yet set: read the checkpoint instead
	_ = first
	js, _ := jetstream.New(r.NC)
	kv, err := js.KeyValue(t.Context(), sdk.StateBucket("test"))
	if err != nil {
		t.Fatal(err)
	}
	start, err := kv.Get(t.Context(), bus.CheckpointKey)
	if err != nil {
		t.Fatal(err)
	}
	r.DB.Exec(t,
		"INSERT INTO app.t VALUES (1, 'one', 10)",
		"ALTER TABLE app.t ADD COLUMN c DATE FIRST",
		"INSERT INTO app.t VALUES ('2024-01-01', 2, 'two', 20)",
		"ALTER TABLE app.t DROP COLUMN a",
		"INSERT INTO app.t VALUES ('2024-01-03', 3, 30)",
		"ALTER TABLE app.t MODIFY b VARCHAR(5) AFTER c, CHANGE id ident INT",
		"INSERT INTO app.t VALUES ('2024-01-04', 'four', 4)",
		"UPDATE app.t SET b = 'x' WHERE ident = 1",
	)
	live := r.Consumer(t, sdk.Config{Start: sdk.StartBeginning, Tables: []string{"app.t"}})
	want := testenv.ReadUntilQuiet(t, live, time.Second)

	// A second capture of the same server, starting from the position
	// before every ALTER, long after they all happened.
	var cp bus.Checkpoint
	if err := json.Unmarshal(start.Value(), &cp); err != nil {
		t.Fatal(err)
	}
	cfg := testenv.CaptureConfig(r.DB)
	cfg.Source = "replay"
	cfg.MySQL.ServerID = 4242
	replayKV, err := js.CreateKeyValue(t.Context(), jetstream.KeyValueConfig{Bucket: sdk.StateBucket("replay"), History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := replayKV.Put(t.Context(), bus.CheckpointKey, start.Value()); err != nil {
		t.Fatal(err)
	}
	replay := testenv.NewCapture(cfg, r.NC)
	replay.Start(t)
	rc, err := sdk.Connect(t.Context(), sdk.Config{Conn: r.NC, Source: "replay", Start: sdk.StartBeginning, Tables: []string{"app.t"}})
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	got := testenv.ReadUntilQuiet(t, rc, time.Second)
	if len(got) != len(want) || len(got) < 8 {
		t.Fatalf("replay: %d events, live: %d", len(got), len(want))
	}
	for i := range got {
		if !reflect.DeepEqual(got[i].After, want[i].After) || !reflect.DeepEqual(got[i].Before, want[i].Before) || got[i].SQL != want[i].SQL {
			t.Errorf("event %d differs:\nreplay %v %v %s\nlive   %v %v %s", i, got[i].Before, got[i].After, got[i].SQL, want[i].Before, want[i].After, want[i].SQL)
		}
	}
	for _, e := range got {
		if e.Op == sdk.OpInsert && fmt.Sprint(e.Key) == "map[id:1]" && (e.After["a"] != "one" || fmt.Sprint(e.After["b"]) != "10") {
			t.Errorf("row 1 decoded with the wrong schema: %v", e.After)
		}
		if e.Op == sdk.OpInsert && e.After["ident"] != nil && fmt.Sprint(e.After["ident"]) == "4" && e.After["b"] != "four" {
			t.Errorf("row 4 decoded with the wrong schema: %v", e.After)
		}
	}
	_ = cp
}

// With binlog_alter_two_phase the server logs an ALTER when it starts and
// again when it commits or rolls back: one event, at the commit; none for
// an ALTER that failed.
func TestTwoPhaseALTERIsPublishedOnce(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE two", "CREATE TABLE two.t (id INT PRIMARY KEY, v INT) ENGINE=InnoDB", "INSERT INTO two.t VALUES (1, 7), (2, 7)")
	r.Start(t)
	c := r.Consumer(t, sdk.Config{Start: sdk.StartBeginning, Databases: []string{"two"}})
	conn, err := r.DB.DB(t).Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	for _, q := range []string{"SET SESSION binlog_alter_two_phase = 1", "ALTER TABLE two.t ADD COLUMN w INT"} {
		if _, err := conn.ExecContext(t.Context(), q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	// Fails on the duplicate: logged as START ALTER, then ROLLBACK ALTER.
	if _, err := conn.ExecContext(t.Context(), "ALTER TABLE two.t ADD UNIQUE KEY (v)"); err == nil {
		t.Fatal("ALTER adding a unique key over duplicates succeeded")
	}
	if _, err := conn.ExecContext(t.Context(), "INSERT INTO two.t VALUES (3, 8, 9)"); err != nil {
		t.Fatal(err)
	}
	rows, err := conn.QueryContext(t.Context(), "SHOW BINLOG EVENTS")
	if err != nil {
		t.Fatal(err)
	}
	events := readBinlogEvents(t, rows)
	if n := events.count("START ALTER"); n != 2 {
		t.Fatalf("the server logged %d START ALTER, want 2: is binlog_alter_two_phase honoured?\n%s", n, events)
	}
	got := testenv.ReadUntilQuiet(t, c, time.Second)
	var ddls []string
	for _, e := range got {
		if e.Op == sdk.OpDDL {
			ddls = append(ddls, e.DDL.Statement)
		}
	}
	if len(ddls) != 1 || ddls[0] != "ALTER TABLE two.t ADD COLUMN w INT" {
		t.Errorf("DDL events %q, want the ALTER that committed, once", ddls)
	}
	if last := got[len(got)-1]; last.Op != sdk.OpInsert || fmt.Sprint(last.After["w"]) != "9" {
		t.Errorf("the row after the ALTER: %s %v", last.Op, last.After)
	}
}

// binlogEvents are SHOW BINLOG EVENTS' Info column.
type binlogEvents []string

func readBinlogEvents(t *testing.T, rows *sql.Rows) binlogEvents {
	t.Helper()
	defer rows.Close()
	var out binlogEvents
	for rows.Next() {
		var logName, eventType, info string
		var pos, serverID, end int64
		if err := rows.Scan(&logName, &pos, &eventType, &serverID, &end, &info); err != nil {
			t.Fatal(err)
		}
		out = append(out, eventType+" "+info)
	}
	return out
}

func (b binlogEvents) count(s string) int {
	n := 0
	for _, e := range b {
		if strings.Contains(e, s) {
			n++
		}
	}
	return n
}

func (b binlogEvents) String() string { return strings.Join(b, "\n") }
