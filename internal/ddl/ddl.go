// Package ddl qualifies DDL statements read from the binlog: it parses a
// statement with a full MySQL parser, puts the session's default database in
// front of every unqualified table name, and lists the tables and databases
// the statement touches. It never uses regular expressions on SQL.
package ddl

import (
	"fmt"
	"strings"

	"github.com/pingcap/tidb/pkg/parser"
	"github.com/pingcap/tidb/pkg/parser/ast"
	"github.com/pingcap/tidb/pkg/parser/format"
	_ "github.com/pingcap/tidb/pkg/parser/test_driver" // value expressions
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
	// Qualified is false when the statement could not be parsed or is of a
	// kind whose text databus does not rewrite (views, triggers, routines,
	// events): it is then published unmodified.
	Qualified bool
	// Tables are the tables the statement touches, in statement order (for
	// a rename: old, new, old, new…).
	Tables []Table
	// Databases are the databases a database-level statement touches.
	Databases []string
	// Err says why the statement could not be parsed.
	Err error
}

// Qualify parses stmt, run with defaultDB as the session's default
// database.
func Qualify(stmt, defaultDB string) Result {
	res := Result{Kind: "other", SQL: stmt}
	p := parser.New()
	p.SetSQLMode(0)
	node, err := p.ParseOneStmt(stmt, "", "")
	if err != nil {
		res.Err = fmt.Errorf("parsing DDL: %w", err)
		return res
	}
	q := &qualifier{db: defaultDB}
	switch n := node.(type) {
	case *ast.CreateTableStmt:
		res.Kind = "create_table"
	case *ast.AlterTableStmt:
		res.Kind = "alter_table"
	case *ast.DropTableStmt:
		res.Kind = "drop_table"
		if n.IsView {
			res.Kind = "drop_view"
			q.passThrough = true
		}
	case *ast.TruncateTableStmt:
		res.Kind = "truncate_table"
	case *ast.RenameTableStmt:
		res.Kind = "rename_table"
	case *ast.CreateIndexStmt:
		res.Kind = "create_index"
	case *ast.DropIndexStmt:
		res.Kind = "drop_index"
	case *ast.CreateDatabaseStmt:
		res.Kind, res.Databases = "create_database", []string{n.Name.O}
	case *ast.AlterDatabaseStmt:
		name := n.Name.O
		if name == "" {
			name = defaultDB
		}
		res.Kind, res.Databases = "alter_database", []string{name}
	case *ast.DropDatabaseStmt:
		res.Kind, res.Databases = "drop_database", []string{n.Name.O}
	case *ast.CreateViewStmt:
		res.Kind = "create_view"
		q.passThrough = true
		// A view's own name is still reported; its body is not rewritten.
		res.Tables = append(res.Tables, Table{DB: or(n.ViewName.Schema.O, defaultDB), Table: n.ViewName.Name.O})
		return res
	default:
		res.Err = fmt.Errorf("statement kind %T is passed through unmodified", node)
		return res
	}
	node.Accept(q)
	res.Tables = q.tables
	if q.passThrough || len(res.Databases) > 0 {
		// Database statements need no qualification; views keep their text.
		res.Qualified = len(res.Databases) > 0
		return res
	}
	if q.missingDB {
		res.Err = fmt.Errorf("a table name has no database and the statement ran without a default database")
		return res
	}
	var b strings.Builder
	flags := format.DefaultRestoreFlags | format.RestoreStringWithoutDefaultCharset
	if err := node.Restore(format.NewRestoreCtx(flags, &b)); err != nil {
		res.Err = fmt.Errorf("restoring qualified DDL: %w", err)
		return res
	}
	res.SQL, res.Qualified = b.String(), true
	return res
}

func or(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// qualifier sets the default database on every unqualified table name.
type qualifier struct {
	db          string
	tables      []Table
	passThrough bool
	missingDB   bool
}

func (q *qualifier) Enter(n ast.Node) (ast.Node, bool) {
	t, ok := n.(*ast.TableName)
	if !ok {
		return n, false
	}
	if t.Schema.O == "" {
		if q.db == "" {
			q.missingDB = true
		} else {
			t.Schema = ast.NewCIStr(q.db)
		}
	}
	q.tables = append(q.tables, Table{DB: t.Schema.O, Table: t.Name.O})
	return n, true
}

func (q *qualifier) Leave(n ast.Node) (ast.Node, bool) { return n, true }
