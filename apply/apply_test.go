package apply_test

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/databus/databus/apply"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// runApplier runs an applier until the returned stop is called.
func runApplier(t *testing.T, cfg apply.Config) (stop func() apply.Progress) {
	t.Helper()
	a, err := apply.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	stopped := false
	stop = func() apply.Progress {
		if !stopped {
			stopped = true
			cancel()
			if err := <-done; err != nil {
				t.Errorf("applier: %v", err)
			}
			a.Close()
		}
		return a.Progress()
	}
	t.Cleanup(func() { stop() })
	return stop
}

// logBuffer collects log lines written from several goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// has reports whether a line holds every one of parts.
func (l *logBuffer) has(parts ...string) bool {
	for line := range strings.Lines(l.String()) {
		if !slices.ContainsFunc(parts, func(p string) bool { return !strings.Contains(line, p) }) {
			return true
		}
	}
	return false
}

// startRig starts a source captured into JetStream, and an empty target.
func startRig(t *testing.T) (src, dst *testenv.MariaDB, js *testenv.JetStream) {
	t.Helper()
	src, dst, js = testenv.StartMariaDB(t), testenv.StartMariaDB(t), testenv.StartJetStream(t)
	testenv.NewCapture(testenv.CaptureConfig(src), js.Conn(t)).Start(t)
	return src, dst, js
}

func TestApplyMirrorsDMLAndDDLAcrossRestarts(t *testing.T) {
	src, dst, js := startRig(t)

	src.Exec(t,
		"CREATE DATABASE shop",
		"CREATE TABLE shop.orders (id INT AUTO_INCREMENT PRIMARY KEY, customer VARCHAR(50), total DECIMAL(10,2)) DEFAULT CHARSET=utf8mb4",
		"INSERT INTO shop.orders (customer, total) VALUES ('a', 1.00), ('b', 2.00)",
	)
	logs := &logBuffer{}
	cfg := apply.Config{TargetDSN: dst.DSN(""), NATSURL: js.URL, Source: "test", Start: sdk.StartBeginning, ProgressEvery: 100 * time.Millisecond,
		Logger: slog.New(slog.NewJSONHandler(logs, nil))}
	stop := runApplier(t, cfg)
	src.Exec(t,
		"BEGIN", "UPDATE shop.orders SET total = total * 3", "INSERT INTO shop.orders (customer, total) VALUES ('c', 0)", "COMMIT",
		"ALTER TABLE shop.orders ADD COLUMN note TEXT AFTER customer",
		"INSERT INTO shop.orders (customer, note, total) VALUES ('d', 'with note', 4)",
	)
	time.Sleep(300 * time.Millisecond)
	stop()
	// Written while the applier is down, including a new table and a rename.
	src.Exec(t,
		"CREATE TABLE shop.items (order_id INT, sku VARCHAR(20), qty INT, PRIMARY KEY (order_id, sku))",
		"INSERT INTO shop.items VALUES (1, 'x', 1), (1, 'y', 2), (2, 'x', 5)",
		"DELETE FROM shop.orders WHERE customer = 'b'",
		"RENAME TABLE shop.items TO shop.order_items",
		"UPDATE shop.order_items SET qty = qty + 1",
	)
	stop = runApplier(t, cfg)
	var last uint64
	testenv.Eventually(t, 20*time.Second, func() error {
		var seq uint64
		if err := dst.DB(t).QueryRow("SELECT stream_seq FROM databus.apply_checkpoint WHERE source = 'test' AND name = 'apply'").Scan(&seq); err != nil {
			return err
		}
		info, err := js.Conn(t).JetStream()
		if err != nil {
			return err
		}
		si, err := info.StreamInfo("DATABUS_test")
		if err != nil {
			return err
		}
		if seq != si.State.LastSeq {
			return fmt.Errorf("applied through %d of %d", seq, si.State.LastSeq)
		}
		last = seq
		return nil
	})
	p := stop()
	for _, table := range []string{"shop.orders", "shop.order_items"} {
		if a, b := src.Checksum(t, table), dst.Checksum(t, table); a != b {
			t.Errorf("source %s, target %s", a, b)
		}
	}
	// Operators read the rate, the transactions per commit and the lag
	// off the progress lines.
	for _, attr := range []string{`"txns_per_s":`, `"txns_per_commit":`, `"lag":`} {
		if !logs.has(`"msg":"progress"`, attr) {
			t.Errorf("no progress line has %s:\n%s", attr, logs)
		}
	}
	if p.Seq != last || p.Transactions == 0 {
		t.Errorf("progress after the restart: %+v, want seq %d", p, last)
	}
}

// A source transaction larger than the events a consumer may hold
// unacknowledged, and than one round trip, is applied whole.
func TestApplyMirrorsATransactionLargerThanABatch(t *testing.T) {
	src, dst, js := startRig(t)
	src.Exec(t,
		"CREATE DATABASE big",
		"CREATE TABLE big.t (id INT PRIMARY KEY, v VARCHAR(200))",
		"INSERT INTO big.t SELECT seq, REPEAT(CHAR(65 + seq % 26), 150) FROM big.seq_1_to_15000",
		"UPDATE big.t SET v = CONCAT('changed ', id) WHERE id % 2 = 0",
	)
	stop := runApplier(t, apply.Config{TargetDSN: dst.DSN(""), NATSURL: js.URL, Source: "test", Start: sdk.StartBeginning})
	testenv.Eventually(t, 60*time.Second, func() error {
		if a, b := src.Checksum(t, "big.t"), dst.Checksum(t, "big.t"); a != b {
			return fmt.Errorf("source %s, target %s", a, b)
		}
		return nil
	})
	if p := stop(); p.Transactions != 4 || p.Events != 2+15000+7500 {
		t.Errorf("progress %+v, want 4 transactions of 22,502 events", p)
	}
}

// An applier that filters may never see a transaction's last event: it
// commits the transaction once the stream shows it ended.
func TestFilteredApplyCommitsATransactionWhoseLastEventIsFilteredOut(t *testing.T) {
	src, dst, js := startRig(t)
	src.Exec(t, "CREATE DATABASE a", "CREATE TABLE a.t (id INT PRIMARY KEY)", "CREATE DATABASE b", "CREATE TABLE b.t (id INT PRIMARY KEY)")
	stop := runApplier(t, apply.Config{TargetDSN: dst.DSN(""), NATSURL: js.URL, Source: "test", Start: sdk.StartBeginning, Databases: []string{"a"}})
	src.Exec(t, "BEGIN", "INSERT INTO a.t VALUES (1)", "INSERT INTO a.t VALUES (2)", "INSERT INTO b.t VALUES (1)", "COMMIT")
	testenv.Eventually(t, 20*time.Second, func() error {
		var n int
		if err := dst.DB(t).QueryRow("SELECT COUNT(*) FROM a.t").Scan(&n); err != nil {
			return err
		}
		if n != 2 {
			return fmt.Errorf("%d rows of the transaction committed", n)
		}
		return nil
	})
	if p := stop(); p.Transactions != 3 { // two DDL statements and the transaction
		t.Errorf("progress %+v, want 3 transactions", p)
	}
}

// DDL runs on the target under the sql_mode it ran under on the source:
// names in double quotes (ANSI_QUOTES), a backslash escape in a string
// (which apply's own NO_BACKSLASH_ESCAPES would misread), ORACLE's types;
// and a statement sent in cp1251 arrives in UTF-8.
func TestApplyRunsDDLUnderTheSourcesSQLMode(t *testing.T) {
	src, dst, js := startRig(t)
	src.Exec(t, "CREATE DATABASE shop",
		`SET SESSION sql_mode = 'ANSI_QUOTES'; CREATE TABLE shop."quoted" ("a" VARCHAR(9) DEFAULT 'x"y')`,
		`SET SESSION sql_mode = DEFAULT; CREATE TABLE shop.esc (a VARCHAR(9) DEFAULT 'it\'s', b VARCHAR(12) DEFAULT 'back\\slash')`,
		`SET SESSION sql_mode = 'ORACLE'; CREATE TABLE shop.ora (a VARCHAR2(10), n NUMBER(5), d DATE)`,
		"SET NAMES cp1251; CREATE TABLE shop.cyr (a VARCHAR(5) CHARACTER SET cp1251 DEFAULT '\xcf\xf0\xe8') COMMENT '\xcf\xf0\xe8'",
		"SET NAMES utf8mb4; SET SESSION sql_mode = DEFAULT; INSERT INTO shop.esc (a) VALUES ('row')",
	)
	cfg := apply.Config{TargetDSN: dst.DSN(""), NATSURL: js.URL, Source: "test", Start: sdk.StartBeginning}
	stop := runApplier(t, cfg)
	waitRows := func() error {
		var n int
		if err := dst.DB(t).QueryRow("SELECT COUNT(*) FROM shop.esc").Scan(&n); err != nil || n != 1 {
			return fmt.Errorf("shop.esc on the target: %d rows, %v", n, err)
		}
		return nil
	}
	testenv.Eventually(t, 20*time.Second, waitRows)
	stop()
	for _, table := range []string{"quoted", "esc", "ora", "cyr"} {
		var name, a, b string
		if err := src.DB(t).QueryRow("SHOW CREATE TABLE shop."+table).Scan(&name, &a); err != nil {
			t.Fatal(err)
		}
		if err := dst.DB(t).QueryRow("SHOW CREATE TABLE shop."+table).Scan(&name, &b); err != nil {
			t.Fatalf("shop.%s on the target: %v", table, err)
		}
		if a != b {
			t.Errorf("shop.%s differs:\nsource %s\ntarget %s", table, a, b)
		}
	}
}
