package snapshot

import (
	"context"
	"database/sql"
	"time"

	"github.com/databus/databus/internal/mysqlsrc"
)

// SetSnapshotViewOpenedHook makes every snapshot call f right after it
// opened its read view, before it locks the tables' schema; nil removes it.
func SetSnapshotViewOpenedHook(f func()) { testHookViewOpened = f }

// SetCommitBlockWait changes how long a snapshot waits for its commit
// block until the test ends.
func SetCommitBlockWait(t interface{ Cleanup(func()) }, d time.Duration) {
	old := commitBlockWait
	commitBlockWait = d
	t.Cleanup(func() { commitBlockWait = old })
}

// OpenReadViews opens a snapshot's read view on parallel connections of
// the server cfg names, as a snapshot does, and returns the connections,
// the GTID set they match and a function that ends them.
func OpenReadViews(ctx context.Context, cfg Config, parallel int) ([]*sql.Conn, string, func(), error) {
	db, err := mysqlsrc.Connect(ctx, cfg.MySQL)
	if err != nil {
		return nil, "", nil, err
	}
	db.SetMaxOpenConns(parallel + 1)
	info, err := mysqlsrc.Inspect(ctx, db)
	if err != nil {
		db.Close()
		return nil, "", nil, err
	}
	s := &snapshotter{cfg: cfg, opt: Options{Parallel: parallel}}
	conns, err := s.begin(ctx, db, info)
	if err != nil {
		db.Close()
		return nil, "", nil, err
	}
	return conns, s.man.GTIDSet, func() {
		for _, c := range conns {
			_, _ = c.ExecContext(ctx, "ROLLBACK")
			c.Close()
		}
		db.Close()
	}, nil
}
