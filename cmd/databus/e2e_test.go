package main

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/databus/databus/embedded"
	"github.com/databus/databus/internal/testenv"
	"github.com/databus/databus/sdk"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// builds holds the binaries built by goBuild, by package.
var builds sync.Map // string -> *build

type build struct {
	once sync.Once
	path string
	err  error
}

// goBuild builds the command pkg (a package path of this module or of a
// module in go.mod) once per test process and returns the binary's path.
func goBuild(t *testing.T, name, pkg string) string {
	t.Helper()
	v, _ := builds.LoadOrStore(pkg, &build{})
	b := v.(*build)
	b.once.Do(func() {
		dir, err := os.MkdirTemp("", "databus-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.path = filepath.Join(dir, name)
		out, err := exec.Command("go", "build", "-o", b.path, pkg).CombinedOutput()
		if err != nil {
			b.err = fmt.Errorf("go build %s: %v (the module cache needs it: go mod download)\n%s", pkg, err, out)
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.path
}

// binary builds cmd/databus once per test process.
func binary(t *testing.T) string {
	t.Helper()
	return goBuild(t, "databus", ".")
}

// proc is a databus process.
type proc struct {
	cmd    *exec.Cmd
	out    *syncBuffer
	exited chan struct{}
	code   int
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startDatabus starts the binary with env added to a clean DATABUS_-free
// environment; the process is killed when the test ends.
func startDatabus(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	return startProcess(t, binary(t), env, args...)
}

// startProcess starts bin as startDatabus starts databus.
func startProcess(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	return startCommand(t, exec.Command(bin, args...), env)
}

// startProcessGroup starts bin as startProcess does, in a process group of
// its own: signals reach the children it starts too (a shell script's).
func startProcessGroup(t *testing.T, bin string, env []string, args ...string) *proc {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return startCommand(t, cmd, env)
}

// startCommand starts cmd as startDatabus starts databus.
func startCommand(t *testing.T, cmd *exec.Cmd, env []string) *proc {
	t.Helper()
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DATABUS_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	// The metrics endpoint's default port is one per machine: off unless
	// a test asks for it.
	cmd.Env = append(cmd.Env, "DATABUS_HTTP_LISTEN=")
	cmd.Env = append(cmd.Env, env...)
	p := &proc{cmd: cmd, out: &syncBuffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		err := cmd.Wait()
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			p.code = ee.ExitCode()
		}
		close(p.exited)
	}()
	t.Cleanup(func() { p.kill() })
	return p
}

// signal sends sig to the process, or to its process group when it has
// one of its own (startProcessGroup).
func (p *proc) signal(sig syscall.Signal) error {
	if a := p.cmd.SysProcAttr; a != nil && a.Setpgid {
		return syscall.Kill(-p.cmd.Process.Pid, sig)
	}
	return p.cmd.Process.Signal(sig)
}

func (p *proc) kill() {
	_ = p.signal(syscall.SIGKILL)
	<-p.exited
}

// stop sends SIGTERM and returns the exit code, failing the test after
// 30s.
func (p *proc) stop(t *testing.T) int {
	t.Helper()
	_ = p.signal(syscall.SIGTERM)
	return p.wait(t, 30*time.Second)
}

// connectJS connects to the NATS server at url and opens JetStream; the
// connection is closed when the test ends.
func connectJS(t *testing.T, url string, opts ...nats.Option) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// waitRows waits until table on db holds n rows.
func waitRows(t *testing.T, db *testenv.MariaDB, table string, n int) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		var got int
		if err := db.DB(t).QueryRow("SELECT COUNT(*) FROM " + table).Scan(&got); err != nil || got != n {
			return fmt.Errorf("%s holds %d rows (%v), want %d", table, got, err, n)
		}
		return nil
	})
}

// wait returns the exit code, failing the test after timeout.
func (p *proc) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(timeout):
		t.Fatalf("databus %v still running after %v; output:\n%s", p.cmd.Args[1:], timeout, p.out.String())
	}
	return 0
}

// runDatabus runs the binary to completion and returns its exit code and
// output.
func runDatabus(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	p := startDatabus(t, env, args...)
	code := p.wait(t, 60*time.Second)
	return code, p.out.String()
}

// captureEnv is the environment of a databus capturing db with an embedded
// NATS server on a free port.
func captureEnv(t *testing.T, db *testenv.MariaDB) (env []string, natsURL string) {
	t.Helper()
	port := testenv.FreePort(t)
	return []string{
		"DATABUS_SOURCE=e2e",
		"DATABUS_MYSQL_ADDR=" + db.Addr(),
		"DATABUS_NATS_LISTEN=127.0.0.1:" + strconv.Itoa(port),
		"DATABUS_DATA_DIR=" + t.TempDir(),
		"DATABUS_MYSQL_RETRY_MAX=1s",
		"DATABUS_LOG_LEVEL=debug",
	}, "nats://127.0.0.1:" + strconv.Itoa(port)
}

// waitCapturing waits until databus status shows a checkpoint.
func waitCapturing(t *testing.T, env []string, p *proc) {
	t.Helper()
	testenv.Eventually(t, 30*time.Second, func() error {
		select {
		case <-p.exited:
			t.Fatalf("databus run exited with %d:\n%s", p.code, p.out.String())
		default:
		}
		code, out := runDatabus(t, env, "status")
		if code != 0 || !strings.Contains(out, `"checkpoint"`) {
			return fmt.Errorf("status: exit %d: %s", code, out)
		}
		return nil
	})
}

func TestKill9MidWriteLoadLosesNothingAndDuplicatesNothing(t *testing.T) {
	db := testenv.StartMariaDB(t)
	db.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.ledger (id INT PRIMARY KEY, txn INT NOT NULL, payload VARCHAR(200))")
	env, url := captureEnv(t, db)
	p := startDatabus(t, env, "run")
	waitCapturing(t, env, p)

	// Transactions of 1 to 5 rows, some as multi-row INSERTs, while
	// databus is killed with SIGKILL and restarted several times.
	const txns = 1500
	id := 0
	kills := loadWhileKilling(t, db, txns, func(tx *sql.Tx, n int) error {
		rows := 1 + n%5
		if n%2 == 0 {
			var vals []string
			for range rows {
				id++
				vals = append(vals, fmt.Sprintf("(%d, %d, REPEAT('x', %d))", id, n, id%150))
			}
			_, err := tx.Exec("INSERT INTO app.ledger VALUES " + strings.Join(vals, ","))
			return err
		}
		for range rows {
			id++
			if _, err := tx.Exec("INSERT INTO app.ledger VALUES (?, ?, 'y')", id, n); err != nil {
				return err
			}
		}
		return nil
	}, &p, func() *proc { return startDatabus(t, env, "run") }, 100, 300)
	if kills < 2 {
		// The load was too quick to be interrupted often: kill once more
		// after it, which still checks resumption.
		p.kill()
		kills++
		p = startDatabus(t, env, "run")
	}
	waitCapturing(t, env, p)
	var total int
	if err := db.DB(t).QueryRow("SELECT COUNT(*) FROM app.ledger").Scan(&total); err != nil {
		t.Fatal(err)
	}

	c, err := sdk.Connect(t.Context(), sdk.Config{URL: url, Source: "e2e", Name: "ledger", Start: sdk.StartBeginning, Tables: []string{"app.ledger"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	seen := map[string]int{}
	lastID, lastTxn := 0, -1
	for i := 0; i < total; i++ {
		m, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("after %d of %d events (%d kills): %v\ndatabus output:\n%s", i, total, kills, err, p.out.String())
		}
		id, _ := strconv.Atoi(fmt.Sprint(m.Event.Key["id"]))
		seen[fmt.Sprint(id)]++
		if id != lastID+1 {
			t.Fatalf("event %d: id %d after %d: out of order, lost or duplicated (%d kills)", i, id, lastID, kills)
		}
		txn, _ := strconv.Atoi(fmt.Sprint(m.Event.After["txn"]))
		if txn < lastTxn {
			t.Fatalf("event %d: transaction %d after %d", i, txn, lastTxn)
		}
		lastID, lastTxn = id, txn
		if err := m.Ack(ctx); err != nil {
			t.Fatal(err)
		}
	}
	extra, cancel2 := context.WithTimeout(t.Context(), time.Second)
	defer cancel2()
	if m, err := c.Next(extra); err == nil {
		t.Fatalf("event beyond the %d rows written: %s", total, m.Event.SQL)
	}
	t.Logf("%d transactions, %d rows, %d kill -9 of databus run: every row exactly once, in order", txns, total, kills)
}

func TestSIGTERMStopsCleanlyAndResumes(t *testing.T) {
	db := testenv.StartMariaDB(t)
	db.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	env, url := captureEnv(t, db)
	p := startDatabus(t, env, "run")
	waitCapturing(t, env, p)
	db.Exec(t, "INSERT INTO app.t VALUES (1), (2)")
	time.Sleep(200 * time.Millisecond) // let it publish before the signal; correctness does not depend on it
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM: got %d, want 0\n%s", code, p.out.String())
	}
	db.Exec(t, "INSERT INTO app.t VALUES (3)")
	p = startDatabus(t, env, "run")
	waitCapturing(t, env, p)

	code, out := runDatabus(t, append(env, "DATABUS_LOG_LEVEL=warn"), "tail", "--from", "beginning", "--count", "3", "--table", "app.t")
	if code != 0 {
		t.Fatalf("tail: exit %d\n%s", code, out)
	}
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		ev, err := sdk.DecodeEvent(sc.Bytes())
		if err != nil {
			t.Fatalf("tail printed a line that is not an event: %q: %v", sc.Text(), err)
		}
		ids = append(ids, fmt.Sprint(ev.Key["id"]))
	}
	if strings.Join(ids, ",") != "1,2,3" {
		t.Errorf("tail after restart: got ids %v, want 1,2,3", ids)
	}
	_ = url
}

func TestExitCodesAndMessages(t *testing.T) {
	db := testenv.StartMariaDB(t)
	db.Exec(t, "CREATE USER 'plain'@'%' IDENTIFIED BY 'pw'", "GRANT SELECT ON *.* TO 'plain'@'%'")
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	storeAFile := t.TempDir() // data_dir/nats, the JetStream store, is a file
	if err := os.WriteFile(filepath.Join(storeAFile, "nats"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	httpBusy := "DATABUS_HTTP_LISTEN=" + busy.Addr().String()
	badYAML := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(badYAML, []byte("mysql:\n  adress: x:1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := func(extra ...string) []string {
		env, _ := captureEnv(t, db)
		return append(env, extra...)
	}
	single := testenv.StartJetStream(t) // an external server, not clustered
	tests := []struct {
		name string
		env  []string
		args []string
		code int
		says []string
	}{
		{"unknown config key", base(), []string{"run", "--config", badYAML}, 2, []string{"mysql.adress", "unknown key"}},
		{"unknown env var", base("DATABUS_MYSQL_PORT=1"), []string{"run"}, 2, []string{"DATABUS_MYSQL_PORT"}},
		{"bad value", base(), []string{"run", "--nats-stream-replicas", "x"}, 2, []string{"nats.stream.replicas"}},
		{"unknown command", nil, []string{"runn"}, 2, []string{"unknown command"}},
		{"wrong password", base("DATABUS_MYSQL_USER=plain", "DATABUS_MYSQL_PASSWORD=nope"), []string{"run"}, 3, []string{"access denied", "mysql.password"}},
		{"missing privileges", base("DATABUS_MYSQL_USER=plain", "DATABUS_MYSQL_PASSWORD=pw"), []string{"run"}, 3, []string{"REPLICATION SLAVE", "GRANT"}},
		{"data dir not writable", base("DATABUS_DATA_DIR=" + filepath.Join(notADir, "sub")), []string{"run"}, 2, []string{"data_dir"}},
		{"nats port in use", base("DATABUS_NATS_LISTEN=" + busy.Addr().String()), []string{"run"}, 1, []string{"nats.listen", busy.Addr().String()}},
		{"JetStream store not a directory", base("DATABUS_DATA_DIR=" + storeAFile), []string{"run"}, 1, []string{"JetStream store", filepath.Join(storeAFile, "nats"), "data_dir"}},
		{"http port in use", base(httpBusy), []string{"run"}, 1, []string{"http.listen", busy.Addr().String(), "in use"}},
		{"http port in use for apply", base(httpBusy, "DATABUS_APPLY_TARGET=root@tcp("+db.Addr()+")/"), []string{"apply"}, 1, []string{"http.listen", "in use"}},
		{"bad http.listen", base("DATABUS_HTTP_LISTEN=nowhere"), []string{"run"}, 2, []string{"http.listen", "off"}},
		{"embedded NATS open to the network without users", base("DATABUS_NATS_LISTEN=0.0.0.0:4999"), []string{"run"}, 2, []string{"nats.listen", "nats.auth.reader.password", "nats.allow_unauthenticated"}},
		{"bad nkey", base("DATABUS_NATS_AUTH_READER_NKEY=SUAxyz"), []string{"run"}, 2, []string{"nats.auth.reader.nkey", "public nkey"}},
		{"replicas on the embedded single server", base("DATABUS_NATS_STREAM_REPLICAS=3"), []string{"run"}, 2,
			[]string{"nats.stream.replicas", "nats.cluster.routes", "nats.url"}},
		{"check refuses replicas the servers cannot hold", base("DATABUS_NATS_STREAM_REPLICAS=3"), []string{"check"}, 2, []string{"nats.stream.replicas"}},
		{"replicas beyond the embedded cluster", base("DATABUS_NATS_CLUSTER_LISTEN=127.0.0.1:6999", "DATABUS_NATS_CLUSTER_ROUTES=nats-route://127.0.0.1:6999,nats-route://127.0.0.1:6998",
			"DATABUS_NATS_STREAM_REPLICAS=3"), []string{"run"}, 2, []string{"nats.stream.replicas", "the cluster has 2 servers"}},
		{"cluster keys with an external server", base("DATABUS_NATS_URL="+single.URL, "DATABUS_NATS_CLUSTER_LISTEN=127.0.0.1:6999",
			"DATABUS_NATS_CLUSTER_ROUTES=nats-route://127.0.0.1:6998"), []string{"run"}, 2, []string{"nats.cluster.listen", "nats.url"}},
		{"replicas on an external server that is not clustered", base("DATABUS_NATS_URL="+single.URL, "DATABUS_NATS_STREAM_REPLICAS=3"), []string{"run"}, 2,
			[]string{"nats.stream.replicas", "not clustered"}},
		{"check reports replicas an external server cannot hold", base("DATABUS_NATS_URL="+single.URL, "DATABUS_NATS_STREAM_REPLICAS=3"), []string{"check"}, 3,
			[]string{"FAIL nats.stream.replicas", "not in a cluster", "fix: set nats.stream.replicas: 1"}},
		{"check reports failures", base("DATABUS_MYSQL_USER=plain", "DATABUS_MYSQL_PASSWORD=pw"), []string{"check"}, 3, []string{"FAIL privileges", "fix: GRANT"}},
		{"a start time without its zone", base(), []string{"tail", "--from", "2026-11-30T10:00:00"}, 2, []string{"--from", "2026-11-30T10:00:00", "RFC 3339", "gtid:<set>"}},
		{"a bad start GTID", base("DATABUS_APPLY_TARGET=root@tcp(" + db.Addr() + ")/"), []string{"apply", "--from", "gtid:0-1"}, 2, []string{"--from", "gtid:0-1"}},
		{"a bad capture start", base(), []string{"run", "--capture-start", "yesterday"}, 2, []string{"capture.start", "yesterday", "earliest", "FILE:OFFSET"}},
		{"a capture start the source does not have", base("DATABUS_CAPTURE_START=mysql-bin.999999:4"), []string{"run"}, 2, []string{"capture.start", "no binlog mysql-bin.999999"}},
		{"check reports a capture start the source does not have", base("DATABUS_CAPTURE_START=mysql-bin.000001:5"), []string{"check"}, 3,
			[]string{"FAIL capture.start", "no binlog event begins at offset 5", "fix: set capture.start"}},
		{"help", nil, []string{"run", "--help"}, 0, []string{"--config", "mysql-addr"}},
		{"version", nil, []string{"version"}, 0, []string{"databus", "event format v1"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out := runDatabus(t, tt.env, tt.args...)
			if code != tt.code {
				t.Errorf("exit code: got %d, want %d\n%s", code, tt.code, out)
			}
			for _, s := range tt.says {
				if !strings.Contains(out, s) {
					t.Errorf("output does not mention %q:\n%s", s, out)
				}
			}
		})
	}
}

func TestUnreachableMySQLIsRetriedAndLogged(t *testing.T) {
	db := testenv.StartMariaDB(t)
	db.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY)")
	env, url := captureEnv(t, db)
	db.Stop(t)
	p := startDatabus(t, env, "run")
	testenv.Eventually(t, 20*time.Second, func() error {
		if n := strings.Count(p.out.String(), "mysql unreachable"); n < 2 {
			return fmt.Errorf("%d retries logged so far:\n%s", n, p.out.String())
		}
		return nil
	})
	db.Restart(t)
	waitCapturing(t, env, p)
	c, err := sdk.Connect(t.Context(), sdk.Config{URL: url, Source: "e2e", Start: sdk.StartBeginning})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	db.Exec(t, "INSERT INTO app.t VALUES (42)")
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	m, err := c.Next(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(m.Event.Key["id"]) != "42" {
		t.Errorf("got %s", m.Event.SQL)
	}
}

func TestExternalNATSWithAuth(t *testing.T) {
	db := testenv.StartMariaDB(t)
	db.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, v JSON)")
	js := testenv.StartJetStream(t, embedded.Config{User: "bus", Password: "s3cret"})
	env := []string{
		"DATABUS_SOURCE=ext", "DATABUS_MYSQL_ADDR=" + db.Addr(), "DATABUS_DATA_DIR=" + t.TempDir(),
		"DATABUS_NATS_URL=" + js.URL, "DATABUS_NATS_USER=bus",
	}
	code, out := runDatabus(t, append(env, "DATABUS_NATS_PASSWORD=wrong"), "check")
	if code == 0 || !strings.Contains(out, "FAIL nats reachable") {
		t.Errorf("check with a wrong NATS password: exit %d\n%s", code, out)
	}
	if strings.Contains(out, "wrong") && strings.Contains(out, "PASSWORD=wrong") {
		t.Errorf("check printed the password:\n%s", out)
	}
	env = append(env, "DATABUS_NATS_PASSWORD=s3cret")
	p := startDatabus(t, env, "run")
	waitCapturing(t, env, p)
	db.Exec(t, `INSERT INTO app.t VALUES (1, '{"a": [1, 2.5, "x"]}')`)
	code, out = runDatabus(t, append(env, "DATABUS_LOG_LEVEL=warn"), "tail", "--from", "beginning", "--count", "1")
	if code != 0 {
		t.Fatalf("tail: exit %d\n%s", code, out)
	}
	var ev map[string]any
	if err := json.Unmarshal([]byte(strings.TrimSpace(out)), &ev); err != nil {
		t.Fatalf("tail output: %v\n%s", err, out)
	}
	if ev["db"] != "app" || ev["op"] != "insert" {
		t.Errorf("event through external NATS: %v", ev)
	}
	if strings.Contains(p.out.String(), "s3cret") {
		t.Errorf("databus logged the NATS password")
	}
}

func TestApplyKilledRepeatedlyMirrorsExactly(t *testing.T) {
	src := testenv.StartMariaDB(t)
	dst := testenv.StartMariaDB(t)
	src.Exec(t, "CREATE DATABASE app",
		"CREATE TABLE app.ledger (id INT PRIMARY KEY, txn INT NOT NULL, amount DECIMAL(12,2))",
		"CREATE TABLE app.balance (account INT PRIMARY KEY, total DECIMAL(14,2) NOT NULL)",
		"INSERT INTO app.balance VALUES (1, 0), (2, 0), (3, 0)")
	env, _ := captureEnv(t, src)
	run := startDatabus(t, env, "run")
	waitCapturing(t, env, run)
	// The target starts from the same schema and rows (as a snapshot would).
	dst.Exec(t, "CREATE DATABASE app",
		"CREATE TABLE app.ledger (id INT PRIMARY KEY, txn INT NOT NULL, amount DECIMAL(12,2))",
		"CREATE TABLE app.balance (account INT PRIMARY KEY, total DECIMAL(14,2) NOT NULL)",
		"INSERT INTO app.balance VALUES (1, 0), (2, 0), (3, 0)")

	applyEnv := append(env, "DATABUS_LOG_LEVEL=info")
	applyArgs := []string{"apply", "--target", dst.DSN(""), "--from", "now", "--progress", "200ms"}
	ap := startDatabus(t, applyEnv, applyArgs...)
	testenv.Eventually(t, 20*time.Second, func() error { // "now" is pinned on the target
		var seq uint64
		return dst.DB(t).QueryRow("SELECT stream_seq FROM databus.apply_checkpoint").Scan(&seq)
	})

	const txns = 2000
	id := 0
	kills := loadWhileKilling(t, src, txns, func(tx *sql.Tx, n int) error {
		for range 1 + n%4 {
			id++
			amount := fmt.Sprintf("%d.%02d", id%100, id%97)
			if _, err := tx.Exec("INSERT INTO app.ledger VALUES (?, ?, ?)", id, n, amount); err != nil {
				return err
			}
			if _, err := tx.Exec("UPDATE app.balance SET total = total + ? WHERE account = ?", amount, 1+id%3); err != nil {
				return err
			}
		}
		return nil
	}, &ap, func() *proc { return startDatabus(t, applyEnv, applyArgs...) }, 50, 150)
	testenv.Eventually(t, 60*time.Second, func() error {
		select {
		case <-ap.exited:
			t.Fatalf("apply exited with %d:\n%s", ap.code, ap.out.String())
		default:
		}
		var n int
		if err := dst.DB(t).QueryRow("SELECT COUNT(*) FROM app.ledger").Scan(&n); err != nil {
			return err
		}
		var want int
		if err := src.DB(t).QueryRow("SELECT COUNT(*) FROM app.ledger").Scan(&want); err != nil {
			return err
		}
		if n != want {
			return fmt.Errorf("target has %d of %d ledger rows", n, want)
		}
		return nil
	})
	for _, table := range []string{"app.ledger", "app.balance"} {
		if a, b := src.Checksum(t, table), dst.Checksum(t, table); a != b {
			t.Errorf("%s: CHECKSUM TABLE source %s, target %s (%d kills of apply)", table, a, b, kills)
		}
	}
	if !strings.Contains(ap.out.String(), "resuming after the target's checkpoint") {
		t.Errorf("the last apply did not resume from the target's checkpoint:\n%s", ap.out.String())
	}
	t.Logf("%d transactions mirrored with %d kill -9 of databus apply", txns, kills)
}

// loadWhileKilling commits txns transactions, each built by write, from a
// goroutine; until they are all committed it kills *p with SIGKILL at
// random intervals of minMs to minMs+spanMs and replaces it with start().
// It returns how many times it killed.
func loadWhileKilling(t *testing.T, db *testenv.MariaDB, txns int, write func(tx *sql.Tx, n int) error, p **proc, start func() *proc, minMs, spanMs int) int {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for n := range txns {
			tx, err := db.DB(t).Begin()
			if err == nil {
				if err = write(tx, n); err == nil {
					err = tx.Commit()
				} else {
					_ = tx.Rollback()
				}
			}
			if err != nil {
				done <- fmt.Errorf("transaction %d: %w", n, err)
				return
			}
		}
		done <- nil
	}()
	kills := 0
	for {
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("writer: %v", err)
			}
			return kills
		case <-time.After(time.Duration(minMs+rand.IntN(spanMs)) * time.Millisecond):
			select {
			case <-(*p).exited:
				t.Fatalf("%v exited by itself with %d:\n%s", (*p).cmd.Args[1:], (*p).code, (*p).out.String())
			default:
			}
			(*p).kill()
			kills++
			*p = start()
		}
	}
}

func TestSnapshotCommandThenTailFromSnapshot(t *testing.T) {
	db := testenv.StartMariaDB(t)
	db.Exec(t, "CREATE DATABASE shop", "CREATE TABLE shop.orders (id INT PRIMARY KEY, total DECIMAL(10,2))",
		"INSERT INTO shop.orders VALUES (1, 1.50), (2, 2.50)")
	env, _ := captureEnv(t, db)
	env = append(env, "DATABUS_SNAPSHOT_ON_START=false")
	p := startDatabus(t, env, "run")
	waitCapturing(t, env, p)
	code, out := runDatabus(t, env, "snapshot")
	if code != 0 || !strings.Contains(out, "snapshot ") || !strings.Contains(out, "2 rows") {
		t.Fatalf("databus snapshot: exit %d\n%s", code, out)
	}
	db.Exec(t, "INSERT INTO shop.orders VALUES (3, 3.50)")
	code, out = runDatabus(t, append(env, "DATABUS_LOG_LEVEL=warn"), "tail", "--from", "snapshot", "--count", "4")
	if code != 0 {
		t.Fatalf("tail --from snapshot: exit %d\n%s", code, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	var got []string
	for _, l := range lines {
		var ev sdk.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("tail line %q: %v", l, err)
		}
		got = append(got, fmt.Sprintf("%s:%v:%v", ev.Op, ev.Key["id"], ev.Snapshot))
	}
	if want := "ddl:<nil>:true insert:1:true insert:2:true insert:3:false"; strings.Join(got, " ") != want {
		t.Errorf("tail --from snapshot: got %s, want %s", strings.Join(got, " "), want)
	}
	code, out = runDatabus(t, env, "status")
	if code != 0 || !strings.Contains(out, `"latest": true`) {
		t.Errorf("status does not list the snapshot: exit %d\n%s", code, out)
	}
}

// DATABUS_CAPTURE_START=earliest captures the history the server's
// binlogs hold, and takes no first snapshot; a restart under another start
// exits 2 naming the checkpoint's.
func TestCaptureStartEarliestTakesNoFirstSnapshot(t *testing.T) {
	db := testenv.StartMariaDB(t)
	db.Exec(t, "CREATE DATABASE shop", "CREATE TABLE shop.orders (id INT PRIMARY KEY)", "INSERT INTO shop.orders VALUES (1), (2)")
	env, _ := captureEnv(t, db)
	if code, out := runDatabus(t, append(env, "DATABUS_CAPTURE_START=earliest"), "check"); code != 0 || !strings.Contains(out, "earliest: a first capture begins at mysql-bin.000001:4") {
		t.Errorf("check: exit %d, want 0 and where capture begins\n%s", code, out)
	}
	p := startDatabus(t, append(env, "DATABUS_CAPTURE_START=earliest"), "run")
	waitCapturing(t, env, p)
	code, out := runDatabus(t, append(env, "DATABUS_LOG_LEVEL=warn"), "tail", "--from", "beginning", "--db", "shop", "--count", "4")
	if code != 0 {
		t.Fatalf("tail: exit %d\n%s", code, out)
	}
	var got []string
	for l := range strings.Lines(strings.TrimSpace(out)) {
		var ev sdk.Event
		if err := json.Unmarshal([]byte(l), &ev); err != nil {
			t.Fatalf("tail line %q: %v", l, err)
		}
		got = append(got, fmt.Sprintf("%s:%v", ev.Op, ev.Key["id"]))
	}
	if want := "ddl:<nil> ddl:<nil> insert:1 insert:2"; strings.Join(got, " ") != want {
		t.Errorf("captured from the earliest binlog: got %s, want %s", strings.Join(got, " "), want)
	}
	if !strings.Contains(p.out.String(), "no first snapshot") {
		t.Errorf("the log does not say that no first snapshot is taken:\n%s", p.out.String())
	}
	code, out = runDatabus(t, env, "status")
	if code != 0 || strings.Contains(out, `"latest": true`) {
		t.Errorf("status: exit %d, want no snapshot\n%s", code, out)
	}
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM: got %d\n%s", code, p.out.String())
	}
	code, out = runDatabus(t, append(env, "DATABUS_CAPTURE_START=mysql-bin.000001:4"), "run")
	if code != 2 || !strings.Contains(out, "began at earliest") || !strings.Contains(out, "--recover") {
		t.Errorf("a restart under another capture.start: exit %d, want 2 naming the checkpoint's start and --recover\n%s", code, out)
	}
}

func TestPurgedBinlogExitsThreeThenRecoverTakesANewSnapshot(t *testing.T) {
	db := testenv.StartMariaDB(t)
	db.Exec(t, "CREATE DATABASE shop", "CREATE TABLE shop.orders (id INT PRIMARY KEY)", "INSERT INTO shop.orders VALUES (1)")
	env, _ := captureEnv(t, db)
	env = append(env, "DATABUS_SNAPSHOT_ON_START=false")
	p := startDatabus(t, env, "run")
	waitCapturing(t, env, p)
	if code := p.stop(t); code != 0 {
		t.Fatalf("exit code after SIGTERM: got %d\n%s", code, p.out.String())
	}
	// Written while databus is down, then purged from the binlog.
	db.Exec(t, "INSERT INTO shop.orders VALUES (2)")
	oldest := db.RotateAndPurge(t, 2)

	code, out := runDatabus(t, env, "run")
	if code != 3 || !strings.Contains(out, "purged") || !strings.Contains(out, oldest) || !strings.Contains(out, "--recover") {
		t.Fatalf("run from a purged binlog: exit %d, want 3 and a message naming the oldest binlog %s and --recover:\n%s", code, oldest, out)
	}
	p = startDatabus(t, env, "run", "--recover")
	waitCapturing(t, env, p)
	testenv.Eventually(t, 60*time.Second, func() error {
		code, out := runDatabus(t, env, "status")
		if code != 0 || !strings.Contains(out, `"latest": true`) {
			return fmt.Errorf("no snapshot after --recover: exit %d\n%s", code, out)
		}
		return nil
	})
	db.Exec(t, "INSERT INTO shop.orders VALUES (3)")
	// The snapshot holds the row the stream lost; the stream goes on after it.
	code, out = runDatabus(t, append(env, "DATABUS_LOG_LEVEL=warn"), "tail", "--from", "snapshot", "--count", "4")
	if code != 0 {
		t.Fatalf("tail --from snapshot: exit %d\n%s", code, out)
	}
	var got []string
	for l := range strings.SplitSeq(strings.TrimSpace(out), "\n") {
		ev, err := sdk.DecodeEvent([]byte(l))
		if err != nil {
			t.Fatalf("tail line %q: %v", l, err)
		}
		got = append(got, fmt.Sprintf("%s:%v:%v", ev.Op, ev.Key["id"], ev.Snapshot))
	}
	if want := "ddl:<nil>:true insert:1:true insert:2:true insert:3:false"; strings.Join(got, " ") != want {
		t.Errorf("after --recover: got %s, want %s", strings.Join(got, " "), want)
	}
}

// A value capture cannot represent stops capture, not the embedded NATS
// server: consumers still read what was captured, `databus status` names
// the cause and exits non-zero, and so does the process when it ends.
func TestCaptureStopKeepsTheEmbeddedServerUp(t *testing.T) {
	db := testenv.StartMariaDB(t)
	db.Exec(t, "CREATE DATABASE app", "CREATE TABLE app.t (id INT PRIMARY KEY, name VARCHAR(10) CHARACTER SET cp1250)")
	env, _ := captureEnv(t, db)
	p := startDatabus(t, env, "run")
	waitCapturing(t, env, p)
	db.Exec(t, "INSERT INTO app.t VALUES (1, 'fine')")
	// cp1250 has no character 0x81: the server stores the byte and
	// converts it to '?'.
	db.Exec(t, "INSERT INTO app.t VALUES (2, CAST(X'81' AS CHAR CHARACTER SET cp1250))")
	testenv.Eventually(t, 30*time.Second, func() error {
		if !strings.Contains(p.out.String(), "capture stopped") {
			return fmt.Errorf("no \"capture stopped\" in the log yet")
		}
		return nil
	})
	select {
	case <-p.exited:
		t.Fatalf("databus run exited when capture stopped:\n%s", p.out.String())
	default:
	}
	// The stream is still served: the row before the bad one is there.
	code, out := runDatabus(t, env, "tail", "--from", "beginning", "--count", "1")
	if code != 0 || !strings.Contains(out, `"fine"`) {
		t.Fatalf("tail while capture is stopped: exit %d\n%s", code, out)
	}
	code, out = runDatabus(t, env, "status")
	if code == 0 {
		t.Errorf("status exits 0 while capture is stopped:\n%s", out)
	}
	for _, s := range []string{"capture_stopped", "app.t", "cp1250", "capture is stopped by an error", `"state": "stopped"`} {
		if !strings.Contains(out, s) {
			t.Errorf("status does not mention %q:\n%s", s, out)
		}
	}
	if code := p.stop(t); code == 0 || !strings.Contains(p.out.String(), "databus run: ") {
		t.Errorf("exit code %d after SIGTERM of a stopped capture; want non-zero with the cause:\n%s", code, p.out.String())
	}
}
