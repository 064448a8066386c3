package snapshot_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

// Tables read in parallel, on several connections, see one read view: money
// moved between tables by a write load that never pauses is never counted
// twice or lost in a snapshot, and the snapshot followed by the stream after
// it mirrors the source exactly.
func TestParallelSnapshotUnderWriteLoadIsOneReadView(t *testing.T) {
	const tables, rowsPerTable, start = 4, 200, 1000
	setup := []string{"CREATE DATABASE bank"}
	for i := range tables {
		setup = append(setup, fmt.Sprintf("CREATE TABLE bank.t%d (id INT PRIMARY KEY, balance BIGINT NOT NULL)", i))
	}
	r := testenv.NewRig(t)
	target := testenv.StartMariaDB(t)
	r.DB.Exec(t, setup...)
	target.Exec(t, "CREATE DATABASE bank")
	for i := range tables {
		r.DB.Exec(t, fmt.Sprintf("INSERT INTO bank.t%d SELECT seq, %d FROM bank.seq_1_to_%d", i, start, rowsPerTable))
	}
	r.Start(t)
	const total = tables * rowsPerTable * start

	// Transfers between two tables, as fast as the server takes them; new
	// empty accounts change the tables' row counts too.
	db := r.DB.DB(t)
	ctx, stopLoad := context.WithCancel(t.Context())
	loadDone := make(chan error, 1)
	go func() {
		rnd := rand.New(rand.NewPCG(1, 2))
		for n := 0; ctx.Err() == nil; n++ {
			from, to := rnd.IntN(tables), rnd.IntN(tables-1)
			if to >= from {
				to++
			}
			tx, err := db.BeginTx(ctx, nil)
			if err == nil {
				amount := 1 + rnd.IntN(50)
				_, err = tx.Exec(fmt.Sprintf("UPDATE bank.t%d SET balance = balance - ? WHERE id = ?", from), amount, 1+rnd.IntN(rowsPerTable))
				if err == nil {
					_, err = tx.Exec(fmt.Sprintf("UPDATE bank.t%d SET balance = balance + ? WHERE id = ?", to), amount, 1+rnd.IntN(rowsPerTable))
				}
				if err == nil && n%10 == 0 {
					_, err = tx.Exec(fmt.Sprintf("INSERT INTO bank.t%d VALUES (?, 0)", to), rowsPerTable+1+n)
				}
				if err == nil {
					err = tx.Commit()
				} else {
					_ = tx.Rollback()
				}
			}
			if err != nil && ctx.Err() == nil {
				loadDone <- err
				return
			}
		}
		loadDone <- nil
	}()

	parallel := 0
	var last *sdk.Manifest
	for i := range 4 {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond) // snapshot ids have a resolution of one second
		}
		man, err := r.Snapshot(t.Context(), snapshot.Options{Parallel: tables, ObjectBytes: 4 << 10,
			Progress: func(p snapshot.Progress) { parallel = max(parallel, p.Readers) }})
		if err != nil {
			t.Fatalf("snapshot %d: %v", i, err)
		}
		c := r.Consumer(t, sdk.Config{Start: sdk.StartSnapshot})
		sum := 0
		for _, ev := range testenv.Read(t, c, len(man.Tables)+int(man.Rows)) {
			if !ev.Snapshot {
				t.Fatalf("snapshot %s: event %s at %s is not a snapshot event; the manifest says %d rows", man.ID, ev.Op, ev.Position, man.Rows)
			}
			if ev.Op == sdk.OpInsert {
				n, err := strconv.Atoi(fmt.Sprint(ev.After["balance"]))
				if err != nil {
					t.Fatalf("balance %v: %v", ev.After["balance"], err)
				}
				sum += n
			}
		}
		if sum != total {
			t.Errorf("snapshot %s at %s, read by %d connections: balances add up to %d, want %d", man.ID, man.Position, parallel, sum, total)
		}
		last = man
	}
	if parallel < 2 {
		t.Errorf("the snapshots were read by at most %d connection, want up to %d: the test proves nothing", parallel, tables)
	}

	// The last snapshot and the changes after it mirror the source.
	c := r.Consumer(t, sdk.Config{Start: sdk.StartSnapshot})
	apply := func(evs []*sdk.Event) {
		for _, ev := range evs {
			target.Exec(t, ev.SQL)
		}
	}
	apply(testenv.Read(t, c, len(last.Tables)+int(last.Rows)))
	time.Sleep(200 * time.Millisecond) // some changes after the snapshot
	stopLoad()
	if err := <-loadDone; err != nil {
		t.Fatalf("write load: %v", err)
	}
	for {
		evs := testenv.ReadUntilQuiet(t, c, 2*time.Second)
		if len(evs) == 0 {
			break
		}
		apply(evs)
	}
	for i := range tables {
		table := fmt.Sprintf("bank.t%d", i)
		if a, b := r.DB.Checksum(t, table), target.Checksum(t, table); a != b {
			t.Errorf("%s: CHECKSUM TABLE source %s, target %s", table, a, b)
		}
	}
}
