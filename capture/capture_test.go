package capture_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/filter"
	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// newMirror returns a started rig and a target server, both prepared with
// the same statements.
func newMirror(t *testing.T, setup ...string) (*testenv.Rig, *testenv.MariaDB) {
	t.Helper()
	r := testenv.NewRig(t)
	target := testenv.StartMariaDB(t)
	r.DB.Exec(t, setup...)
	target.Exec(t, setup...)
	r.Start(t)
	return r, target
}

func TestRowChangesInCommitOrder(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE shop",
		"CREATE TABLE shop.orders (id INT PRIMARY KEY, customer VARCHAR(40), total DECIMAL(12,2), placed DATETIME(6), note TEXT NULL) DEFAULT CHARSET=utf8mb4")
	r.Start(t)
	c := r.Consumer(t, sdk.Config{Name: "app", Start: sdk.StartBeginning, Tables: []string{"shop.orders"}})
	r.DB.Exec(t,
		"INSERT INTO shop.orders VALUES (1, 'Ann', 10.50, '2024-02-29 23:59:59.999999', NULL), (2, 'Bob ''the'' 😀', -0.01, '1999-01-01 00:00:00', 'multi\nline')",
		"BEGIN",
		"UPDATE shop.orders SET total = total + 1 WHERE id IN (1, 2)",
		"DELETE FROM shop.orders WHERE id = 1",
		"INSERT INTO shop.orders VALUES (3, 'Cy', 0, '2000-01-01 00:00:00', '')",
		"COMMIT",
	)
	evs := testenv.Read(t, c, 6)
	testenv.None(t, c)

	type row struct {
		op       sdk.Op
		key      string
		seq      int
		last     bool
		sameTxn0 bool
	}
	var got []row
	for _, e := range evs {
		got = append(got, row{e.Op, fmt.Sprint(e.Key["id"]), e.Txn.Seq, e.Txn.Last, e.Txn.ID == evs[0].Txn.ID})
	}
	want := []row{
		{sdk.OpInsert, "1", 0, false, true}, {sdk.OpInsert, "2", 1, true, true},
		{sdk.OpUpdate, "1", 0, false, false}, {sdk.OpUpdate, "2", 1, false, false},
		{sdk.OpDelete, "1", 2, false, false}, {sdk.OpInsert, "3", 3, true, false},
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n got %+v\nwant %+v", got, want)
	}
	if evs[2].Txn.ID != evs[5].Txn.ID {
		t.Errorf("multi-statement transaction split: txn ids %q and %q", evs[2].Txn.ID, evs[5].Txn.ID)
	}

	ins := evs[1]
	if ins.Database != "shop" || ins.Table != "orders" || ins.Version != sdk.FormatVersion || ins.Source != "test" {
		t.Errorf("identity: got %s.%s v%d source %q", ins.Database, ins.Table, ins.Version, ins.Source)
	}
	wantAfter := map[string]any{
		"id": json.Number("2"), "customer": "Bob 'the' 😀", "total": "-0.01",
		"placed": "1999-01-01 00:00:00.000000", "note": "multi\nline",
	}
	if fmt.Sprint(ins.After) != fmt.Sprint(wantAfter) {
		t.Errorf("after image:\n got %v\nwant %v", ins.After, wantAfter)
	}
	if evs[0].After["note"] != nil {
		t.Errorf("NULL column: got %#v, want nil", evs[0].After["note"])
	}
	wantSQL := "INSERT INTO `shop`.`orders` (`id`,`customer`,`total`,`placed`,`note`) VALUES (2,_utf8mb4'Bob ''the'' 😀',-0.01,'1999-01-01 00:00:00.000000',_utf8mb4 X'6d756c74690a6c696e65')"
	if ins.SQL != wantSQL {
		t.Errorf("insert SQL:\n got %s\nwant %s", ins.SQL, wantSQL)
	}
	if got, want := evs[4].SQL, "DELETE FROM `shop`.`orders` WHERE `id`=1"; got != want {
		t.Errorf("delete SQL: got %s, want %s", got, want)
	}
	if !strings.HasPrefix(evs[2].SQL, "UPDATE `shop`.`orders` SET `id`=1,`customer`='Ann',`total`=11.50,") || !strings.HasSuffix(evs[2].SQL, " WHERE `id`=1") {
		t.Errorf("update SQL: got %s", evs[2].SQL)
	}
	if evs[2].Before["total"] != "10.50" || evs[2].After["total"] != "11.50" {
		t.Errorf("update images: before %v after %v", evs[2].Before["total"], evs[2].After["total"])
	}
	if !slices.Equal(ins.PrimaryKey, []string{"id"}) || len(ins.Columns) != 5 || ins.Columns[2].Type != "decimal(12,2)" || ins.Columns[3].Type != "datetime(6)" {
		t.Errorf("columns: pk %v columns %+v", ins.PrimaryKey, ins.Columns)
	}
	p := ins.Position
	if !strings.HasPrefix(p.File, "mysql-bin.") || p.Offset == 0 || p.GTID == "" || p.ServerID != r.DB.ServerID || p.Row != 1 {
		t.Errorf("position: got %+v", p)
	}
	if time.Since(ins.Timestamp) > time.Minute || ins.Timestamp.Location() != time.UTC {
		t.Errorf("timestamp: got %v", ins.Timestamp)
	}
}

func TestSQLAppliesToAnotherServer(t *testing.T) {
	r, target := newMirror(t, "CREATE DATABASE shop",
		"CREATE TABLE shop.t (id BIGINT UNSIGNED NOT NULL, name VARCHAR(100), amount DECIMAL(20,6), at DATETIME(3), n INT, PRIMARY KEY (id)) DEFAULT CHARSET=utf8mb4")
	c := r.Consumer(t, sdk.Config{Start: sdk.StartBeginning, Tables: []string{"shop.t"}})
	r.DB.Exec(t,
		"INSERT INTO shop.t VALUES (18446744073709551615, 'back\\\\slash ''q'' \\0 nul', 123456789012.123456, '2024-01-01 10:00:00.5', -2147483648), (1, NULL, 0, NULL, NULL)",
		"UPDATE shop.t SET name = 'ünïcödé', id = 7 WHERE id = 1",
		"DELETE FROM shop.t WHERE id = 18446744073709551615",
		"INSERT INTO shop.t VALUES (9, '\\r\\n\\t\\Z', -0.000001, '0000-00-00 00:00:00', 2147483647)",
	)
	for _, e := range testenv.Read(t, c, 5) {
		target.Exec(t, e.SQL)
	}
	if a, b := r.DB.Checksum(t, "shop.t"), target.Checksum(t, "shop.t"); a != b {
		t.Errorf("CHECKSUM TABLE: source %s, target %s", a, b)
	}
}

func TestFiltersAndSubjects(t *testing.T) {
	r := testenv.NewRig(t, func(c *capture.Config) {
		c.Filter = filter.Filter{Databases: []string{"crm"}, Tables: []string{"shop.orders", "`my.db`.`t 1`"}, Exclude: []string{"crm.secret"}}
	})
	r.DB.Exec(t,
		"CREATE DATABASE shop", "CREATE DATABASE crm", "CREATE DATABASE other", "CREATE DATABASE `my.db`",
		"CREATE TABLE shop.orders (id INT PRIMARY KEY)", "CREATE TABLE shop.skipped (id INT PRIMARY KEY)",
		"CREATE TABLE crm.people (id INT PRIMARY KEY)", "CREATE TABLE crm.secret (id INT PRIMARY KEY)",
		"CREATE TABLE other.x (id INT PRIMARY KEY)", "CREATE TABLE `my.db`.`t 1` (id INT PRIMARY KEY)",
	)
	r.Start(t)

	// A plain NATS subscriber on one table's subject gets only that table.
	sub, err := r.NC.SubscribeSync("databus.test.my%2Edb.t%201.>")
	if err != nil {
		t.Fatal(err)
	}
	c := r.Consumer(t, sdk.Config{Start: sdk.StartNow})
	r.DB.Exec(t,
		"INSERT INTO shop.orders VALUES (1)", "INSERT INTO shop.skipped VALUES (1)",
		"INSERT INTO crm.people VALUES (1)", "INSERT INTO crm.secret VALUES (1)",
		"INSERT INTO other.x VALUES (1)", "INSERT INTO `my.db`.`t 1` VALUES (1)",
	)
	var got []string
	for _, e := range testenv.Read(t, c, 3) {
		got = append(got, e.Database+"."+e.Table)
	}
	testenv.None(t, c)
	if want := []string{"shop.orders", "crm.people", "my.db.t 1"}; !slices.Equal(got, want) {
		t.Errorf("captured tables: got %q, want %q", got, want)
	}
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("plain NATS subscriber on the encoded subject: %v", err)
	}
	if m.Subject != "databus.test.my%2Edb.t%201.insert" {
		t.Errorf("subject: got %s", m.Subject)
	}
	if _, err := sub.NextMsg(300 * time.Millisecond); err == nil {
		t.Error("subscriber got a second message")
	}
}

func TestResumesAfterStopWithoutLossOrDuplicates(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.ledger (id INT PRIMARY KEY)")
	r.Start(t)
	next := 0
	write := func(n int) {
		for range n {
			next++
			r.DB.Exec(t, fmt.Sprintf("INSERT INTO app.ledger VALUES (%d)", next))
		}
	}
	write(20)
	c := r.Consumer(t, sdk.Config{Name: "ledger", Start: sdk.StartBeginning, Tables: []string{"app.ledger"}})
	testenv.Read(t, c, 20)
	if err := r.Stop(t); err != nil {
		t.Fatalf("capture stopped with %v", err)
	}
	write(30) // written while capture is down
	r.Start(t)
	write(10)
	evs := testenv.Read(t, c, 40)
	testenv.None(t, c)
	for i, e := range evs {
		if got, want := fmt.Sprint(e.Key["id"]), fmt.Sprint(21+i); got != want {
			t.Fatalf("event %d: id %s, want %s", i, got, want)
		}
	}
	// Rewind the checkpoint to the very start: capture re-reads the whole
	// binlog but publishes nothing twice.
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	cp := savedCheckpoint(t, r)
	cp.Offset = 4
	b, _ := json.Marshal(cp)
	if _, err := stateKV(t, r).Put(t.Context(), bus.CheckpointKey, b); err != nil {
		t.Fatal(err)
	}
	r.Start(t)
	write(1)
	if got := testenv.Read(t, c, 1)[0].Key["id"]; fmt.Sprint(got) != "61" {
		t.Errorf("after rewinding the checkpoint: got id %v, want 61 (nothing republished)", got)
	}
	testenv.None(t, c)
}

func TestRetriesWhileMySQLIsDown(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	r.Start(t)
	c := r.Consumer(t, sdk.Config{Start: sdk.StartNow})
	r.DB.Exec(t, "INSERT INTO app.t VALUES (1)")
	testenv.Read(t, c, 1)
	r.DB.Kill(t)
	testenv.Eventually(t, 20*time.Second, func() error {
		if r.Status().Streaming {
			return errors.New("still streaming")
		}
		if !strings.Contains(r.Status().LastError, "unreachable") {
			return fmt.Errorf("last error %q does not say unreachable", r.Status().LastError)
		}
		return nil
	})
	r.DB.Restart(t)
	r.DB.Exec(t, "INSERT INTO app.t VALUES (2)")
	if got := testenv.Read(t, c, 1)[0].Key["id"]; fmt.Sprint(got) != "2" {
		t.Errorf("after MySQL came back: got id %v, want 2", got)
	}
}

func TestRefusesUnsafeSettings(t *testing.T) {
	tests := []struct {
		name    string
		setting string
		extra   []string
	}{
		{"statement format", "binlog_format", []string{"--binlog-format=STATEMENT"}},
		{"minimal row image", "binlog_row_image", []string{"--binlog-row-image=MINIMAL"}},
		{"minimal row metadata", "binlog_row_metadata", []string{"--binlog-row-metadata=MINIMAL"}},
		{"binlog off", "log_bin", []string{"--skip-log-bin"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := testenv.StartMariaDB(t, tt.extra...)
			js := testenv.StartJetStream(t)
			err := capture.New(capture.Config{
				Source: "test", MySQL: mysqlsrc.Config{Addr: db.Addr(), User: "root"},
				Stream: bus.StreamConfig{Replicas: 1, DuplicateWindow: time.Minute},
			}, js.Conn(t)).Run(t.Context())
			if !errors.Is(err, capture.ErrSourceSettings) {
				t.Fatalf("got %v, want ErrSourceSettings", err)
			}
			if !strings.Contains(err.Error(), tt.setting) {
				t.Errorf("error does not name %s: %v", tt.setting, err)
			}
		})
	}
}

func TestRefusesBadCredentialsAndMissingPrivileges(t *testing.T) {
	db := testenv.StartMariaDB(t)
	js := testenv.StartJetStream(t)
	db.Exec(t, "CREATE USER 'reader'@'%' IDENTIFIED BY 'pw'", "GRANT SELECT ON *.* TO 'reader'@'%'")
	run := func(user, pw string) error {
		return capture.New(capture.Config{
			Source: "test", MySQL: mysqlsrc.Config{Addr: db.Addr(), User: user, Password: pw},
			Stream: bus.StreamConfig{Replicas: 1, DuplicateWindow: time.Minute},
		}, js.Conn(t)).Run(t.Context())
	}
	if err := run("reader", "wrong"); !errors.Is(err, capture.ErrAccessDenied) {
		t.Errorf("wrong password: got %v, want ErrAccessDenied", err)
	}
	err := run("reader", "pw")
	if !errors.Is(err, capture.ErrSourceSettings) || !strings.Contains(err.Error(), "REPLICATION SLAVE") {
		t.Errorf("missing privileges: got %v, want ErrSourceSettings naming REPLICATION SLAVE", err)
	}
	check := func() map[string]mysqlsrc.Check {
		checks, err := mysqlsrc.CheckSource(t.Context(), mysqlsrc.Config{Addr: db.Addr(), User: "reader", Password: "pw", ConnectTimeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]mysqlsrc.Check{}
		for _, c := range checks {
			byName[c.Name] = c
		}
		return byName
	}
	db.Exec(t, "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'reader'@'%'")
	checks := check()
	if _, ok := checks["snapshot privileges"]; !ok {
		t.Errorf("no snapshot privileges check among %v", checks)
	}
	for name, c := range checks {
		if snap := name == "snapshot privileges"; c.OK == snap {
			t.Errorf("check %s without RELOAD: ok %v (%s), want %v", name, c.OK, c.Detail, !snap)
		} else if snap && !strings.Contains(c.Fix, "GRANT RELOAD") {
			t.Errorf("check %s says to %q, want GRANT RELOAD", name, c.Fix)
		}
	}
	db.Exec(t, "GRANT RELOAD ON *.* TO 'reader'@'%'")
	for name, c := range check() {
		if !c.OK {
			t.Errorf("check %s failed after granting: %s", name, c.Detail)
		}
	}
}

func TestDurableConsumerResumesAfterLastAck(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)", "CREATE TABLE app.other (id INT PRIMARY KEY)")
	r.Start(t)
	r.DB.Exec(t, "INSERT INTO app.t VALUES (1), (2), (3)", "INSERT INTO app.other VALUES (1)")

	// Handler style: acknowledges the first two, then the program "stops".
	c := r.Consumer(t, sdk.Config{Name: "worker", Start: sdk.StartBeginning, Tables: []string{"app.t"}})
	var handled []string
	stop := errors.New("program stops")
	err := c.Handle(t.Context(), func(_ context.Context, ev *sdk.Event) error {
		if len(handled) == 2 {
			return stop // the third event is not acknowledged
		}
		handled = append(handled, fmt.Sprint(ev.Key["id"]))
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Handle: got %v, want the handler's error", err)
	}
	c.Close()
	r.DB.Exec(t, "INSERT INTO app.t VALUES (4)")

	// Iterator style, same durable name: resumes at the unacknowledged event.
	c2 := r.Consumer(t, sdk.Config{Name: "worker", Tables: []string{"app.t"}})
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var got []string
	for m, err := range c2.Events(ctx) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, fmt.Sprint(m.Event.Key["id"]))
		if err := m.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		if len(got) == 2 {
			break
		}
	}
	if strings.Join(handled, ",") != "1,2" || strings.Join(got, ",") != "3,4" {
		t.Errorf("first run handled %v, second run got %v; want 1,2 then 3,4", handled, got)
	}
	testenv.None(t, c2)
}

func TestConnectWithoutStream(t *testing.T) {
	js := testenv.StartJetStream(t)
	_, err := sdk.Connect(t.Context(), sdk.Config{Conn: js.Conn(t), Source: "nothing"})
	if !errors.Is(err, sdk.ErrNoStream) {
		t.Errorf("got %v, want ErrNoStream", err)
	}
}

func TestRowLargerThanAMessageArrivesWhole(t *testing.T) {
	r := &testenv.Rig{DB: testenv.StartMariaDB(t, "--max-allowed-packet=128M"), JS: testenv.StartJetStream(t)}
	r.NC = r.JS.Conn(t)
	r.Capture = testenv.NewCapture(testenv.CaptureConfig(r.DB), r.NC)
	r.DB.Exec(t, "CREATE DATABASE big", "CREATE TABLE big.files (id INT PRIMARY KEY, body LONGBLOB)")
	r.Start(t)
	c := r.Consumer(t, sdk.Config{Start: sdk.StartBeginning, Tables: []string{"big.files"}})

	blob := make([]byte, 20<<20)
	for i := range blob {
		blob[i] = byte(i*7 + i>>11)
	}
	if _, err := r.DB.DB(t).Exec("INSERT INTO big.files VALUES (1, ?)", blob); err != nil {
		t.Fatal(err)
	}
	r.DB.Exec(t, "INSERT INTO big.files VALUES (2, 'small')")
	evs := testenv.Read(t, c, 2)
	got, err := base64.StdEncoding.DecodeString(fmt.Sprint(evs[0].After["body"]))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, blob) {
		t.Errorf("20 MiB BLOB: got %d bytes, different from the %d written", len(got), len(blob))
	}
	if fmt.Sprint(evs[1].Key["id"]) != "2" {
		t.Errorf("event after the big one: %v", evs[1].Key)
	}
	testenv.None(t, c)
}

func TestCaptureKilledMidChunksPublishesTheEventWholeOnce(t *testing.T) {
	js := testenv.StartJetStream(t)
	nc := js.Conn(t)
	jsc, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	event := func(offset uint32, value string) sdk.Event {
		return sdk.Event{Version: 1, Source: "crash", Op: sdk.OpInsert, Database: "app", Table: "t",
			Key:      map[string]any{"id": offset},
			After:    map[string]any{"id": offset, "body": value},
			Position: sdk.Position{ServerID: 1, File: "mysql-bin.000001", Offset: offset}}
	}
	small, big := event(100, "small"), event(200, strings.Repeat("0123456789", 500))
	ctx := t.Context()
	if err := capture.PublishAfterRestart(ctx, jsc, "crash", small, 1000, 0); err != nil {
		t.Fatal(err)
	}
	// Killed after two of the six chunks of the big event.
	if err := capture.PublishAfterRestart(ctx, jsc, "crash", big, 1000, 2); err == nil {
		t.Fatal("the simulated crash did not happen")
	}
	// The restarted capture publishes it again, then knows it is done.
	for range 2 {
		if err := capture.PublishAfterRestart(ctx, jsc, "crash", big, 1000, 0); err != nil {
			t.Fatalf("publishing again after the crash: %v", err)
		}
	}
	c, err := sdk.Connect(ctx, sdk.Config{Conn: nc, Source: "crash", Start: sdk.StartBeginning})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	evs := testenv.Read(t, c, 2)
	if evs[0].After["body"] != "small" || evs[1].After["body"] != big.After["body"] {
		t.Errorf("events after a crash mid-chunks: %v, then a body of %d bytes", evs[0].After, len(fmt.Sprint(evs[1].After["body"])))
	}
	testenv.None(t, c)
}

func TestLagIsZeroOnlyWhileCaughtUp(t *testing.T) {
	now := time.Now()
	for _, c := range []struct {
		name string
		st   capture.Status
		want time.Duration
	}{
		{"caught up, reading", capture.Status{Streaming: true, Current: true, LastCommit: now.Add(-time.Hour)}, 0},
		{"reading a backlog", capture.Status{Streaming: true, LastCommit: now.Add(-5 * time.Second), CaughtUp: now.Add(-time.Hour)}, 5 * time.Second},
		{"paused, nothing written since", capture.Status{Paused: true, Current: true, BehindKnown: true, LastCommit: now.Add(-time.Hour)}, 0},
		{"paused, writes waiting", capture.Status{Paused: true, Behind: 100, BehindKnown: true, LastCommit: now.Add(-time.Hour), CaughtUp: now.Add(-7 * time.Second)}, 7 * time.Second},
		{"never read", capture.Status{}, 0},
	} {
		if got := c.st.Lag(now); got != c.want {
			t.Errorf("%s: lag %v, want %v", c.name, got, c.want)
		}
	}
}
