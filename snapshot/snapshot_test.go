package snapshot_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

// pausedSnapshot starts a snapshot that stops, holding its read view and
// its lock, once it has read `after` tables, reading with parallel
// connections (0: the default); resume lets it go on. It returns the
// snapshot's id, and the returned channel yields its result.
func pausedSnapshot(t *testing.T, r *testenv.Rig, after, parallel int) (id string, resume func(), result <-chan error) {
	t.Helper()
	paused, release := make(chan string), make(chan struct{})
	var once atomic.Bool
	done := make(chan error, 1)
	go func() {
		_, err := r.Snapshot(t.Context(), snapshot.Options{
			Parallel: parallel,
			Progress: func(p snapshot.Progress) {
				if p.Phase == "reading" && p.TablesDone == after && once.CompareAndSwap(false, true) {
					paused <- p.ID
					<-release
				}
			},
		})
		done <- err
	}()
	select {
	case id = <-paused:
	case err := <-done:
		t.Fatalf("snapshot ended before pausing: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("snapshot did not reach its pause within 30s")
	}
	return id, func() { close(release) }, done
}

func latestID(t *testing.T, r *testenv.Rig) string {
	t.Helper()
	js, err := jetstream.New(r.NC)
	if err != nil {
		t.Fatal(err)
	}
	man, err := sdk.LatestSnapshot(t.Context(), js, r.Config.Source)
	if err != nil {
		t.Fatal(err)
	}
	return man.ID
}

func waitResult(t *testing.T, result <-chan error) error {
	t.Helper()
	select {
	case err := <-result:
		return err
	case <-time.After(60 * time.Second):
		t.Fatal("snapshot did not end within 60s")
	}
	return nil
}

func TestSnapshotWhileOneRunsIsRefused(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.a (id INT PRIMARY KEY)", "INSERT INTO app.a VALUES (1)")
	r.Start(t)
	_, resume, result := pausedSnapshot(t, r, 0, 0)
	_, err := r.Snapshot(t.Context(), snapshot.Options{})
	if !errors.Is(err, snapshot.ErrRunning) || !strings.Contains(err.Error(), "wait for it to finish") {
		t.Errorf("second snapshot while one runs: got %v, want ErrSnapshotRunning saying to wait", err)
	}
	resume()
	if err := waitResult(t, result); err != nil {
		t.Fatalf("the running snapshot failed: %v", err)
	}
	// The lock is released with the snapshot.
	if _, err := r.Snapshot(t.Context(), snapshot.Options{}); err != nil {
		t.Errorf("snapshot after the first finished: %v", err)
	}
}

// A DDL statement on a table the snapshot covers waits until the snapshot
// ends, and then reaches consumers after the snapshot's rows: a consumer
// starting from the snapshot sees the old schema, its rows, then the DDL.
//
// With one connection the table not yet read is read after the DDL
// statement queued for it: the reader holds the table's lock from the
// start, or it would wait behind the DDL, which waits for the snapshot.
func TestDDLDuringSnapshotWaitsAndFollowsIt(t *testing.T) {
	for _, parallel := range []int{1, 2} {
		t.Run(fmt.Sprintf("parallel %d", parallel), func(t *testing.T) { ddlDuringSnapshot(t, parallel) })
	}
}

func ddlDuringSnapshot(t *testing.T, parallel int) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app",
		"CREATE TABLE app.a (id INT PRIMARY KEY)", "INSERT INTO app.a VALUES (1)",
		"CREATE TABLE app.b (id INT PRIMARY KEY, v INT)", "INSERT INTO app.b VALUES (1, 1)")
	r.Start(t)
	_, resume, result := pausedSnapshot(t, r, 1, parallel) // one table read, one not yet
	altered := make(chan error, 1)
	go func() {
		_, err := r.DB.DB(t).ExecContext(t.Context(), "ALTER TABLE app.b ADD COLUMN extra INT NOT NULL DEFAULT 7")
		altered <- err
	}()
	select {
	case err := <-altered:
		t.Fatalf("ALTER of a table the snapshot holds did not wait for it: %v", err)
	case <-time.After(time.Second):
	}
	resume()
	if err := waitResult(t, result); err != nil {
		t.Fatalf("snapshot: %v", err)
	}
	if err := <-altered; err != nil {
		t.Fatal(err)
	}
	c := r.Consumer(t, sdk.Config{Start: sdk.StartSnapshot})
	var got []string
	for _, e := range testenv.Read(t, c, 5) {
		got = append(got, fmt.Sprintf("%s:%s:%v", e.Op, e.Table, strings.Contains(e.SQL, "extra")))
	}
	if want := "ddl:a:false insert:a:false ddl:b:false insert:b:false ddl:b:true"; strings.Join(got, " ") != want {
		t.Errorf("got %s, want %s", strings.Join(got, " "), want)
	}
}

// A DDL statement that ran between the opening of the read view and the
// locks on the tables' schema abandons the snapshot: its schema would be
// newer than its rows.
func TestDDLAsTheSnapshotStartsAbandonsItAndKeepsThePreviousLatest(t *testing.T) {
	for name, change := range map[string]string{
		"drop":       "DROP TABLE app.b",
		"add_column": "ALTER TABLE app.b ADD COLUMN extra INT NOT NULL DEFAULT 7",
		"truncate":   "TRUNCATE TABLE app.b",
	} {
		t.Run(name, func(t *testing.T) {
			r := testenv.NewRig(t)
			r.DB.Exec(t, "CREATE DATABASE app",
				"CREATE TABLE app.a (id INT PRIMARY KEY)", "INSERT INTO app.a VALUES (1)",
				"CREATE TABLE app.b (id INT PRIMARY KEY, v INT)", "INSERT INTO app.b VALUES (1, 1)")
			r.Start(t)
			if _, err := r.Snapshot(t.Context(), snapshot.Options{}); err != nil {
				t.Fatal(err)
			}
			previous := latestID(t, r)
			time.Sleep(1100 * time.Millisecond) // snapshot ids have a resolution of one second
			snapshot.SetSnapshotViewOpenedHook(func() { r.DB.Exec(t, change) })
			defer snapshot.SetSnapshotViewOpenedHook(nil)
			_, err := r.Snapshot(t.Context(), snapshot.Options{})
			if !errors.Is(err, snapshot.ErrAbandoned) || !strings.Contains(err.Error(), "app") || !strings.Contains(err.Error(), "run the snapshot again") {
				t.Fatalf("snapshot with %q as it starts: got %v, want ErrSnapshotAbandoned naming the statement and saying to run it again", change, err)
			}
			if got := latestID(t, r); got != previous {
				t.Errorf("latest snapshot is %s, want the previous %s", got, previous)
			}
		})
	}
}

// A snapshot user without RELOAD cannot hold commits off while the read
// view opens: the snapshot fails at once, saying what to grant, and writes
// on the source go on.
func TestSnapshotWithoutReloadSaysWhatToGrant(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.a (id INT PRIMARY KEY)", "INSERT INTO app.a VALUES (1)",
		"CREATE USER 'snap'@'%' IDENTIFIED BY 'pw'", "GRANT SELECT, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'snap'@'%'")
	r.Start(t)
	cfg := testenv.SnapshotConfig(r.Capture.Config)
	cfg.MySQL.User, cfg.MySQL.Password = "snap", "pw"
	_, err := snapshot.Take(t.Context(), cfg, r.NC, snapshot.Options{})
	if !errors.Is(err, mysqlsrc.ErrSourceSettings) || !strings.Contains(err.Error(), "GRANT RELOAD") {
		t.Fatalf("snapshot without RELOAD: got %v, want ErrSourceSettings saying GRANT RELOAD", err)
	}
	r.DB.Exec(t, "INSERT INTO app.a VALUES (2)") // commits are not left blocked
	r.DB.Exec(t, "GRANT RELOAD ON *.* TO 'snap'@'%'")
	man, err := snapshot.Take(t.Context(), cfg, r.NC, snapshot.Options{})
	if err != nil {
		t.Fatalf("snapshot after GRANT RELOAD: %v", err)
	}
	if man.Rows != 2 {
		t.Errorf("snapshot holds %d rows, want 2", man.Rows)
	}
}

// What an interrupted snapshot left is removed while the next snapshot
// reads, and never the objects that snapshot is writing, which are just as
// incomplete until its manifest is stored.
func TestLeftoversAreRemovedWhileTheNextSnapshotReads(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.a (id INT PRIMARY KEY)", "CREATE TABLE app.b (id INT PRIMARY KEY)",
		"INSERT INTO app.a VALUES (1), (2)", "INSERT INTO app.b VALUES (3)")
	r.Start(t)
	first, err := r.Snapshot(t.Context(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	js, obs := snapshotBucket(t, r)
	// A part of a snapshot killed before its manifest.
	leftover := sdk.SnapshotObjectName("20000101T000000Z", 0, 0, 0)
	if _, err := obs.PutBytes(t.Context(), leftover, []byte("partial")); err != nil {
		t.Fatal(err)
	}

	id, resume, done := pausedSnapshot(t, r, 1, 0)
	// The running snapshot's own cleanup, run again now that its first
	// table is stored: its objects stay.
	if err := snapshot.RemovePartial(t.Context(), r.NC, r.Config.Source, id); err != nil {
		t.Fatal(err)
	}
	resume()
	if err := waitResult(t, done); err != nil {
		t.Fatal(err)
	}
	if _, err := obs.GetInfo(t.Context(), leftover); !errors.Is(err, jetstream.ErrObjectNotFound) {
		t.Errorf("the interrupted snapshot's part: %v, want it removed", err)
	}
	man, err := sdk.LatestSnapshot(t.Context(), js, r.Config.Source)
	if err != nil || man.ID != id || man.ID == first.ID {
		t.Fatalf("latest snapshot %v (%v), want %s", man, err, id)
	}
	checkParts(t, obs, man)
}

// Snapshot ids are to the second and name the objects: a snapshot taken in
// the same second as the one before gets the next second's id, and the one
// before keeps its objects.
func TestSnapshotsOfOneSecondGetIdsOfTheirOwn(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.a (id INT PRIMARY KEY)", "INSERT INTO app.a VALUES (1)")
	r.Start(t)
	first, err := r.Snapshot(t.Context(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	r.DB.Exec(t, "INSERT INTO app.a VALUES (2)")
	second, err := r.Snapshot(t.Context(), snapshot.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if second.ID <= first.ID {
		t.Fatalf("second snapshot %s, first %s: want a later id", second.ID, first.ID)
	}
	_, obs := snapshotBucket(t, r)
	checkParts(t, obs, first)
	checkParts(t, obs, second)
	if first.Tables[0].Rows != 1 || second.Tables[0].Rows != 2 {
		t.Errorf("rows: first %d, second %d; want 1 and 2", first.Tables[0].Rows, second.Tables[0].Rows)
	}
}

// A complete snapshot keeps the newest Keep sound snapshots and those a
// reader is loading; older and damaged ones are deleted, every object of
// them.
func TestOldAndDamagedSnapshotsArePrunedUnlessAReaderLoadsThem(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.a (id INT PRIMARY KEY)", "CREATE TABLE app.b (id INT PRIMARY KEY)",
		"INSERT INTO app.a VALUES (1), (2)", "INSERT INTO app.b VALUES (3)")
	r.Start(t)
	ctx := t.Context()
	var obs jetstream.ObjectStore // once the first snapshot made it
	take := func(keep int) string {
		t.Helper()
		man, err := r.Snapshot(ctx, snapshot.Options{Keep: keep})
		if err != nil {
			t.Fatal(err)
		}
		return man.ID
	}
	// held fails the test unless the bucket holds exactly the objects of
	// the snapshots want, a manifest and two parts each.
	held := func(when string, want ...string) {
		t.Helper()
		objs, err := obs.List(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, o := range objs {
			id, _ := sdk.SnapshotOfObject(o.Name)
			got[id]++
		}
		if len(got) != len(want) {
			t.Errorf("%s: the bucket holds the objects of %v, want those of %v", when, got, want)
		}
		for _, id := range want {
			if got[id] != 3 {
				t.Errorf("%s: snapshot %s has %d objects, want 3 (manifest and two parts); the bucket: %v", when, id, got[id], got)
			}
		}
	}
	take(2)
	js, bucket := snapshotBucket(t, r)
	obs = bucket
	kv, err := js.KeyValue(ctx, sdk.StateBucket(r.Config.Source))
	if err != nil {
		t.Fatal(err)
	}
	s2 := take(2)
	s3 := take(2)
	held("three snapshots, keep 2", s2, s3)

	// A reader is loading s2: it stays while newer ones come.
	pin, _ := json.Marshal(sdk.SnapshotProgress{Snapshot: s2, Table: 1})
	if _, err := kv.Put(ctx, sdk.SnapshotProgressKey("loader"), pin); err != nil {
		t.Fatal(err)
	}
	s4 := take(1)
	held("s2 being loaded, keep 1", s2, s4)

	// Damage found in the newest goes with the next snapshot, as does s2
	// once its reader is done.
	damage, _ := json.Marshal(sdk.SnapshotDamage{Snapshot: s4, Object: "x", Error: "checked"})
	if _, err := kv.Put(ctx, sdk.SnapshotDamageKey(s4), damage); err != nil {
		t.Fatal(err)
	}
	done, _ := json.Marshal(sdk.SnapshotProgress{Snapshot: s2, Done: true})
	if _, err := kv.Put(ctx, sdk.SnapshotProgressKey("loader"), done); err != nil {
		t.Fatal(err)
	}
	s5 := take(1)
	held("s4 damaged, s2 loaded, keep 1", s5)
	if _, err := kv.Get(ctx, sdk.SnapshotDamageKey(s4)); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Errorf("the damage record of the deleted %s: %v, want it deleted", s4, err)
	}
}

// A requested snapshot is answered once it is the latest, before the old
// ones are deleted; a request that comes meanwhile waits for that instead
// of being refused as "already running".
func TestRequestDuringTheLastOnesCleanupWaitsForIt(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.a (id INT PRIMARY KEY)", "INSERT INTO app.a VALUES (1)")
	r.Start(t)
	sched := &snapshot.Schedule{Config: testenv.SnapshotConfig(r.Capture.Config)}
	ctx := t.Context()
	published, release := make(chan *sdk.Manifest), make(chan struct{})
	first := make(chan error, 1)
	go func() {
		_, err := sched.TakeNow(ctx, r.NC, func(man *sdk.Manifest) {
			published <- man
			<-release // the first one's cleanup, held
		})
		first <- err
	}()
	man := <-published
	if sched.Busy() {
		t.Error("Busy while the first snapshot is published and only cleaning up: a request would be refused")
	}
	second := make(chan error, 1)
	go func() {
		_, err := sched.TakeNow(ctx, r.NC, nil)
		second <- err
	}()
	select {
	case err := <-second:
		t.Fatalf("the second request ended (%v) while the first one cleaned up; want it to wait", err)
	case <-time.After(300 * time.Millisecond):
	}
	close(release)
	if err := waitResult(t, first); err != nil {
		t.Fatal(err)
	}
	if err := waitResult(t, second); err != nil {
		t.Fatalf("the second request: %v", err)
	}
	js, _ := snapshotBucket(t, r)
	latest, err := sdk.LatestSnapshot(ctx, js, r.Config.Source)
	if err != nil || latest.ID <= man.ID {
		t.Errorf("latest snapshot %v (%v), want one after %s", latest, err, man.ID)
	}
}

// snapshotBucket opens the rig's snapshot bucket.
func snapshotBucket(t *testing.T, r *testenv.Rig) (jetstream.JetStream, jetstream.ObjectStore) {
	t.Helper()
	js, err := jetstream.New(r.NC)
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(t.Context(), sdk.SnapshotBucket(r.Config.Source))
	if err != nil {
		t.Fatal(err)
	}
	return js, obs
}

// checkParts fails the test unless every part man names is stored with
// the size it names.
func checkParts(t *testing.T, obs jetstream.ObjectStore, man *sdk.Manifest) {
	t.Helper()
	for _, table := range man.Tables {
		for _, o := range table.Objects {
			info, err := obs.GetInfo(t.Context(), o.Name)
			if err != nil || int64(info.Size) != o.StoredBytes {
				t.Errorf("snapshot %s, %s.%s: part %s: %v (%v), want its %d stored bytes", man.ID, table.Database, table.Table, o.Name, info, err, o.StoredBytes)
			}
		}
	}
}
