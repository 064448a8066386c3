package main

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/testenv"
)

// crashSchema is created on the source and, as a snapshot would, on the
// target before anything is captured.
var crashSchema = []string{
	"CREATE DATABASE app CHARACTER SET utf8mb4",
	"CREATE TABLE app.ledger (txn BIGINT PRIMARY KEY, size INT NOT NULL, note VARCHAR(64) NOT NULL)",
	"CREATE TABLE app.items (id BIGINT PRIMARY KEY, txn BIGINT NOT NULL, qty INT NOT NULL, price DECIMAL(12,2) NOT NULL, note VARCHAR(255) NOT NULL, data BLOB NULL)",
	"CREATE TABLE app.accounts (id INT PRIMARY KEY, balance DECIMAL(14,2) NOT NULL, txn BIGINT NOT NULL)",
	"CREATE TABLE app.events (id BIGINT AUTO_INCREMENT PRIMARY KEY, txn BIGINT NOT NULL, body TEXT NOT NULL, at DATETIME(6) NOT NULL)",
	"INSERT INTO app.accounts SELECT seq, 0, 0 FROM app.seq_1_to_50",
}

// crashTables are the tables compared with CHECKSUM TABLE at the end.
var crashTables = []string{"app.ledger", "app.items", "app.accounts", "app.events"}

// The components the harness kills.
const (
	killRun = iota
	killApply
	killMariaDB
	killNATS
	components
)

var componentNames = [components]string{"databus run", "databus apply", "source mariadbd", "nats-server"}

// TestCrashHarness runs `databus run` against a source MariaDB and an
// external nats-server, and `databus apply` into a target MariaDB, under a
// sustained multi-table write load, while it kills (SIGKILL) and restarts
// one of the four processes at a random moment in each of CRASH_CYCLES
// cycles (8 by default: each component twice; `make soak` runs 200).
// CRASH_SEED repeats a kill schedule and load. Every source transaction
// also inserts its number into app.ledger; a trigger on the target records
// each ledger row applied in app.seen (apply replays with INSERT, and a
// REPLACE would fire the trigger as well), so the end state shows any
// transaction lost, applied twice or applied out of order, besides
// CHECKSUM TABLE of every table.
//
// The source keeps the test helper's relaxed durability (sync_binlog=0,
// innodb_flush_log_at_trx_commit=2): a SIGKILL of mariadbd loses nothing
// it wrote to the operating system, so a commit the client saw stays
// committed and in the binlog; only a machine crash could lose that tail,
// which is a MariaDB setting, not a databus matter.
func TestCrashHarness(t *testing.T) {
	seed, cycles := harnessParams(t, "CRASH_CYCLES", 8)
	t.Logf("crash harness: seed %d, %d cycles (CRASH_SEED=%d CRASH_CYCLES=%d repeats the schedule and the load)", seed, cycles, seed, cycles)
	rng := rand.New(rand.NewPCG(seed, 0))
	began := time.Now()
	logs := newCrashLogs(t)

	src, dst := startMirrorPair(t, logs)
	ns := startNATSServer(t, logs)

	env, _ := captureEnv(t, src)
	env = append(env, "DATABUS_NATS_URL="+ns.url, "DATABUS_LOG_LEVEL=info")
	if os.Getenv("CRASH_ATOMIC") != "" { // capture.atomic_transactions, opt-in
		env = append(env, "DATABUS_CAPTURE_ATOMIC_TRANSACTIONS=true")
	}
	run := logs.track("run", startDatabus(t, env, "run"))
	waitCapturing(t, env, run)
	applyArgs := []string{"apply", "--target", dst.DSN(""), "--from", "now", "--progress", "1s"}
	ap := logs.track("apply", startDatabus(t, env, applyArgs...))
	testenv.Eventually(t, 60*time.Second, func() error { // "now" is pinned on the target
		var seq uint64
		return dst.DB(t).QueryRow("SELECT stream_seq FROM databus.apply_checkpoint").Scan(&seq)
	})

	w := startCrashWriter(t, src, seed, 20*time.Millisecond)
	// No process is expected to exit by itself, whatever was killed.
	alive := func(when string) {
		t.Helper()
		for _, p := range []*proc{run, ap, ns.p} {
			select {
			case <-p.exited:
				t.Fatalf("%s: %s exited by itself with %d (seed %d, logs in %s):\n%s", when, strings.Join(p.cmd.Args, " "), p.code, seed, logs.dir, tail(p.out.String(), 60))
			default:
			}
		}
	}
	var kills [components]int
	faults := &faultSchedule{rng: rng, n: components}
	for c := range cycles {
		// Each block of four cycles kills every component once, in a
		// random order, so that the short form covers them all.
		comp := faults.next()
		w.pause(t, rng, c, 300*time.Millisecond, 2700*time.Millisecond)
		alive(fmt.Sprintf("before cycle %d", c+1))
		down := time.Duration(rng.IntN(1000)) * time.Millisecond
		t.Logf("cycle %d: kill -9 %s after transaction %d, down for %v", c+1, componentNames[comp], w.committed.Load(), down)
		switch comp {
		case killRun:
			run.kill()
			time.Sleep(down)
			run = logs.track("run", startDatabus(t, env, "run"))
		case killApply:
			ap.kill()
			time.Sleep(down)
			ap = logs.track("apply", startDatabus(t, env, applyArgs...))
		case killMariaDB:
			src.Kill(t)
			time.Sleep(down)
			src.Restart(t)
		case killNATS:
			ns.kill()
			time.Sleep(down)
			ns.start(t)
		}
		kills[comp]++
	}
	if err := w.stop(); err != nil {
		t.Fatalf("writer (seed %d): %v", seed, err)
	}
	alive("after the load")
	last := w.committed.Load()

	rep := verifyMirror(t, src, dst, last, seed, func() error {
		alive("catching up")
		return nil
	}, func() string {
		return fmt.Sprintf("logs in %s\napply output (tail):\n%s\nrun output (tail):\n%s", logs.dir, tail(ap.out.String(), 40), tail(run.out.String(), 40))
	})
	t.Logf("crash harness report: seed %d, %d cycles (kill -9 of databus run %d, databus apply %d, source mariadbd %d, nats-server %d); "+
		"%d transactions (%d row operations) checked; losses %d, duplicates %d; writer retried %d times after a lost connection (%d commits had happened); %v",
		seed, cycles, kills[killRun], kills[killApply], kills[killMariaDB], kills[killNATS],
		rep.txns, w.rows.Load(), rep.missing, rep.duplicates, w.retries.Load(), w.ambiguous.Load(), time.Since(began).Round(time.Second))
}

// harnessParams reads the number of cycles from the environment variable
// cyclesVar (def when unset) and the seed from CRASH_SEED (random when
// unset).
func harnessParams(t *testing.T, cyclesVar string, def int) (seed uint64, cycles int) {
	t.Helper()
	cycles = def
	if v := os.Getenv(cyclesVar); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number", cyclesVar, v)
		}
		cycles = n
	}
	seed = uint64(time.Now().UnixNano())
	if v := os.Getenv("CRASH_SEED"); v != "" {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			t.Fatalf("CRASH_SEED=%q: want a number", v)
		}
		seed = n
	}
	return seed, cycles
}

// startMirrorPair starts the source and the target of a harness, with the
// crash schema on both and the ledger trigger on the target.
func startMirrorPair(t *testing.T, logs *crashLogs) (src, dst *testenv.MariaDB) {
	t.Helper()
	src = testenv.StartMariaDB(t)
	dst = testenv.StartMariaDB(t)
	logs.fileOnFailure("source-mariadb-error.log", filepath.Join(src.DataDir, "error.log"))
	src.Exec(t, crashSchema...)
	dst.Exec(t, crashSchema...)
	dst.Exec(t, "CREATE TABLE app.seen (id BIGINT AUTO_INCREMENT PRIMARY KEY, txn BIGINT NOT NULL)",
		"CREATE TRIGGER app.ledger_seen AFTER INSERT ON app.ledger FOR EACH ROW INSERT INTO app.seen (txn) VALUES (NEW.txn)")
	return src, dst
}

// mirrorReport is what verifyMirror found.
type mirrorReport struct{ txns, missing, duplicates int }

// verifyMirror waits until the target has applied the writer's last
// transaction (check is called while waiting, diag describes the
// processes when the wait fails) and then checks that the target mirrors
// the source: CHECKSUM TABLE of every table, and the ledger, which shows
// any transaction lost, applied twice or out of commit order.
func verifyMirror(t *testing.T, src, dst *testenv.MariaDB, last int64, seed uint64, check func() error, diag func() string) mirrorReport {
	t.Helper()
	// Every transaction carries a ledger row and is applied whole, in
	// order: the target has caught up when it has the last one.
	testenv.Eventually(t, 5*time.Minute, func() error {
		if err := check(); err != nil {
			return err
		}
		var got int64
		if err := dst.DB(t).QueryRow("SELECT COALESCE(MAX(txn), 0) FROM app.ledger").Scan(&got); err != nil {
			return err
		}
		if got != last {
			return fmt.Errorf("the target applied up to transaction %d of %d (seed %d, %s)", got, last, seed, diag())
		}
		return nil
	})

	for _, table := range crashTables {
		a, b := src.Checksum(t, table), dst.Checksum(t, table)
		if a != b {
			t.Errorf("%s: CHECKSUM TABLE source %s, target %s (seed %d)", table, a, b, seed)
		}
	}
	want := int64s(t, src, "SELECT txn FROM app.ledger ORDER BY txn")
	if int64(len(want)) != last || last > 0 && want[len(want)-1] != last {
		t.Errorf("the source ledger has %d transactions, the writer committed transactions 1 to %d", len(want), last)
	}
	seen := int64s(t, dst, "SELECT txn FROM app.seen ORDER BY id")
	dups := int64s(t, dst, "SELECT txn FROM app.seen GROUP BY txn HAVING COUNT(*) > 1 ORDER BY txn")
	count := map[int64]int{}
	for _, n := range seen {
		count[n]++
	}
	var missing []int64
	for _, n := range want {
		if count[n] == 0 {
			missing = append(missing, n)
		}
	}
	duplicates := len(seen) - len(count)
	if len(missing) > 0 {
		t.Errorf("%d source transactions never applied on the target (seed %d), first ones: %v", len(missing), seed, first(missing, 20))
	}
	if len(dups) > 0 {
		t.Errorf("%d source transactions applied more than once on the target (seed %d), first ones: %v", len(dups), seed, first(dups, 20))
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] <= seen[i-1] {
			t.Errorf("the target applied transaction %d after %d (seed %d): not in commit order", seen[i], seen[i-1], seed)
			break
		}
	}
	return mirrorReport{txns: len(want), missing: len(missing), duplicates: duplicates}
}

// natsServer is a nats-server process with JetStream, which a test can
// kill and start again on the same port and store directory.
type natsServer struct {
	bin, dir, url string
	port          int
	p             *proc
	logs          *crashLogs
}

// startNATSServer builds nats-server from the module in go.mod (once per
// test process) and starts it on a free port.
func startNATSServer(t *testing.T, logs *crashLogs) *natsServer {
	t.Helper()
	n := &natsServer{
		bin:  goBuild(t, "nats-server", "github.com/nats-io/nats-server/v2"),
		dir:  t.TempDir(),
		port: testenv.FreePort(t),
		logs: logs,
	}
	n.url = "nats://127.0.0.1:" + strconv.Itoa(n.port)
	n.start(t)
	return n
}

// start starts the server and waits until JetStream answers.
func (n *natsServer) start(t *testing.T) {
	t.Helper()
	p := n.logs.track("nats", startProcess(t, n.bin, nil, "-js", "-sd", n.dir, "-a", "127.0.0.1", "-p", strconv.Itoa(n.port)))
	n.p = p
	testenv.Eventually(t, 60*time.Second, func() error {
		select {
		case <-p.exited:
			t.Fatalf("nats-server exited with %d while starting:\n%s", p.code, tail(p.out.String(), 40))
		default:
		}
		nc, err := nats.Connect(n.url, nats.Timeout(time.Second), nats.NoReconnect())
		if err != nil {
			return err
		}
		defer nc.Close()
		js, err := jetstream.New(nc)
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
		defer cancel()
		_, err = js.AccountInfo(ctx)
		return err
	})
}

func (n *natsServer) kill() { n.p.kill() }

// crashWriter commits numbered transactions of mixed sizes over several
// tables until stopped, surviving the server's crashes.
type crashWriter struct {
	db       *sql.DB
	seed     uint64
	pace     time.Duration
	stopc    chan struct{}
	stopOnce sync.Once
	finished chan struct{}
	err      error // set before finished is closed

	committed atomic.Int64 // the last committed transaction
	rows      atomic.Int64 // rows written by committed transactions
	retries   atomic.Int64 // transactions interrupted by a lost connection
	ambiguous atomic.Int64 // of which had committed nevertheless
}

// startCrashWriter starts the load: between two transactions it sleeps a
// random time below pace.
func startCrashWriter(t *testing.T, src *testenv.MariaDB, seed uint64, pace time.Duration) *crashWriter {
	t.Helper()
	db, err := sql.Open("mysql", src.DSN("")+"&timeout=5s&readTimeout=60s&writeTimeout=60s")
	if err != nil {
		t.Fatal(err)
	}
	w := &crashWriter{db: db, seed: seed, pace: pace, stopc: make(chan struct{}), finished: make(chan struct{})}
	go func() {
		defer close(w.finished)
		w.err = w.loop()
	}()
	t.Cleanup(func() {
		_ = w.stop()
		db.Close()
	})
	return w
}

// pause waits a random time from min to min+span before cycle c, and
// fails the test if the writer stopped meanwhile.
func (w *crashWriter) pause(t *testing.T, rng *rand.Rand, c int, min, span time.Duration) {
	t.Helper()
	select {
	case <-time.After(min + time.Duration(rng.Int64N(int64(span)))):
	case <-w.finished:
		t.Fatalf("cycle %d: the writer stopped (seed %d): %v", c+1, w.seed, w.err)
	}
}

// faultSchedule picks the fault of each cycle, one of n, so that every
// block of n cycles has each fault once, in a random order.
type faultSchedule struct {
	rng   *rand.Rand
	n     int
	order []int
}

func (s *faultSchedule) next() int {
	if len(s.order) == 0 {
		s.order = s.rng.Perm(s.n)
	}
	f := s.order[0]
	s.order = s.order[1:]
	return f
}

// stop ends the load after the transaction in progress and returns the
// writer's error.
func (w *crashWriter) stop() error {
	w.stopOnce.Do(func() { close(w.stopc) })
	select {
	case <-w.finished:
		return w.err
	case <-time.After(5 * time.Minute):
		return errors.New("the writer did not stop within 5 minutes")
	}
}

func (w *crashWriter) loop() error {
	pace := rand.New(rand.NewPCG(w.seed, 1))
	maxSleep := max(1, int(w.pace/time.Millisecond))
	for n := int64(1); ; n++ {
		select {
		case <-w.stopc:
			return nil
		default:
		}
		for {
			rows, err := w.txn(n)
			if err == nil {
				w.rows.Add(int64(rows))
				break
			}
			if !lostConnection(err) {
				return fmt.Errorf("transaction %d: %w", n, err)
			}
			// A COMMIT cut off by a crash may or may not have happened:
			// the ledger tells.
			w.retries.Add(1)
			last, lerr := w.lastTxn()
			if lerr != nil {
				return fmt.Errorf("transaction %d: %v; then: %w", n, err, lerr)
			}
			if last == n {
				w.ambiguous.Add(1)
				w.rows.Add(int64(rows))
				break
			}
			if last != n-1 {
				return fmt.Errorf("transaction %d: %v; then the source's last ledger transaction is %d, want %d or %d", n, err, last, n-1, n)
			}
		}
		w.committed.Store(n)
		// Pacing only, so that apply keeps up on a small machine.
		time.Sleep(time.Duration(pace.IntN(maxSleep)) * time.Millisecond)
	}
}

// lastTxn reads the last ledger transaction, waiting for the server to
// come back.
func (w *crashWriter) lastTxn() (int64, error) {
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var last int64
		err := w.db.QueryRowContext(ctx, "SELECT COALESCE(MAX(txn), 0) FROM app.ledger").Scan(&last)
		cancel()
		if err == nil {
			return last, nil
		}
		if !lostConnection(err) || time.Now().After(deadline) {
			return 0, fmt.Errorf("reading the last ledger transaction: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// txn commits transaction n: its ledger row and a mix of inserts, updates
// and deletes, the same for the same seed and n. It returns how many row
// operations it has besides the ledger row, also when it fails.
func (w *crashWriter) txn(n int64) (int, error) {
	r := rand.New(rand.NewPCG(w.seed, uint64(n)+1))
	size := 1 + r.IntN(20) // mostly small,
	switch p := r.IntN(100); {
	case p >= 98: // occasionally a few thousand rows,
		size = 2000 + r.IntN(2000)
	case p >= 85: // some of 200.
		size = 200
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tx, err := w.db.BeginTx(ctx, nil)
	if err != nil {
		return size, err
	}
	defer func() { _ = tx.Rollback() }()
	exec := func(q string, args ...any) error {
		_, err := tx.ExecContext(ctx, q, args...)
		return err
	}
	if err := exec("INSERT INTO app.ledger VALUES (?, ?, ?)", n, size, fmt.Sprintf("txn %d of %d rows", n, size)); err != nil {
		return size, err
	}
	// An earlier transaction's rows, or this one's (not inserted yet).
	earlier := func() int64 { return (1+r.Int64N(n))*10000 + r.Int64N(20) }
	var items []any
	for i := range size {
		var err error
		switch k := r.IntN(10); {
		case k < 5:
			var data []byte
			if r.IntN(4) > 0 {
				data = make([]byte, r.IntN(100))
				for j := range data {
					data[j] = byte(r.IntN(256))
				}
			}
			items = append(items, n*10000+int64(i), n, r.IntN(1000), fmt.Sprintf("%d.%02d", r.IntN(1000000), r.IntN(100)),
				strings.Repeat("é", r.IntN(50))+"'\\\"", data)
		case k < 7:
			err = exec("UPDATE app.items SET qty = qty + 1, note = CONCAT(LEFT(note, 20), ?) WHERE id = ?", strconv.FormatInt(n, 10), earlier())
		case k == 7 && r.IntN(10) == 0:
			a := earlier()
			err = exec("DELETE FROM app.items WHERE id BETWEEN ? AND ?", a, a+5)
		case k == 7:
			err = exec("DELETE FROM app.items WHERE id = ?", earlier())
		case k == 8:
			err = exec("UPDATE app.accounts SET balance = balance + ?, txn = ? WHERE id = ?", fmt.Sprintf("%d.%02d", r.IntN(200)-100, r.IntN(100)), n, 1+r.IntN(50))
		default:
			err = exec("INSERT INTO app.events (txn, body, at) VALUES (?, ?, NOW(6))", n, strings.Repeat("ü€𝄞", r.IntN(100)))
		}
		if err != nil {
			return size, err
		}
	}
	const cols, batch = 6, 500
	for len(items) > 0 {
		k := min(len(items), cols*batch)
		q := "INSERT INTO app.items VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?),", k/cols), ",")
		if err := exec(q, items[:k]...); err != nil {
			return size, err
		}
		items = items[k:]
	}
	return size, tx.Commit()
}

// lostConnection reports whether err is the connection to a crashed or
// restarting server breaking, rather than a statement failing.
func lostConnection(err error) bool {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1053, 1927, 1158, 1159, 1160, 1161: // shutdown in progress, connection killed, network errors
			return true
		}
		return false
	}
	var ne net.Error
	return errors.Is(err, driver.ErrBadConn) || errors.Is(err, mysql.ErrInvalidConn) || errors.Is(err, sql.ErrConnDone) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne)
}

func int64s(t *testing.T, m *testenv.MariaDB, query string) []int64 {
	t.Helper()
	rows, err := m.DB(t).Query(query)
	if err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	defer rows.Close()
	var out []int64
	for rows.Next() {
		var n int64
		if err := rows.Scan(&n); err != nil {
			t.Fatal(err)
		}
		out = append(out, n)
	}
	if err := rows.Err(); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return out
}

func first(s []int64, n int) []int64 { return s[:min(len(s), n)] }

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// crashLogs keeps the whole output of every process the harness started,
// in a directory left in place when the test fails.
type crashLogs struct {
	t       *testing.T
	dir     string
	mu      sync.Mutex
	current map[string]*proc
	n       map[string]int
}

func newCrashLogs(t *testing.T) *crashLogs {
	t.Helper()
	dir, err := os.MkdirTemp("", "databus-crash-")
	if err != nil {
		t.Fatal(err)
	}
	l := &crashLogs{t: t, dir: dir, current: map[string]*proc{}, n: map[string]int{}}
	// Registered first, so it runs last: after every process was killed.
	t.Cleanup(func() {
		if !t.Failed() && os.Getenv("CRASH_KEEP_LOGS") == "" {
			os.RemoveAll(dir)
			return
		}
		l.mu.Lock()
		defer l.mu.Unlock()
		for name, p := range l.current {
			l.save(name, p)
		}
		t.Logf("the output of every process is in %s", dir)
	})
	return l
}

// track makes p the current process called name and saves the output of
// the one it replaces. It returns p.
func (l *crashLogs) track(name string, p *proc) *proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	if old := l.current[name]; old != nil {
		l.save(name, old)
	}
	l.current[name] = p
	return p
}

func (l *crashLogs) save(name string, p *proc) {
	l.n[name]++
	_ = os.WriteFile(filepath.Join(l.dir, fmt.Sprintf("%s-%03d.log", name, l.n[name])), []byte(p.out.String()), 0o600)
}

// fileOnFailure copies path into the directory if the test fails (a
// cleanup that runs before the test's earlier cleanups remove path).
func (l *crashLogs) fileOnFailure(name, path string) {
	l.t.Cleanup(func() {
		if l.t.Failed() {
			if b, err := os.ReadFile(path); err == nil {
				_ = os.WriteFile(filepath.Join(l.dir, name), b, 0o600)
			}
		}
	})
}
