package snapshot

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
	"golang.org/x/sync/errgroup"

	"github.com/databus/databus/internal/ddl"
	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/internal/rowevent"
	"github.com/databus/databus/sdk"
)

type snapTable struct {
	t        *rowevent.Table
	estimate int64
	// index is the table's place in the manifest; spans is how many
	// spans it is read in.
	index, spans int
	// values writes the JSON of each column's values (describe).
	values []rowcodec.TextJSON
}

// tables lists the captured base tables with their columns and keys.
func (s *snapshotter) tables(ctx context.Context, conn *sql.Conn, info mysqlsrc.ServerInfo) ([]snapTable, error) {
	type key struct{ db, name string }
	var order []key
	estimates := map[key]int64{}
	err := queryEach(ctx, conn, "SELECT TABLE_SCHEMA, TABLE_NAME, COALESCE(TABLE_ROWS, 0) FROM information_schema.TABLES "+
		"WHERE TABLE_TYPE = 'BASE TABLE' AND TABLE_SCHEMA NOT IN ("+systemSchemasList+") ORDER BY TABLE_SCHEMA, TABLE_NAME",
		func(v []string) error {
			k := key{v[0], v[1]}
			if s.cfg.Filter.Table(k.db, k.name) {
				order = append(order, k)
				var n int64
				fmt.Sscan(v[2], &n)
				estimates[k] = n
				s.prog.RowsEstimate += n
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	cols := map[key][]rowcodec.Column{}
	generated := map[key]map[string]bool{}
	err = queryEach(ctx, conn, "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, DATA_TYPE, COLUMN_TYPE, COALESCE(CHARACTER_SET_NAME, ''), IS_NULLABLE, EXTRA "+
		"FROM information_schema.COLUMNS WHERE TABLE_SCHEMA NOT IN ("+systemSchemasList+") ORDER BY TABLE_SCHEMA, TABLE_NAME, ORDINAL_POSITION",
		func(v []string) error {
			k := key{v[0], v[1]}
			if _, ok := estimates[k]; !ok {
				return nil
			}
			c, err := rowcodec.ColumnFromSchema(v[2], v[3], v[4], v[5], v[6] == "YES")
			if err != nil {
				return fmt.Errorf("%w: %s.%s: %v", rowcodec.ErrUndecodable, k.db, k.name, err)
			}
			cols[k] = append(cols[k], c)
			if strings.Contains(strings.ToUpper(v[7]), "GENERATED") {
				if generated[k] == nil {
					generated[k] = map[string]bool{}
				}
				generated[k][c.Name] = true
			}
			return nil
		})
	if err != nil {
		return nil, err
	}
	// MariaDB's JSON is a text column with CHECK (json_valid(col)).
	jsonCols := map[key]map[string]bool{}
	if info.MariaDB {
		err = queryEach(ctx, conn, "SELECT CONSTRAINT_SCHEMA, TABLE_NAME, CHECK_CLAUSE FROM information_schema.CHECK_CONSTRAINTS "+
			"WHERE CONSTRAINT_SCHEMA NOT IN ("+systemSchemasList+")",
			func(v []string) error {
				k := key{v[0], v[1]}
				if name, ok := rowcodec.JSONCheckColumn(v[2]); ok {
					if jsonCols[k] == nil {
						jsonCols[k] = map[string]bool{}
					}
					jsonCols[k][name] = true
				}
				return nil
			})
		if err != nil {
			return nil, err
		}
	}
	pkNames := map[key][]string{}
	err = queryEach(ctx, conn, "SELECT TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME FROM information_schema.STATISTICS "+
		"WHERE INDEX_NAME = 'PRIMARY' AND TABLE_SCHEMA NOT IN ("+systemSchemasList+") ORDER BY TABLE_SCHEMA, TABLE_NAME, SEQ_IN_INDEX",
		func(v []string) error {
			k := key{v[0], v[1]}
			pkNames[k] = append(pkNames[k], v[2])
			return nil
		})
	if err != nil {
		return nil, err
	}
	out := make([]snapTable, 0, len(order))
	for _, k := range order {
		var pk []int
		for _, name := range pkNames[k] {
			i := slices.IndexFunc(cols[k], func(c rowcodec.Column) bool { return c.Name == name })
			if i < 0 {
				return nil, fmt.Errorf("%s.%s changed while the snapshot started: primary key column %s is not among its columns", k.db, k.name, name)
			}
			pk = append(pk, i)
		}
		rowcodec.MarkJSON(cols[k], jsonCols[k])
		out = append(out, snapTable{t: rowevent.NewTable(k.db, k.name, cols[k], pk, generated[k]), estimate: estimates[k]})
	}
	return out, nil
}

// queryEach runs q and calls f with each row's values as strings (NULL as
// "").
func queryEach(ctx context.Context, conn *sql.Conn, q string, f func([]string) error) error {
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	defer rows.Close()
	names, err := rows.Columns()
	if err != nil {
		return err
	}
	raw := make([]sql.RawBytes, len(names))
	dest := make([]any, len(names))
	for i := range raw {
		dest[i] = &raw[i]
	}
	vals := make([]string, len(names))
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		for i, r := range raw {
			vals[i] = string(r)
		}
		if err := f(vals); err != nil {
			return err
		}
	}
	return rows.Err()
}

// testHookViewOpened, in tests only, runs right after a snapshot opened
// its read view.
var testHookViewOpened func()

// holdTables keeps the schema of every table as the read view sees it
// until the snapshot ends. Opening a table inside the transaction takes a
// metadata lock that makes DDL on it wait for the snapshot's end; a DDL
// statement that slipped in between the opening of the read view and these
// locks would leave the schema newer than the rows, so the binlog between
// the two is checked for one. Every session of the view takes the locks,
// the readers too: a reader that asked for a table's lock only when it
// came to read it would queue behind a DDL statement waiting for the
// metadata session's lock, and neither would ever get it.
func (s *snapshotter) holdTables(ctx context.Context, v *views, info mysqlsrc.ServerInfo, tables []snapTable) error {
	conn := v.meta
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		for _, st := range tables {
			rows, err := conn.QueryContext(gctx, "SELECT 1 FROM "+st.t.Qualified()+" LIMIT 0")
			if err != nil {
				return changedTableErr(st.t, err)
			}
			rows.Close()
		}
		return nil
	})
	for _, r := range v.readers {
		g.Go(func() error {
			for _, st := range tables {
				if err := r.Query(gctx, "SELECT 1 FROM "+st.t.Qualified()+" LIMIT 0", func([][]byte) error { return nil }); err != nil {
					return changedTableErr(st.t, err)
				}
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	file, offset, err := mysqlsrc.MasterStatus(ctx, conn, info)
	if err != nil {
		return err
	}
	from := s.man.Position
	for from.File != file || from.Offset < offset {
		stmt, next, err := ddlIn(ctx, conn, from, file, offset)
		if err != nil {
			return err
		}
		if stmt != "" {
			return fmt.Errorf("a DDL statement ran while the snapshot started (%q): run the snapshot again", stmt)
		}
		if next == from {
			break
		}
		from = next
	}
	return nil
}

// ddlIn looks for a DDL statement among up to 1000 binlog events from at,
// not beyond endFile:endOffset. It returns the first one found and where
// the next look starts: the next file once at's file is read to its end.
func ddlIn(ctx context.Context, conn *sql.Conn, at sdk.Position, endFile string, endOffset uint32) (string, sdk.Position, error) {
	rows, err := conn.QueryContext(ctx, fmt.Sprintf("SHOW BINLOG EVENTS IN %s FROM %d LIMIT 1000", sdk.QuoteString(at.File), at.Offset))
	if err != nil {
		return "", at, fmt.Errorf("reading the binlog the snapshot started in (needs BINLOG MONITOR on MariaDB, REPLICATION SLAVE on MySQL): %w", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var logName, typ, serverID, info string
		var pos, end uint32
		if err := rows.Scan(&logName, &pos, &typ, &serverID, &end, &info); err != nil {
			return "", at, fmt.Errorf("SHOW BINLOG EVENTS: %w", err)
		}
		n++
		if at.File == endFile && pos >= endOffset {
			return "", sdk.Position{File: endFile, Offset: endOffset}, rows.Err()
		}
		if typ == "Query" && changesSchema(info) {
			return info, at, nil
		}
		at.Offset = end
	}
	if err := rows.Err(); err != nil {
		return "", at, err
	}
	if n < 1000 && at.File != endFile {
		// The end of this file: go on with the next one.
		files, err := mysqlsrc.BinaryLogs(ctx, conn)
		if err != nil {
			return "", at, err
		}
		if i := slices.Index(files, at.File); i >= 0 && i+1 < len(files) {
			return "", sdk.Position{File: files[i+1], Offset: 4}, nil
		}
	}
	return "", at, nil
}

// changesSchema reports whether the Info of a Query event in SHOW BINLOG
// EVENTS ("use `db`; statement" or the statement) is DDL.
func changesSchema(info string) bool {
	stmt := strings.TrimSpace(info)
	if strings.HasPrefix(stmt, "use ") {
		if _, rest, ok := strings.Cut(stmt, ";"); ok {
			stmt = rest
		}
	}
	return ddl.Classify(stmt) == ddl.Schema
}

// changedTableErr explains the errors InnoDB gives when a table changed
// after the snapshot's read view was opened.
func changedTableErr(t *rowevent.Table, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) && (me.Number == 1412 || me.Number == 1146) {
		return fmt.Errorf("table %s was altered, created or dropped while the snapshot was being read (%v): run the snapshot again", t.Qualified(), err)
	}
	return fmt.Errorf("reading %s: %w", t.Qualified(), err)
}

// qualifyCreate turns SHOW CREATE TABLE's output into a statement that
// runs on a target without USE (the table and the tables its foreign keys
// reference qualified) and without failing when the table exists.
func qualifyCreate(create string, t *rowevent.Table) string {
	if r := ddl.Qualify(create, t.Database(), ddl.Mode{}); r.Qualified {
		create = r.SQL
	}
	if rest, ok := strings.CutPrefix(create, "CREATE TABLE "); ok {
		return "CREATE TABLE IF NOT EXISTS " + rest
	}
	return create
}
