package capture_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// TestEventsRemovedBeforeTheyWereReadAreAnError: the stream's retention
// removes events that readers have not read; every way of resuming says
// which were lost instead of skipping them.
func TestEventsRemovedBeforeTheyWereReadAreAnError(t *testing.T) {
	r := testenv.NewRig(t, func(c *capture.Config) { c.Stream.MaxBytes = 40_000 })
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, pad VARCHAR(100))", "CREATE TABLE app.other (id INT PRIMARY KEY)")
	r.Start(t)
	r.DB.Exec(t, "INSERT INTO app.t VALUES (1, ''), (2, ''), (3, ''), (4, '')")

	// Two durable readers stop after reading some events.
	whole := r.Consumer(t, sdk.Config{Name: "whole", Start: sdk.StartBeginning})
	testenv.Read(t, whole, 2)
	whole.Close()
	filtered := r.Consumer(t, sdk.Config{Name: "filtered", Start: sdk.StartBeginning, Tables: []string{"app.t"}})
	testenv.Read(t, filtered, 1)
	filtered.Close()

	// Then more than the stream keeps is written.
	for i := 0; i < 30; i++ {
		var rows string
		for j := range 10 {
			rows += fmt.Sprintf(",(%d, REPEAT('x', 100))", 100+10*i+j)
		}
		r.DB.Exec(t, "INSERT INTO app.t VALUES "+rows[1:])
	}
	s, err := mustJS(t, r).Stream(t.Context(), sdk.StreamName(r.Capture.Config.Source))
	if err != nil {
		t.Fatal(err)
	}
	var first uint64
	testenv.Eventually(t, 20*time.Second, func() error {
		info, err := s.Info(t.Context())
		if err != nil {
			return err
		}
		if info.State.LastSeq < 304 {
			return fmt.Errorf("stream at %d, waiting for 304 events", info.State.LastSeq)
		}
		first = info.State.FirstSeq
		return nil
	})
	if first <= 5 {
		t.Fatalf("the stream's first sequence is %d: retention removed nothing", first)
	}

	for _, tc := range []struct {
		name     string
		cfg      sdk.Config
		from     uint64
		filtered bool
	}{
		{"durable resume", sdk.Config{Name: "whole"}, 3, false},
		{"filtered durable resume", sdk.Config{Name: "filtered", Tables: []string{"app.t"}}, 2, true},
		{"Resume hook", sdk.Config{Resume: func(context.Context) (uint64, error) { return 4, nil }}, 5, false},
		{"start sequence", sdk.Config{Start: sdk.StartAtSequence(2)}, 2, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := r.Consumer(t, tc.cfg)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			m, err := c.Next(ctx)
			var lost *sdk.EventsLostError
			if !errors.As(err, &lost) || !errors.Is(err, sdk.ErrEventsLost) {
				t.Fatalf("Next: got %v, %v; want events lost", m, err)
			}
			if lost.First != tc.from || lost.Last != first-1 || lost.Filtered != tc.filtered {
				t.Errorf("lost %d to %d (filtered %v); want %d to %d (filtered %v)", lost.First, lost.Last, lost.Filtered, tc.from, first-1, tc.filtered)
			}
			if _, err := c.NextTxn(ctx); !errors.Is(err, sdk.ErrEventsLost) {
				t.Errorf("the next call: got %v, want the same error", err)
			}
		})
	}

	// A reader that starts at what the stream still holds loses nothing.
	c := r.Consumer(t, sdk.Config{Start: sdk.StartAtSequence(first)})
	if got := testenv.Read(t, c, 3); got[0].Key["id"] == nil {
		t.Errorf("first event: %+v", got[0])
	}
}

func mustJS(t *testing.T, r *testenv.Rig) jetstream.JetStream {
	t.Helper()
	js, err := jetstream.New(r.NC)
	if err != nil {
		t.Fatal(err)
	}
	return js
}

// TestReaderFallingBehindWhileConnectedGetsTheEventsItHadThenTheLoss: a
// connected reader that does not keep up holds what was delivered to it;
// what retention removed before the server could deliver it is an error
// after those.
func TestReaderFallingBehindWhileConnectedGetsTheEventsItHadThenTheLoss(t *testing.T) {
	r := testenv.NewRig(t, func(c *capture.Config) { c.Stream.MaxBytes = 4 << 20 })
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, pad TEXT)", "CREATE TABLE app.other (id INT PRIMARY KEY)")
	r.Start(t)
	for _, tc := range []struct {
		name string
		cfg  sdk.Config
	}{
		{"whole stream", sdk.Config{Start: sdk.StartNow}},
		{"filtered", sdk.Config{Start: sdk.StartNow, Tables: []string{"app.t"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := r.Consumer(t, tc.cfg)
			base := 100_000 * len(tc.name)
			r.DB.Exec(t, fmt.Sprintf("INSERT INTO app.t VALUES (%d, ''), (%d, ''), (%d, '')", base-1, base-2, base-3))
			var last uint64
			for _, ev := range testenv.Read(t, c, 3) {
				if ev.Key["id"] == nil {
					t.Fatalf("event %+v", ev)
				}
			}
			// About 30 MiB of events, more than the reader buffers and the
			// stream keeps (4 MiB), with another table's between.
			for i := 0; i < 20; i++ {
				r.DB.Exec(t, fmt.Sprintf("INSERT INTO app.t SELECT %d + seq, REPEAT('x', 1000) FROM app.seq_1_to_500", base+i*500),
					fmt.Sprintf("INSERT INTO app.other VALUES (%d)", 1000*len(tc.name)+i))
			}
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			n := 3
			for {
				m, err := c.Next(ctx)
				if err != nil {
					var lost *sdk.EventsLostError
					if !errors.As(err, &lost) {
						si, _ := mustJS(t, r).Stream(context.Background(), sdk.StreamName(r.Capture.Config.Source))
						info, _ := si.Info(context.Background())
						t.Logf("stream %+v", info.State)
						t.Fatalf("after %d events (last %d): %v; want events lost", n, last, err)
					}
					if lost.First != last+1 || lost.Last < lost.First {
						t.Errorf("lost %d to %d after reading up to %d", lost.First, lost.Last, last)
					}
					t.Logf("%d events, then %v", n, err)
					return
				}
				n++
				if tc.cfg.Tables == nil && last != 0 && m.Sequence != last+1 {
					t.Fatalf("sequence %d after %d without an error", m.Sequence, last)
				}
				last = m.Sequence
				if n >= 3+20*500 {
					// As many events as app.t got: the 4 MiB stream
					// cannot have kept them, yet no loss was reported.
					t.Fatalf("read %d events and no loss reported", n)
				}
			}
		})
	}
}
