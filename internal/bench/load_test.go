package bench

import (
	"context"
	"database/sql"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/databus/databus/apply"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

// BenchmarkSnapshotLoad loads a snapshot of the fixture's tables into an
// empty server with `databus apply --from snapshot` (in process) and
// reports rows/s, from its start until the target checkpoint records the
// last row.
func BenchmarkSnapshotLoad(b *testing.B) {
	f := loadTables(b)
	for b.Loop() {
		js, c, stop := captureIdle(b, f)
		man, err := snapshot.Take(b.Context(), testenv.SnapshotConfig(c.Config), c.NC, snapshot.Options{})
		if err != nil {
			b.Fatal(err)
		}
		f.checkSnapshot(b, man)
		dst := testenv.StartMariaDB(b)
		a, err := apply.New(apply.Config{TargetDSN: dst.DSN(""), NATSURL: js.URL, Source: c.Config.Source, Start: sdk.StartSnapshot, ProgressEvery: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		stopProfile := profileTimed(b, "BENCH_LOAD_PROFILE")
		cpu0, self0 := serverCPU(b, dst), cpuTime(os.Getpid())
		start := time.Now()
		go func() { done <- a.Run(ctx) }()
		db := dst.DB(b)
		for !loaded(db, man) {
			select {
			case err := <-done:
				b.Fatalf("apply stopped: %v", err)
			case <-time.After(20 * time.Millisecond):
			}
		}
		el := time.Since(start)
		cpu, self := serverCPU(b, dst)-cpu0, cpuTime(os.Getpid())-self0
		stopProfile()
		b.ReportMetric(self.Seconds()/el.Seconds(), "databus-cores")
		b.ReportMetric(cpu.Seconds()/el.Seconds(), "target-cores")
		cancel()
		<-done
		a.Close()
		stop()
		f.report(b, el)
	}
}

// loaded reports whether the target checkpoint records every row of man
// as loaded.
func loaded(db *sql.DB, man *sdk.Manifest) bool {
	var txnID string
	if db.QueryRow("SELECT txn_id FROM databus.apply_checkpoint").Scan(&txnID) != nil {
		return false
	}
	var at sdk.SnapshotProgress
	js, ok := strings.CutPrefix(txnID, "loading snapshot ")
	return ok && json.Unmarshal([]byte(js), &at) == nil && man.RowsBefore(at) == man.Rows
}

// BenchmarkSnapshotLoadMariadb loads `mariadb-dump` output of the same
// tables into an empty server with `mariadb < dump.sql`: the yardstick for
// BenchmarkSnapshotLoad. The dump is taken before the clock starts.
func BenchmarkSnapshotLoadMariadb(b *testing.B) {
	f := loadTables(b)
	file := dumpDatabase(b, f.db, "shop")
	for b.Loop() {
		dst := testenv.StartMariaDB(b)
		cpu0 := serverCPU(b, dst)
		start := time.Now()
		restore(b, dst, file)
		el := time.Since(start)
		f.report(b, el)
		b.ReportMetric((serverCPU(b, dst)-cpu0).Seconds()/el.Seconds(), "target-cores")
	}
}
