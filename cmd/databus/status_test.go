package main

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// `databus status` shows how the last scheduled snapshot went and the
// damage a consumer found in a snapshot.
func TestStatusShowsSnapshotAttemptAndDamage(t *testing.T) {
	js := testenv.StartJetStream(t)
	nc := js.Conn(t)
	ctx := t.Context()
	jsc, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	const source, id = "st", "20261201T010203Z"
	kv, err := jsc.CreateKeyValue(ctx, jetstream.KeyValueConfig{Bucket: sdk.StateBucket(source)})
	if err != nil {
		t.Fatal(err)
	}
	obs, err := jsc.CreateObjectStore(ctx, jetstream.ObjectStoreConfig{Bucket: sdk.SnapshotBucket(source)})
	if err != nil {
		t.Fatal(err)
	}
	man, _ := json.Marshal(sdk.Manifest{Version: sdk.SnapshotVersion, ID: id, Source: source, Tables: []sdk.SnapshotTable{}})
	next := time.Date(2026, 12, 1, 1, 3, 0, 0, time.UTC)
	for _, put := range []func() error{
		func() error { _, err := obs.PutBytes(ctx, sdk.ManifestName(id), man); return err },
		func() error { _, err := kv.PutString(ctx, sdk.LatestSnapshotKey, id); return err },
		func() error {
			b, _ := json.Marshal(sdk.SnapshotDamage{Snapshot: id, Object: id + "/data/00000-00000-000000.jsonl.gz", Error: "the object is missing"})
			_, err := kv.Put(ctx, sdk.SnapshotDamageKey(id), b)
			return err
		},
		func() error {
			b, _ := json.Marshal(bus.SnapshotAttempt{State: "failed", Error: "mysql unreachable", At: next.Add(-time.Second), NextTry: &next})
			_, err := kv.Put(ctx, bus.SnapshotAttemptKey, b)
			return err
		},
	} {
		if err := put(); err != nil {
			t.Fatal(err)
		}
	}
	code, out := runDatabus(t, []string{"DATABUS_SOURCE=" + source, "DATABUS_NATS_URL=" + js.URL, "DATABUS_LOG_LEVEL=warn"}, "status")
	if code != 0 {
		t.Fatalf("status exited with %d:\n%s", code, out)
	}
	var st struct {
		Attempt   bus.SnapshotAttempt `json:"snapshot_attempt"`
		Snapshots []struct {
			ID      string              `json:"id"`
			Latest  bool                `json:"latest"`
			Damaged *sdk.SnapshotDamage `json:"damaged"`
		} `json:"snapshots"`
	}
	if err := json.Unmarshal([]byte(out[strings.Index(out, "{"):]), &st); err != nil {
		t.Fatalf("status output: %v\n%s", err, out)
	}
	if st.Attempt.State != "failed" || st.Attempt.Error != "mysql unreachable" || st.Attempt.NextTry == nil || !st.Attempt.NextTry.Equal(next) {
		t.Errorf("snapshot_attempt: %+v", st.Attempt)
	}
	if len(st.Snapshots) != 1 || st.Snapshots[0].ID != id || !st.Snapshots[0].Latest || st.Snapshots[0].Damaged == nil || st.Snapshots[0].Damaged.Error != "the object is missing" {
		t.Errorf("snapshots: %+v\n%s", st.Snapshots, out)
	}
}
