package capture_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

// nextTxn returns the next transaction of c as "ID-less" text: each event
// as op:table:id, then "+" when the transaction is complete.
func nextTxn(t *testing.T, c *sdk.Consumer) (*sdk.Transaction, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	tx, err := c.NextTxn(ctx)
	if err != nil {
		t.Fatalf("NextTxn: %v", err)
	}
	var parts []string
	for _, e := range tx.Events() {
		if e.Txn.ID != tx.ID {
			t.Errorf("event of transaction %s in transaction %s", e.Txn.ID, tx.ID)
		}
		parts = append(parts, fmt.Sprintf("%s:%s:%v", e.Op, e.Table, e.Key["id"]))
	}
	s := strings.Join(parts, " ")
	if tx.Complete {
		s += " +"
	}
	return tx, s
}

func TestNextTxnHandsOverWholeTransactions(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app",
		"CREATE TABLE app.a (id INT PRIMARY KEY)", "CREATE TABLE app.b (id INT PRIMARY KEY)",
		"INSERT INTO app.a VALUES (1)")
	r.Start(t)
	if _, err := r.Snapshot(t.Context(), snapshot.Options{}); err != nil {
		t.Fatalf("snapshot.Take: %v", err)
	}
	all := r.Consumer(t, sdk.Config{Name: "all", Start: sdk.StartSnapshot, Tables: []string{"app.a", "app.b"}})
	// Filters that cover everything captured are still filters: use a
	// consumer without any as well.
	whole := r.Consumer(t, sdk.Config{Name: "whole", Start: sdk.StartNow})
	onlyA := r.Consumer(t, sdk.Config{Name: "only-a", Start: sdk.StartNow, Tables: []string{"app.a"}})
	parts := r.Consumer(t, sdk.Config{Start: sdk.StartNow, MaxTxnEvents: 4})

	r.DB.Exec(t,
		"BEGIN", "INSERT INTO app.a VALUES (2), (3)", "INSERT INTO app.b VALUES (2)", "COMMIT",
		"INSERT INTO app.a VALUES (4), (5), (6), (7), (8), (9), (10), (11), (12), (13)",
		"BEGIN", "INSERT INTO app.b VALUES (3)", "INSERT INTO app.a VALUES (14)", "COMMIT",
		"BEGIN", "INSERT INTO app.a VALUES (15)", "INSERT INTO app.b VALUES (4)", "COMMIT",
	)
	// Each table of the snapshot is one transaction.
	for _, w := range []string{"ddl:a:<nil> insert:a:1 +", "ddl:b:<nil> +"} {
		tx, got := nextTxn(t, all)
		if !strings.HasPrefix(tx.ID, "snapshot:") || got != w {
			t.Errorf("snapshot table as one transaction: got %s %q, want %q", tx.ID, got, w)
		}
	}
	want := []string{
		"insert:a:2 insert:a:3 insert:b:2 +",
		"insert:a:4 insert:a:5 insert:a:6 insert:a:7 insert:a:8 insert:a:9 insert:a:10 insert:a:11 insert:a:12 insert:a:13 +",
		"insert:b:3 insert:a:14 +",
	}
	for _, c := range []*sdk.Consumer{all, whole} {
		for i, w := range want {
			tx, got := nextTxn(t, c)
			if got != w {
				t.Errorf("transaction %d: got %q, want %q", i, got, w)
			}
			if i == 0 {
				if err := tx.Ack(t.Context()); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	// The last event of the first and the last transaction is not for
	// this consumer: each still ends, at the next transaction or, with
	// nothing after it, when capture has moved past it.
	for i, w := range []string{"insert:a:2 insert:a:3 +", want[1], "insert:a:14 +", "insert:a:15 +"} {
		if _, got := nextTxn(t, onlyA); got != w {
			t.Errorf("filtered transaction %d: got %q, want %q", i, got, w)
		}
	}
	for i, w := range []string{want[0], "insert:a:4 insert:a:5 insert:a:6 insert:a:7", "insert:a:8 insert:a:9 insert:a:10 insert:a:11", "insert:a:12 insert:a:13 +"} {
		if _, got := nextTxn(t, parts); got != w {
			t.Errorf("part %d of a transaction larger than MaxTxnEvents: got %q, want %q", i, got, w)
		}
	}
	// The acknowledgement of the first transaction covers all its events:
	// a durable consumer connected again resumes after it.
	all.Close()
	again := r.Consumer(t, sdk.Config{Name: "all", Tables: []string{"app.a", "app.b"}})
	if _, got := nextTxn(t, again); got != want[1] {
		t.Errorf("after reconnecting: got %q, want %q", got, want[1])
	}
}

func TestConsumersCarryOnByThemselvesAfterNATSRestarts(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	r.Start(t)
	durable := r.Consumer(t, sdk.Config{Name: "d", Start: sdk.StartBeginning})
	ephemeral := r.Consumer(t, sdk.Config{Start: sdk.StartNow, Tables: []string{"app.t"}})
	r.DB.Exec(t, "INSERT INTO app.t VALUES (1)", "INSERT INTO app.t VALUES (2)")
	for _, c := range []*sdk.Consumer{durable, ephemeral} {
		testenv.Read(t, c, 2)
	}
	// NATS restarts; then the consumers are lost on the server (deleted,
	// as after a failover to a server without them).
	for round := range 2 {
		if round == 0 {
			r.JS.Restart(t)
		} else {
			js, err := jetstream.New(r.NC)
			if err != nil {
				t.Fatal(err)
			}
			s, err := js.Stream(t.Context(), sdk.StreamName(r.Config.Source))
			if err != nil {
				t.Fatal(err)
			}
			for name := range s.ConsumerNames(t.Context()).Name() {
				if err := s.DeleteConsumer(t.Context(), name); err != nil {
					t.Fatal(err)
				}
			}
		}
		first := 3 + 2*round
		r.DB.Exec(t, fmt.Sprintf("INSERT INTO app.t VALUES (%d)", first), fmt.Sprintf("INSERT INTO app.t VALUES (%d)", first+1))
		for name, c := range map[string]*sdk.Consumer{"durable": durable, "ephemeral": ephemeral} {
			var got []string
			for _, e := range testenv.Read(t, c, 2) {
				got = append(got, fmt.Sprint(e.Key["id"]))
			}
			if want := fmt.Sprintf("%d %d", first, first+1); strings.Join(got, " ") != want {
				t.Errorf("%s consumer after round %d: got ids %v, want %s", name, round+1, got, want)
			}
			testenv.None(t, c)
		}
	}
}

// An application that stores each event's sequence with its effects
// resumes from its own position, not from the server's acknowledgements.
func TestResumeStartsAfterTheApplicationsOwnPosition(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	r.Start(t)
	r.DB.Exec(t, "INSERT INTO app.t VALUES (1)", "INSERT INTO app.t VALUES (2)", "INSERT INTO app.t VALUES (3)",
		"INSERT INTO app.t VALUES (4)", "INSERT INTO app.t VALUES (5)")
	var stored uint64 // the application's database
	seqs := map[string]uint64{}
	cfg := sdk.Config{Name: "app", Start: sdk.StartBeginning, Tables: []string{"app.t"},
		Resume: func(context.Context) (uint64, error) { return stored, nil }}
	ids := func(c *sdk.Consumer, n int) string {
		var out []string
		for _, e := range testenv.Read(t, c, n) {
			out = append(out, fmt.Sprint(e.Key["id"]))
		}
		return strings.Join(out, " ")
	}

	c := r.Consumer(t, cfg)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	for range 3 { // effects stored, nothing acknowledged
		m, err := c.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		stored, seqs[fmt.Sprint(m.Event.Key["id"])] = m.Sequence, m.Sequence
	}
	c.Close()
	if got := ids(r.Consumer(t, cfg), 2); got != "4 5" {
		t.Errorf("after storing event 3 without acknowledging it: got %s, want 4 5", got)
	}
	// The application's store lost events 2 and 3 (a restore), while the
	// server has every event acknowledged: the application wins.
	stored = seqs["1"]
	if got := ids(r.Consumer(t, cfg), 4); got != "2 3 4 5" {
		t.Errorf("after the application's position went back: got %s, want 2 3 4 5", got)
	}
}
