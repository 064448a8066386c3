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
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// stateKV is the capture state bucket of r's source.
func stateKV(t *testing.T, r *rig) jetstream.KeyValue {
	t.Helper()
	js, err := jetstream.New(r.nc)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := js.KeyValue(t.Context(), capture.StateBucket(r.Config.Source))
	if err != nil {
		t.Fatal(err)
	}
	return kv
}

func savedCheckpoint(t *testing.T, r *rig) capture.Checkpoint {
	t.Helper()
	e, err := stateKV(t, r).Get(t.Context(), capture.CheckpointKey)
	if err != nil {
		t.Fatal(err)
	}
	var cp capture.Checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		t.Fatal(err)
	}
	return cp
}

func TestPurgedBinlogStopsCaptureNamingTheFileThenRecoverStartsFromNow(t *testing.T) {
	r := newRig(t)
	r.db.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	r.Start(t)
	c := r.consumer(t, sdk.Config{Name: "app", Start: sdk.StartBeginning, Tables: []string{"app.t"}})
	r.db.Exec(t, "INSERT INTO app.t VALUES (1)")
	read(t, c, 1)
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	cp := savedCheckpoint(t, r)

	// While capture is down, rows are written and their binlog purged.
	r.db.Exec(t, "INSERT INTO app.t VALUES (2)")
	oldest := r.db.RotateAndPurge(t, 2)
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
	r.db.Exec(t, "INSERT INTO app.t VALUES (3)")
	if got := read(t, c, 1)[0].Key["id"]; fmt.Sprint(got) != "3" {
		t.Errorf("after recovering: got id %v, want 3", got)
	}
	none(t, c)
	if recovered.Load() != 1 {
		t.Errorf("OnRecover called %d times with ErrBinlogPurged, want 1", recovered.Load())
	}
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	// A usable checkpoint is resumed as usual: Recover changes nothing.
	r.db.Exec(t, "INSERT INTO app.t VALUES (4)")
	r.Start(t)
	if got := read(t, c, 1)[0].Key["id"]; fmt.Sprint(got) != "4" {
		t.Errorf("after a restart with Recover and a usable checkpoint: got id %v, want 4", got)
	}
	if recovered.Load() != 1 {
		t.Errorf("OnRecover called again for a usable checkpoint")
	}
}

// A source with nothing to capture still moves the checkpoint to each new
// binlog file, so purging the old ones does not stop capture.
func TestIdleCaptureFollowsRotationsSoPurgingOldBinlogsIsSafe(t *testing.T) {
	r := newRig(t)
	r.db.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	r.Start(t)
	c := r.consumer(t, sdk.Config{Name: "app", Start: sdk.StartBeginning, Tables: []string{"app.t"}})
	for range 3 {
		r.db.Exec(t, "FLUSH BINARY LOGS")
	}
	cur := r.db.CurrentBinlog(t)
	testenv.Eventually(t, 20*time.Second, func() error {
		if cp := savedCheckpoint(t, r); cp.File != cur {
			return fmt.Errorf("checkpoint in %s, server writes %s", cp.File, cur)
		}
		return nil
	})
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	r.db.PurgeBinlogsTo(t, cur)
	r.db.Exec(t, "INSERT INTO app.t VALUES (1)")
	r.Start(t)
	if got := read(t, c, 1)[0].Key["id"]; fmt.Sprint(got) != "1" {
		t.Errorf("got id %v, want 1", got)
	}
}
