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
	"github.com/databus/databus/internal/mysqlwire"
	"github.com/databus/databus/sdk"
)

// commitBlockWait is how long a snapshot waits for the lock that holds
// commits off while its read views open: running commits (and, on MariaDB,
// running DDL) finish first, and the writes waiting behind the lock wait
// at most this long too. Tests shorten it.
var commitBlockWait = 10 * time.Second

// views is a snapshot's consistent read view, open on several sessions
// at once: meta reads the catalog and key bounds and holds the tables'
// metadata locks, the readers read the rows.
type views struct {
	meta    *sql.Conn
	readers []*mysqlwire.Conn
}

// end ends the snapshot transaction on every session and closes them;
// the first error of ending it is returned.
func (v *views) end(ctx context.Context, stmt string) error {
	var first error
	if v.meta != nil {
		if _, err := v.meta.ExecContext(ctx, stmt); err != nil {
			first = err
		}
		v.meta.Close()
	}
	for _, r := range v.readers {
		if err := r.Exec(ctx, stmt); err != nil && first == nil {
			first = err
		}
		r.Close()
	}
	v.meta, v.readers = nil, nil
	return first
}

// keep closes the readers beyond the first n.
func (v *views) keep(ctx context.Context, n int) {
	for len(v.readers) > n {
		last := v.readers[len(v.readers)-1]
		_ = last.Exec(ctx, "ROLLBACK")
		last.Close()
		v.readers = v.readers[:len(v.readers)-1]
	}
}

// sessionSettings are the settings of every session of a read view: the
// rows' bytes as stored, times in UTC.
var sessionSettings = []string{
	"SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
	"SET NAMES binary",
	"SET time_zone = '+00:00'",
	"SET SESSION net_write_timeout = 3600",
}

// begin opens the consistent read view on a metadata session and
// opt.Parallel readers, and records the binlog position and GTID set it
// matches.
//
// The views open while no transaction can commit, so they all hold the
// same transactions, and the binlog position read then is exactly theirs:
// on MariaDB 10.4+ under BACKUP STAGE BLOCK_COMMIT, elsewhere under FLUSH
// TABLES WITH READ LOCK, for the few milliseconds it takes. Without the
// lock, neither holds: MariaDB's binlog_snapshot_position for a view opened
// under concurrent commits is off by a transaction or two now and then
// (measured on 10.11), which would lose or repeat those transactions for
// every consumer that starts from the snapshot.
func (s *snapshotter) begin(ctx context.Context, db *sql.DB, info mysqlsrc.ServerInfo) (v *views, err error) {
	v = &views{}
	defer func() {
		if err != nil {
			_ = v.end(context.WithoutCancel(ctx), "ROLLBACK")
			v = nil
		}
	}()
	if v.meta, err = db.Conn(ctx); err != nil {
		return v, mysqlsrc.Classify(s.cfg.MySQL, err)
	}
	for _, q := range sessionSettings {
		if _, err := v.meta.ExecContext(ctx, q); err != nil {
			return v, fmt.Errorf("%s: %w", q, err)
		}
	}
	for range s.opt.Parallel {
		r, err := mysqlsrc.DialWire(ctx, s.cfg.MySQL, info)
		if err != nil {
			return v, err
		}
		v.readers = append(v.readers, r)
		for _, q := range sessionSettings {
			if err := r.Exec(ctx, q); err != nil {
				return v, fmt.Errorf("%s: %w", q, err)
			}
		}
	}
	lock, err := db.Conn(ctx)
	if err != nil {
		return v, mysqlsrc.Classify(s.cfg.MySQL, err)
	}
	defer lock.Close()
	unblock, err := blockCommits(ctx, lock, info)
	if err != nil {
		return v, err
	}
	file, offset, gtids, err := openViews(ctx, v, lock, info)
	unblock()
	if err != nil {
		return v, err
	}
	s.man.Position = sdk.Position{File: file, Offset: offset, ServerID: info.ServerID, ServerUUID: info.ServerUUID}
	s.man.GTIDSet = gtids
	return v, nil
}

// openViews starts the snapshot transaction on every session of v while
// commits are blocked (on lock), and reads the binlog position and GTID
// set the views match.
func openViews(ctx context.Context, v *views, lock *sql.Conn, info mysqlsrc.ServerInfo) (file string, offset uint32, gtids string, err error) {
	const start = "START TRANSACTION WITH CONSISTENT SNAPSHOT, READ ONLY"
	var g errgroup.Group
	g.Go(func() error {
		_, err := v.meta.ExecContext(ctx, start)
		return err
	})
	for _, r := range v.readers {
		g.Go(func() error { return r.Exec(ctx, start) })
	}
	if err := g.Wait(); err != nil {
		return "", 0, "", fmt.Errorf("starting the snapshot transaction: %w", err)
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
