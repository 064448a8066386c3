package testenv

import (
	"database/sql"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "github.com/go-sql-driver/mysql" // database/sql driver
)

// installHint is the message of every failure to find the server binaries.
const installHint = "install MariaDB (Debian/Ubuntu: apt-get update && apt-get install -y mariadb-server)"

// MariaDB is a throwaway mariadbd started for one test.
type MariaDB struct {
	Host     string
	Port     int
	DataDir  string
	ServerID uint32

	bin    string
	args   []string
	sock   string
	cmd    *exec.Cmd
	exited chan struct{}
	db     *sql.DB
	mu     sync.Mutex
}

var (
	templateOnce sync.Once
	templateDir  string
	templateErr  error
)

func findBinary(names ...string) (string, error) {
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p, nil
		}
		for _, dir := range []string{"/usr/sbin", "/usr/bin", "/usr/local/bin", "/usr/local/mysql/bin"} {
			p := filepath.Join(dir, n)
			if st, err := os.Stat(p); err == nil && !st.IsDir() {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%s not found: %s", names[0], installHint)
}

// template returns an initialised data directory whose root user accepts
// TCP connections from 127.0.0.1 without password, which servers copy.
// It is shared by every test process on the machine and made once per
// installed server (its path, size and time): a template per process
// (114 MB each) filled the disk of a machine that keeps /tmp.
func template() (string, error) {
	templateOnce.Do(func() {
		templateDir, templateErr = sharedTemplate()
	})
	return templateDir, templateErr
}

func sharedTemplate() (string, error) {
	install, err := findBinary("mariadb-install-db", "mysql_install_db")
	if err != nil {
		return "", err
	}
	server, err := findBinary("mariadbd", "mysqld")
	if err != nil {
		return "", err
	}
	st, err := os.Stat(server)
	if err != nil {
		return "", err
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s %s %d %d", install, server, st.Size(), st.ModTime().UnixNano())
	final := filepath.Join(os.TempDir(), fmt.Sprintf("databus-mariadb-template-%x", h.Sum64()))
	data := filepath.Join(final, "data")
	if _, err := os.Stat(data); err == nil {
		return data, nil
	}
	// Made aside and renamed into place: processes that start at the
	// same time each make one, the first rename wins, and nobody copies
	// a half-made one.
	dir, err := os.MkdirTemp("", "databus-mariadb-template-new-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "tmp")
	if err := os.Mkdir(tmp, 0o700); err != nil {
		return "", err
	}
	// A tmpdir of its own, as every test server has: test processes of
	// other packages install their templates at the same time, and a
	// shared /tmp let one remove the other's temporary tables.
	out, err := exec.Command(install, "--no-defaults", "--datadir="+filepath.Join(dir, "data"), "--auth-root-authentication-method=normal",
		"--skip-test-db", "--user=root", "--tmpdir="+tmp).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("mariadb-install-db: %v\n%s", err, out)
	}
	if err := os.Rename(dir, final); err != nil {
		if _, serr := os.Stat(data); serr != nil {
			return "", fmt.Errorf("placing the MariaDB template at %s: %w", final, err)
		}
	}
	return data, nil
}

// StartMariaDB starts a fresh mariadbd with its own data directory, on a
// free loopback port, with the binlog on in ROW format with FULL row image
// and metadata, and stops it when the test ends. Extra mariadbd options
// (e.g. "--binlog-format=STATEMENT") come last and win. It fails the test,
// never skips it, when MariaDB is not installed.
func StartMariaDB(t testing.TB, extra ...string) *MariaDB {
	t.Helper()
	if testing.Short() {
		// `go test -short` (make test-short) runs the unit tests only;
		// make test runs this one, and fails when mariadbd is missing.
		t.Skip("integration test: needs a throwaway mariadbd, skipped by -short (make test runs it)")
	}
	bin, err := findBinary("mariadbd", "mysqld")
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := template()
	if err != nil {
		t.Fatalf("preparing a MariaDB data directory: %v", err)
	}
	root := t.TempDir()
	m := &MariaDB{Host: "127.0.0.1", DataDir: filepath.Join(root, "data"), ServerID: 1, bin: bin}
	if err := copyDir(tmpl, m.DataDir); err != nil {
		t.Fatalf("copying the MariaDB template: %v", err)
	}
	sockDir, err := os.MkdirTemp("", "mdb")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	m.sock = filepath.Join(sockDir, "s")
	for _, a := range extra {
		if v, ok := strings.CutPrefix(a, "--server-id="); ok {
			id, _ := strconv.ParseUint(v, 10, 32)
			m.ServerID = uint32(id)
		}
	}
	// Each server has its own tmpdir: servers of parallel test processes
	// must not share internal temporary tables.
	tmp := filepath.Join(root, "tmp")
	if err := os.Mkdir(tmp, 0o750); err != nil {
		t.Fatal(err)
	}
	m.args = append([]string{
		"--no-defaults",
		"--datadir=" + m.DataDir,
		"--socket=" + m.sock,
		"--pid-file=" + filepath.Join(root, "mariadbd.pid"),
		"--tmpdir=" + tmp,
		"--bind-address=127.0.0.1",
		"--user=root",
		"--log-bin=mysql-bin",
		"--binlog-format=ROW",
		"--binlog-row-image=FULL",
		"--binlog-row-metadata=FULL",
		"--server-id=" + strconv.FormatUint(uint64(m.ServerID), 10),
		"--log-error=" + filepath.Join(m.DataDir, "error.log"),
		"--skip-name-resolve",
		"--innodb-buffer-pool-size=32M",
		"--innodb-log-file-size=16M",
		"--innodb-flush-log-at-trx-commit=2",
		"--sync-binlog=0",
		"--skip-innodb-doublewrite",
		"--performance-schema=OFF",
		"--max-connections=200",
	}, extra...)
	// A port found free can be taken by another test process before the
	// server binds it: try another.
	for attempt := 1; ; attempt++ {
		m.Port = FreePort(t)
		if m.tryStart(t) {
			break
		}
		if attempt == 5 {
			t.Fatalf("mariadbd found its port taken 5 times:\n%s", m.logTail())
		}
	}
	t.Cleanup(func() {
		m.mu.Lock()
		if m.db != nil {
			m.db.Close()
			m.db = nil
		}
		m.mu.Unlock()
		if m.crashed() {
			t.Errorf("mariadbd on %s exited while the test ran, which no test expects:\n%s", m.Addr(), m.logTail())
		}
		m.Stop(t)
	})
	m.Exec(t, "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'", "GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION")
	return m
}

// start starts the server on m.Port, waiting while another process holds
// the port (a restart keeps its port).
func (m *MariaDB) start(t testing.TB) {
	t.Helper()
	for attempt := 1; !m.tryStart(t); attempt++ {
		if attempt == 10 {
			t.Fatalf("mariadbd found its port %d taken for 10s:\n%s", m.Port, m.logTail())
		}
		time.Sleep(time.Second)
	}
}

// tryStart starts the server and waits until it answers. It returns false
// when the server could not bind its port, and fails the test on any
// other problem.
func (m *MariaDB) tryStart(t testing.TB) bool {
	t.Helper()
	logSize := int64(0)
	if fi, err := os.Stat(filepath.Join(m.DataDir, "error.log")); err == nil {
		logSize = fi.Size()
	}
	args := append([]string{}, m.args...)
	args = append(args[:1], append([]string{"--port=" + strconv.Itoa(m.Port)}, args[1:]...)...)
	cmd := exec.Command(m.bin, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", m.bin, err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	m.cmd, m.exited = cmd, exited

	deadline := time.Now().Add(60 * time.Second)
	for {
		select {
		case <-exited:
			if m.portTaken(logSize) {
				return false
			}
			t.Fatalf("mariadbd exited during start-up:\n%s", m.logTail())
		default:
		}
		if err := m.ping(); err == nil {
			return true
		} else if time.Now().After(deadline) {
			m.Kill(t)
			t.Fatalf("mariadbd not ready after 60s: %v\n%s", err, m.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// portTaken reports whether the server's error log, past offset from,
// says that its port was in use.
func (m *MariaDB) portTaken(from int64) bool {
	b, err := os.ReadFile(filepath.Join(m.DataDir, "error.log"))
	return err == nil && int64(len(b)) > from && strings.Contains(string(b[from:]), "Address already in use")
}

// crashed reports whether the server exited without Stop or Kill.
func (m *MariaDB) crashed() bool {
	if m.cmd == nil {
		return false
	}
	select {
	case <-m.exited:
		return true
	default:
		return false
	}
}

// ping connects over the unix socket: root@localhost exists in a fresh data
// directory, root@127.0.0.1 only after the first start.
func (m *MariaDB) ping() error {
	db, err := sql.Open("mysql", "root@unix("+m.sock+")/")
	if err != nil {
		return err
	}
	defer db.Close()
	return db.Ping()
}

func (m *MariaDB) logTail() string {
	b, err := os.ReadFile(filepath.Join(m.DataDir, "error.log"))
	if err != nil {
		return "(no error log: " + err.Error() + ")"
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// Addr returns "127.0.0.1:PORT".
func (m *MariaDB) Addr() string { return m.Host + ":" + strconv.Itoa(m.Port) }

// DSN returns a go-sql-driver DSN for root on database db.
func (m *MariaDB) DSN(db string) string {
	return "root@tcp(" + m.Addr() + ")/" + db + "?multiStatements=true&charset=utf8mb4"
}

// DB returns a connection pool as root over the server's unix socket
// (which require_secure_transport allows), closed when the test ends.
func (m *MariaDB) DB(t testing.TB) *sql.DB {
	t.Helper()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.db == nil {
		db, err := sql.Open("mysql", "root@unix("+m.sock+")/?multiStatements=true&charset=utf8mb4")
		if err != nil {
			t.Fatal(err)
		}
		m.db = db
	}
	return m.db
}

// Checksum returns CHECKSUM TABLE of table ("db.table") on m.
func (m *MariaDB) Checksum(t testing.TB, table string) string {
	t.Helper()
	var name string
	var sum sql.NullString
	if err := m.DB(t).QueryRow("CHECKSUM TABLE "+table).Scan(&name, &sum); err != nil {
		t.Fatalf("CHECKSUM TABLE %s on %s: %v", table, m.Addr(), err)
	}
	return sum.String
}

// Exec runs each statement in order on one connection, so BEGIN and COMMIT
// work, and fails the test on the first error.
func (m *MariaDB) Exec(t testing.TB, stmts ...string) {
	t.Helper()
	conn, err := m.DB(t).Conn(t.Context())
	if err != nil {
		t.Fatalf("connecting to %s: %v", m.Addr(), err)
	}
	defer conn.Close()
	for _, s := range stmts {
		if _, err := conn.ExecContext(t.Context(), s); err != nil {
			t.Fatalf("%s: %v", s, err)
		}
	}
}

// Stop shuts the server down gracefully (SIGTERM), killing it after 20s.
// It is idempotent.
func (m *MariaDB) Stop(t testing.TB) {
	t.Helper()
	m.signal(syscall.SIGTERM, 20*time.Second)
}

// Kill stops the server with SIGKILL, as a crash would. It is idempotent.
func (m *MariaDB) Kill(t testing.TB) {
	t.Helper()
	m.signal(syscall.SIGKILL, 10*time.Second)
}

func (m *MariaDB) signal(sig syscall.Signal, wait time.Duration) {
	if m.cmd == nil {
		return
	}
	_ = m.cmd.Process.Signal(sig)
	select {
	case <-m.exited:
	case <-time.After(wait):
		_ = syscall.Kill(-m.cmd.Process.Pid, syscall.SIGKILL)
		<-m.exited
	}
	m.cmd = nil
	m.mu.Lock()
	if m.db != nil {
		m.db.Close()
		m.db = nil
	}
	m.mu.Unlock()
}

// Restart starts a stopped or killed server again on the same data
// directory and port.
func (m *MariaDB) Restart(t testing.TB) {
	t.Helper()
	m.Stop(t)
	m.start(t)
}

func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o750)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, b, 0o640)
	})
}

// CurrentBinlog is the binlog file the server writes to now.
func (m *MariaDB) CurrentBinlog(t testing.TB) string {
	t.Helper()
	var file, pos, doDB, ignoreDB string
	if err := m.DB(t).QueryRow("SHOW MASTER STATUS").Scan(&file, &pos, &doDB, &ignoreDB); err != nil {
		t.Fatal(err)
	}
	return file
}

// PurgeBinlogsTo purges the binlog files before file. The server keeps a
// file a binlog dump thread still reads, and the thread of a stopped
// capture ends only when the server notices: it purges until file is the
// oldest left.
func (m *MariaDB) PurgeBinlogsTo(t testing.TB, file string) {
	t.Helper()
	Eventually(t, 20*time.Second, func() error {
		if _, err := m.DB(t).Exec("PURGE BINARY LOGS TO '" + file + "'"); err != nil {
			return err
		}
		var first, size string
		if err := m.DB(t).QueryRow("SHOW BINARY LOGS").Scan(&first, &size); err != nil {
			return err
		}
		if first != file {
			return fmt.Errorf("binlog %s is still there", first)
		}
		return nil
	})
}

// RotateAndPurge starts n new binlog files and purges every file before
// the newest, which it returns.
func (m *MariaDB) RotateAndPurge(t testing.TB, n int) string {
	t.Helper()
	for range n {
		m.Exec(t, "FLUSH BINARY LOGS")
	}
	cur := m.CurrentBinlog(t)
	m.PurgeBinlogsTo(t, cur)
	return cur
}
