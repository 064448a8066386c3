package main

import (
	"errors"
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// A `databus snapshot` killed halfway leaves its lock and objects behind:
// another snapshot is refused while the lock is fresh, takes the lock over
// once its holder stopped renewing it, and deletes what the killed one
// stored. The snapshot consumers start from stays the complete one.
func TestSnapshotWriterKilledIsTakenOverAndCleanedUp(t *testing.T) {
	db := testenv.StartMariaDB(t)
	db.Exec(t, "CREATE DATABASE shop", "CREATE TABLE shop.big (id INT PRIMARY KEY, v VARCHAR(200))",
		"INSERT INTO shop.big SELECT seq, REPEAT('x', 200) FROM shop.seq_1_to_400000")
	env, url := captureEnv(t, db)
	env = append(env, "DATABUS_SNAPSHOT_ON_START=false", "DATABUS_SNAPSHOT_PARALLEL=1")
	run := startDatabus(t, env, "run")
	waitCapturing(t, env, run)

	// A snapshot written by a process of its own, killed mid-way.
	p := startDatabus(t, append(env, "DATABUS_LOG_LEVEL=info"), "snapshot", "--local")
	testenv.Eventually(t, 60*time.Second, func() error {
		select {
		case <-p.exited:
			t.Fatalf("snapshot ended before it could be killed (exit %d):\n%s", p.code, p.out.String())
		default:
		}
		if !strings.Contains(p.out.String(), "phase=reading") {
			return errors.New("not reading yet")
		}
		return nil
	})
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(t, 10*time.Second)

	code, out := runDatabus(t, env, "snapshot")
	if code == 0 || !strings.Contains(out, "already running") {
		t.Fatalf("snapshot while the killed one's lock is fresh: exit %d, want a failure saying one is running:\n%s", code, out)
	}
	// The lock goes stale 30s after the killed process last renewed it.
	var last string
	testenv.Eventually(t, 90*time.Second, func() error {
		code, last = runDatabus(t, env, "snapshot")
		if code != 0 {
			return fmt.Errorf("snapshot: exit %d: %s", code, last)
		}
		return nil
	})
	if !strings.Contains(last, "400000 rows") {
		t.Errorf("snapshot after the takeover:\n%s", last)
	}

	_, js := connectJS(t, url)
	man, err := sdk.LatestSnapshot(t.Context(), js, "e2e")
	if err != nil {
		t.Fatal(err)
	}
	obs, err := js.ObjectStore(t.Context(), sdk.SnapshotBucket("e2e"))
	if err != nil {
		t.Fatal(err)
	}
	objs, err := obs.List(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range objs {
		if !strings.HasPrefix(o.Name, man.ID+"/") {
			t.Errorf("object %s of another snapshot than the complete one (%s) is left", o.Name, man.ID)
		}
	}
}
