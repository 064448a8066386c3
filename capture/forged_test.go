package capture_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// TestMessageCaptureDidNotPublishStopsItInsteadOfSkipping: a message
// published into the stream by someone else, at a position far ahead,
// must not make capture take it for its own and skip every change up to
// it. Capture stops naming the message; once it is removed, capture
// publishes every change it had not.
func TestMessageCaptureDidNotPublishStopsItInsteadOfSkipping(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	r.Start(t)
	r.DB.Exec(t, "INSERT INTO app.t VALUES (1)")
	testenv.Read(t, r.Consumer(t, sdk.Config{Start: sdk.StartBeginning, Tables: []string{"app.t"}}), 1)
	kv, err := mustJS(t, r).KeyValue(t.Context(), sdk.StateBucket(r.Capture.Config.Source))
	if err != nil {
		t.Fatal(err)
	}
	id := ""
	testenv.Eventually(t, 10*time.Second, func() error {
		cp, err := bus.LoadCheckpoint(t.Context(), kv)
		if err != nil || cp == nil || cp.CaptureID == "" {
			return errors.New("no checkpoint with a capture id yet")
		}
		id = cp.CaptureID
		return nil
	})
	if err := r.Stop(t); err != nil {
		t.Fatal(err)
	}
	s, err := mustJS(t, r).Stream(t.Context(), sdk.StreamName(r.Capture.Config.Source))
	if err != nil {
		t.Fatal(err)
	}

	forged := func(header string) uint64 {
		t.Helper()
		ev := sdk.Event{Version: 1, Source: "test", Op: sdk.OpInsert, Database: "app", Table: "t",
			Position: sdk.Position{File: "mysql-bin.999999", Offset: 4, ServerID: 1}, Txn: sdk.Txn{ID: "x", Last: true}}
		body, err := json.Marshal(ev)
		if err != nil {
			t.Fatal(err)
		}
		msg := &nats.Msg{Subject: sdk.Subject("test", "app", "t", sdk.OpInsert), Data: body, Header: nats.Header{}}
		if header != "" {
			msg.Header.Set(bus.CaptureHeader, header)
		}
		ack, err := mustJS(t, r).PublishMsg(t.Context(), msg)
		if err != nil {
			t.Fatal(err)
		}
		return ack.Sequence
	}
	for _, tc := range []struct {
		name, header, says string
	}{
		{"no capture id", "", "Databus-Capture header"},
		{"a copied capture id, a position beyond the binlog", id, "beyond the end of the server's binlog"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			seq := forged(tc.header)
			r.DB.Exec(t, fmt.Sprintf("INSERT INTO app.t VALUES (%d)", seq+100))
			r.Start(t)
			err := r.Stop(t)
			if !errors.Is(err, capture.ErrForeignMessage) || !strings.Contains(err.Error(), tc.says) || !strings.Contains(err.Error(), fmt.Sprint("sequence ", seq)) {
				t.Fatalf("capture: got %v; want it to stop on the foreign message %d saying %q", err, seq, tc.says)
			}
			if err := s.DeleteMsg(t.Context(), seq); err != nil {
				t.Fatal(err)
			}
			r.Start(t)
			got := testenv.Read(t, r.Consumer(t, sdk.Config{Start: sdk.StartAtSequence(seq + 1)}), 1)
			if fmt.Sprint(got[0].Key["id"]) != fmt.Sprint(seq+100) {
				t.Errorf("after removing the message: got %v, want the insert of %d", got[0].Key, seq+100)
			}
			if err := r.Stop(t); err != nil {
				t.Fatal(err)
			}
		})
	}
}
