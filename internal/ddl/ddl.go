// Package ddl qualifies DDL statements read from the binlog: it puts the
// session's default database in front of every unqualified table name,
// and lists the tables and databases the statement touches.
//
// It does not re-print the statement. A printer re-prints only what its
// parser's syntax tree carries, and drops the rest (NCHAR's character set,
// options of a newer server), so that the target would run another
// statement. Qualify finds the table names with a lexer (strings,
// comments and quoted names are never mistaken for names) and the
// statement's grammar around them, and inserts `db`. before each
// unqualified one: every other byte of the statement is kept. It never
// uses regular expressions on SQL.
package ddl

import (
	"fmt"
	"strings"

	"github.com/databus/databus/sdk"
)

// Table names a table.
type Table struct {
	DB    string `json:"db"`
	Table string `json:"table"`
}

// Result is what Qualify learned about a statement.
type Result struct {
	// Kind is the statement kind: "create_table", "alter_table",
	// "drop_table", "truncate_table", "rename_table", "create_index",
	// "drop_index", "create_database", "alter_database", "drop_database",
	// "create_view", "alter_view", "drop_view" or "other".
	Kind string
	// SQL is the schema-qualified statement when Qualified, else the
	// original statement.
	SQL string
	// Qualified is true when SQL names the database of every table it
	// names, and for database statements. It is false for kinds whose
	// text databus does not rewrite (views, triggers, routines, events,
	// sequences, anything it does not know): they are published
	// unmodified.
	Qualified bool
	// Tables are the tables the statement touches, in statement order (for
	// a rename: old, new, old, new…).
	Tables []Table
	// Databases are the databases a database-level statement touches.
	Databases []string
	// Err says why a table statement could not be qualified.
	Err error
}

// Qualify qualifies stmt, run with defaultDB as the session's default
// database, under mode.
func Qualify(stmt, defaultDB string, mode Mode) Result {
	w := &walker{s: stmt, toks: lex(stmt, mode), db: defaultDB}
	res := Result{Kind: "other", SQL: stmt}
	switch w.upper(0) {
	case "CREATE":
		w.create(&res)
	case "ALTER":
		w.alter(&res)
	case "DROP":
		w.drop(&res)
	case "TRUNCATE":
		res.Kind = "truncate_table"
		w.i = 1
		w.skip("TABLE")
		w.name()
	case "RENAME":
		if w.upper(1) == "TABLE" || w.upper(1) == "TABLES" {
			res.Kind = "rename_table"
			w.i = 2
			w.skip("IF", "EXISTS")
			w.renamePairs()
		}
	}
	res.Tables, res.Databases = w.tables, w.databases
	switch {
	case w.err != nil:
		res.Err = fmt.Errorf("%s statement: %w", res.Kind, w.err)
		res.Tables = nil
	case res.Kind == "other":
		res.Err = fmt.Errorf("statements of this kind are published unmodified")
	case w.passThrough:
	case len(res.Databases) > 0:
		res.Qualified = true
	case w.missingDB:
		res.Err = fmt.Errorf("a table name has no database and the statement ran without a default database")
	default:
		res.SQL, res.Qualified = w.qualified(), true
	}
	return res
}

// insert is a database to put before the table name at offset at; when
// quote is set, the name (up to offset end) is replaced by quote in
// backticks.
type insert struct {
	at, end int
	db      string
	quote   string
}

// walker follows the grammar of a DDL statement through its tokens,
// collecting the table names and where each unqualified one starts.
type walker struct {
	s    string
	toks []token
	i    int // the next token
	db   string

	tables      []Table
	databases   []string
	inserts     []insert // where unqualified table names start
	missingDB   bool
	passThrough bool
	err         error
}

// upper returns token i as an upper-case keyword, "" when it is not an
// unquoted word.
func (w *walker) upper(i int) string {
	if i >= len(w.toks) || w.toks[i].kind != tokWord {
		return ""
	}
	return strings.ToUpper(w.s[w.toks[i].start:w.toks[i].end])
}

// punct reports whether token i is the character c.
func (w *walker) punct(i int, c byte) bool {
	return i < len(w.toks) && w.toks[i].kind == tokPunct && w.s[w.toks[i].start] == c
}

// skip moves past the keywords words when they come next, all of them.
func (w *walker) skip(words ...string) bool {
	for k, word := range words {
		if w.upper(w.i+k) != word {
			return false
		}
	}
	w.i += len(words)
	return true
}

// skipWait moves past WAIT n or NOWAIT.
func (w *walker) skipWait() {
	if w.skip("NOWAIT") {
		return
	}
	if w.upper(w.i) == "WAIT" {
		w.i += 2
	}
}

// ident reads a name at token i: a backtick-quoted name or a word.
func (w *walker) ident(i int) (string, bool) {
	if i >= len(w.toks) || (w.toks[i].kind != tokWord && w.toks[i].kind != tokQuoted) {
		return "", false
	}
	return unquote(w.s, w.toks[i]), true
}

// name reads a table name, db.table or table, and records it.
func (w *walker) name() { w.nameIn(w.db) }

// nameIn reads a table name whose database, when it has none, is db.
func (w *walker) nameIn(db string) {
	first, ok := w.ident(w.i)
	if !ok {
		if w.err == nil {
			w.err = fmt.Errorf("expected a table name at offset %d", w.offset())
		}
		return
	}
	if w.punct(w.i+1, '.') {
		if table, ok := w.ident(w.i + 2); ok {
			w.tables = append(w.tables, Table{DB: first, Table: table})
			w.i += 3
			return
		}
	}
	if db == "" {
		w.missingDB = true
	}
	w.tables = append(w.tables, Table{DB: db, Table: first})
	in := insert{at: w.toks[w.i].start, db: db}
	if tok := w.toks[w.i]; tok.kind == tokWord && w.s[tok.start] >= '0' && w.s[tok.start] <= '9' {
		// `db`.1e10 would read as `db` .1e10, a number: quote the name.
		in.quote, in.end = first, tok.end
	}
	w.inserts = append(w.inserts, in)
	w.i++
}

// names reads table names separated by commas.
func (w *walker) names() {
	w.name()
	for w.err == nil && w.punct(w.i, ',') {
		w.i++
		w.name()
	}
}

func (w *walker) offset() int {
	if w.i < len(w.toks) {
		return w.toks[w.i].start
	}
	return len(w.s)
}

// database reads a database name and records it.
func (w *walker) database() {
	if name, ok := w.ident(w.i); ok {
		w.databases = append(w.databases, name)
		w.i++
	}
}

// objectKeyword moves past the words between CREATE, ALTER or DROP and
// the kind of object (OR REPLACE, TEMPORARY, UNIQUE, FULLTEXT, ALGORITHM=…,
// DEFINER=…, SQL SECURITY …) and returns that kind.
func (w *walker) objectKeyword() string {
	for ; w.i < len(w.toks); w.i++ {
		switch kw := w.upper(w.i); kw {
		case "TABLE", "INDEX", "DATABASE", "SCHEMA", "VIEW", "TRIGGER", "PROCEDURE", "FUNCTION", "EVENT", "SEQUENCE",
			"USER", "ROLE", "SERVER", "PACKAGE", "TABLESPACE", "LOGFILE":
			w.i++
			return kw
		}
	}
	return ""
}

func (w *walker) create(res *Result) {
	w.i = 1
	switch w.objectKeyword() {
	case "TABLE":
		res.Kind = "create_table"
		w.skip("IF", "NOT", "EXISTS")
		w.name()
		switch {
		case w.skip("LIKE"):
			w.name()
		case w.punct(w.i, '(') && w.upper(w.i+1) == "LIKE":
			w.i += 2
			w.name()
		}
		w.tableBody()
	case "INDEX":
		res.Kind = "create_index"
		w.skip("IF", "NOT", "EXISTS")
		for w.i < len(w.toks) && w.upper(w.i) != "ON" {
			w.i++
		}
		w.i++
		w.name()
	case "DATABASE", "SCHEMA":
		res.Kind = "create_database"
		w.skip("IF", "NOT", "EXISTS")
		w.database()
	case "VIEW":
		res.Kind = "create_view"
		w.view()
	}
}

func (w *walker) alter(res *Result) {
	w.i = 1
	switch w.objectKeyword() {
	case "TABLE":
		res.Kind = "alter_table"
		w.skip("IF", "EXISTS")
		w.name()
		w.tableBody()
	case "DATABASE", "SCHEMA":
		res.Kind = "alter_database"
		switch w.upper(w.i) {
		case "CHARACTER", "CHARSET", "DEFAULT", "COLLATE", "COMMENT":
			// no name: the default database
			if w.db != "" {
				w.databases = append(w.databases, w.db)
			}
		default:
			w.database()
		}
	case "VIEW":
		res.Kind = "alter_view"
		w.view()
	}
}

func (w *walker) drop(res *Result) {
	w.i = 1
	switch w.objectKeyword() {
	case "TABLE":
		res.Kind = "drop_table"
		w.skip("IF", "EXISTS")
		w.names()
	case "INDEX":
		res.Kind = "drop_index"
		w.skip("IF", "EXISTS")
		w.i++ // the index
		if w.skip("ON") {
			w.name()
		}
	case "DATABASE", "SCHEMA":
		res.Kind = "drop_database"
		w.skip("IF", "EXISTS")
		w.database()
	case "VIEW":
		res.Kind = "drop_view"
		w.skip("IF", "EXISTS")
		w.names()
		w.passThrough = true
	}
}

// view reads a view's name; its text is not rewritten.
func (w *walker) view() {
	w.skip("IF", "NOT", "EXISTS")
	w.name()
	w.passThrough = true
}

// renamePairs reads RENAME TABLE's a TO b, c TO d.
func (w *walker) renamePairs() {
	for w.err == nil {
		w.name()
		w.skipWait()
		if !w.skip("TO") {
			w.err = fmt.Errorf("expected TO at offset %d", w.offset())
			return
		}
		w.name()
		if !w.punct(w.i, ',') {
			return
		}
		w.i++
	}
}

// tableBody reads the rest of a CREATE TABLE or ALTER TABLE (whose own
// name is w.tables[0]) for the other
// tables it names: REFERENCES t (foreign keys), UNION=(t1,t2) (MERGE),
// RENAME [TO|AS] t, EXCHANGE PARTITION p WITH TABLE t, CONVERT PARTITION
// p TO TABLE t, CONVERT TABLE t TO PARTITION p, and the sequences of
// default values: NEXT VALUE FOR s, PREVIOUS VALUE FOR s, NEXTVAL(s),
// LASTVAL(s), SETVAL(s, n). These keywords are reserved words or function
// names: unquoted, they are nothing else.
func (w *walker) tableBody() {
	for w.err == nil && w.i < len(w.toks) {
		switch w.upper(w.i) {
		case "REFERENCES":
			// A foreign key's parent is in the child table's database
			// unless it names one, whatever the session's default.
			w.i++
			w.nameIn(w.tables[0].DB)
		case "UNION":
			w.i++
			if w.punct(w.i, '=') {
				w.i++
			}
			if w.punct(w.i, '(') {
				w.i++
				w.names()
			}
		case "RENAME":
			switch w.upper(w.i + 1) {
			case "COLUMN", "INDEX", "KEY", "CONSTRAINT":
				w.i += 2
				continue
			}
			w.i++
			if !w.skip("TO") {
				w.skip("AS")
			}
			w.name()
		case "WITH":
			w.i++
			if w.skip("TABLE") {
				w.name()
			}
		case "CONVERT":
			if w.upper(w.i+1) == "TABLE" {
				w.i += 2
				w.name()
				continue
			}
			w.i++
		case "NEXT", "PREVIOUS":
			// NEXT VALUE FOR s, PREVIOUS VALUE FOR s: a sequence (a table)
			if w.upper(w.i+1) == "VALUE" && w.upper(w.i+2) == "FOR" {
				w.i += 3
				w.name()
				continue
			}
			w.i++
		case "NEXTVAL", "LASTVAL", "SETVAL":
			// NEXTVAL(s), LASTVAL(s), SETVAL(s, n)
			if w.punct(w.i+1, '(') {
				w.i += 2
				w.name()
				continue
			}
			w.i++
		case "SELECT":
			// Logged only by statement-based binlogs; with ROW the server
			// logs the new table's definition instead.
			w.err = fmt.Errorf("CREATE TABLE … SELECT is not qualified: its query is logged only with binlog_format STATEMENT or MIXED")
		case "TO":
			// CONVERT PARTITION p TO TABLE t
			w.i++
			if w.skip("TABLE") {
				w.name()
			}
		default:
			w.i++
		}
	}
}

// qualified returns the statement with `db`. before every unqualified
// table name.
func (w *walker) qualified() string {
	if len(w.inserts) == 0 {
		return w.s
	}
	var b strings.Builder
	b.Grow(len(w.s) + len(w.inserts)*(len(w.db)+3))
	last := 0
	for _, in := range w.inserts {
		b.WriteString(w.s[last:in.at])
		b.WriteString(sdk.QuoteIdent(in.db))
		b.WriteByte('.')
		last = in.at
		if in.quote != "" {
			b.WriteString(sdk.QuoteIdent(in.quote))
			last = in.end
		}
	}
	b.WriteString(w.s[last:])
	return b.String()
}
