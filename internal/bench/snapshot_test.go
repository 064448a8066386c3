package bench

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/ops"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

// tableFixture is a server whose shop tables hold about
// BENCH_SNAPSHOT_ROWS rows, for the snapshot benchmarks. Its binlog is not
// read: capture starts at its end.
type tableFixture struct {
	db *testenv.MariaDB
	// rows is the number of rows in the tables.
	rows int64
	// dataBytes is the tables' information_schema DATA_LENGTH after
	// ANALYZE TABLE: the one definition of MB in both snapshot
	// benchmarks.
	dataBytes int64
}

var (
	tableOnce sync.Once
	tableFix  *tableFixture
)

// loadTables fills the shop tables of a server of their own with
// writeLoad's rows, BENCH_SNAPSHOT_ROWS inserts (default 1,050,000: about
// the 1,000,000 rows of issue 11's comparison with mariadb-dump) and the
// updates and deletes that follow them.
func loadTables(b *testing.B) *tableFixture {
	b.Helper()
	tableOnce.Do(func() {
		f := &tableFixture{db: testenv.StartMariaDB(&onceTB{b}, "--max-allowed-packet=256M", "--innodb-buffer-pool-size=256M")}
		f.db.Exec(b, shopSchema...)
		db := f.db.DB(b)
		writeLoad(b, db, envInt("BENCH_SNAPSHOT_ROWS", 1_050_000))
		f.db.Exec(b, "ANALYZE TABLE shop.customers, shop.orders, shop.items")
		settle(b, f.db)
		err := db.QueryRow("SELECT (SELECT COUNT(*) FROM shop.customers) + (SELECT COUNT(*) FROM shop.orders) + (SELECT COUNT(*) FROM shop.items)").Scan(&f.rows)
		if err != nil {
			b.Fatalf("counting the rows: %v", err)
		}
		if err := db.QueryRow("SELECT SUM(DATA_LENGTH) FROM information_schema.TABLES WHERE TABLE_SCHEMA = 'shop'").Scan(&f.dataBytes); err != nil {
			b.Fatalf("reading the tables' DATA_LENGTH: %v", err)
		}
		tableFix = f
	})
	if tableFix == nil {
		b.Fatal("table fixture failed to load")
	}
	return tableFix
}

// settle waits until the fixture's server is at rest, as a server whose
// tables were written a while ago is, so that the first benchmark to read
// it is not charged for the load's aftermath: InnoDB purges and flushes
// pages for several seconds after the load (CPU that the reading
// competes with), and about 100 MB of binlog sits in the page cache,
// which a snapshot's commit block (BACKUP STAGE BLOCK_COMMIT) would
// otherwise wait about 120 ms to sync. At rest is: its files synced and
// the server using under 2% of a core over half a second.
func settle(b *testing.B, db *testenv.MariaDB) {
	b.Helper()
	syscall.Sync()
	deadline := time.Now().Add(2 * time.Minute)
	for last := serverCPU(b, db); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		now := serverCPU(b, db)
		if now-last < 10*time.Millisecond {
			return
		}
		last = now
	}
	b.Fatal("the fixture's server kept using CPU for 2 minutes after the load")
}

// report reports the rate of reading every row of the fixture in el.
func (f *tableFixture) report(b *testing.B, el time.Duration) {
	b.ReportMetric(float64(f.rows)/el.Seconds(), "rows/s")
	b.ReportMetric(float64(f.dataBytes)/1e6/el.Seconds(), "MB/s")
	b.ReportMetric(float64(f.dataBytes)/1e6, "table-MB")
}

// checkSnapshot fails the benchmark unless man holds every row of the
// fixture.
func (f *tableFixture) checkSnapshot(b *testing.B, man *sdk.Manifest) {
	b.Helper()
	if man.Rows != f.rows {
		b.Fatalf("snapshot %s holds %d rows, want %d", man.ID, man.Rows, f.rows)
	}
	b.ReportMetric(float64(man.StoredBytes)/1e6, "stored-MB")
}

// captureIdle starts a JetStream and an in-process capture of the
// fixture's server, which a snapshot needs for its handoff. Nothing writes
// while the snapshot runs, so capture is idle. stop ends both, so that
// one iteration's capture does not compete with the next one's (two
// captures with the same server id take turns evicting each other).
func captureIdle(b *testing.B, f *tableFixture) (js *testenv.JetStream, c *testenv.Capture, stop func()) {
	b.Helper()
	js = testenv.StartJetStream(b)
	cfg := testenv.CaptureConfig(f.db)
	cfg.Source = "snap"
	c = testenv.NewCapture(cfg, js.Conn(b))
	c.Start(b)
	return js, c, func() {
		if err := c.Stop(b); err != nil && !errors.Is(err, context.Canceled) {
			b.Fatalf("idle capture: %v", err)
		}
		js.Server.Close()
	}
}

// runMeasured runs cmd to completion and returns how long it took, its
// peak RSS in MiB and the CPU time (user and system) it used. The peak is VmHWM sampled from /proc every 10ms: the
// rusage of a child of a Go process includes the parent's peak, as the
// child starts as a clone sharing the parent's memory.
func runMeasured(cmd *exec.Cmd) (time.Duration, float64, time.Duration, error) {
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, 0, err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	peak := 0
	for {
		select {
		case err := <-done:
			el := time.Since(start)
			return el, float64(peak) / 1024, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), err
		case <-tick.C:
			peak = max(peak, peakRSS(cmd.Process.Pid))
		}
	}
}

// BenchmarkSnapshotLocal runs `databus snapshot --local` (the binary
// takes the snapshot itself, reading MySQL; capture runs in the harness
// process, idle) of the fixture's tables into a file-backed JetStream
// Object Store, and reports rows/s, MB/s of table data and the binary's
// peak RSS: the snapshot with the start of a process of its own.
func BenchmarkSnapshotLocal(b *testing.B) {
	f := loadTables(b)
	bin := buildBinary(b)
	for b.Loop() {
		js, c, stop := captureIdle(b, f)
		cmd := exec.Command(bin, "snapshot", "--local") // its own process: its peak RSS is measured
		cmd.Env = append(os.Environ(), "DATABUS_HTTP_LISTEN=", "DATABUS_SOURCE="+c.Config.Source, "DATABUS_MYSQL_ADDR="+f.db.Addr(), "DATABUS_NATS_URL="+js.URL,
			"DATABUS_DATA_DIR="+b.TempDir(), "DATABUS_LOG_LEVEL=warn")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		server0, harness0 := serverCPU(b, f.db), cpuTime(os.Getpid())
		el, rss, cpu, err := runMeasured(cmd)
		server, harness := serverCPU(b, f.db)-server0, cpuTime(os.Getpid())-harness0
		if err != nil {
			b.Fatalf("databus snapshot: %v\n%s", err, out.Bytes())
		}
		f.checkSnapshot(b, latestSnapshot(b, c.NC, c.Config.Source))
		f.report(b, el)
		b.ReportMetric(rss, "peak-RSS-MiB")
		b.ReportMetric(cpu.Seconds(), "databus-CPU-s")
		b.ReportMetric(server.Seconds(), "server-CPU-s")
		b.ReportMetric(harness.Seconds(), "JetStream-CPU-s")
		stop()
	}
}

// BenchmarkSnapshotRequested runs `databus snapshot` as users run it: the
// command asks the running `databus run` that captures the fixture's
// server, with its embedded NATS server (the default), to take the
// snapshot, and waits until it is stored. The clock covers the command,
// from its start to its exit. The node is warm: it took its first snapshot
// as it started (snapshot.on_start), before the first iteration. Each
// iteration runs BENCH_SNAPSHOT_PAIRS (default 3) pairs of the command
// and, right after it, mariadb-dump of the same tables, and reports the
// medians: rows/s, the paired dump's rows/s, and vs-paired-dump, the
// median of the pairs' ratios. On this shared machine the speed of both
// moves by ±20% over minutes, so a comparison with a dump run minutes
// apart (the SnapshotMariadbDump benchmark) says more about the machine
// than about databus.
func BenchmarkSnapshotRequested(b *testing.B) { benchRequested(b, false) }

// BenchmarkSnapshotRequestedExternalNATS is BenchmarkSnapshotRequested
// with `databus run` using a NATS server of its own (nats.url), in the
// harness process, as a cluster's nodes do.
func BenchmarkSnapshotRequestedExternalNATS(b *testing.B) { benchRequested(b, true) }

func benchRequested(b *testing.B, externalNATS bool) {
	f := loadTables(b)
	bin := buildBinary(b)
	const source = "requested"
	env := append(os.Environ(), "DATABUS_HTTP_LISTEN=", "DATABUS_SOURCE="+source, "DATABUS_MYSQL_ADDR="+f.db.Addr(),
		"DATABUS_DATA_DIR="+b.TempDir(), "DATABUS_LOG_LEVEL=warn")
	var natsURL string
	if externalNATS {
		natsURL = testenv.StartJetStream(b).URL
		env = append(env, "DATABUS_NATS_URL="+natsURL)
	} else {
		listen := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(b))
		natsURL = "nats://" + listen
		env = append(env, "DATABUS_NATS_LISTEN="+listen)
	}
	node := exec.Command(bin, "run")
	node.Env = env
	var nodeOut bytes.Buffer
	node.Stdout, node.Stderr = &nodeOut, &nodeOut
	if err := node.Start(); err != nil {
		b.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- node.Wait() }()
	defer func() {
		_ = node.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = node.Process.Kill()
		}
	}()
	var nc *nats.Conn // the embedded server listens once databus run has started it
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		var err error
		if nc, err = nats.Connect(natsURL); err == nil {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("connecting to %s: %v\n%s", natsURL, err, nodeOut.Bytes())
		}
	}
	defer nc.Close()
	jsc, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	for deadline := time.Now().Add(2 * time.Minute); ; time.Sleep(50 * time.Millisecond) {
		if _, err := sdk.LatestSnapshot(b.Context(), jsc, source); err == nil {
			break
		}
		select {
		case err := <-exited:
			b.Fatalf("databus run exited: %v\n%s", err, nodeOut.Bytes())
		default:
		}
		if time.Now().After(deadline) {
			b.Fatalf("databus run stored no first snapshot within 2 minutes\n%s", nodeOut.Bytes())
		}
	}
	pairs := envInt("BENCH_SNAPSHOT_PAIRS", 3)
	for b.Loop() {
		var ours, dumps, ratios, commandCPU, nodeCPU, serverCPUs, harnessCPU, taking []float64
		for range pairs {
			// Snapshot ids are to the second, and one that starts in the
			// second of the one before waits for the next: start each in a
			// second of its own, before the clock starts.
			b.StopTimer()
			now := time.Now()
			time.Sleep(now.Truncate(time.Second).Add(time.Second).Sub(now))
			b.StartTimer()
			cmd := exec.Command(bin, "snapshot")
			cmd.Env = env
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			server0, node0, harness0 := serverCPU(b, f.db), cpuTime(node.Process.Pid), cpuTime(os.Getpid())
			el, _, cpu, err := runMeasured(cmd)
			if err != nil || !bytes.Contains(out.Bytes(), []byte("taken by")) {
				b.Fatalf("databus snapshot (through databus run): %v\n%s", err, out.Bytes())
			}
			b.StopTimer()
			// The node answers once the snapshot is the latest and then
			// deletes the old ones: its CPU and the dump's run come after.
			nodeIdle(b, nc, source)
			server, nodeUsed, harness := serverCPU(b, f.db)-server0, cpuTime(node.Process.Pid)-node0, cpuTime(os.Getpid())-harness0
			man := latestSnapshot(b, nc, source)
			f.checkSnapshot(b, man)
			d := f.dump(b)
			b.StartTimer()
			ours, dumps = append(ours, float64(f.rows)/el.Seconds()), append(dumps, float64(f.rows)/d.elapsed.Seconds())
			ratios = append(ratios, d.elapsed.Seconds()/el.Seconds())
			// The node's own time for the snapshot, from its id to its
			// manifest: the rest of the command's is its process, the
			// request, and what the node does before and after.
			taking = append(taking, man.Finished.Sub(man.Started).Seconds())
			commandCPU, nodeCPU = append(commandCPU, cpu.Seconds()), append(nodeCPU, nodeUsed.Seconds())
			serverCPUs, harnessCPU = append(serverCPUs, server.Seconds()), append(harnessCPU, harness.Seconds())
		}
		rows := median(ours)
		b.ReportMetric(rows, "rows/s")
		b.ReportMetric(rows*float64(f.dataBytes)/float64(f.rows)/1e6, "MB/s")
		b.ReportMetric(float64(f.dataBytes)/1e6, "table-MB")
		b.ReportMetric(median(dumps), "paired-dump-rows/s")
		b.ReportMetric(median(ratios), "vs-paired-dump")
		b.ReportMetric(median(taking), "taking-s")
		b.ReportMetric(median(commandCPU), "command-CPU-s")
		b.ReportMetric(median(nodeCPU), "node-CPU-s")
		b.ReportMetric(median(serverCPUs), "server-CPU-s")
		if externalNATS {
			b.ReportMetric(median(harnessCPU), "JetStream-CPU-s")
		}
	}
}

// nodeIdle waits until source's databus run takes no snapshot.
func nodeIdle(b *testing.B, nc *nats.Conn, source string) {
	b.Helper()
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(5 * time.Millisecond) {
		infos, err := ops.Infos(b.Context(), nc, source, ops.Waits{First: time.Second, More: 20 * time.Millisecond})
		if err == nil && len(infos) > 0 && infos[0].Snapshot.Running == nil {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("databus run still takes a snapshot a minute after answering (%v, %+v)", err, infos)
		}
	}
}

// median returns the median of vs (the mean of the middle two of an even
// number).
func median(vs []float64) float64 {
	s := slices.Sorted(slices.Values(vs))
	if len(s) == 0 {
		return 0
	}
	return (s[(len(s)-1)/2] + s[len(s)/2]) / 2
}

// BenchmarkSnapshotInProcess is BenchmarkSnapshotLocal with [snapshot.Take]
// in the test process, for profiling (-cpuprofile, -memprofile).
func BenchmarkSnapshotInProcess(b *testing.B) {
	f := loadTables(b)
	stopProfile := profileTimed(b, "BENCH_SNAPSHOT_PROFILE") // every iteration, with its JetStream's and capture's start
	defer stopProfile()
	for b.Loop() {
		_, c, stop := captureIdle(b, f)
		start := time.Now()
		man, err := snapshot.Take(b.Context(), testenv.SnapshotConfig(c.Config), c.NC, snapshot.Options{})
		el := time.Since(start)
		if err != nil {
			b.Fatal(err)
		}
		f.checkSnapshot(b, man)
		f.report(b, el)
		stop()
	}
}

// BenchmarkSnapshotMariadbDump runs `mariadb-dump --single-transaction` of
// the same tables, over TCP like databus, to /dev/null: the yardstick for
// the snapshot benchmarks.
func BenchmarkSnapshotMariadbDump(b *testing.B) {
	f := loadTables(b)
	for b.Loop() {
		d := f.dump(b)
		f.report(b, d.elapsed)
		b.ReportMetric(d.rss, "peak-RSS-MiB")
		b.ReportMetric(d.cpu.Seconds(), "dump-CPU-s")
		b.ReportMetric(d.server.Seconds(), "server-CPU-s")
	}
}

// dumpRun is how one mariadb-dump of the fixture went.
type dumpRun struct {
	elapsed, cpu, server time.Duration
	rss                  float64
}

// dump runs `mariadb-dump --single-transaction` of the fixture's tables
// over TCP to /dev/null.
func (f *tableFixture) dump(b *testing.B) dumpRun {
	b.Helper()
	bin, err := exec.LookPath("mariadb-dump")
	if err != nil {
		b.Fatalf("mariadb-dump is needed to compare snapshots with: %v (Debian/Ubuntu: apt-get install mariadb-client)", err)
	}
	host, port := splitAddr(b, f.db.Addr())
	null, err := os.OpenFile(os.DevNull, os.O_WRONLY, 0)
	if err != nil {
		b.Fatal(err)
	}
	defer null.Close()
	cmd := exec.Command(bin, "--single-transaction", "--protocol=TCP", "--host="+host, "--port="+strconv.Itoa(int(port)), "--user=root", "shop")
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = null, &stderr
	server0 := serverCPU(b, f.db)
	var d dumpRun
	d.elapsed, d.rss, d.cpu, err = runMeasured(cmd)
	d.server = serverCPU(b, f.db) - server0
	if err != nil {
		b.Fatalf("mariadb-dump: %v\n%s", err, stderr.Bytes())
	}
	return d
}

// latestSnapshot returns the manifest of source's latest snapshot.
func latestSnapshot(b *testing.B, nc *nats.Conn, source string) *sdk.Manifest {
	b.Helper()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	man, err := sdk.LatestSnapshot(b.Context(), js, source)
	if err != nil {
		b.Fatal(err)
	}
	return man
}
