package snapshot_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/embedded"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

// fillTables creates db.a with rows rows and db.b (no primary key) with
// 3, and starts capture.
func fillTables(t *testing.T, r *testenv.Rig, rows int) {
	t.Helper()
	r.DB.Exec(t, "CREATE DATABASE shop", "CREATE DATABASE IF NOT EXISTS seq",
		"CREATE TABLE shop.a (id INT PRIMARY KEY, pad VARCHAR(200))",
		"CREATE TABLE shop.b (x INT, y TEXT)",
		"INSERT INTO shop.b VALUES (1,'one'),(2,'two'),(NULL,NULL)",
		fmt.Sprintf("INSERT INTO shop.a SELECT seq, REPEAT(CHAR(65 + seq %% 26), 150) FROM seq.seq_1_to_%d", rows))
	r.Start(t)
}

// Each table of a snapshot is one transaction: its create_table event
// (seq 0), then its rows (seq 1…n), the last one marked last; NextTxn
// hands each table over whole.
func TestSnapshotTablesAreTransactions(t *testing.T) {
	r := testenv.NewRig(t)
	fillTables(t, r, 5)
	man, err := r.Snapshot(t.Context(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c := r.Consumer(t, sdk.Config{Start: sdk.StartSnapshot, Databases: []string{"shop"}})
	for _, want := range []struct {
		table string
		n     int
	}{{"a", 6}, {"b", 4}} {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		txn, err := c.NextTxn(ctx)
		cancel()
		if err != nil {
			t.Fatal(err)
		}
		if !txn.Complete || len(txn.Messages) != want.n || txn.ID != sdk.SnapshotTxnID(man.ID, "shop", want.table) {
			t.Fatalf("table %s: transaction %s of %d events (complete %v), want %d events, complete", want.table, txn.ID, len(txn.Messages), txn.Complete, want.n)
		}
		for i, ev := range txn.Events() {
			if ev.Txn.Seq != i || ev.Txn.Last != (i == want.n-1) || ev.Table != want.table {
				t.Errorf("table %s event %d: %s.%s txn %+v", want.table, i, ev.Database, ev.Table, ev.Txn)
			}
		}
		if err := txn.Ack(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
}

// A consumer that pauses longer than any NATS timeout in the middle of a
// part, and one that is closed and comes back, both load every row.
func TestSlowConsumerLoadsTheWholeSnapshot(t *testing.T) {
	r := testenv.NewRig(t)
	fillTables(t, r, 3000)
	// Parts of 64 KiB: the 3000 rows of shop.a span several.
	man, err := r.Snapshot(t.Context(), snapshot.Options{ObjectBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if n := len(man.Tables[0].Objects); n < 4 {
		t.Fatalf("shop.a is stored in %d parts, want several", n)
	}
	c := r.Consumer(t, sdk.Config{Name: "slow", Start: sdk.StartSnapshot, Tables: []string{"shop.a"}})
	got := testenv.Read(t, c, 1+700) // the schema, then rows into the second part
	time.Sleep(7 * time.Second)      // longer than the Object Store's 5 s
	got = append(got, testenv.Read(t, c, 300)...)
	c.Close()
	c = r.Consumer(t, sdk.Config{Name: "slow", Start: sdk.StartSnapshot, Tables: []string{"shop.a"}})
	got = append(got, testenv.Read(t, c, 2000)...)
	testenv.None(t, c)
	for i, ev := range got[1:] {
		if fmt.Sprint(ev.Key["id"]) != fmt.Sprint(i+1) {
			t.Fatalf("row %d has id %v", i, ev.Key["id"])
		}
	}
}

// A part that is missing, or whose bytes differ from its digest, is found
// before any of its rows is handed out; the snapshot is marked damaged and
// new consumers load the newest sound one.
func TestDamagedSnapshotIsDetectedMarkedAndSkipped(t *testing.T) {
	for _, damage := range []string{"chunk deleted", "chunk altered", "object deleted"} {
		t.Run(damage, func(t *testing.T) {
			r := testenv.NewRig(t)
			fillTables(t, r, 2000)
			ctx := t.Context()
			sound, err := r.Snapshot(ctx, snapshot.Options{})
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second) // snapshot ids have second precision
			r.DB.Exec(t, "INSERT INTO shop.b VALUES (4, 'four')")
			bad, err := r.Snapshot(ctx, snapshot.Options{ObjectBytes: 64 << 10})
			if err != nil {
				t.Fatal(err)
			}
			part := bad.Tables[0].Objects[2].Name
			damageObject(t, r, damage, part)

			c := r.Consumer(t, sdk.Config{Start: sdk.StartSnapshot, Tables: []string{"shop.a"}})
			rows := 0
			for {
				m, err := c.Next(ctx)
				if err != nil {
					if !errors.Is(err, sdk.ErrSnapshotDamaged) || !strings.Contains(err.Error(), part) || !strings.Contains(err.Error(), bad.ID) {
						t.Fatalf("after %d rows: %v; want ErrSnapshotDamaged naming %s and %s", rows, err, bad.ID, part)
					}
					break
				}
				if m.Event.Op == sdk.OpInsert {
					rows++
				}
			}
			if want := int(bad.Tables[0].Objects[0].Rows + bad.Tables[0].Objects[1].Rows); rows != want {
				t.Errorf("handed out %d rows before the damaged part, want the %d of the parts before it", rows, want)
			}
			js, err := jetstream.New(r.NC)
			if err != nil {
				t.Fatal(err)
			}
			kv, err := js.KeyValue(ctx, sdk.StateBucket(r.Capture.Config.Source))
			if err != nil {
				t.Fatal(err)
			}
			if d, err := sdk.ReadSnapshotDamage(ctx, kv, bad.ID); err != nil || d == nil || d.Object != part {
				t.Fatalf("damage record of %s: %+v, %v", bad.ID, d, err)
			}
			// The next consumer loads the sound snapshot, then the changes
			// after it (the insert into shop.b among them).
			c = r.Consumer(t, sdk.Config{Start: sdk.StartSnapshot, Tables: []string{"shop.b"}})
			evs := testenv.Read(t, c, 1+3+1)
			if !strings.HasPrefix(evs[0].Txn.ID, "snapshot:"+sound.ID+":") || evs[4].Snapshot || evs[4].After["y"] != "four" {
				t.Fatalf("after the damage: first %s, last %+v; want snapshot %s then the insert of 4", evs[0].Txn.ID, evs[4], sound.ID)
			}
		})
	}
}

// damageObject damages one stored snapshot object the way disks and
// operators do.
func damageObject(t *testing.T, r *testenv.Rig, how, name string) {
	t.Helper()
	ctx := t.Context()
	js, err := jetstream.New(r.NC)
	if err != nil {
		t.Fatal(err)
	}
	bucket := sdk.SnapshotBucket(r.Capture.Config.Source)
	obs, err := js.ObjectStore(ctx, bucket)
	if err != nil {
		t.Fatal(err)
	}
	if how == "object deleted" {
		if err := obs.Delete(ctx, name); err != nil {
			t.Fatal(err)
		}
		return
	}
	info, err := obs.GetInfo(ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	stream, err := js.Stream(ctx, "OBJ_"+bucket)
	if err != nil {
		t.Fatal(err)
	}
	subj := "$O." + bucket + ".C." + info.NUID
	last, err := stream.GetLastMsgForSubject(ctx, subj)
	if err != nil {
		t.Fatal(err)
	}
	if err := stream.DeleteMsg(ctx, last.Sequence); err != nil {
		t.Fatal(err)
	}
	if how == "chunk altered" {
		data := append([]byte(nil), last.Data...)
		data[len(data)/2] ^= 0xFF
		if _, err := js.Publish(ctx, subj, data); err != nil {
			t.Fatal(err)
		}
	}
}

// With MySQL down when capture starts, the first snapshot is tried again
// with backoff until it succeeds; meanwhile the state bucket says why it
// waits (`databus status` shows it).
func TestFirstSnapshotIsRetriedUntilItSucceeds(t *testing.T) {
	r := testenv.NewRig(t)
	fillTables(t, r, 10)
	r.DB.Stop(t)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	sched := &snapshot.Schedule{Config: testenv.SnapshotConfig(r.Capture.Config), OnStart: true, Logger: slog.New(slog.NewTextHandler(t.Output(), nil)), FirstRetry: 200 * time.Millisecond, MaxRetry: 500 * time.Millisecond}
	done := make(chan struct{})
	go func() {
		defer close(done)
		sched.Run(ctx, r.NC)
	}()
	js, err := jetstream.New(r.NC)
	if err != nil {
		t.Fatal(err)
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		kv, err := js.KeyValue(ctx, sdk.StateBucket(r.Capture.Config.Source))
		if err != nil {
			return err
		}
		e, err := kv.Get(ctx, bus.SnapshotAttemptKey)
		if err != nil {
			return err
		}
		var a bus.SnapshotAttempt
		if err := json.Unmarshal(e.Value(), &a); err != nil {
			return err
		}
		if a.State != "failed" || a.NextTry == nil || !strings.Contains(a.Error, "MySQL") && !strings.Contains(a.Error, "connect") {
			return fmt.Errorf("attempt %+v, want failed with a next try and the cause", a)
		}
		return nil
	})
	r.DB.Restart(t)
	testenv.Eventually(t, 60*time.Second, func() error {
		ok, err := snapshot.Exists(ctx, r.NC, r.Capture.Config.Source)
		if err == nil && !ok {
			err = errors.New("no snapshot yet")
		}
		return err
	})
	cancel()
	<-done
}

// A snapshot that fills the JetStream store says so, with what to change,
// and leaves nothing behind.
func TestSnapshotThatFillsTheStoreNamesTheCause(t *testing.T) {
	db := testenv.StartMariaDB(t)
	js := testenv.StartJetStream(t, embedded.Config{MaxStore: 2 << 20})
	nc := js.Conn(t)
	cfg := testenv.CaptureConfig(db)
	c := testenv.NewCapture(cfg, nc)
	db.Exec(t, "CREATE DATABASE big", "CREATE DATABASE IF NOT EXISTS seq", "CREATE TABLE big.t (id INT PRIMARY KEY, b VARBINARY(1024))",
		"INSERT INTO big.t SELECT seq, RANDOM_BYTES(1024) FROM seq.seq_1_to_4000")
	c.Start(t)
	_, err := snapshot.Take(t.Context(), testenv.SnapshotConfig(cfg), nc, snapshot.Options{})
	if err == nil || !strings.Contains(err.Error(), "JetStream store is full") || !strings.Contains(err.Error(), "nats.max_store") {
		t.Fatalf("snapshot into a full store: %v; want the cause and what to change", err)
	}
	if ok, err := snapshot.Exists(t.Context(), nc, cfg.Source); err != nil || ok {
		t.Fatalf("after the failed snapshot: exists %v, %v", ok, err)
	}
}
