package sdk_test

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// A consumer started at a commit time, a GTID set or a binlog position
// begins at the first event after that point, found in a real stream:
// times between transactions, a GTID set that ends before or after a large
// transaction, positions, and points the stream cannot serve.
func TestStartAtTimeGTIDAndPosition(t *testing.T) {
	r := testenv.NewRig(t)
	r.DB.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	r.Start(t)
	// Three transactions, with the commit times the binlog records set by
	// the session's timestamp: 100 s apart, in the future so that the DDL
	// above comes first; the second is large.
	base := time.Now().Add(time.Hour).Truncate(time.Second)
	db := r.DB.DB(t)
	conn, err := db.Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	const big = 3000
	for i, stmt := range []string{
		"INSERT INTO app.t VALUES (1)",
		fmt.Sprintf("INSERT INTO app.t SELECT seq FROM app.seq_2_to_%d", big+1),
		fmt.Sprintf("INSERT INTO app.t VALUES (%d)", big+2),
	} {
		for _, q := range []string{fmt.Sprintf("SET TIMESTAMP = %d", base.Add(time.Duration(i)*100*time.Second).Unix()), "BEGIN", stmt, "COMMIT"} {
			if _, err := conn.ExecContext(t.Context(), q); err != nil {
				t.Fatalf("%s: %v", q, err)
			}
		}
	}
	all := testenv.Read(t, r.Consumer(t, sdk.Config{Start: sdk.StartBeginning, Tables: []string{"app.t"}}), big+2)
	first, second, third := all[0], all[1], all[big+1]
	if !first.Timestamp.Equal(base) || second.Txn.ID == first.Txn.ID || third.Txn.ID == second.Txn.ID || all[big].Txn.ID != second.Txn.ID {
		t.Fatalf("setup: events %s at %s, %s at %s, %s at %s", first.Txn.ID, first.Timestamp, second.Txn.ID, second.Timestamp, third.Txn.ID, third.Timestamp)
	}
	id := func(ev *sdk.Event) string { return fmt.Sprint(ev.After["id"]) }
	// The GTID set that ends right before the first transaction, which is
	// also the stream's first event.
	var domain, server, seq int
	if _, err := fmt.Sscanf(first.Txn.ID, "%d-%d-%d", &domain, &server, &seq); err != nil {
		t.Fatalf("GTID %q: %v", first.Txn.ID, err)
	}
	beforeFirst := fmt.Sprintf("%d-%d-%d", domain, server, seq-1)
	// The large transaction's rows come in several binlog row events; the
	// rows of one share its end offset.
	mid := 2
	for mid <= big && all[mid].Position.Offset == all[mid-1].Position.Offset {
		mid++
	}
	if mid > big {
		t.Fatalf("setup: the large transaction is one row event: %s to %s", all[1].Position, all[big].Position)
	}
	for _, tt := range []struct {
		name  string
		start sdk.Start
		want  *sdk.Event
	}{
		{"time of the first transaction", sdk.StartAtTime(base), first},
		{"time just after the first", sdk.StartAtTime(base.Add(time.Second)), second},
		{"time between the second and third", sdk.StartAtTime(base.Add(150 * time.Second)), third},
		{"time of the third, with a fraction", sdk.StartAtTime(base.Add(200*time.Second + 500*time.Millisecond)), third},
		{"GTID set ending right before the stream's first event", sdk.StartAtGTID(beforeFirst), first},
		{"GTID of the first", sdk.StartAtGTID(first.Txn.ID), second},
		{"GTID of the large one", sdk.StartAtGTID(second.Txn.ID), third},
		{"position of the first", sdk.StartAtPosition(first.Position.File, first.Position.Offset), second},
		{"position inside the large one", sdk.StartAtPosition(all[mid-1].Position.File, all[mid-1].Position.Offset), all[mid]},
		{"position of the large one's end", sdk.StartAtPosition(all[big].Position.File, all[big].Position.Offset), third},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := r.Consumer(t, sdk.Config{Start: tt.start, Tables: []string{"app.t"}})
			got := testenv.Read(t, c, 1)[0]
			if id(got) != id(tt.want) || got.Txn.ID != tt.want.Txn.ID {
				t.Errorf("starts at row %s of %s, want row %s of %s", id(got), got.Txn.ID, id(tt.want), tt.want.Txn.ID)
			}
		})
	}

	// Points the stream cannot serve.
	for _, tt := range []struct {
		name  string
		start sdk.Start
		says  string
	}{
		{"time before the first event", sdk.StartAtTime(time.Now().Add(-24 * time.Hour)), "older than the first event"},
		{"GTID set ending two before the first event", sdk.StartAtGTID(fmt.Sprintf("%d-%d-%d", domain, server, seq-2)), "older than the first event"},
		{"time in the future", sdk.StartAtTime(base.Add(24 * time.Hour)), "past the newest event"},
		{"GTID past the end", sdk.StartAtGTID(fmt.Sprintf("%d-1-999999", domain)), "past the newest event"},
		{"position past the end", sdk.StartAtPosition(third.Position.File, third.Position.Offset+100_000), "past the newest event"},
		{"position before the first", sdk.StartAtPosition("mysql-bin.000000", 4), "older than the first event"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := sdk.Connect(t.Context(), sdk.Config{Conn: r.NC, Source: r.Capture.Config.Source, Start: tt.start})
			if err == nil {
				c.Close()
				t.Fatalf("start at %s: no error", tt.start)
			}
			if !errors.Is(err, sdk.ErrStartNotKept) || !strings.Contains(err.Error(), tt.says) || !strings.Contains(err.Error(), "sequence") {
				t.Errorf("start at %s: %v; want ErrStartNotKept saying %q and what the stream keeps", tt.start, err, tt.says)
			}
		})
	}
	// A durable consumer that exists resumes where it stopped, whatever
	// start point it is given again (no search, no refusal).
	durable := sdk.Config{Conn: r.NC, Source: r.Capture.Config.Source, Name: "from-gtid", Start: sdk.StartAtGTID(second.Txn.ID), Tables: []string{"app.t"}}
	c, err := sdk.Connect(t.Context(), durable)
	if err != nil {
		t.Fatal(err)
	}
	if got := testenv.Read(t, c, 1)[0]; id(got) != id(third) {
		t.Fatalf("durable consumer starts at row %s, want %s", id(got), id(third))
	}
	c.Close()
	durable.Start = sdk.StartAtTime(time.Now().Add(-24 * time.Hour)) // not kept: refused for a new consumer
	c, err = sdk.Connect(t.Context(), durable)
	if err != nil {
		t.Fatalf("restarting the durable consumer with another start point: %v", err)
	}
	testenv.None(t, c)
	c.Close()

	_, err = sdk.Connect(t.Context(), sdk.Config{Conn: r.NC, Source: r.Capture.Config.Source, Start: sdk.StartAtGTID("0-1")})
	if err == nil || !strings.Contains(err.Error(), "0-1") {
		t.Errorf("a bad GTID set: got %v, want an error naming it", err)
	}
}
