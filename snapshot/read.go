package snapshot

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"math/big"
	"slices"
	"strings"

	"github.com/go-mysql-org/go-mysql/mysql"
	"golang.org/x/sync/errgroup"

	"github.com/databus/databus/internal/mysqlwire"
	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/sdk"
)

// minSpanRows is the fewest rows (by the server's estimate) worth a key
// range of their own.
const minSpanRows = 50_000

// span is one part of a table that one connection reads: a range of its
// primary key, or the whole table. A table's spans, in order, hold its
// rows in primary key order.
type span struct {
	st    *snapTable
	rng   int
	where string // "" reads the whole table
	// objects, rows and bytes are what reading it stored.
	objects     []sdk.SnapshotObject
	rows, bytes int64
}

// plan describes each table in the manifest and splits the tables into
// the spans the readers connections read: several key ranges for a large
// table with a primary key, the whole table otherwise.
func (s *snapshotter) plan(ctx context.Context, conn *sql.Conn, tables []snapTable, readers int) ([]*span, error) {
	var spans []*span
	var total int64
	for _, st := range tables {
		total += st.estimate
	}
	share := max(total/int64(max(readers, 1)), minSpanRows)
	split := readers
	if sharedOutWhole(tables, readers, share) {
		split = 1
	}
	for i := range tables {
		st := &tables[i]
		if err := s.describe(ctx, conn, st); err != nil {
			return nil, err
		}
		wheres, err := keyRanges(ctx, conn, st, split, share)
		if err != nil {
			return nil, err
		}
		st.spans = len(wheres)
		for r, w := range wheres {
			spans = append(spans, &span{st: st, rng: r, where: w})
		}
	}
	return spans, nil
}

// sharedOutWhole reports whether readers connections can read the tables
// whole, each taking the largest table left, with none reading more than
// a quarter over its share of the rows (by the server's estimates): a key
// range costs the server a comparison or two per row, more than that
// imbalance costs.
func sharedOutWhole(tables []snapTable, readers int, share int64) bool {
	if readers < 2 {
		return true
	}
	sizes := make([]int64, len(tables))
	for i, st := range tables {
		sizes[i] = st.estimate
	}
	slices.SortFunc(sizes, func(a, b int64) int { return cmp.Compare(b, a) })
	loads := make([]int64, readers)
	for _, n := range sizes {
		loads[slices.Index(loads, slices.Min(loads))] += n
	}
	return slices.Max(loads) <= share+share/4
}

// readSpans reads the spans inside the read view the connections share,
// each connection one span at a time, the largest first, and adds what
// they stored to the manifest's tables.
func (s *snapshotter) readSpans(ctx context.Context, readers []*mysqlwire.Conn, spans []*span) error {
	order := slices.Clone(spans)
	if len(readers) > 1 {
		size := func(sp *span) int64 { return sp.st.estimate / int64(sp.st.spans) }
		slices.SortStableFunc(order, func(a, b *span) int { return cmp.Compare(size(b), size(a)) })
	}
	next := make(chan *span, len(order))
	for _, sp := range order {
		next <- sp
	}
	close(next)
	remaining := map[*snapTable]int{}
	for _, sp := range spans {
		remaining[sp.st]++
	}
	g, gctx := errgroup.WithContext(ctx)
	for _, r := range readers {
		g.Go(func() error {
			for sp := range next {
				if err := s.readSpan(gctx, r, sp); err != nil {
					return err
				}
				s.progress(true, func(p *Progress) {
					if remaining[sp.st]--; remaining[sp.st] == 0 {
						p.TablesDone++
					}
				})
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return err
	}
	for _, sp := range spans {
		e := &s.man.Tables[sp.st.index]
		e.Objects = append(e.Objects, sp.objects...)
		e.Rows += sp.rows
		e.Bytes += sp.bytes
		s.man.Rows += sp.rows
		s.man.Bytes += sp.bytes
	}
	return nil
}

// describe puts the table's schema into the manifest.
func (s *snapshotter) describe(ctx context.Context, conn *sql.Conn, st *snapTable) error {
	t := st.t
	var name, create string
	if err := conn.QueryRowContext(ctx, "SHOW CREATE TABLE "+t.Qualified()).Scan(&name, &create); err != nil {
		return changedTableErr(t, err)
	}
	s.man.Tables[st.index] = sdk.SnapshotTable{Database: t.Database(), Table: t.Name(), CreateSQL: qualifyCreate(create, t),
		Columns: t.WireColumns(), PrimaryKey: t.PrimaryKeyNames(), Objects: []sdk.SnapshotObject{}}
	cols := t.Columns()
	st.values = make([]rowcodec.TextJSON, len(cols))
	for i := range cols {
		st.values[i] = rowcodec.NewTextJSON(&cols[i])
	}
	return nil
}

// keyRanges splits a table whose primary key starts with an integer
// column into ranges of that column, for readers connections, when it
// holds more than a reader's share of the rows (by the server's
// estimates): into as many ranges of about share rows as it holds, at
// most one per reader. Other tables, and every table for a single reader,
// get one span, the whole table (""). A range costs the server a
// comparison or two per row, and a reader keeps more than a core busy
// (the server sending, databus encoding, compressing), so tables are read
// whole where the readers can share them out. The bounds come from MIN
// and MAX inside the read view, so every row falls in exactly one range.
func keyRanges(ctx context.Context, conn *sql.Conn, st *snapTable, readers int, share int64) ([]string, error) {
	whole := []string{""}
	pk := st.t.PrimaryKey()
	n := min((st.estimate+share-1)/share, int64(readers))
	if readers < 2 || len(pk) == 0 || n < 2 {
		return whole, nil
	}
	c := st.t.Columns()[pk[0]]
	switch c.Type {
	case mysql.MYSQL_TYPE_TINY, mysql.MYSQL_TYPE_SHORT, mysql.MYSQL_TYPE_INT24, mysql.MYSQL_TYPE_LONG, mysql.MYSQL_TYPE_LONGLONG:
	default:
		return whole, nil
	}
	col := sdk.QuoteIdent(c.Name)
	var lo, hi sql.NullString
	if err := conn.QueryRowContext(ctx, "SELECT MIN("+col+"), MAX("+col+") FROM "+st.t.Qualified()).Scan(&lo, &hi); err != nil {
		return nil, changedTableErr(st.t, err)
	}
	var a, b big.Int
	if !lo.Valid || !hi.Valid {
		return whole, nil // empty
	}
	if _, ok := a.SetString(lo.String, 10); !ok {
		return nil, fmt.Errorf("%s: MIN(%s) is %q, not an integer", st.t.Qualified(), c.Name, lo.String)
	}
	if _, ok := b.SetString(hi.String, 10); !ok {
		return nil, fmt.Errorf("%s: MAX(%s) is %q, not an integer", st.t.Qualified(), c.Name, hi.String)
	}
	step := new(big.Int).Sub(&b, &a)
	step.Div(step, big.NewInt(n))
	if step.Sign() <= 0 {
		return whole, nil
	}
	bounds := make([]string, 0, n-1)
	at := new(big.Int).Set(&a)
	for range n - 1 {
		at.Add(at, step)
		bounds = append(bounds, at.String())
	}
	wheres := make([]string, 0, n)
	for i := range int(n) {
		var conds []string
		if i > 0 {
			conds = append(conds, col+" >= "+bounds[i-1])
		}
		if i < len(bounds) {
			conds = append(conds, col+" < "+bounds[i])
		}
		wheres = append(wheres, strings.Join(conds, " AND "))
	}
	return wheres, nil
}

// readSpan stores the rows of one span. Several run at the same time,
// each on its own reader.
func (s *snapshotter) readSpan(ctx context.Context, r *mysqlwire.Conn, sp *span) (err error) {
	t := sp.st.t
	cols := t.Columns()
	s.progress(false, func(p *Progress) { p.Table = t.Database() + "." + t.Name() })
	exprs := make([]string, len(cols))
	for i := range cols {
		exprs[i] = rowcodec.SelectExpr(&cols[i])
	}
	q := "SELECT " + strings.Join(exprs, ", ") + " FROM " + t.Qualified()
	if sp.where != "" {
		q += " WHERE " + sp.where
	}
	if pk := t.PrimaryKey(); len(pk) > 0 {
		keys := make([]string, len(pk))
		for i, k := range pk {
			keys[i] = sdk.QuoteIdent(cols[k].Name)
		}
		q += " ORDER BY " + strings.Join(keys, ", ")
	}
	var w *objectWriter
	defer func() {
		if w != nil && err != nil {
			w.abort(err)
		}
	}()
	var pendRows, pendBytes int64
	store := func(row [][]byte) error {
		if len(row) != len(cols) {
			return fmt.Errorf("%s: the server sent %d columns for the table's %d", t.Qualified(), len(row), len(cols))
		}
		if w == nil {
			w = s.newObject(ctx, sdk.SnapshotObjectName(s.man.ID, sp.st.index, sp.rng, len(sp.objects)))
		}
		before := w.bytes
		err := w.appendRow(ctx, func(line []byte) ([]byte, error) { return appendRow(line, sp.st, row) })
		if err != nil {
			return err
		}
		pendRows++
		pendBytes += w.bytes - before
		if w.bytes >= s.opt.ObjectBytes {
			err := s.closeObject(w, sp)
			w = nil
			if err != nil {
				return err
			}
		}
		if pendRows == 1000 {
			s.progress(false, func(p *Progress) { p.Rows += pendRows; p.Bytes += pendBytes })
			pendRows, pendBytes = 0, 0
		}
		return nil
	}
	var rowErr error // of encoding or storing a row: returned as it is
	err = r.Query(ctx, q, func(vals [][]byte) error {
		rowErr = store(vals)
		return rowErr
	})
	switch {
	case rowErr != nil:
		return rowErr
	case err != nil:
		return changedTableErr(t, err)
	}
	if w != nil {
		err := s.closeObject(w, sp)
		w = nil
		if err != nil {
			return err
		}
	}
	s.progress(false, func(p *Progress) { p.Rows += pendRows; p.Bytes += pendBytes })
	return nil
}

// appendRow appends a table's row, the text-protocol values read with
// rowcodec.SelectExpr, as a line of the object format: a JSON array of
// the values and a newline.
func appendRow(line []byte, st *snapTable, row [][]byte) ([]byte, error) {
	line = append(line, '[')
	for i, raw := range row {
		if i > 0 {
			line = append(line, ',')
		}
		var err error
		if line, err = st.values[i].Append(line, raw); err != nil {
			c := &st.t.Columns()[i]
			return line, fmt.Errorf("%w: %s column %s (%s): %v", rowcodec.ErrUndecodable, st.t.Qualified(), c.Name, c.TypeName(), err)
		}
	}
	return append(line, ']', '\n'), nil
}
