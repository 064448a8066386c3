package testenv

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

// Rig is one source server, one JetStream and a capturer between them,
// for one test.
type Rig struct {
	DB *MariaDB
	JS *JetStream
	NC *nats.Conn
	*Capture
}

// NewRig starts a source server and a JetStream and prepares a capturer
// (not started: see [Capture.Start]) whose configuration each mutate may
// change.
func NewRig(t *testing.T, mutate ...func(*capture.Config)) *Rig {
	t.Helper()
	r := &Rig{DB: StartMariaDB(t), JS: StartJetStream(t)}
	r.NC = r.JS.Conn(t)
	cfg := CaptureConfig(r.DB)
	for _, m := range mutate {
		m(&cfg)
	}
	r.Capture = NewCapture(cfg, r.NC)
	return r
}

// SnapshotConfig is the snapshot configuration of the source c captures.
func SnapshotConfig(c capture.Config) snapshot.Config {
	return snapshot.Config{Source: c.Source, MySQL: c.MySQL, Filter: c.Filter, Stream: c.Stream}
}

// Snapshot takes a snapshot of the rig's source.
func (r *Rig) Snapshot(ctx context.Context, opt snapshot.Options) (*sdk.Manifest, error) {
	return snapshot.Take(ctx, SnapshotConfig(r.Capture.Config), r.NC, opt)
}

// Consumer connects an SDK consumer of the rig's source, closed when the
// test ends.
func (r *Rig) Consumer(t *testing.T, cfg sdk.Config) *sdk.Consumer {
	t.Helper()
	cfg.Conn, cfg.Source = r.NC, r.Capture.Config.Source
	c, err := sdk.Connect(t.Context(), cfg)
	if err != nil {
		t.Fatalf("sdk.Connect: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

// Read takes n events from c, acknowledging each, and fails after 20s.
func Read(t *testing.T, c *sdk.Consumer, n int) []*sdk.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	var out []*sdk.Event
	for len(out) < n {
		m, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d events: %v", len(out), n, err)
		}
		if err := m.Ack(ctx); err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Event)
	}
	return out
}

// None checks that no further event arrives within a short while.
func None(t *testing.T, c *sdk.Consumer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 700*time.Millisecond)
	defer cancel()
	if m, err := c.Next(ctx); err == nil {
		t.Fatalf("unexpected extra event: %s %s.%s %s", m.Event.Op, m.Event.Database, m.Event.Table, m.Event.SQL)
	}
}

// ReadUntilQuiet reads and acknowledges events until none arrives within
// quiet.
func ReadUntilQuiet(t *testing.T, c *sdk.Consumer, quiet time.Duration) []*sdk.Event {
	t.Helper()
	var out []*sdk.Event
	for {
		ctx, cancel := context.WithTimeout(t.Context(), quiet)
		m, err := c.Next(ctx)
		cancel()
		if err != nil {
			return out
		}
		if err := m.Ack(t.Context()); err != nil {
			t.Fatal(err)
		}
		out = append(out, m.Event)
	}
}

// WaitEvents waits until the stream of source holds at least n events
// (leader messages do not count).
func WaitEvents(t testing.TB, js jetstream.JetStream, source string, n uint64) {
	t.Helper()
	Eventually(t, time.Minute, func() error {
		s, err := js.Stream(context.Background(), sdk.StreamName(source))
		if err != nil {
			return err
		}
		info, err := s.Info(context.Background(), jetstream.WithSubjectFilter(sdk.EventSubjects(source)))
		if err != nil {
			return err
		}
		var got uint64
		for _, c := range info.State.Subjects {
			got += c
		}
		if got < n {
			return fmt.Errorf("%d events in stream %s, want %d", got, sdk.StreamName(source), n)
		}
		return nil
	})
}
