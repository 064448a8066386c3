package capture_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// heldLease is a lease its holder believes it holds: Wait never fails. It
// stands for a node that was frozen past its lease and has not noticed
// yet that another node took over, or whose clock is wrong.
type heldLease struct {
	term uint64
	node string
}

func (l heldLease) Wait() error  { return nil }
func (l heldLease) Term() uint64 { return l.term }
func (l heldLease) Node() string { return l.node }

// A capture that lost its lease without knowing it writes nothing more
// once the new leader started: the stream's leader message of the newer
// term stops its next session, and the new leader's sessions and
// checkpoint are untouched. The stream holds every change once.
func TestNewLeaderFencesOffTheOldOne(t *testing.T) {
	r := testenv.NewRig(t, func(c *capture.Config) { c.Lease = heldLease{term: 1, node: "old"} })
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	old := capture.New(r.Capture.Config, r.NC)
	oldDone := make(chan error, 1)
	go func() { oldDone <- old.Run(ctx) }()
	testenv.Eventually(t, 20*time.Second, func() error {
		if !old.Status().Streaming {
			return errors.New("the old leader is not streaming yet")
		}
		return nil
	})
	r.DB.Exec(t, "INSERT INTO app.t VALUES (1)")
	js, err := jetstream.New(r.NC)
	if err != nil {
		t.Fatal(err)
	}
	testenv.WaitEvents(t, js, "test", 1)

	// The new leader (term 2) starts while the old one still runs.
	newCfg := r.Capture.Config
	newCfg.Lease = heldLease{term: 2, node: "new"}
	newer := testenv.NewCapture(newCfg, r.JS.Conn(t))
	newer.Start(t)
	select {
	case err := <-oldDone:
		if !errors.Is(err, capture.ErrLeaseLost) {
			t.Fatalf("the old leader stopped with %v, want %v", err, capture.ErrLeaseLost)
		}
	case <-time.After(time.Minute):
		t.Fatal("the old leader still runs a minute after the new one started")
	}
	r.DB.Exec(t, "INSERT INTO app.t VALUES (2)", "INSERT INTO app.t VALUES (3)")
	testenv.WaitEvents(t, js, "test", 3)

	// Every change once, the term-2 leader message before the changes
	// after it, and the checkpoint the new leader's.
	c := r.Consumer(t, sdk.Config{Start: sdk.StartAtSequence(1)})
	evs := testenv.ReadUntilQuiet(t, c, 2*time.Second)
	var ids []any
	for _, ev := range evs {
		if ev.Op == sdk.OpInsert {
			ids = append(ids, ev.After["id"])
		}
	}
	if fmt.Sprint(ids) != "[1 2 3]" {
		t.Errorf("inserts in the stream: %v, want [1 2 3] once each", ids)
	}
	stream, err := js.Stream(t.Context(), sdk.StreamName(newCfg.Source))
	if err != nil {
		t.Fatal(err)
	}
	m, err := stream.GetLastMsgForSubject(t.Context(), sdk.LeaderSubject(newCfg.Source))
	if err != nil {
		t.Fatalf("no leader message: %v", err)
	}
	var lm capture.LeaderMessage
	if err := json.Unmarshal(m.Data, &lm); err != nil || lm.Term != 2 || lm.Node != "new" {
		t.Errorf("newest leader message %s (%v), want node new's of term 2", m.Data, err)
	}
	testenv.Eventually(t, 10*time.Second, func() error {
		kv, err := js.KeyValue(t.Context(), sdk.StateBucket(newCfg.Source))
		if err != nil {
			return err
		}
		cp, err := bus.LoadCheckpoint(t.Context(), kv)
		if err != nil || cp == nil || cp.StreamSeq < m.Sequence {
			return fmt.Errorf("checkpoint %+v (%v), want one past the new leader's message at %d", cp, err, m.Sequence)
		}
		return nil
	})
	if err := newer.Stop(t); err != nil {
		t.Errorf("the new leader: %v", err)
	}
}
