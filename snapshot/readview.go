package snapshot

import (
	"context"
	"database/sql"
	"fmt"

	"golang.org/x/sync/errgroup"

	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/sdk"
)

// begin opens the consistent read view on up to opt.Parallel connections
// and records the binlog position and GTID set it matches. MariaDB reports
// the position of a consistent snapshot without any lock; MySQL needs FLUSH
// TABLES WITH READ LOCK for the moment it takes to start the transactions.
func (s *snapshotter) begin(ctx context.Context, db *sql.DB, info mysqlsrc.ServerInfo) ([]*sql.Conn, error) {
	conns := make([]*sql.Conn, 0, s.opt.Parallel)
	closeAll := func() {
		for _, c := range conns {
			_, _ = c.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
			c.Close()
		}
	}
	for range s.opt.Parallel {
		conn, err := db.Conn(ctx)
		if err != nil {
			closeAll()
			return nil, mysqlsrc.Classify(s.cfg.MySQL, err)
		}
		conns = append(conns, conn)
		for _, q := range []string{
			"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
			"SET NAMES binary",
			"SET time_zone = '+00:00'",
			"SET SESSION net_write_timeout = 3600",
		} {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				closeAll()
				return nil, fmt.Errorf("%s: %w", q, err)
			}
		}
	}
	pos := sdk.Position{ServerID: info.ServerID, ServerUUID: info.ServerUUID}
	var err error
	if info.Flavor() == "mariadb" {
		var kept int
		kept, pos.File, pos.Offset, err = beginMariaDB(ctx, conns)
		if err == nil {
			for _, c := range conns[kept:] {
				_, _ = c.ExecContext(ctx, "ROLLBACK")
				c.Close()
			}
			conns = conns[:kept]
			var gtids sql.NullString
			if err := conns[0].QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", pos.File, pos.Offset).Scan(&gtids); err == nil {
				s.man.GTIDSet = gtids.String
			}
		}
	} else {
		pos.File, pos.Offset, err = s.beginMySQL(ctx, conns, info)
	}
	if err != nil {
		closeAll()
		return nil, err
	}
	s.man.Position = pos
	return conns, nil
}

// snapshotAttempts is how often MariaDB's parallel read views are opened
// again when writes committed between them.
const snapshotAttempts = 5

// beginMariaDB starts a consistent snapshot on every connection at the same
// moment and returns the binlog position of the read view. MariaDB gives
// each connection a view of its own: views with the same binlog snapshot
// position hold the same committed transactions (the position is taken
// under the lock that orders commits), so the connections are reordered to
// put the largest group of equal positions first and kept is its size. When
// writes committed between the views, they are opened again, up to
// snapshotAttempts times; then the group (at worst one connection) is used.
func beginMariaDB(ctx context.Context, conns []*sql.Conn) (kept int, file string, offset uint32, err error) {
	type view struct {
		file   string
		offset uint32
	}
	views := make([]view, len(conns))
	for attempt := 1; ; attempt++ {
		var g errgroup.Group
		for i, conn := range conns {
			g.Go(func() error {
				if _, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
					return fmt.Errorf("starting the snapshot transaction: %w", err)
				}
				var name, file, offset string
				if err := conn.QueryRowContext(ctx, "SHOW STATUS LIKE 'binlog_snapshot_file'").Scan(&name, &file); err != nil {
					return fmt.Errorf("reading binlog_snapshot_file: %w", err)
				}
				if err := conn.QueryRowContext(ctx, "SHOW STATUS LIKE 'binlog_snapshot_position'").Scan(&name, &offset); err != nil {
					return fmt.Errorf("reading binlog_snapshot_position: %w", err)
				}
				views[i] = view{file: file}
				if _, err := fmt.Sscan(offset, &views[i].offset); err != nil || file == "" {
					return fmt.Errorf("%w: the server reports no binlog snapshot position (file %q, offset %q): is log_bin on?", mysqlsrc.ErrSourceSettings, file, offset)
				}
				return nil
			})
		}
		if err := g.Wait(); err != nil {
			return 0, "", 0, err
		}
		count := map[view]int{}
		best := views[0]
		for _, v := range views {
			count[v]++
			if count[v] > count[best] {
				best = v
			}
		}
		if count[best] == len(conns) || attempt == snapshotAttempts {
			reordered := make([]*sql.Conn, 0, len(conns))
			for _, same := range []bool{true, false} {
				for i, v := range views {
					if (v == best) == same {
						reordered = append(reordered, conns[i])
					}
				}
			}
			copy(conns, reordered)
			return count[best], best.file, best.offset, nil
		}
		for _, conn := range conns {
			if _, err := conn.ExecContext(ctx, "ROLLBACK"); err != nil {
				return 0, "", 0, fmt.Errorf("retrying the snapshot transaction: %w", err)
			}
		}
	}
}

// beginMySQL starts a consistent snapshot on every connection under FLUSH
// TABLES WITH READ LOCK, so that all see the same transactions, and returns
// the binlog position they match.
func (s *snapshotter) beginMySQL(ctx context.Context, conns []*sql.Conn, info mysqlsrc.ServerInfo) (file string, offset uint32, err error) {
	if _, err := conns[0].ExecContext(ctx, "FLUSH TABLES WITH READ LOCK"); err != nil {
		return "", 0, fmt.Errorf("FLUSH TABLES WITH READ LOCK (needs the RELOAD privilege): %w", err)
	}
	for _, conn := range conns {
		if _, err = conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
			break
		}
	}
	if err == nil {
		file, offset, err = mysqlsrc.MasterStatus(ctx, conns[0], info)
		if err == nil {
			_ = conns[0].QueryRowContext(ctx, "SELECT @@GLOBAL.gtid_executed").Scan(&s.man.GTIDSet)
		}
	}
	if _, uerr := conns[0].ExecContext(ctx, "UNLOCK TABLES"); err == nil {
		err = uerr
	}
	if err != nil {
		return "", 0, fmt.Errorf("starting the snapshot transaction: %w", err)
	}
	return file, offset, nil
}
