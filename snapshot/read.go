package snapshot

import (
	"cmp"
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sync/errgroup"

	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/sdk"
)

// readTables reads the tables, each of the connections one table at a
// time; in parallel the largest tables go first.
func (s *snapshotter) readTables(ctx context.Context, conns []*sql.Conn, tables []snapTable) error {
	order := make([]int, len(tables))
	for i := range order {
		order[i] = i
	}
	if len(conns) > 1 {
		slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(tables[b].estimate, tables[a].estimate) })
	}
	next := make(chan int, len(order))
	for _, i := range order {
		next <- i
	}
	close(next)
	g, gctx := errgroup.WithContext(ctx)
	for _, conn := range conns {
		g.Go(func() error {
			for i := range next {
				if err := s.readTable(gctx, conn, tables[i]); err != nil {
					return err
				}
				s.progress(true, func(p *Progress) { p.TablesDone++ })
			}
			return nil
		})
	}
	return g.Wait()
}

// readTable writes one table's schema and rows into s.man.Tables[st.index].
// Several run at the same time, each on its own connection.
func (s *snapshotter) readTable(ctx context.Context, conn *sql.Conn, st snapTable) (err error) {
	t := st.t
	cols := t.Columns()
	s.progress(false, func(p *Progress) { p.Table = t.Database() + "." + t.Name() })
	var name, create string
	if err := conn.QueryRowContext(ctx, "SHOW CREATE TABLE "+t.Qualified()).Scan(&name, &create); err != nil {
		return changedTableErr(t, err)
	}
	entry := sdk.SnapshotTable{Database: t.Database(), Table: t.Name(), CreateSQL: qualifyCreate(create, t), Columns: t.WireColumns(), PrimaryKey: t.PrimaryKeyNames()}

	exprs := make([]string, len(cols))
	for i := range cols {
		exprs[i] = rowcodec.SelectExpr(&cols[i])
	}
	q := "SELECT " + strings.Join(exprs, ", ") + " FROM " + t.Qualified()
	if pk := t.PrimaryKey(); len(pk) > 0 {
		keys := make([]string, len(pk))
		for i, k := range pk {
			keys[i] = rowcodec.QuoteIdent(cols[k].Name)
		}
		q += " ORDER BY " + strings.Join(keys, ", ")
	}
	rows, err := conn.QueryContext(ctx, q)
	if err != nil {
		return changedTableErr(t, err)
	}
	defer rows.Close()
	raw := make([]sql.RawBytes, len(cols))
	dest := make([]any, len(cols))
	for i := range raw {
		dest[i] = &raw[i]
	}
	var w *objectWriter
	defer func() {
		if w != nil && err != nil {
			w.abort(err)
		}
	}()
	var line []byte
	var pendRows, pendBytes int64
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return changedTableErr(t, err)
		}
		line = append(line[:0], '[')
		for i := range raw {
			if i > 0 {
				line = append(line, ',')
			}
			if line, err = rowcodec.AppendTextJSON(line, &cols[i], raw[i]); err != nil {
				return fmt.Errorf("%w: %s column %s (%s): %v", rowcodec.ErrUndecodable, t.Qualified(), cols[i].Name, cols[i].TypeName(), err)
			}
		}
		line = append(line, ']')
		line = append(line, '\n')
		if w == nil {
			w = s.newObject(ctx, sdk.SnapshotObjectName(s.man.ID, st.index, 0, len(entry.Objects)))
		}
		if err := w.write(ctx, line); err != nil {
			return err
		}
		entry.Rows++
		pendRows++
		pendBytes += int64(len(line))
		if w.bytes >= s.opt.ObjectBytes {
			err := s.closeObject(w, &entry)
			w = nil
			if err != nil {
				return err
			}
		}
		if pendRows == 1000 {
			s.progress(false, func(p *Progress) { p.Rows += pendRows; p.Bytes += pendBytes })
			pendRows, pendBytes = 0, 0
		}
	}
	if err := rows.Err(); err != nil {
		return changedTableErr(t, err)
	}
	if w != nil {
		err := s.closeObject(w, &entry)
		w = nil
		if err != nil {
			return err
		}
	}
	s.man.Tables[st.index] = entry
	s.progress(false, func(p *Progress) { p.Rows += pendRows; p.Bytes += pendBytes })
	s.mu.Lock()
	s.man.Rows += entry.Rows
	s.man.Bytes += entry.Bytes
	s.mu.Unlock()
	return nil
}
