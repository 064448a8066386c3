// Package bench measures databus against the physical limits of this
// machine: JetStream's publish rate, go-mysql's binlog decode rate, and
// databus' own streaming, latency, consumption and memory. Run it with
// `make bench`; numbers go to docs/performance.md. Nothing here asserts a
// time: benchmarks report, tests assert.
package bench

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

// fixture is a server whose binlog holds a pre-written load.
type fixture struct {
	db         *testenv.MariaDB
	start, end mysql.Position
	rows       int
	startCP    []byte // checkpoint JSON at start
	sample     []byte // one realistic event, for the publish limit
}

var (
	fixOnce sync.Once
	fix     *fixture
)

// shopSchema creates the three tables of realistic width that writeLoad
// fills.
var shopSchema = []string{
	"CREATE DATABASE shop",
	`CREATE TABLE shop.customers (id BIGINT UNSIGNED PRIMARY KEY, email VARCHAR(120), name VARCHAR(80), country CHAR(2),
	 created DATETIME(6), balance DECIMAL(14,2), flags INT UNSIGNED) DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE shop.orders (id BIGINT UNSIGNED PRIMARY KEY, customer_id BIGINT UNSIGNED, status ENUM('new','paid','shipped','done'),
	 total DECIMAL(12,2), currency CHAR(3), placed DATETIME(3), note VARCHAR(255), meta JSON, updated TIMESTAMP(3) NULL) DEFAULT CHARSET=utf8mb4`,
	`CREATE TABLE shop.items (order_id BIGINT UNSIGNED, line INT, sku VARCHAR(32), qty INT, price DECIMAL(10,2), PRIMARY KEY (order_id, line))`,
}

// loadFixture writes BENCH_ROWS row changes (default 300k) across
// three tables of realistic width, in transactions of 1 to 1000 rows.
func loadFixture(b *testing.B) *fixture {
	b.Helper()
	fixOnce.Do(func() {
		f := &fixture{db: testenv.StartMariaDB(&onceTB{b}, "--max-allowed-packet=256M")}
		f.db.Exec(b, shopSchema...)
		f.start = masterPos(b, f.db.DB(b))
		f.rows = writeLoad(b, f.db.DB(b), envInt("BENCH_ROWS", 300_000))
		f.end = masterPos(b, f.db.DB(b))
		fix = f
	})
	if fix == nil {
		b.Fatal("fixture failed to load")
	}
	return fix
}

// onceTB keeps a fixture's server alive for the whole process: cleanups
// registered through it run in TestMain, after every benchmark.
type onceTB struct{ testing.TB }

var (
	processCleanupsMu sync.Mutex
	processCleanups   []func()
)

func (o *onceTB) Cleanup(f func()) {
	processCleanupsMu.Lock()
	defer processCleanupsMu.Unlock()
	processCleanups = append(processCleanups, f)
}

func (o *onceTB) TempDir() string {
	d, err := os.MkdirTemp("", "databus-bench-")
	if err != nil {
		o.Fatal(err)
	}
	o.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// TestMain stops the fixtures' servers once every benchmark has run.
func TestMain(m *testing.M) {
	code := m.Run()
	for _, f := range slices.Backward(processCleanups) {
		f()
	}
	os.Exit(code)
}

func masterPos(b *testing.B, db *sql.DB) mysql.Position {
	b.Helper()
	var file string
	var pos uint32
	var x1, x2 sql.NullString
	if err := db.QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &x1, &x2); err != nil {
		b.Fatal(err)
	}
	return mysql.Position{Name: file, Pos: pos}
}

func writeLoad(b *testing.B, db *sql.DB, total int) int {
	b.Helper()
	sizes := []int{1, 1, 1, 5, 10, 10, 50, 100, 1000}
	rows, order := 0, 0
	rng := rand.New(rand.NewPCG(1, 2))
	for rows < total {
		n := min(sizes[rng.IntN(len(sizes))], total-rows)
		tx, err := db.Begin()
		if err != nil {
			b.Fatal(err)
		}
		var ord, itm, cus []string
		for range n {
			order++
			switch order % 4 {
			case 0:
				cus = append(cus, fmt.Sprintf("(%d,'user%d@example.com','Customer %d','DE','2024-05-01 10:00:00.123456',%d.%02d,%d)", order, order, order, order%10000, order%100, order%7))
			case 1, 2:
				ord = append(ord, fmt.Sprintf("(%d,%d,'paid',%d.%02d,'EUR','2024-05-01 10:00:00.123','gift wrap please, deliver to the back door %d','{\"src\":\"web\",\"ab\":[1,2,3]}',NULL)", order, order/4, order%1000, order%100, order))
			default:
				itm = append(itm, fmt.Sprintf("(%d,%d,'SKU-%08d',%d,%d.99)", order/4, order, order, 1+order%5, order%500))
			}
		}
		for _, q := range []struct {
			vals []string
			head string
		}{{cus, "INSERT INTO shop.customers VALUES "}, {ord, "INSERT INTO shop.orders VALUES "}, {itm, "INSERT INTO shop.items VALUES "}} {
			if len(q.vals) > 0 {
				if _, err := tx.Exec(q.head + strings.Join(q.vals, ",")); err != nil {
					b.Fatal(err)
				}
			}
		}
		if err := tx.Commit(); err != nil {
			b.Fatal(err)
		}
		rows += n
	}
	// Updates and deletes on top: 10% of the rows.
	res, err := db.Exec(fmt.Sprintf("UPDATE shop.orders SET status = 'shipped', updated = NOW(3) WHERE id %% 10 = 1 AND id <= %d", order))
	if err != nil {
		b.Fatal(err)
	}
	n, _ := res.RowsAffected()
	rows += int(n)
	res, err = db.Exec("DELETE FROM shop.items WHERE line % 20 = 3")
	if err != nil {
		b.Fatal(err)
	}
	n, _ = res.RowsAffected()
	return rows + int(n)
}

// BenchmarkLimitBinlogDecode measures go-mysql alone reading and decoding
// the fixture's binlog: the MySQL-side limit.
func BenchmarkLimitBinlogDecode(b *testing.B) {
	f := loadFixture(b)
	host, port := splitAddr(b, f.db.Addr())
	for b.Loop() {
		syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
			ServerID: 9000 + uint32(rand.IntN(1000)), Flavor: "mariadb", Host: host, Port: port, User: "root",
		})
		s, err := syncer.StartSync(f.start)
		if err != nil {
			b.Fatal(err)
		}
		rows := 0
		start := time.Now()
		for {
			ev, err := s.GetEvent(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			if re, ok := ev.Event.(*replication.RowsEvent); ok {
				rows += len(re.Rows)
			}
			if ev.Header.LogPos >= f.end.Pos && ev.Header.EventType == replication.XID_EVENT && rows > 0 {
				break
			}
		}
		el := time.Since(start)
		syncer.Close()
		b.ReportMetric(float64(f.rows)/el.Seconds(), "rows/s")
	}
}

// sampleEvent is a representative orders event.
func sampleEvent() []byte {
	ev := sdk.Event{
		Version: 1, Source: "bench", Op: sdk.OpInsert, Database: "shop", Table: "orders",
		Columns: []sdk.Column{{Name: "id", Type: "bigint unsigned"}, {Name: "customer_id", Type: "bigint unsigned", Nullable: true},
			{Name: "status", Type: "enum", Charset: "utf8mb4", Nullable: true}, {Name: "total", Type: "decimal(12,2)", Nullable: true},
			{Name: "currency", Type: "char", Charset: "utf8mb4", Nullable: true}, {Name: "placed", Type: "datetime(3)", Nullable: true},
			{Name: "note", Type: "varchar", Charset: "utf8mb4", Nullable: true}, {Name: "meta", Type: "longtext", Charset: "utf8mb4", Nullable: true},
			{Name: "updated", Type: "timestamp(3)", Nullable: true}},
		PrimaryKey: []string{"id"}, Key: map[string]any{"id": "12345"},
		After: map[string]any{"id": "12345", "customer_id": "3086", "status": "paid", "total": "345.45", "currency": "EUR",
			"placed": "2024-05-01 10:00:00.123", "note": "gift wrap please, deliver to the back door 12345", "meta": `{"src":"web","ab":[1,2,3]}`, "updated": nil},
		SQL:      "INSERT INTO `shop`.`orders` (`id`,`customer_id`,`status`,`total`,`currency`,`placed`,`note`,`meta`,`updated`) VALUES (12345,3086,'paid',345.45,'EUR','2024-05-01 10:00:00.123','gift wrap please, deliver to the back door 12345','{\"src\":\"web\",\"ab\":[1,2,3]}',NULL)",
		Position: sdk.Position{File: "mysql-bin.000001", Offset: 123456789, GTID: "0-1-99999", ServerID: 1},
		Txn:      sdk.Txn{ID: "0-1-99999", Seq: 3},
	}
	data, _ := json.Marshal(ev)
	return data
}

// BenchmarkLimitJetStreamPublish measures async, acknowledged publishing of
// databus-shaped messages into a file-backed stream: the NATS-side limit.
func BenchmarkLimitJetStreamPublish(b *testing.B) {
	n := envInt("BENCH_ROWS", 300_000)
	data := sampleEvent()
	for b.Loop() {
		js := testenv.StartJetStream(b)
		nc := js.Conn(b)
		j, _ := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(4096))
		if _, err := j.CreateStream(context.Background(), jetstream.StreamConfig{Name: "L", Subjects: []string{"l.>"}, Storage: jetstream.FileStorage}); err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for i := range n {
			if _, err := j.PublishAsync("l.shop.orders.insert", data, jetstream.WithMsgID(strconv.Itoa(i))); err != nil {
				b.Fatal(err)
			}
		}
		<-j.PublishAsyncComplete()
		b.ReportMetric(float64(n)/time.Since(start).Seconds(), "msgs/s")
		b.ReportMetric(float64(len(data)), "bytes/msg")
	}
}

// BenchmarkStreaming runs `databus run` (the binary, against an external
// JetStream so that only capture is measured) from the start of the
// fixture's binlog until every row change is acknowledged in the stream,
// and reports rows/s and the process's peak RSS. The first snapshot that
// `databus run` takes on start is off: the Snapshot benchmarks measure it.
func BenchmarkStreaming(b *testing.B) {
	f := loadFixture(b)
	bin := buildBinary(b)
	for b.Loop() {
		js := testenv.StartJetStream(b)
		nc := js.Conn(b)
		seedCheckpoint(b, nc, "bench", f.db, f.start)
		cmd := exec.Command(bin, "run")
		cmd.Env = append(os.Environ(), "DATABUS_HTTP_LISTEN=", "DATABUS_SOURCE=bench", "DATABUS_MYSQL_ADDR="+f.db.Addr(), "DATABUS_NATS_URL="+js.URL,
			"DATABUS_DATA_DIR="+b.TempDir(), "DATABUS_LOG_LEVEL=warn", "DATABUS_SNAPSHOT_ON_START=false")
		cmd.Stderr = os.Stderr
		start := time.Now()
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		waitMsgs(b, nc, "DATABUS_bench", uint64(f.rows), 10*time.Minute)
		el := time.Since(start)
		rss := peakRSS(cmd.Process.Pid)
		cpu := cpuTime(cmd.Process.Pid)
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		b.ReportMetric(float64(f.rows)/el.Seconds(), "rows/s")
		b.ReportMetric(float64(rss)/1024, "peak-RSS-MiB")
		b.ReportMetric(cpu.Seconds()/el.Seconds(), "cores-used")
	}
}

// cpuTime returns the user+system CPU time of a running process.
func cpuTime(pid int) time.Duration {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "stat"))
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	utime, _ := strconv.Atoi(f[11])
	stime, _ := strconv.Atoi(f[12])
	return time.Duration(utime+stime) * time.Second / 100
}

// BenchmarkStreamingInProcess is BenchmarkStreaming with the capturer in
// the test process, for profiling (-cpuprofile, -memprofile).
func BenchmarkStreamingInProcess(b *testing.B) {
	f := loadFixture(b)
	for b.Loop() {
		start := time.Now()
		captureAll(b, f, "inproc")
		b.ReportMetric(float64(f.rows)/time.Since(start).Seconds(), "rows/s")
	}
}

// captureAll captures the fixture's binlog into a new JetStream with an
// in-process capturer, and returns a connection to that JetStream.
func captureAll(b *testing.B, f *fixture, source string) *nats.Conn {
	b.Helper()
	js := testenv.StartJetStream(b)
	nc := js.Conn(b)
	seedCheckpoint(b, nc, source, f.db, f.start)
	cfg := testenv.CaptureConfig(f.db)
	cfg.Source = source
	c := testenv.NewCapture(cfg, nc)
	c.Start(b)
	waitMsgs(b, nc, "DATABUS_"+source, uint64(f.rows), 10*time.Minute)
	_ = c.Stop(b)
	return nc
}

// BenchmarkSDKConsume measures one SDK consumer decoding and acknowledging
// every event of a stream.
func BenchmarkSDKConsume(b *testing.B) {
	f := loadFixture(b)
	nc := captureAll(b, f, "consume")
	for b.Loop() {
		cons, err := sdk.Connect(context.Background(), sdk.Config{Conn: nc, Source: "consume", Start: sdk.StartBeginning})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		for range f.rows {
			m, err := cons.Next(context.Background())
			if err != nil {
				b.Fatal(err)
			}
			if err := m.Ack(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(f.rows)/time.Since(start).Seconds(), "events/s")
		cons.Close()
	}
}

// BenchmarkLatency writes at a steady rate and reports the time from the
// end of each COMMIT on MariaDB to the delivery of its event by the SDK.
func BenchmarkLatency(b *testing.B) {
	for _, rate := range []int{1000, 10000} {
		b.Run(fmt.Sprintf("%drows_per_s", rate), func(b *testing.B) {
			for b.Loop() {
				latency(b, rate, envInt("BENCH_LATENCY_SECONDS", 5))
			}
		})
	}
}

func latency(b *testing.B, rate, seconds int) {
	db := testenv.StartMariaDB(b)
	db.Exec(b, "CREATE DATABASE l", "CREATE TABLE l.t (id INT PRIMARY KEY, v VARCHAR(64))")
	js := testenv.StartJetStream(b)
	nc := js.Conn(b)
	c := testenv.NewCapture(testenv.CaptureConfig(db), nc)
	c.Start(b)
	cons, err := sdk.Connect(context.Background(), sdk.Config{Conn: nc, Source: "test", Start: sdk.StartNow})
	if err != nil {
		b.Fatal(err)
	}
	defer cons.Close()
	perTxn := max(1, rate/1000) // 1000 transactions per second
	total := rate * seconds
	var mu sync.Mutex
	committed := make(map[int]time.Time, total)
	go func() {
		conn := db.DB(b)
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		id := 0
		for id < total {
			<-tick.C
			var vals []string
			for range perTxn {
				id++
				vals = append(vals, fmt.Sprintf("(%d,'payload %d')", id, id))
			}
			if _, err := conn.Exec("INSERT INTO l.t VALUES " + strings.Join(vals, ",")); err != nil {
				b.Error(err)
				return
			}
			now := time.Now()
			mu.Lock()
			for i := id - perTxn + 1; i <= id; i++ {
				committed[i] = now
			}
			mu.Unlock()
		}
	}()
	lat := make([]time.Duration, 0, total)
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(seconds+60)*time.Second)
	defer cancel()
	for len(lat) < total {
		m, err := cons.Next(ctx)
		if err != nil {
			b.Fatalf("after %d events: %v", len(lat), err)
		}
		got := time.Now()
		id, _ := strconv.Atoi(fmt.Sprint(m.Event.Key["id"]))
		_ = m.Ack(ctx)
		mu.Lock()
		at, ok := committed[id]
		mu.Unlock()
		if !ok {
			// Delivered before the writer noted its commit time.
			at = got
		}
		lat = append(lat, got.Sub(at))
	}
	slices.Sort(lat)
	q := func(p float64) float64 { return float64(lat[int(p*float64(len(lat)-1))].Microseconds()) / 1000 }
	b.ReportMetric(q(0.50), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, "max-ms")
}

// BenchmarkBigTransaction streams one transaction of
// BENCH_BIG_TXN_ROWS rows (default 1,000,000) through `databus run`
// and reports its peak RSS.
func BenchmarkBigTransaction(b *testing.B) {
	rows := envInt("BENCH_BIG_TXN_ROWS", 1_000_000)
	bin := buildBinary(b)
	for b.Loop() {
		db := testenv.StartMariaDB(b, "--max-allowed-packet=256M")
		db.Exec(b, "CREATE DATABASE big", "CREATE TABLE big.t (id INT PRIMARY KEY, v VARCHAR(100))")
		js := testenv.StartJetStream(b)
		nc := js.Conn(b)
		cmd := exec.Command(bin, "run")
		cmd.Env = append(os.Environ(), "DATABUS_HTTP_LISTEN=", "DATABUS_SOURCE=big", "DATABUS_MYSQL_ADDR="+db.Addr(), "DATABUS_NATS_URL="+js.URL,
			"DATABUS_DATA_DIR="+b.TempDir(), "DATABUS_LOG_LEVEL=warn")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		stop := func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
		b.Cleanup(stop) // also when the benchmark fails: it retried for the rest of the run
		testenv.Eventually(b, 30*time.Second, func() error {
			_, err := kvCheckpoint(nc, "big")
			return err
		})
		db.Exec(b, "SET SESSION max_recursive_iterations = 100000000",
			fmt.Sprintf("INSERT INTO big.t WITH RECURSIVE s(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM s WHERE n < %d) SELECT n, CONCAT('row ', n, ' of a big transaction') FROM s", rows))
		start := time.Now()
		waitMsgs(b, nc, "DATABUS_big", uint64(rows), 15*time.Minute)
		el := time.Since(start)
		rss := peakRSS(cmd.Process.Pid)
		stop()
		b.ReportMetric(float64(rows)/el.Seconds(), "rows/s")
		b.ReportMetric(float64(rss)/1024, "peak-RSS-MiB")
	}
}

func kvCheckpoint(nc *nats.Conn, source string) ([]byte, error) {
	js, err := jetstream.New(nc)
	if err != nil {
		return nil, err
	}
	kv, err := js.KeyValue(context.Background(), sdk.StateBucket(source))
	if err != nil {
		return nil, err
	}
	e, err := kv.Get(context.Background(), bus.CheckpointKey)
	if err != nil {
		return nil, err
	}
	return e.Value(), nil
}

// seedCheckpoint makes a capture of source start at position start of db.
func seedCheckpoint(b *testing.B, nc *nats.Conn, source string, db *testenv.MariaDB, start mysql.Position) {
	b.Helper()
	js, _ := jetstream.New(nc)
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{Bucket: sdk.StateBucket(source), History: 1, Storage: jetstream.FileStorage})
	if err != nil {
		b.Fatal(err)
	}
	cp, _ := json.Marshal(bus.Checkpoint{File: start.Name, Offset: start.Pos, ServerID: db.ServerID})
	if _, err := kv.Put(context.Background(), bus.CheckpointKey, cp); err != nil {
		b.Fatal(err)
	}
}

func waitMsgs(b *testing.B, nc *nats.Conn, stream string, n uint64, timeout time.Duration) {
	b.Helper()
	js, _ := jetstream.New(nc)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if s, err := js.Stream(context.Background(), stream); err == nil {
			if info, err := s.Info(context.Background()); err == nil && info.State.Msgs >= n {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	b.Fatalf("stream %s did not reach %d messages in %v", stream, n, timeout)
}

// peakRSS returns VmHWM of a process in KiB.
func peakRSS(pid int) int {
	f, err := os.Open(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

var (
	binOnce sync.Once
	binPath string
)

func buildBinary(b *testing.B) string {
	b.Helper()
	binOnce.Do(func() {
		dir := (&onceTB{b}).TempDir()
		binPath = filepath.Join(dir, "databus")
		if out, err := exec.Command("go", "build", "-o", binPath, "../../cmd/databus").CombinedOutput(); err != nil {
			b.Fatalf("go build: %v\n%s", err, out)
		}
	})
	return binPath
}

func splitAddr(b *testing.B, addr string) (string, uint16) {
	b.Helper()
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		b.Fatal(err)
	}
	n, _ := strconv.Atoi(p)
	return h, uint16(n)
}
