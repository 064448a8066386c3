package ddl_test

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/databus/databus/internal/charset"
	"github.com/databus/databus/internal/ddl"
	"github.com/databus/databus/internal/testenv"
)

// The DDL corpus harness checks that a qualified statement means on a
// target what the original meant on the source. For each statement of a
// corpus of mysqltest scripts it runs the original on server A (binlog in
// ROW format) in the script's default database, takes what A logged —
// what capture reads — qualifies it as capture does, runs the published
// SQL on server B from another default database, and compares SHOW CREATE
// TABLE of every table the statement touched on both. Other statements
// (INSERT, SET NAMES, SET sql_mode…) run on both servers, so that both
// hold the same data and session settings.
//
// make test runs it on testdata/corpus.test; make ddl-corpus on every
// script of MariaDB's own test suite (DDL_CORPUS=/usr/share/mysql/mysql-test,
// from the mariadb-test package). DDL_CORPUS_WORKERS runs that many server
// pairs; DDL_CORPUS_REPORT writes every difference to a file;
// DDL_CORPUS_VERBOSE=1 logs the statements the source refused.

// corpusStats counts what the harness checked. A script stops at its
// first difference: a CREATE or ALTER TABLE whose result differs, or
// another statement the target rejects (diverged).
type corpusStats struct {
	files, statements, ran, checked int
	differ, diverged                []string
	// serverLog are the differences the server's log makes itself.
	serverLog []string
	// undecodable are statements that are not text in their character
	// set: capture stops on them.
	undecodable []string
}

func (s *corpusStats) add(o corpusStats) {
	s.files += o.files
	s.statements += o.statements
	s.ran += o.ran
	s.checked += o.checked
	s.differ = append(s.differ, o.differ...)
	s.diverged = append(s.diverged, o.diverged...)
	s.serverLog = append(s.serverLog, o.serverLog...)
	s.undecodable = append(s.undecodable, o.undecodable...)
}

func TestDDLCorpus(t *testing.T) {
	files := []string{filepath.Join("testdata", "corpus.test")}
	if dir := os.Getenv("DDL_CORPUS"); dir != "" {
		files = nil
		err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
			if err == nil && !d.IsDir() && strings.HasSuffix(path, ".test") {
				files = append(files, path)
			}
			return err
		})
		if err != nil || len(files) == 0 {
			t.Fatalf("DDL_CORPUS=%s: %d .test files (%v); install MariaDB's test suite with apt-get install mariadb-test", dir, len(files), err)
		}
		slices.Sort(files)
	}
	workers := 1
	if n, err := strconv.Atoi(os.Getenv("DDL_CORPUS_WORKERS")); err == nil && n > 0 {
		workers = n
	}
	var (
		mu    sync.Mutex
		total corpusStats
		next  = make(chan string)
		wg    sync.WaitGroup
	)
	for w := 0; w < workers; w++ {
		h := newCorpusPair(t)
		wg.Go(func() {
			for f := range next {
				st := h.runFile(t, f)
				mu.Lock()
				total.add(st)
				if total.files%200 == 0 {
					t.Logf("%d of %d files: %d statements, %d ran, %d CREATE/ALTER TABLE checked, %d differ", total.files, len(files),
						total.statements, total.ran, total.checked, len(total.differ))
				}
				mu.Unlock()
			}
		})
	}
	for _, f := range files {
		next <- f
	}
	close(next)
	wg.Wait()
	t.Logf("%d files, %d statements, %d ran on a plain server; %d CREATE TABLE and ALTER TABLE statements checked, %d differ; "+
		"%d scripts stopped early at another statement the target rejected; %d differences the server's log makes itself (the logged statement, unqualified, makes the same table); "+
		"%d statements not text in their character set (capture stops on them)",
		total.files, total.statements, total.ran, total.checked, len(total.differ), len(total.diverged), len(total.serverLog), len(total.undecodable))
	if report := os.Getenv("DDL_CORPUS_REPORT"); report != "" {
		all := append(append(append([]string{"# differ"}, total.differ...), "# stopped early"), total.diverged...)
		all = append(append(all, "# made by the server's log"), total.serverLog...)
		all = append(append(all, "# not text in their character set"), total.undecodable...)
		if err := os.WriteFile(report, []byte(strings.Join(all, "\n\n")+"\n"), 0o644); err != nil {
			t.Error(err)
		}
	}
	if total.checked == 0 {
		t.Fatal("no CREATE TABLE or ALTER TABLE statement was checked")
	}
	for i, d := range append(total.differ, total.diverged...) {
		if i == 30 {
			t.Errorf("… and %d more", len(total.differ)+len(total.diverged)-30)
			break
		}
		t.Error(d)
	}
}

// corpusPair is a source server A and a target B.
type corpusPair struct {
	a, b *testenv.MariaDB
}

func newCorpusPair(t *testing.T) *corpusPair {
	fast := []string{"--innodb-flush-log-at-trx-commit=0", "--sync-binlog=0", "--innodb-doublewrite=0"}
	return &corpusPair{a: testenv.StartMariaDB(t, fast...), b: testenv.StartMariaDB(t, append(fast, "--skip-log-bin")...)}
}

// session is one connection with the default database it has.
type session struct {
	conn *sql.Conn
	db   string
}

func (p *corpusPair) conn(t *testing.T, m *testenv.MariaDB, db string) *session {
	t.Helper()
	c, err := m.DB(t).Conn(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// A statement of the corpus may run for long (SLEEP, big loops): it
	// counts as not run.
	if _, err := c.ExecContext(t.Context(), "SET SESSION max_statement_time = 10"); err != nil {
		t.Fatal(err)
	}
	if _, err := c.ExecContext(t.Context(), "USE `"+db+"`"); err != nil {
		t.Fatal(err)
	}
	return &session{conn: c, db: db}
}

// close closes the connection for good: the script changed its session,
// which must not go back to the pool.
func (s *session) close() {
	_ = s.conn.Raw(func(any) error { return driver.ErrBadConn })
	s.conn.Close()
}

func (s *session) exec(ctx context.Context, q string) error {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err := s.conn.ExecContext(ctx, q)
	return err
}

// reset drops every database a script created and creates test and
// scratch, empty.
func reset(t *testing.T, m *testenv.MariaDB) {
	t.Helper()
	rows, err := m.DB(t).Query("SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME NOT IN ('mysql', 'information_schema', 'performance_schema', 'sys')")
	if err != nil {
		t.Fatal(err)
	}
	var dbs []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			t.Fatal(err)
		}
		dbs = append(dbs, name)
	}
	rows.Close()
	for _, db := range dbs {
		if _, err := m.DB(t).Exec("DROP DATABASE `" + strings.ReplaceAll(db, "`", "``") + "`"); err != nil {
			t.Logf("dropping database %s: %v", db, err)
		}
	}
	m.Exec(t, "CREATE DATABASE test", "CREATE DATABASE scratch")
}

// runFile runs one script.
func (p *corpusPair) runFile(t *testing.T, path string) corpusStats {
	st := corpusStats{files: 1}
	text, err := os.ReadFile(path)
	if err != nil {
		t.Error(err)
		return st
	}
	reset(t, p.a)
	reset(t, p.b)
	a := p.conn(t, p.a, "test")
	defer a.close()
	bData := p.conn(t, p.b, "test") // statements other than DDL, in the script's database
	defer bData.close()
	bDDL := p.conn(t, p.b, "scratch") // published DDL: it must name its databases
	defer bDDL.close()
	bPass := p.conn(t, p.b, "test") // published DDL that is not qualified, run in its default database
	defer bPass.close()
	// The binlog, read with its statements' bytes as they are.
	binlog := p.conn(t, p.a, "test")
	defer binlog.close()
	if err := binlog.exec(t.Context(), "SET NAMES binary"); err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	for _, stmt := range scriptStatements(string(text)) {
		st.statements++
		if !runnable(stmt) {
			continue
		}
		kind := ddl.Classify(stmt)
		if kind != ddl.Schema {
			if err := a.exec(ctx, stmt); err != nil {
				if os.Getenv("DDL_CORPUS_VERBOSE") != "" {
					t.Logf("%s: not run on a plain server: %.200s: %v", path, stmt, err)
				}
				continue
			}
			st.ran++
			if db, ok := useDB(stmt); ok {
				a.db = db
			}
			_ = bData.exec(ctx, stmt)
			if isSet(stmt) {
				_ = bDDL.exec(ctx, stmt)
			}
			continue
		}
		// The binlog is read on another connection: SHOW BINLOG EVENTS
		// quotes names as the session's sql_mode says.
		file, pos, err := binlogEnd(ctx, binlog.conn)
		if err != nil {
			t.Errorf("%s: SHOW MASTER STATUS: %v", path, err)
			return st
		}
		// The target runs the DDL as a replica would: with the session
		// settings the binlog carries (sql_mode, character sets, time
		// zone), and its own defaults for what it does not carry (the
		// storage engine), which here are the source's.
		from, err := copySession(ctx, a, bDDL)
		if err != nil {
			t.Errorf("%s: copying the session settings: %v", path, err)
			return st
		}
		if err := a.exec(ctx, stmt); err != nil {
			// A statement that failed may still have done part of its work
			// (DROP VIEW v2, v1 drops v1 when v2 is missing) and logged it:
			// the target runs what was logged, unchecked.
			if os.Getenv("DDL_CORPUS_VERBOSE") != "" {
				t.Logf("%s: not run on a plain server: %.200s: %v", path, stmt, err)
			}
			if logged, lerr := loggedStatements(ctx, binlog.conn, file, pos); lerr == nil {
				for _, l := range logged {
					if l, err = from.utf8Text(l); err != nil {
						continue
					}
					if res := ddl.Qualify(l.stmt, l.db, from.mode); res.Qualified {
						_ = bDDL.exec(ctx, res.SQL)
					} else {
						_ = runUnqualified(ctx, a, bPass, l)
					}
				}
			}
			continue
		}
		st.ran++
		logged, err := loggedStatements(ctx, binlog.conn, file, pos)
		if err != nil {
			t.Logf("%s: SHOW BINLOG EVENTS after %.100s: %v", path, stmt, err)
			continue
		}
		for _, l := range logged {
			if l, err = from.utf8Text(l); err != nil {
				// Capture stops on it, naming the statement.
				st.undecodable = append(st.undecodable, fmt.Sprintf("%s:\n  source ran: %s\n  %v", path, stmt, err))
				return st
			}
			res := ddl.Qualify(l.stmt, l.db, from.mode)
			var runErr error
			if res.Qualified {
				runErr = bDDL.exec(ctx, res.SQL)
			} else {
				runErr = runUnqualified(ctx, a, bPass, l)
			}
			table := res.Kind == "create_table" || res.Kind == "alter_table"
			if table {
				st.checked++
			}
			// From the first difference on, the target's schema is not the
			// source's: the rest of the script would only repeat it.
			if runErr != nil {
				if !table {
					st.diverged = append(st.diverged, fmt.Sprintf("%s:\n  source ran: %s\n  target rejects (a %s statement): %s\n  %v", path, l.stmt, res.Kind, res.SQL, runErr))
					return st
				}
				st.differ = append(st.differ, fmt.Sprintf("%s:\n  source ran: %s\n  target rejects: %s\n  %v", path, l.stmt, res.SQL, runErr))
				return st
			}
			if !table {
				continue
			}
			for _, tb := range res.Tables {
				// On fresh connections alike: not the script's session, whose
				// temporary tables hide the real ones.
				src, errA := showCreate(ctx, p.a.DB(t), tb)
				if errA != nil {
					continue // renamed away, or a temporary table
				}
				dst, errB := showCreate(ctx, p.b.DB(t), tb)
				if errB == nil && src != dst && p.loggedAsIs(ctx, t, bPass, l, tb) == dst {
					// The statement as the server logged it, unqualified,
					// makes the same table: the log does not reproduce the
					// source's table (CREATE TABLE … SELECT), and a native
					// replica would differ alike.
					st.serverLog = append(st.serverLog, fmt.Sprintf("%s:\n  source ran: %s\n  logged: %s\n  %s.%s on the source: %s\n  from the log: %s",
						path, stmt, l.stmt, tb.DB, tb.Table, src, dst))
					continue
				}
				if errB != nil || src != dst {
					st.differ = append(st.differ, fmt.Sprintf("%s:\n  source ran: %s\n  target ran: %s\n  %s.%s on the source: %s\n  on the target: %s %v",
						path, l.stmt, res.SQL, tb.DB, tb.Table, src, dst, errB))
					return st
				}
			}
		}
		if a.db != "" {
			_ = bData.exec(ctx, "USE `"+strings.ReplaceAll(a.db, "`", "``")+"`")
		}
	}
	return st
}

// sessionVars are the session settings the binlog carries, or that a
// target has as its own default, that change what DDL creates.
var sessionVars = []string{"sql_mode", "character_set_client", "time_zone", "default_storage_engine", "enforce_storage_engine",
	"collation_server", "character_set_server"}

// sourceSession is what the harness needs of the source session's
// settings to run a logged statement as capture and apply would.
type sourceSession struct {
	mode   ddl.Mode
	client string // character_set_client: the logged text is in it
}

// copySession gives session to the settings of session from, but for the
// client character set: the target reads statements in UTF-8 (utf8mb4),
// as databus apply does, and capture converts them to it.
func copySession(ctx context.Context, from, to *session) (sourceSession, error) {
	vals := make([]sql.NullString, len(sessionVars))
	ptrs := make([]any, len(vals))
	sel := make([]string, len(sessionVars))
	for i, v := range sessionVars {
		ptrs[i], sel[i] = &vals[i], "@@SESSION."+v
	}
	if err := from.conn.QueryRowContext(ctx, "SELECT "+strings.Join(sel, ", ")).Scan(ptrs...); err != nil {
		return sourceSession{}, err
	}
	modes := strings.Split(vals[0].String, ",") // sessionVars[0] is sql_mode
	src := sourceSession{
		mode:   ddl.Mode{ANSIQuotes: slices.Contains(modes, "ANSI_QUOTES"), NoBackslashEscapes: slices.Contains(modes, "NO_BACKSLASH_ESCAPES")},
		client: vals[1].String,
	}
	// As databus apply prepares a session for DDL.
	set := []string{"NAMES utf8mb4", "SESSION innodb_strict_mode = OFF", "SESSION system_versioning_alter_history = KEEP"}
	var args []any
	for i, v := range sessionVars {
		if v == "character_set_client" {
			continue
		}
		var val any = vals[i].String
		if !vals[i].Valid {
			val = nil // enforce_storage_engine is NULL when not set
		}
		set, args = append(set, "SESSION "+v+" = ?"), append(args, val)
	}
	_, err := to.conn.ExecContext(ctx, "SET "+strings.Join(set, ", "), args...)
	return src, err
}

// runUnqualified runs a logged statement that is not qualified on s, in
// its default database, with the settings of the source session a.
func runUnqualified(ctx context.Context, a, s *session, l logged) error {
	if l.db != "" {
		_ = s.exec(ctx, "USE `"+strings.ReplaceAll(l.db, "`", "``")+"`")
	}
	if _, err := copySession(ctx, a, s); err != nil {
		return err
	}
	return s.exec(ctx, l.stmt)
}

// utf8Text is a logged statement in UTF-8, as capture publishes it.
func (src sourceSession) utf8Text(l logged) (logged, error) {
	text, err := charset.Decode(src.client, []byte(l.stmt))
	if src.client == charset.Binary {
		text, err = l.stmt, nil
	}
	l.stmt = text
	return l, err
}

// loggedAsIs runs l's statement unmodified in a scratch database of the
// target, as the session's default one, and returns SHOW CREATE TABLE of
// its table tb there ("" when that fails).
func (p *corpusPair) loggedAsIs(ctx context.Context, t *testing.T, s *session, l logged, tb ddl.Table) string {
	defer func() {
		_ = s.exec(ctx, "DROP DATABASE IF EXISTS control")
		_ = s.exec(ctx, "USE `"+strings.ReplaceAll(s.db, "`", "``")+"`")
	}()
	if s.exec(ctx, "CREATE DATABASE control") != nil || s.exec(ctx, "USE control") != nil || s.exec(ctx, l.stmt) != nil {
		return ""
	}
	create, err := showCreate(ctx, p.b.DB(t), ddl.Table{DB: "control", Table: tb.Table})
	if err != nil {
		return ""
	}
	return create
}

func binlogEnd(ctx context.Context, db *sql.Conn) (string, int64, error) {
	rows, err := db.QueryContext(ctx, "SHOW MASTER STATUS")
	if err != nil {
		return "", 0, err
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		return "", 0, errors.New("binlog is off")
	}
	vals := make([]sql.RawBytes, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	if err := rows.Scan(ptrs...); err != nil {
		return "", 0, err
	}
	pos, err := strconv.ParseInt(string(vals[1]), 10, 64)
	return string(vals[0]), pos, err
}

// logged is a statement as the binlog holds it, with its default
// database.
type logged struct{ stmt, db string }

// loggedStatements returns the DDL statements A logged from file:pos on.
func loggedStatements(ctx context.Context, db *sql.Conn, file string, pos int64) ([]logged, error) {
	rows, err := db.QueryContext(ctx, "SHOW BINLOG EVENTS IN '"+file+"' FROM "+strconv.FormatInt(pos, 10))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []logged
	skip := false // the ALTER of a START ALTER or ROLLBACK ALTER group: capture publishes it at COMMIT ALTER
	for rows.Next() {
		var logName, eventType, info string
		var p, serverID, end int64
		if err := rows.Scan(&logName, &p, &eventType, &serverID, &end, &info); err != nil {
			return nil, err
		}
		if eventType == "Gtid" {
			skip = strings.Contains(info, "START ALTER") || strings.Contains(info, "ROLLBACK ALTER")
		}
		if eventType != "Query" || skip {
			continue
		}
		l := logged{stmt: info}
		if rest, ok := strings.CutPrefix(info, "use `"); ok {
			// use `db`; statement
			i := 0
			for i < len(rest) {
				if rest[i] == '`' {
					if i+1 < len(rest) && rest[i+1] == '`' {
						i += 2
						continue
					}
					break
				}
				i++
			}
			l.db = strings.ReplaceAll(rest[:i], "``", "`")
			l.stmt = strings.TrimPrefix(rest[i:], "`; ")
		}
		if ddl.Classify(l.stmt) == ddl.Schema {
			out = append(out, l)
		}
	}
	return out, rows.Err()
}

func showCreate(ctx context.Context, db *sql.DB, tb ddl.Table) (string, error) {
	var name, create string
	q := "SHOW CREATE TABLE `" + strings.ReplaceAll(tb.DB, "`", "``") + "`.`" + strings.ReplaceAll(tb.Table, "`", "``") + "`"
	if err := db.QueryRowContext(ctx, q).Scan(&name, &create); err != nil {
		return "", err
	}
	// The next AUTO_INCREMENT value follows the rows, which the harness
	// does not compare.
	if i := strings.Index(create, " AUTO_INCREMENT="); i >= 0 {
		end := i + len(" AUTO_INCREMENT=")
		for end < len(create) && create[end] >= '0' && create[end] <= '9' {
			end++
		}
		create = create[:i] + create[end:]
	}
	return create, nil
}

// useDB returns the database of a USE statement.
func useDB(stmt string) (string, bool) {
	f := strings.Fields(stmt)
	if len(f) != 2 || !strings.EqualFold(f[0], "use") {
		return "", false
	}
	return strings.Trim(f[1], "`;"), true
}

func isSet(stmt string) bool {
	f := strings.Fields(stmt)
	return len(f) > 0 && strings.EqualFold(f[0], "set")
}

// runnable reports whether the harness runs stmt: not one that changes
// the server for other scripts (SET GLOBAL, users, plugins, replication,
// shutdown), reads or writes files, or uses a mysqltest variable.
func runnable(stmt string) bool {
	if strings.Contains(stmt, "$") {
		return false
	}
	up := strings.ToUpper(strings.Join(strings.Fields(stmt), " "))
	for _, p := range []string{"SHUTDOWN", "KILL", "INSTALL", "UNINSTALL", "FLUSH", "RESET", "PURGE", "CHANGE ", "START ", "STOP ",
		"GRANT", "REVOKE", "CREATE USER", "DROP USER", "RENAME USER", "ALTER USER", "CREATE ROLE", "DROP ROLE", "SET ROLE", "SET DEFAULT ROLE",
		"SET GLOBAL", "SET @@GLOBAL", "SET PASSWORD", "SET DEBUG", "SET SESSION DEBUG", "SET @@DEBUG", "SET @@SESSION.DEBUG", "LOAD ", "CACHE ", "BINLOG",
		"HANDLER", "XA ", "BACKUP", "LOCK", "UNLOCK", "CREATE SERVER", "ALTER SERVER", "DROP SERVER", "CREATE TABLESPACE", "ALTER TABLESPACE",
		"DROP TABLESPACE", "CREATE EVENT", "ALTER EVENT", "SHOW", "SELECT SLEEP", "DO SLEEP", "ALTER DATABASE MYSQL", "DROP DATABASE MYSQL",
		"DROP DATABASE SCRATCH", "SET STATEMENT",
		// unlogged: capture never sees what follows
		"SET SQL_LOG_BIN", "SET SESSION SQL_LOG_BIN", "SET @@SQL_LOG_BIN", "SET @@SESSION.SQL_LOG_BIN"} {
		if strings.HasPrefix(up, p) {
			return false
		}
	}
	for _, bad := range []string{"INTO OUTFILE", "INTO DUMPFILE", "LOAD_FILE", "DATA DIRECTORY", "INDEX DIRECTORY", "MYSQL.", "`MYSQL`."} {
		if strings.Contains(up, bad) {
			return false
		}
	}
	return true
}

// scriptStatements splits a mysqltest script into its SQL statements,
// dropping mysqltest's own commands (--error, let, eval, if, while, echo,
// source, connect…) and the blocks they carry.
func scriptStatements(text string) []string {
	var (
		out       []string
		cur       strings.Builder
		delimiter = ";"
		skipUntil string // the end line of a write_file or perl block
	)
	for _, line := range strings.Split(text, "\n") {
		trimmed := strings.TrimSpace(line)
		if skipUntil != "" {
			if trimmed == skipUntil {
				skipUntil = ""
			}
			continue
		}
		if cur.Len() == 0 {
			if trimmed == "" || strings.HasPrefix(trimmed, "#") {
				continue
			}
			if cmd, ok := strings.CutPrefix(trimmed, "--"); ok {
				f := strings.Fields(cmd)
				if len(f) >= 2 && strings.EqualFold(f[0], "delimiter") {
					delimiter = f[1]
				}
				if len(f) >= 1 && (strings.EqualFold(f[0], "perl") || strings.EqualFold(f[0], "write_file") || strings.EqualFold(f[0], "append_file")) {
					skipUntil = "EOF"
					if len(f) >= 3 && f[0] != "perl" {
						skipUntil = f[2]
					}
				}
				continue
			}
			word := ""
			if f := strings.FieldsFunc(trimmed, func(r rune) bool { return r == ' ' || r == '(' || r == ';' || r == '\t' }); len(f) > 0 {
				word = strings.ToLower(f[0])
			}
			switch word {
			case "delimiter":
				f := strings.Fields(trimmed)
				if len(f) >= 2 {
					d := f[1]
					if strings.HasSuffix(d, delimiter) && d != delimiter {
						d = strings.TrimSuffix(d, delimiter)
					}
					delimiter = d
				}
				continue
			case "if", "while", "}", "{", "else":
				continue
			case "perl", "write_file", "append_file":
				skipUntil = "EOF"
				if f := strings.Fields(strings.TrimSuffix(trimmed, delimiter)); word != "perl" && len(f) >= 3 {
					skipUntil = f[2]
				}
				continue
			}
			if mysqltestCommands[word] || strings.HasPrefix(word, "}") {
				if strings.HasSuffix(trimmed, delimiter) {
					continue
				}
				// a command over several lines: read it to its end, then drop it
				cur.WriteString("\x00")
			}
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
		if strings.HasSuffix(trimmed, delimiter) {
			stmt := strings.TrimSpace(cur.String())
			stmt = strings.TrimSpace(strings.TrimSuffix(stmt, delimiter))
			cur.Reset()
			if stmt != "" && !strings.HasPrefix(stmt, "\x00") {
				out = append(out, stmt)
			}
		}
	}
	return out
}

// mysqltestCommands are the commands of mysqltest scripts that are not
// SQL.
var mysqltestCommands = map[string]bool{}

func init() {
	for _, c := range strings.Fields(`let eval echo source connect connection disconnect sleep real_sleep error send reap
		replace_result replace_column replace_regex query_vertical exec exec_in_background die skip inc dec
		enable_warnings disable_warnings enable_query_log disable_query_log enable_result_log disable_result_log
		enable_abort_on_error disable_abort_on_error enable_info disable_info enable_metadata disable_metadata
		enable_ps_protocol disable_ps_protocol enable_reconnect disable_reconnect enable_parsing disable_parsing
		enable_connect_log disable_connect_log enable_session_track_info disable_session_track_info
		enable_prepare_warnings disable_prepare_warnings enable_ps2_protocol disable_ps2_protocol
		enable_cursor_protocol disable_cursor_protocol enable_view_protocol disable_view_protocol
		enable_service_connection disable_service_connection enable_async_client disable_async_client
		enable_column_names disable_column_names enable_non_blocking_api disable_non_blocking_api
		vertical_results horizontal_results sorted_result partially_sorted_result lowercase_result
		shutdown_server restart_server copy_file copy_files_wildcard remove_file remove_files_wildcard move_file
		cat_file list_files list_files_write_file list_files_append_file mkdir rmdir force-rmdir file_exists diff_files
		start_timer end_timer character_set change_user ping send_eval query save_master_pos sync_slave_with_master
		sync_with_master wait_for_slave_to_stop result_format chmod output send_quit send_shutdown
		query_get_value query_attributes wait_until_connected_again wait_until_disconnected assert
		replace_numeric_round query_sorted require exit`) {
		mysqltestCommands[c] = true
	}
}
