package capture_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// stateKV is the capture state bucket of r's source.
func stateKV(t *testing.T, r *testenv.Rig) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(r.NC)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), sdk.StateBucket(r.Config.Source))
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func savedCheckpoint(t *testing.T, r *testenv.Rig) bus.Checkpoint {
	t.Helper()
	e, err := stateKV(t, r).Get(t.Context(), bus.CheckpointKey)
	if err != nil {
		t.Fatal(err)
	}
	var cp bus.Checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestPurgedBinlogStopsCaptureNamingTheFileThenRecoverStartsFromNow(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	r.Start(t)
	c := r.Consumer(t, sdk.Config{Name: "app", Start: sdk.StartBeginning, Tables: []string{"app.t"}})
	r.DB.Exec(t, "INSERT INTO app.t VALUES (1)")
	testenv.Read(t, c, 1)
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	cp := savedCheckpoint(t, r)

	// While capture is down, rows are written and their binlog purged.
	r.DB.Exec(t, "INSERT INTO app.t VALUES (2)")
	oldest := r.DB.RotateAndPurge(t, 2)
	r.Start(t)
	err := r.Stop(t)
	if !errors.Is(err, capture.ErrBinlogPurged) {
		t.Fatalf("capture from a purged binlog returned %v, want ErrBinlogPurged", err)
	}
	for _, want := range []string{cp.File, fmt.Sprint(cp.Offset), "oldest binlog: " + oldest, "--recover", "snapshot"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not name %q: %v", want, err)
		}
	}
	if got := savedCheckpoint(t, r); got.File != cp.File || got.Offset != cp.Offset {
		t.Errorf("the refused start moved the checkpoint from %s:%d to %s:%d", cp.File, cp.Offset, got.File, got.Offset)
	}

	// --recover: capture starts from the current position and says so.
	var recovered atomic.Int32
	r.Config.Recover = true
	r.Config.OnRecover = func(reason error) {
		if errors.Is(reason, capture.ErrBinlogPurged) {
			recovered.Add(1)
		}
	}
	r.Start(t)
	r.DB.Exec(t, "INSERT INTO app.t VALUES (3)")
	if got := testenv.Read(t, c, 1)[0].Key["id"]; fmt.Sprint(got) != "3" {
		t.Errorf("after recovering: got id %v, want 3", got)
	}
	testenv.None(t, c)
	if recovered.Load() != 1 {
		t.Errorf("OnRecover called %d times with ErrBinlogPurged, want 1", recovered.Load())
	}
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	// A usable checkpoint is resumed as usual: Recover changes nothing.
	r.DB.Exec(t, "INSERT INTO app.t VALUES (4)")
	r.Start(t)
	if got := testenv.Read(t, c, 1)[0].Key["id"]; fmt.Sprint(got) != "4" {
		t.Errorf("after a restart with Recover and a usable checkpoint: got id %v, want 4", got)
	}
	if recovered.Load() != 1 {
		t.Errorf("OnRecover called again for a usable checkpoint")
	}
}

// A source with nothing to capture still moves the checkpoint to each new
// binlog file, so purging the old ones does not stop capture.
func TestIdleCaptureFollowsRotationsSoPurgingOldBinlogsIsSafe(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	r.Start(t)
	c := r.Consumer(t, sdk.Config{Name: "app", Start: sdk.StartBeginning, Tables: []string{"app.t"}})
	for range 3 {
		r.DB.Exec(t, "FLUSH BINARY LOGS")
	}
	cur := r.DB.CurrentBinlog(t)
	testenv.Eventually(t, 20*time.Second, func() error {
		if cp := savedCheckpoint(t, r); cp.File != cur {
			return fmt.Errorf("checkpoint in %s, server writes %s", cp.File, cur)
		}
		return nil
	})
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	r.DB.PurgeBinlogsTo(t, cur)
	r.DB.Exec(t, "INSERT INTO app.t VALUES (1)")
	r.Start(t)
	if got := testenv.Read(t, c, 1)[0].Key["id"]; fmt.Sprint(got) != "1" {
		t.Errorf("got id %v, want 1", got)
	}
}

// After a failover to a replica, capture resumes by GTID: every
// transaction reaches the stream once, in order, including those the old
// primary committed after the last checkpoint.
func TestFailoverToAReplicaResumesByGTID(t *testing.T) {
	primary := testenv.StartMariaDB(t)
	replica := testenv.StartMariaDB(t, "--server-id=2", "--log-slave-updates")
	replica.Exec(t, fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT=%d, MASTER_USER='root', MASTER_USE_GTID=slave_pos", primary.Port),
		"START SLAVE")
	js := testenv.StartJetStream(t)
	r := &testenv.Rig{DB: primary, JS: js, NC: js.Conn(t)}
	r.Capture = testenv.NewCapture(testenv.CaptureConfig(primary), r.NC)
	primary.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v VARCHAR(10))")
	r.Start(t)
	c := r.Consumer(t, sdk.Config{Name: "app", Start: sdk.StartBeginning, Tables: []string{"app.t"}})
	next := 0
	write := func(db *testenv.MariaDB, n int) {
		for range n {
			next++
			db.Exec(t, fmt.Sprintf("INSERT INTO app.t VALUES (%d, 'a'), (%d, 'b')", 2*next, 2*next+1))
		}
	}
	write(primary, 5)
	testenv.Read(t, c, 10)
	// The checkpoint lags behind what is published: rewind it to the
	// first transaction, as if the primary died before saving more.
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	cp := savedCheckpoint(t, r)
	var domain, server, seq uint64
	if _, err := fmt.Sscanf(cp.GTIDSet, "%d-%d-%d", &domain, &server, &seq); err != nil {
		t.Fatalf("checkpoint GTID set %q: %v", cp.GTIDSet, err)
	}
	cp.GTIDSet = fmt.Sprintf("%d-%d-%d", domain, server, seq-3)
	cp.StreamSeq -= 6 // three transactions of two rows
	b, _ := json.Marshal(cp)
	if _, err := stateKV(t, r).Put(t.Context(), bus.CheckpointKey, b); err != nil {
		t.Fatal(err)
	}
	write(primary, 3) // published by nobody yet
	testenv.Eventually(t, 20*time.Second, func() error {
		var n int
		if err := replica.DB(t).QueryRow("SELECT COUNT(*) FROM app.t").Scan(&n); err != nil {
			return err
		}
		if n != 2*next {
			return fmt.Errorf("replica has %d of %d rows", n, 2*next)
		}
		return nil
	})
	primary.Stop(t)
	replica.Exec(t, "STOP SLAVE", "RESET SLAVE ALL")

	r.Config.MySQL.Addr = replica.Addr()
	r.Start(t)
	write(replica, 2)
	var ids []string
	for _, e := range testenv.Read(t, c, 10) {
		ids = append(ids, fmt.Sprint(e.Key["id"]))
	}
	testenv.None(t, c)
	if want := "12 13 14 15 16 17 18 19 20 21"; strings.Join(ids, " ") != want {
		t.Errorf("after the failover: got ids %s, want %s", strings.Join(ids, " "), want)
	}
	if cp := savedCheckpoint(t, r); cp.ServerID != 2 {
		t.Errorf("checkpoint after the failover is for server %d, want the replica (2)", cp.ServerID)
	}
}

// JetStream without room: capture stops publishing, keeps its checkpoint,
// says why, and goes on by itself once there is room again.
func TestJetStreamFullStopsCaptureUntilThereIsRoom(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, b LONGBLOB)")
	r.Start(t)
	c := r.Consumer(t, sdk.Config{Name: "app", Start: sdk.StartBeginning, Tables: []string{"app.t"}})
	r.DB.Exec(t, "INSERT INTO app.t VALUES (1, 'x')")
	testenv.Read(t, c, 1)
	cp := savedCheckpoint(t, r)

	if err := r.JS.Server.LimitStore(4 << 20); err != nil {
		t.Fatal(err)
	}
	const rows = 16 // of 512 KiB: more than the room left
	for i := 2; i <= rows; i++ {
		r.DB.Exec(t, fmt.Sprintf("INSERT INTO app.t VALUES (%d, REPEAT('x', 512 * 1024))", i))
	}
	testenv.Eventually(t, 30*time.Second, func() error {
		if msg := r.Status().LastError; !strings.Contains(msg, "no room") {
			return fmt.Errorf("status does not say JetStream is full: %q", msg)
		}
		return nil
	})
	if got := savedCheckpoint(t, r); got.File == cp.File && got.Offset < cp.Offset {
		t.Errorf("checkpoint went back from %s:%d to %s:%d", cp.File, cp.Offset, got.File, got.Offset)
	}
	if err := r.JS.Server.LimitStore(-1); err != nil {
		t.Fatal(err)
	}
	evs := testenv.Read(t, c, rows-1)
	testenv.None(t, c)
	for i, e := range evs {
		if got := fmt.Sprint(e.Key["id"]); got != fmt.Sprint(i+2) {
			t.Fatalf("event %d after the store had room again: id %s, want %d", i, got, i+2)
		}
	}
}
