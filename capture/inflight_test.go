package capture_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// A message the server delivers to a consumer but that never reaches the
// SDK (lost in flight between servers of a cluster, with no reconnect of
// the SDK's own connection) is delivered again, before anything after it:
// a later acknowledgement would otherwise cover it unseen. The loss is
// staged with a second client that pulls from the same durable consumer
// first, as a lost delivery looks to the server.
func TestMessageLostInFlightIsDeliveredAgain(t *testing.T) {
	js := testenv.StartJetStream(t)
	nc := js.Conn(t)
	jsc, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	const source = "flight"
	stream, _, err := bus.Ensure(ctx, jsc, source, bus.StreamConfig{DuplicateWindow: time.Minute}, nil)
	if err != nil {
		t.Fatal(err)
	}
	// The durable consumer the SDK binds to as it is (same filter and
	// acknowledgement policy, nothing pending).
	if _, err := stream.CreateConsumer(ctx, jetstream.ConsumerConfig{Durable: "reader", AckPolicy: jetstream.AckAllPolicy,
		FilterSubjects: []string{sdk.EventSubjects(source)}}); err != nil {
		t.Fatal(err)
	}
	thief, err := nc.SubscribeSync(nats.NewInbox())
	if err != nil {
		t.Fatal(err)
	}
	req, _ := json.Marshal(map[string]any{"batch": 1, "expires": time.Minute})
	if err := nc.PublishRequest("$JS.API.CONSUMER.MSG.NEXT."+sdk.StreamName(source)+".reader", thief.Subject, req); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	c, err := sdk.Connect(ctx, sdk.Config{Conn: nc, Source: source, Name: "reader"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	event := func(offset uint32) sdk.Event {
		return sdk.Event{Version: 1, Source: source, Op: sdk.OpInsert, Database: "app", Table: "t",
			Key: map[string]any{"id": offset}, After: map[string]any{"id": offset},
			Position: sdk.Position{ServerID: 1, File: "mysql-bin.000001", Offset: offset}}
	}
	for _, off := range []uint32{100, 200} {
		if err := capture.PublishTransaction(ctx, jsc, source, []sdk.Event{event(off)}, bus.Checkpoint{File: "mysql-bin.000001", Offset: off + 50, ServerID: 1}); err != nil {
			t.Fatal(err)
		}
	}
	if m, err := thief.NextMsg(10 * time.Second); err != nil {
		t.Fatalf("the other client got no delivery, so nothing was lost: %v", err)
	} else if meta, err := m.Metadata(); err != nil || meta.Sequence.Stream != 1 {
		t.Fatalf("the other client got %v (%v), want stream sequence 1", meta, err)
	}
	for _, want := range []uint32{100, 200} {
		nctx, cancel := context.WithTimeout(ctx, 20*time.Second)
		m, err := c.Next(nctx)
		cancel()
		if err != nil {
			t.Fatalf("waiting for the event at offset %d: %v", want, err)
		}
		if m.Event.Position.Offset != want {
			t.Fatalf("the SDK handed out the event at offset %d, want %d: the lost delivery was skipped", m.Event.Position.Offset, want)
		}
		if err := m.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
}
