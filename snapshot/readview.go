package snapshot

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
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
	"SET NAMES binary, time_zone = '+00:00', SESSION net_write_timeout = 3600",
}

// source holds a snapshot's connections to MySQL, opened (by openSource)
// while the NATS side of the snapshot is set up: the pool of the metadata
// session and of the commit block's session, and the sessions of the read
// view, not yet in their snapshot transaction.
type source struct {
	db   *sql.DB
	info mysqlsrc.ServerInfo
	v    *views
	// lock holds commits off while the views open (blockCommits).
	lock *sql.Conn
}

// openSource connects to MySQL, reads what the snapshot needs to know of
// the server, and opens the metadata session, the commit block's session
// and parallel readers, all at the same time.
func openSource(ctx context.Context, cfg mysqlsrc.Config, parallel int) (src *source, err error) {
	db, err := mysqlsrc.Connect(ctx, cfg)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(2) // the read view's metadata session and the commit block
	src = &source{db: db, v: &views{readers: make([]*mysqlwire.Conn, parallel)}}
	defer func() {
		if err != nil {
			src.close(ctx)
			src = nil
		}
	}()
	if src.info, err = mysqlsrc.Inspect(ctx, db); err != nil {
		return src, err
	}
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() (err error) {
		if src.v.meta, err = db.Conn(gctx); err != nil {
			return mysqlsrc.Classify(cfg, err)
		}
		for _, q := range sessionSettings {
			if _, err := src.v.meta.ExecContext(gctx, q); err != nil {
				return fmt.Errorf("%s: %w", q, err)
			}
		}
		return nil
	})
	g.Go(func() (err error) {
		if src.lock, err = db.Conn(gctx); err != nil {
			return mysqlsrc.Classify(cfg, err)
		}
		return nil
	})
	for i := range src.v.readers {
		g.Go(func() error {
			r, err := mysqlsrc.DialWire(gctx, cfg, src.info)
			if err != nil {
				return err
			}
			src.v.readers[i] = r
			for _, q := range sessionSettings {
				if err := r.Exec(gctx, q); err != nil {
					return fmt.Errorf("%s: %w", q, err)
				}
			}
			return nil
		})
	}
	err = g.Wait()
	return src, err
}

// close rolls the read view back, if it is still open, and closes every
// connection.
func (src *source) close(ctx context.Context) {
	src.v.readers = slices.DeleteFunc(src.v.readers, func(r *mysqlwire.Conn) bool { return r == nil })
	_ = src.v.end(context.WithoutCancel(ctx), "ROLLBACK")
	if src.lock != nil {
		src.lock.Close()
	}
	src.db.Close()
}

// begin opens the consistent read view on the source's sessions and
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
func (s *snapshotter) begin(ctx context.Context, src *source) error {
	defer func() {
		src.lock.Close()
		src.lock = nil
	}()
	unblock, err := blockCommits(ctx, src.lock, src.info)
	if err != nil {
		return err
	}
	file, offset, gtids, err := openViews(ctx, src.v, src.lock, src.info)
	unblock()
	if err != nil {
		return err
	}
	s.man.Position = sdk.Position{File: file, Offset: offset, ServerID: src.info.ServerID, ServerUUID: src.info.ServerUUID}
	s.man.GTIDSet = gtids
	return nil
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
