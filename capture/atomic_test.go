package capture_test

import (
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// streamContents reads every message of the source's stream as a plain
// NATS client would: each event as op:table:id, and each message's
// Nats-Batch-Id.
func streamContents(t *testing.T, js jetstream.JetStream, source string) (events, batches []string) {
	t.Helper()
	s, err := js.Stream(t.Context(), sdk.StreamName(source))
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := s.GetMsg(t.Context(), seq)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		ev, err := sdk.DecodeEvent(m.Data)
		if err != nil {
			t.Fatalf("message %d: %v", seq, err)
		}
		events = append(events, fmt.Sprintf("%s:%s:%v", ev.Op, ev.Table, ev.Key["id"]))
		batches = append(batches, m.Header.Get("Nats-Batch-Id"))
	}
	return events, batches
}

// A capture killed in the middle of a multi-row, multi-table transaction
// leaves none of it in the stream when transactions are atomic batches,
// and the part it published when they are not. Either way the restarted
// capture completes the stream without duplicates.
func TestKilledMidTransactionLeavesAllOrNothingOfIt(t *testing.T) {
	first := []string{"insert:a:1", "insert:b:1"}
	second := []string{"insert:a:2", "insert:a:3", "insert:b:2", "update:a:3", "delete:b:1"}
	for _, tc := range []struct {
		atomic bool
		// left is what the stream holds of the second transaction
		// after the kill.
		left []string
	}{
		{atomic: true, left: nil},
		{atomic: false, left: second[:3]},
	} {
		t.Run(fmt.Sprintf("atomic=%v", tc.atomic), func(t *testing.T) {
			// Killed after both messages of the first transaction and
			// three of the second.
			r := testenv.NewRig(t, capture.CrashAfter(len(first)+3), func(c *capture.Config) { c.Stream.AtomicTransactions = tc.atomic })
			r.DB.Exec(t, "CREATE DATABASE app",
				"CREATE TABLE app.a (id INT PRIMARY KEY, v INT)", "CREATE TABLE app.b (id INT PRIMARY KEY, v INT)")
			r.Start(t)
			r.DB.Exec(t,
				"BEGIN", "INSERT INTO app.a VALUES (1, 0)", "INSERT INTO app.b VALUES (1, 0)", "COMMIT",
				"BEGIN", "INSERT INTO app.a VALUES (2, 0), (3, 0)", "INSERT INTO app.b VALUES (2, 0)",
				"UPDATE app.a SET v = 1 WHERE id = 3", "DELETE FROM app.b WHERE id = 1", "COMMIT")
			testenv.Eventually(t, 20*time.Second, func() error {
				if !strings.Contains(r.Status().LastError, "test crash") {
					return errors.New("capture has not crashed yet")
				}
				return nil
			})
			if err := r.Stop(t); err == nil || !strings.Contains(err.Error(), "test crash") {
				t.Fatalf("capture stopped with %v, want the simulated crash", err)
			}
			js, err := jetstream.New(r.NC)
			if err != nil {
				t.Fatal(err)
			}
			// A publish on capture's connection that the stream refuses:
			// its answer comes after the stream has handled everything
			// capture sent before it.
			probe := &nats.Msg{Subject: sdk.Subject(r.Config.Source, "app", "probe", sdk.OpInsert), Data: []byte("{}")}
			if _, err := js.PublishMsg(t.Context(), probe, jetstream.WithExpectLastSequence(1<<62)); err == nil {
				t.Fatal("the probe was stored")
			}
			got, batches := streamContents(t, js, r.Config.Source)
			if want := slices.Concat(first, tc.left); !slices.Equal(got, want) {
				t.Fatalf("stream after the kill: got %v, want %v", got, want)
			}
			if tc.atomic && (batches[0] == "" || batches[1] != batches[0]) {
				t.Errorf("first transaction: batch ids %q, want one batch", batches)
			}

			capture.CrashAfter(0)(&r.Config)
			r.Start(t)
			testenv.Eventually(t, 20*time.Second, func() error {
				got, _ := streamContents(t, js, r.Config.Source)
				if want := slices.Concat(first, second); !slices.Equal(got, want) {
					return fmt.Errorf("stream after the restart: got %v, want %v", got, want)
				}
				return nil
			})
			if _, batches := streamContents(t, js, r.Config.Source); tc.atomic {
				for _, b := range batches[3:] {
					if b != batches[2] || b == "" || b == batches[0] {
						t.Errorf("second transaction: batch ids %q, want one batch", batches[2:])
					}
				}
			}
		})
	}
}

// A row too large for one message is chunked outside any atomic batch: the
// rows of its transaction before it are committed as a batch first, those
// after it form another, and the transaction still arrives whole and in
// order.
func TestTransactionWithAChunkedRowArrivesWholeInOrder(t *testing.T) {
	r := &testenv.Rig{DB: testenv.StartMariaDB(t, "--max-allowed-packet=128M"), JS: testenv.StartJetStream(t)}
	r.NC = r.JS.Conn(t)
	cfg := testenv.CaptureConfig(r.DB)
	cfg.Stream.AtomicTransactions = true
	r.Capture = testenv.NewCapture(cfg, r.NC)
	r.DB.Exec(t, "CREATE DATABASE big", "CREATE TABLE big.files (id INT PRIMARY KEY, body LONGBLOB)")
	r.Start(t)
	c := r.Consumer(t, sdk.Config{Start: sdk.StartNow})

	blob := strings.Repeat("0123456789abcdef", 1<<20) // 16 MiB: several chunks
	tx, err := r.DB.DB(t).Begin()
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{"INSERT INTO big.files VALUES (1, 'a'), (2, 'b')", nil},
		{"INSERT INTO big.files VALUES (3, ?)", []any{blob}},
		{"INSERT INTO big.files VALUES (4, 'c'), (5, 'd')", nil},
	} {
		if _, err := tx.Exec(q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := tx.Commit(); err != nil {
		t.Fatal(err)
	}
	r.DB.Exec(t, "INSERT INTO big.files VALUES (6, 'e'), (7, 'f')")
	for i, want := range []string{
		"insert:files:1 insert:files:2 insert:files:3 insert:files:4 insert:files:5 +",
		"insert:files:6 insert:files:7 +",
	} {
		tx, got := nextTxn(t, c)
		if got != want {
			t.Errorf("transaction %d: got %q, want %q", i, got, want)
		}
		if i == 0 {
			// Binary columns arrive as base64.
			body, err := base64.StdEncoding.DecodeString(fmt.Sprint(tx.Events()[2].After["body"]))
			if err != nil || string(body) != blob {
				t.Errorf("the chunked row's body differs from the %d bytes written (%v)", len(blob), err)
			}
		}
	}
}
