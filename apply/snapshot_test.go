package apply_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/apply"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

// A snapshot taken while writes go on, loaded into an empty target and
// followed by the changes after it, leaves the target equal to the source:
// no change is lost between the snapshot and the stream, none is applied
// twice.
func TestSnapshotUnderWriteLoadThenChangesMirrorsExactly(t *testing.T) {
	src := testenv.StartMariaDB(t)
	dst := testenv.StartMariaDB(t)
	js := testenv.StartJetStream(t)
	nc := js.Conn(t)
	ccfg := testenv.CaptureConfig(src)
	capt := testenv.NewCapture(ccfg, nc)
	capt.Start(t)

	src.Exec(t,
		"CREATE DATABASE app",
		"CREATE DATABASE empty_db",
		"CREATE TABLE app.accounts (id INT PRIMARY KEY, owner VARCHAR(40) CHARACTER SET utf8mb4, balance DECIMAL(14,2) NOT NULL, note BLOB, opened DATETIME(6), flags SET('a','b','c'), kind ENUM('x','y'))",
		"CREATE TABLE app.events (v VARCHAR(20), n BIGINT UNSIGNED, f FLOAT, d DOUBLE)", // no primary key
		"CREATE TABLE app.empty (id INT PRIMARY KEY)",
		"CREATE TABLE app.pairs (a INT, b VARCHAR(10), total INT NOT NULL, PRIMARY KEY (a, b))",
	)
	db := src.DB(t)
	for i := range 3000 { // several data objects of 64 KiB
		if _, err := db.Exec("INSERT INTO app.accounts VALUES (?, ?, ?, ?, ?, ?, ?)", i, fmt.Sprintf("owner-%d-ü😀", i),
			fmt.Sprintf("%d.%02d", i*7, i%100), []byte{0, byte(i), 0xff, '\'', '\\'}, "2024-02-29 12:34:56.123456", "a,c", "y"); err != nil {
			t.Fatal(err)
		}
	}
	src.Exec(t, "INSERT INTO app.events VALUES ('dup', 18446744073709551615, 1.2345678, 0.1), ('dup', 18446744073709551615, 1.2345678, 0.1), (NULL, NULL, NULL, NULL)",
		"INSERT INTO app.pairs VALUES (1, 'x', 0), (1, 'y', 0), (2, 'x', 0)")

	// A write load that runs through the snapshot and after it.
	ctx, stopLoad := context.WithCancel(t.Context())
	var written atomic.Int64
	loadDone := make(chan error, 1)
	go func() {
		for n := 0; ; n++ {
			// Bounded and paced: the target must catch up on a busy machine.
			time.Sleep(2 * time.Millisecond)
			if ctx.Err() != nil || n == 3000 {
				loadDone <- nil
				return
			}
			tx, err := db.Begin()
			if err == nil {
				id := 3000 + n
				_, err = tx.Exec("INSERT INTO app.accounts (id, owner, balance) VALUES (?, 'new', 1)", id)
				if err == nil {
					_, err = tx.Exec("UPDATE app.accounts SET balance = balance + 1, note = ? WHERE id = ?", []byte{byte(n)}, n%3000)
				}
				if err == nil {
					_, err = tx.Exec("UPDATE app.pairs SET total = total + 1 WHERE a = 1")
				}
				if err == nil && n%5 == 0 {
					_, err = tx.Exec("DELETE FROM app.accounts WHERE id = ?", 2999-n%3000)
				}
				if err == nil && n%7 == 0 {
					_, err = tx.Exec("INSERT INTO app.events VALUES ('load', ?, 0.5, 2.5)", n)
				}
				if err == nil {
					err = tx.Commit()
				} else {
					_ = tx.Rollback()
				}
			}
			if err != nil {
				loadDone <- err
				return
			}
			written.Add(1)
		}
	}()

	man, err := snapshot.Take(t.Context(), testenv.SnapshotConfig(ccfg), nc, snapshot.Options{ObjectBytes: 64 << 10})
	if err != nil {
		t.Fatalf("snapshot.Take: %v", err)
	}
	atSnapshot := written.Load()
	var accounts *sdk.SnapshotTable
	names := []string{}
	for i, tb := range man.Tables {
		names = append(names, tb.Database+"."+tb.Table)
		if tb.Table == "accounts" {
			accounts = &man.Tables[i]
		}
	}
	if strings.Join(names, " ") != "app.accounts app.empty app.events app.pairs" {
		t.Errorf("snapshot tables: %v", names)
	}
	if accounts == nil || len(accounts.Objects) < 2 || accounts.Rows < 2000 {
		t.Fatalf("accounts in the snapshot: %+v", accounts)
	}
	if man.Position.File == "" || man.StreamSeq == 0 {
		t.Errorf("snapshot position %s, stream sequence %d", man.Position, man.StreamSeq)
	}

	// Load it into an empty target while the load goes on; stop the
	// applier once, when its first table is committed (one target
	// transaction: it is smaller than a batch), and start it again.
	// A kill inside a table is TestMillionRowSnapshotThroughApplyAndTheSDK's.
	cfg := apply.Config{TargetDSN: dst.DSN(""), NATSURL: js.URL, Source: "test", Start: sdk.StartSnapshot, ProgressEvery: time.Hour}
	stop := runApplier(t, cfg)
	testenv.Eventually(t, 20*time.Second, func() error {
		var n int
		if err := dst.DB(t).QueryRow("SELECT COUNT(*) FROM app.accounts").Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			return fmt.Errorf("no rows loaded yet")
		}
		return nil
	})
	stop()
	stop = runApplier(t, cfg)
	for written.Load() < atSnapshot+200 && len(loadDone) == 0 {
		time.Sleep(20 * time.Millisecond)
	}
	stopLoad()
	if err := <-loadDone; err != nil {
		t.Fatalf("write load: %v", err)
	}
	var want int
	if err := db.QueryRow("SELECT COUNT(*) FROM app.accounts").Scan(&want); err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 120*time.Second, func() error {
		a, b := src.Checksum(t, "app.accounts"), dst.Checksum(t, "app.accounts")
		if a != b {
			return fmt.Errorf("accounts: source %s, target %s", a, b)
		}
		return nil
	})
	stop()
	for _, table := range []string{"app.accounts", "app.events", "app.empty", "app.pairs"} {
		if a, b := src.Checksum(t, table), dst.Checksum(t, table); a != b {
			t.Errorf("after snapshot + changes: source %s, target %s", a, b)
		}
	}
	var dbs int
	if err := dst.DB(t).QueryRow("SELECT COUNT(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = 'app'").Scan(&dbs); err != nil || dbs != 1 {
		t.Errorf("database app on the target: %d, %v", dbs, err)
	}

	// The snapshot is complete and checked: its objects' rows add up.
	jsc, _ := jetstream.New(nc)
	latest, err := sdk.LatestSnapshot(t.Context(), jsc, "test")
	if err != nil || latest.ID != man.ID {
		t.Fatalf("latest snapshot: %v, %v", latest, err)
	}
	var rows int64
	for _, tb := range latest.Tables {
		for _, o := range tb.Objects {
			rows += o.Rows
		}
	}
	if rows != latest.Rows {
		t.Errorf("objects hold %d rows, manifest says %d", rows, latest.Rows)
	}
}
