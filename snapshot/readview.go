package snapshot

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"
	"golang.org/x/sync/errgroup"

	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/sdk"
)

// commitBlockWait is how long a snapshot waits for the lock that holds
// commits off while its read views open: running commits (and, on MariaDB,
// running DDL) finish first, and the writes waiting behind the lock wait
// at most this long too. Tests shorten it.
var commitBlockWait = 10 * time.Second

// begin opens the consistent read view on opt.Parallel connections and
// records the binlog position and GTID set it matches.
//
// The views open while no transaction can commit, so they all hold the
// same transactions, and the binlog position read then is exactly theirs:
// on MariaDB 10.4+ under BACKUP STAGE BLOCK_COMMIT, elsewhere under FLUSH
// TABLES WITH READ LOCK, for the few milliseconds it takes. Without the
// lock, neither holds: MariaDB's binlog_snapshot_position for a view opened
// under concurrent commits is off by a transaction or two now and then
// (measured on 10.11), which would lose or repeat those transactions for
// every consumer that starts from the snapshot.
func (s *snapshotter) begin(ctx context.Context, db *sql.DB, info mysqlsrc.ServerInfo) (conns []*sql.Conn, err error) {
	defer func() {
		if err != nil {
			for _, c := range conns {
				_, _ = c.ExecContext(context.WithoutCancel(ctx), "ROLLBACK")
				c.Close()
			}
			conns = nil
		}
	}()
	for range s.opt.Parallel {
		conn, err := db.Conn(ctx)
		if err != nil {
			return conns, mysqlsrc.Classify(s.cfg.MySQL, err)
		}
		conns = append(conns, conn)
		for _, q := range []string{
			"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
			"SET NAMES binary",
			"SET time_zone = '+00:00'",
			"SET SESSION net_write_timeout = 3600",
		} {
			if _, err := conn.ExecContext(ctx, q); err != nil {
				return conns, fmt.Errorf("%s: %w", q, err)
			}
		}
	}
	lock, err := db.Conn(ctx)
	if err != nil {
		return conns, mysqlsrc.Classify(s.cfg.MySQL, err)
	}
	defer lock.Close()
	unblock, err := blockCommits(ctx, lock, info)
	if err != nil {
		return conns, err
	}
	file, offset, gtids, err := openViews(ctx, conns, lock, info)
	unblock()
	if err != nil {
		return conns, err
	}
	s.man.Position = sdk.Position{File: file, Offset: offset, ServerID: info.ServerID, ServerUUID: info.ServerUUID}
	s.man.GTIDSet = gtids
	return conns, nil
}

// openViews starts the snapshot transaction on every connection while
// commits are blocked (on lock), and reads the binlog position and GTID
// set the views match.
func openViews(ctx context.Context, conns []*sql.Conn, lock *sql.Conn, info mysqlsrc.ServerInfo) (file string, offset uint32, gtids string, err error) {
	var g errgroup.Group
	for _, conn := range conns {
		g.Go(func() error {
			if _, err := conn.ExecContext(ctx, "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"); err != nil {
				return fmt.Errorf("starting the snapshot transaction: %w", err)
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return "", 0, "", err
	}
	if file, offset, err = mysqlsrc.MasterStatus(ctx, lock, info); err != nil {
		return "", 0, "", err
	}
	q := "SELECT @@GLOBAL.gtid_executed"
	if info.MariaDB {
		q = "SELECT @@GLOBAL.gtid_binlog_pos"
	}
	var set sql.NullString
	if err := lock.QueryRowContext(ctx, q).Scan(&set); err == nil {
		gtids = set.String
	}
	return file, offset, gtids, nil
}

// blockCommits holds every commit off on the server, on its own
// connection, until the returned function is called.
func blockCommits(ctx context.Context, conn *sql.Conn, info mysqlsrc.ServerInfo) (unblock func(), err error) {
	wait := fmt.Sprintf("SET SESSION lock_wait_timeout = %d", int(commitBlockWait.Seconds()))
	if _, err := conn.ExecContext(ctx, wait); err != nil {
		return nil, fmt.Errorf("%s: %w", wait, err)
	}
	lock, release := []string{"FLUSH TABLES WITH READ LOCK"}, "UNLOCK TABLES"
	if info.MariaDB && mysqlsrc.VersionAtLeast(info.Version, 10, 4) {
		lock, release = []string{"BACKUP STAGE START", "BACKUP STAGE BLOCK_COMMIT"}, "BACKUP STAGE END"
	}
	unblock = func() { _, _ = conn.ExecContext(context.WithoutCancel(ctx), release) }
	for _, q := range lock {
		if _, err := conn.ExecContext(ctx, q); err != nil {
			unblock()
			return nil, blockErr(q, err)
		}
	}
	return unblock, nil
}

// blockErr explains why the commit block could not be taken.
func blockErr(stmt string, err error) error {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		switch me.Number {
		case 1227, 1044, 1045, 1142: // access denied
			return fmt.Errorf("%w: %s, which holds commits off for the moment the snapshot's read view opens, needs the RELOAD privilege: GRANT RELOAD ON *.* TO the snapshot's user (%v)", mysqlsrc.ErrSourceSettings, stmt, err)
		case 1205: // lock wait timeout
			return fmt.Errorf("%s waited %s for running commits or DDL statements to finish, and gave up so as not to hold the source's writes off any longer: take the snapshot again (%v)", stmt, commitBlockWait, err)
		}
	}
	return fmt.Errorf("%s: %w", stmt, err)
}
