package bench

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime/pprof"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/nats-io/nats.go"

	"github.com/databus/databus/apply"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
)

// mirror is a source whose binlog holds a sysbench write load after the
// tables it was prepared with, that load captured into a stream, and a
// dump of the tables as they were before the load: what a replica starts
// from.
type mirror struct {
	src        *testenv.MariaDB
	start, end mysql.Position
	dump       string // mariadb-dump of sbtest at start
	txns       int    // transactions sysbench committed
	js         *testenv.JetStream
	nc         *nats.Conn
	lastSeq    uint64 // stream sequence of the load's last event
	checksums  map[string]string
}

var (
	mirrorOnce sync.Once
	mirrorFix  *mirror
)

const mirrorSource = "mirror"

// loadMirror writes BENCH_SYSBENCH_SECONDS (default 20) of sysbench
// oltp_write_only and then as long of oltp_insert, 4 threads on 4 tables
// of 20,000 rows, and captures it.
func loadMirror(b *testing.B) *mirror {
	b.Helper()
	mirrorOnce.Do(func() {
		sb, err := exec.LookPath("sysbench")
		if err != nil {
			b.Fatalf("sysbench is needed: %v (Debian/Ubuntu: apt-get install sysbench)", err)
		}
		m := &mirror{src: testenv.StartMariaDB(&onceTB{b})}
		m.src.Exec(b, "CREATE DATABASE sbtest")
		host, port := splitAddr(b, m.src.Addr())
		sysbench := func(args ...string) string {
			cmd := exec.Command(sb, append(args, "--db-driver=mysql", "--mysql-host="+host, "--mysql-port="+strconv.Itoa(int(port)),
				"--mysql-user=root", "--mysql-db=sbtest", "--tables=4", "--table-size=20000", "--threads=4")...)
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			if err := cmd.Run(); err != nil {
				b.Fatalf("sysbench %v: %v\n%s", args, err, out.Bytes())
			}
			return out.String()
		}
		sysbench("oltp_write_only", "prepare")
		m.start = masterPos(b, m.src.DB(b))
		m.dump = dumpDatabase(b, m.src, "sbtest")
		secs := strconv.Itoa(envInt("BENCH_SYSBENCH_SECONDS", 20))
		for _, w := range []string{"oltp_write_only", "oltp_insert"} {
			out := sysbench(w, "run", "--time="+secs, "--report-interval=0")
			m.txns += sysbenchTxns(b, out)
		}
		m.end = masterPos(b, m.src.DB(b))
		m.checksums = checksums(b, m.src.DB(b))

		m.js = testenv.StartJetStream(&onceTB{b})
		m.nc = m.js.Conn(b)
		seedCheckpoint(b, m.nc, mirrorSource, m.src, m.start)
		cfg := testenv.CaptureConfig(m.src)
		cfg.Source = mirrorSource
		c := testenv.NewCapture(cfg, m.nc)
		c.Start(b)
		testenv.Eventually(b, 10*time.Minute, func() error {
			raw, err := kvCheckpoint(m.nc, mirrorSource)
			if err != nil {
				return err
			}
			var cp bus.Checkpoint
			if err := json.Unmarshal(raw, &cp); err != nil {
				return err
			}
			if cp.File != m.end.Name || cp.Offset < m.end.Pos {
				return fmt.Errorf("capture at %s:%d, load ends at %s", cp.File, cp.Offset, m.end)
			}
			return nil
		})
		_ = c.Stop(b)
		last, err := sdk.LastSequence(context.Background(), m.nc, mirrorSource)
		if err != nil {
			b.Fatal(err)
		}
		m.lastSeq = last
		mirrorFix = m
	})
	if mirrorFix == nil {
		b.Fatal("the sysbench fixture failed to load")
	}
	return mirrorFix
}

var sysbenchTxnsRe = regexp.MustCompile(`transactions:\s+(\d+)`)

func sysbenchTxns(b *testing.B, out string) int {
	b.Helper()
	m := sysbenchTxnsRe.FindStringSubmatch(out)
	if m == nil {
		b.Fatalf("no transaction count in sysbench's output:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// dumpDatabase writes mariadb-dump output of one database to a file.
func dumpDatabase(b *testing.B, db *testenv.MariaDB, name string) string {
	b.Helper()
	dump, err := exec.LookPath("mariadb-dump")
	if err != nil {
		b.Fatalf("mariadb-dump is needed: %v (Debian/Ubuntu: apt-get install mariadb-client)", err)
	}
	host, port := splitAddr(b, db.Addr())
	file := filepath.Join((&onceTB{b}).TempDir(), name+".sql")
	out, err := os.Create(file)
	if err != nil {
		b.Fatal(err)
	}
	defer out.Close()
	cmd := exec.Command(dump, "--single-transaction", "--protocol=TCP", "--host="+host, "--port="+strconv.Itoa(int(port)), "--user=root", "--databases", name)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = out, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("mariadb-dump: %v\n%s", err, stderr.Bytes())
	}
	return file
}

// restore loads a dump into a server with the mariadb client.
func restore(b *testing.B, db *testenv.MariaDB, file string) {
	b.Helper()
	client, err := exec.LookPath("mariadb")
	if err != nil {
		b.Fatalf("the mariadb client is needed: %v (Debian/Ubuntu: apt-get install mariadb-client)", err)
	}
	host, port := splitAddr(b, db.Addr())
	in, err := os.Open(file)
	if err != nil {
		b.Fatal(err)
	}
	defer in.Close()
	cmd := exec.Command(client, "--protocol=TCP", "--host="+host, "--port="+strconv.Itoa(int(port)), "--user=root")
	var stderr bytes.Buffer
	cmd.Stdin, cmd.Stderr = in, &stderr
	if err := cmd.Run(); err != nil {
		b.Fatalf("mariadb < %s: %v\n%s", file, err, stderr.Bytes())
	}
}

// checksums returns CHECKSUM TABLE of every sbtest table.
func checksums(b *testing.B, db *sql.DB) map[string]string {
	b.Helper()
	sums := map[string]string{}
	for i := 1; i <= 4; i++ {
		t := fmt.Sprintf("sbtest.sbtest%d", i)
		var name string
		var sum sql.NullString
		if err := db.QueryRow("CHECKSUM TABLE "+t).Scan(&name, &sum); err != nil {
			b.Fatal(err)
		}
		sums[t] = sum.String
	}
	return sums
}

func (m *mirror) check(b *testing.B, db *sql.DB) {
	b.Helper()
	got := checksums(b, db)
	for t, want := range m.checksums {
		if got[t] != want {
			b.Fatalf("%s differs from the source after the replica caught up: checksum %s, source %s", t, got[t], want)
		}
	}
}

// serverCPU returns the CPU time a throwaway server has used.
func serverCPU(b *testing.B, db *testenv.MariaDB) time.Duration {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join(filepath.Dir(db.DataDir), "mariadbd.pid"))
	if err != nil {
		b.Fatal(err)
	}
	pid, err := strconv.Atoi(string(bytes.TrimSpace(raw)))
	if err != nil {
		b.Fatal(err)
	}
	return cpuTime(pid)
}

func (m *mirror) report(b *testing.B, el, targetCPU time.Duration) {
	b.ReportMetric(targetCPU.Seconds()/el.Seconds(), "target-cores")
	b.ReportMetric(float64(m.txns)/el.Seconds(), "txns/s")
	b.ReportMetric(el.Seconds(), "catch-up-s")
	b.ReportMetric(float64(m.txns), "txns")
}

// BenchmarkApplyNative times a native MariaDB replica (one SQL thread, the
// server's defaults) applying the sysbench binlog from the position its
// dump was taken at, until it has executed the load's last event: the
// yardstick for BenchmarkApply.
func BenchmarkApplyNative(b *testing.B) {
	m := loadMirror(b)
	host, port := splitAddr(b, m.src.Addr())
	for b.Loop() {
		dst := testenv.StartMariaDB(b, "--server-id=2")
		restore(b, dst, m.dump)
		db := dst.DB(b)
		cpu0 := serverCPU(b, dst)
		start := time.Now()
		dst.Exec(b, fmt.Sprintf("CHANGE MASTER TO MASTER_HOST='%s', MASTER_PORT=%d, MASTER_USER='root', MASTER_LOG_FILE='%s', MASTER_LOG_POS=%d",
			host, port, m.start.Name, m.start.Pos), "START SLAVE")
		for {
			file, pos, err := replicaExecuted(db)
			if err != nil {
				b.Fatal(err)
			}
			if file == m.end.Name && pos >= uint64(m.end.Pos) {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		el := time.Since(start)
		cpu := serverCPU(b, dst) - cpu0
		dst.Exec(b, "STOP SLAVE")
		m.check(b, db)
		m.report(b, el, cpu)
	}
}

// replicaExecuted returns the source position the replica's SQL thread
// has executed up to, or its error.
func replicaExecuted(db *sql.DB) (string, uint64, error) {
	rows, err := db.Query("SHOW SLAVE STATUS")
	if err != nil {
		return "", 0, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		return "", 0, nil
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return "", 0, err
	}
	v := map[string]string{}
	for i, c := range cols {
		v[c] = vals[i].String
	}
	if e := v["Last_SQL_Error"] + v["Last_IO_Error"]; e != "" {
		return "", 0, fmt.Errorf("replica stopped: %s", e)
	}
	pos, _ := strconv.ParseUint(v["Exec_Master_Log_Pos"], 10, 64)
	return v["Relay_Master_Log_File"], pos, nil
}

// BenchmarkApply times `databus apply` (in process) applying the captured
// sysbench load from the stream's start into a server loaded with the same
// dump, until the target's checkpoint records the load's last event.
func BenchmarkApply(b *testing.B) {
	m := loadMirror(b)
	for b.Loop() {
		dst := testenv.StartMariaDB(b, "--server-id=3")
		restore(b, dst, m.dump)
		db := dst.DB(b)
		a, err := apply.New(apply.Config{TargetDSN: dst.DSN(""), NATSURL: m.js.URL, Source: mirrorSource, Start: sdk.StartBeginning, ProgressEvery: time.Hour})
		if err != nil {
			b.Fatal(err)
		}
		ctx, cancel := context.WithCancel(b.Context())
		done := make(chan error, 1)
		stopProfile := profileTimed(b, "BENCH_APPLY_PROFILE")
		cpu0, self0 := serverCPU(b, dst), cpuTime(os.Getpid())
		start := time.Now()
		go func() { done <- a.Run(ctx) }()
		for {
			var seq uint64
			err := db.QueryRow("SELECT stream_seq FROM databus.apply_checkpoint").Scan(&seq)
			if err == nil && seq >= m.lastSeq {
				break
			}
			select {
			case err := <-done:
				b.Fatalf("apply stopped: %v", err)
			case <-time.After(5 * time.Millisecond):
			}
		}
		el := time.Since(start)
		cpu, self := serverCPU(b, dst)-cpu0, cpuTime(os.Getpid())-self0
		stopProfile()
		cancel()
		<-done
		a.Close()
		p := a.Progress()
		b.ReportMetric(float64(p.Transactions)/float64(p.Commits), "txns/commit")
		b.ReportMetric(self.Seconds()/el.Seconds(), "databus-cores")
		m.check(b, db)
		m.report(b, el, cpu)
	}
}

// profileTimed starts a CPU profile of the test process into the file the
// environment variable env names, when set, for the timed part of a
// benchmark (-cpuprofile covers its set-up too); the returned function
// stops it.
func profileTimed(b *testing.B, env string) (stop func()) {
	path := os.Getenv(env)
	if path == "" {
		return func() {}
	}
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		b.Fatal(err)
	}
	return func() {
		pprof.StopCPUProfile()
		f.Close()
	}
}
