package capture

import (
	"context"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/rowevent"
	"github.com/databus/databus/sdk"
)

// PublishAfterRestart publishes ev as a capture session that just started
// would: it reads where the stream ends, then publishes ev in messages of
// at most maxData bytes. crashAfter > 0 publishes only that many chunks of
// ev, as a capture killed in the middle of a large event would. ev is the
// last event of its transaction.
func PublishAfterRestart(ctx context.Context, js jetstream.JetStream, source string, ev sdk.Event, maxData, crashAfter int) error {
	stream, kv, err := bus.Ensure(ctx, js, source, bus.StreamConfig{DuplicateWindow: time.Minute}, nil)
	if err != nil {
		return err
	}
	id, rev, err := captureID(ctx, kv)
	if err != nil {
		return err
	}
	pos, seq, complete, err := bus.LastPublished(ctx, stream, bus.Own{CaptureID: id})
	if err != nil {
		return err
	}
	p := &publisher{js: js, kv: kv, cpRev: rev, source: source, captureID: id, expected: seq, skipThrough: pos, skipPartial: !complete,
		maxData: maxData, queue: make(chan pending, 64), crashAfter: crashAfter}
	done := make(chan error, 1)
	go func() { done <- p.acks(ctx, time.Hour) }()
	ev.Txn.Last = true
	err = p.publish(&rowevent.Event{Event: ev})
	close(p.queue)
	if aerr := <-done; err == nil {
		err = aerr
	}
	return err
}

// PublishTransaction publishes evs as one transaction of a capture session
// that just started, then queues next as its checkpoint, and returns the
// first error of publishing or of an acknowledgement.
func PublishTransaction(ctx context.Context, js jetstream.JetStream, source string, evs []sdk.Event, next bus.Checkpoint) error {
	stream, kv, err := bus.Ensure(ctx, js, source, bus.StreamConfig{DuplicateWindow: time.Minute}, nil)
	if err != nil {
		return err
	}
	id, rev, err := captureID(ctx, kv)
	if err != nil {
		return err
	}
	_, seq, _, err := bus.LastPublished(ctx, stream, bus.Own{CaptureID: id})
	if err != nil {
		return err
	}
	p := &publisher{js: js, kv: kv, cpRev: rev, source: source, captureID: id, expected: seq, maxData: 1 << 20, queue: make(chan pending, 64)}
	done := make(chan error, 1)
	go func() { done <- p.acks(ctx, time.Hour) }()
	for i := range evs {
		evs[i].Txn = sdk.Txn{ID: "txn", Seq: i, Last: i == len(evs)-1}
		if err = p.publish(&rowevent.Event{Event: evs[i]}); err != nil {
			break
		}
	}
	if err == nil {
		p.boundary(next)
	}
	close(p.queue)
	if aerr := <-done; err == nil {
		err = aerr
	}
	return err
}

// CrashAfter makes capture stop, as if killed, after publishing n messages
// of a session; 0 turns it off.
func CrashAfter(n int) func(*Config) {
	return func(c *Config) { c.crashAfter = n }
}

// captureID is the capture id of the source's checkpoint, "" without one,
// and the checkpoint's revision.
func captureID(ctx context.Context, kv jetstream.KeyValue) (string, uint64, error) {
	cp, rev, err := bus.LoadCheckpointRev(ctx, nil, kv)
	if err != nil || cp == nil {
		return "", 0, err
	}
	return cp.CaptureID, rev, nil
}
