package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// bigRows is the size of the large table: SNAPSHOT_ROWS, 1,000,000 by
// default.
func bigRows(t *testing.T) int {
	t.Helper()
	v := os.Getenv("SNAPSHOT_ROWS")
	if v == "" {
		return 1_000_000
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1000 {
		t.Fatalf("SNAPSHOT_ROWS=%q: want a number of at least 1000", v)
	}
	return n
}

// A snapshot of a million rows reaches an empty target through `databus
// apply` killed with SIGKILL in the middle of the large table (the load
// goes on after the last committed row: no row loaded twice), and through
// the SDK with a handler that pauses longer than any NATS timeout and a
// consumer that is closed and comes back; both end equal to the source,
// with the changes after the snapshot.
func TestMillionRowSnapshotThroughApplyAndTheSDK(t *testing.T) {
	bigRows := bigRows(t)
	src := testenv.StartMariaDB(t)
	src.Exec(t, "CREATE DATABASE big",
		"CREATE TABLE big.rows (id INT PRIMARY KEY, name VARCHAR(40) CHARACTER SET utf8mb4, amount DECIMAL(12,2), at DATETIME(3), raw VARBINARY(8))",
		"CREATE TABLE big.small (k VARCHAR(10) PRIMARY KEY, v INT)",
		"INSERT INTO big.small VALUES ('a', 1), ('b', 2)",
		fmt.Sprintf("INSERT INTO big.rows SELECT seq, CONCAT('row-', seq, IF(seq %% 7 = 0, ' é😀', '')), seq / 100, "+
			"'2026-01-01' + INTERVAL seq SECOND, IF(seq %% 5 = 0, NULL, UNHEX(HEX(seq))) FROM big.seq_1_to_%d", bigRows))
	env, natsURL := captureEnv(t, src)
	env = append(env, "DATABUS_LOG_LEVEL=info")
	run := startDatabus(t, env, "run")
	waitCapturing(t, env, run)
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	man := waitSnapshot(t, nc, "e2e", run)
	// Changes after the snapshot.
	src.Exec(t, "UPDATE big.rows SET name = 'changed' WHERE id % 100000 = 1",
		"DELETE FROM big.rows WHERE id % 250000 = 2",
		fmt.Sprintf("INSERT INTO big.rows VALUES (%d, 'after', 1.00, '2026-12-01 00:00:00', NULL)", bigRows+1),
		"UPDATE big.small SET v = v + 10")

	t.Run("apply killed in the large table", func(t *testing.T) {
		dst := testenv.StartMariaDB(t)
		args := []string{"apply", "--target", dst.DSN(""), "--from", "snapshot", "--progress", "1s"}
		ap := startDatabus(t, env, args...)
		rowsIn := func() int {
			var n int
			if err := dst.DB(t).QueryRow("SELECT COUNT(*) FROM big.rows").Scan(&n); err != nil {
				return 0
			}
			return n
		}
		testenv.Eventually(t, 120*time.Second, func() error {
			if n := rowsIn(); n < bigRows/3 {
				return fmt.Errorf("%d rows loaded", n)
			}
			return nil
		})
		ap.kill()
		loaded := rowsIn()
		at := checkpointProgress(t, dst.DB(t))
		tb := man.Tables[at.Table]
		if committed := tb.RowsBefore(at.Object) + at.Row; tb.Table != "rows" || int(committed) != loaded {
			t.Fatalf("killed with %d rows of big.rows on the target; the checkpoint says %s part %d row %d (%d rows)", loaded, tb.Table, at.Object, at.Row, committed)
		}
		ap = startDatabus(t, env, args...)
		waitEqual(t, src, dst, ap, "big.rows", "big.small")
		if !strings.Contains(ap.out.String(), "resuming the snapshot load after the last committed row") {
			t.Errorf("the restarted apply did not resume inside the table:\n%s", ap.out.String())
		}
		t.Logf("killed after %d of %d rows; resumed at part %d row %d: 0 rows loaded again", loaded, tb.Rows, at.Object, at.Row)
	})

	t.Run("SDK with a slow handler", func(t *testing.T) {
		dst := testenv.StartMariaDB(t)
		db := dst.DB(t)
		cfg := sdk.Config{Conn: nc, Source: "e2e", Name: "slow", Start: sdk.StartSnapshot, Databases: []string{"big"}}
		ctx := t.Context()
		c, err := sdk.Connect(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		defer func() { c.Close() }()
		var batch []string
		var head string
		flush := func() {
			if len(batch) > 0 {
				if _, err := db.Exec(head + strings.Join(batch, ",")); err != nil {
					t.Fatalf("loading %d rows: %v", len(batch), err)
				}
				batch = batch[:0]
			}
		}
		rows, paused, reconnected := 0, false, false
		for {
			if rows == bigRows && dst.Checksum(t, "big.rows") == src.Checksum(t, "big.rows") && dst.Checksum(t, "big.small") == src.Checksum(t, "big.small") {
				break
			}
			wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			m, err := c.Next(wctx)
			cancel()
			if err != nil {
				t.Fatalf("after %d rows: %v", rows, err)
			}
			ev := m.Event
			switch {
			case ev.Snapshot && ev.Op == sdk.OpDDL:
				flush()
				dst.Exec(t, "CREATE DATABASE IF NOT EXISTS big", ev.SQL)
			case ev.Snapshot:
				if ev.Table == "rows" {
					rows++
				}
				// The application builds its own statements from the values.
				vals := make([]string, len(ev.Columns))
				for i, col := range ev.Columns {
					if vals[i], err = sdk.Literal(col, ev.After[col.Name]); err != nil {
						t.Fatal(err)
					}
				}
				head = "REPLACE INTO `big`.`" + ev.Table + "` VALUES "
				batch = append(batch, "("+strings.Join(vals, ",")+")")
				if len(batch) == 2000 || ev.Txn.Last {
					flush()
				}
				switch {
				case rows == 400_000 && !paused:
					paused = true
					time.Sleep(7 * time.Second) // longer than the Object Store's 5 s
				case rows == 700_000 && !reconnected:
					// Closed and back: the durable consumer goes on after
					// the last acknowledged row.
					reconnected = true
					flush()
					if err := m.AckSync(ctx); err != nil {
						t.Fatal(err)
					}
					c.Close()
					if c, err = sdk.Connect(ctx, cfg); err != nil {
						t.Fatal(err)
					}
					continue
				}
			default:
				flush()
				if _, err := db.Exec(ev.SQL); err != nil {
					t.Fatalf("applying %s: %v", ev.SQL, err)
				}
			}
			if ev.Txn.Last {
				if err := m.Ack(ctx); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// waitSnapshot waits for the first snapshot databus run takes.
func waitSnapshot(t *testing.T, nc *nats.Conn, source string, run *proc) *sdk.Manifest {
	t.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	var man *sdk.Manifest
	testenv.Eventually(t, 120*time.Second, func() error {
		select {
		case <-run.exited:
			t.Fatalf("databus run exited with %d:\n%s", run.code, run.out.String())
		default:
		}
		man, err = sdk.LatestSnapshot(t.Context(), js, source)
		return err
	})
	return man
}

// checkpointProgress reads where the target's snapshot load stands.
func checkpointProgress(t *testing.T, db *sql.DB) sdk.SnapshotProgress {
	t.Helper()
	var txnID string
	if err := db.QueryRow("SELECT txn_id FROM databus.apply_checkpoint").Scan(&txnID); err != nil {
		t.Fatal(err)
	}
	js, ok := strings.CutPrefix(txnID, "loading snapshot ")
	var at sdk.SnapshotProgress
	if !ok || json.Unmarshal([]byte(js), &at) != nil {
		t.Fatalf("checkpoint txn_id %q: want the snapshot load's progress", txnID)
	}
	return at
}

// waitEqual waits until the tables of src and dst are equal, failing if p
// exits.
func waitEqual(t *testing.T, src, dst *testenv.MariaDB, p *proc, tables ...string) {
	t.Helper()
	testenv.Eventually(t, 180*time.Second, func() error {
		select {
		case <-p.exited:
			t.Fatalf("%v exited with %d:\n%s", p.cmd.Args[1:], p.code, p.out.String())
		default:
		}
		for _, table := range tables {
			if a, b := src.Checksum(t, table), dst.Checksum(t, table); a != b {
				return fmt.Errorf("%s: CHECKSUM TABLE source %s, target %s", table, a, b)
			}
		}
		return nil
	})
}
