package capture_test

import (
	"encoding/json"
	"testing"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// Only some messages ask for an acknowledgement; one vouches for those
// before it only because each message expects the stream sequence of the
// previous one. A message JetStream drops without a word must therefore
// fail the transaction and keep the checkpoint where it was.
func TestDroppedUnacknowledgedMessageFailsItsTransaction(t *testing.T) {
	js := testenv.StartJetStream(t)
	jsc, err := jetstream.New(js.Conn(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	event := func(offset uint32) sdk.Event {
		return sdk.Event{Version: 1, Source: "chain", Op: sdk.OpInsert, Database: "app", Table: "t",
			Key: map[string]any{"id": offset}, After: map[string]any{"id": offset},
			Position: sdk.Position{ServerID: 1, File: "mysql-bin.000001", Offset: offset}}
	}
	checkpoint := func(offset uint32) bus.Checkpoint {
		return bus.Checkpoint{File: "mysql-bin.000001", Offset: offset, ServerID: 1}
	}
	if err := capture.PublishTransaction(ctx, jsc, "chain", []sdk.Event{event(100)}, checkpoint(150)); err != nil {
		t.Fatal(err)
	}
	// The middle event has the message id of the one above: JetStream drops
	// it as a duplicate, and it asked for no acknowledgement.
	err = capture.PublishTransaction(ctx, jsc, "chain", []sdk.Event{event(200), event(100), event(300)}, checkpoint(350))
	if err == nil {
		t.Fatal("a transaction missing a message was acknowledged")
	}

	kv, err := jsc.KeyValue(ctx, sdk.StateBucket("chain"))
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, bus.CheckpointKey)
	if err != nil {
		t.Fatal(err)
	}
	var cp bus.Checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		t.Fatal(err)
	}
	if cp.Offset != 150 {
		t.Errorf("checkpoint at offset %d after a failed transaction, want 150", cp.Offset)
	}
	s, err := jsc.Stream(ctx, sdk.StreamName("chain"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 2 {
		t.Errorf("stream holds %d messages, want 2 (the first transaction and the first event of the second)", info.State.Msgs)
	}
}
