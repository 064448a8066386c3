package apply

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/databus/databus/sdk"
)

const (
	// snapshotBatch is how many snapshot rows one target transaction
	// writes; its checkpoint records how far the load is.
	snapshotBatch = 50_000
	// statementBytes bounds one multi-row REPLACE statement, well under
	// any server's max_allowed_packet.
	statementBytes = 1 << 20
)

// snapshotMark prefixes the checkpoint's txn_id while a snapshot loads;
// the snapshot's id, or the JSON of the sdk.SnapshotProgress just after
// the last row committed, follows it.
const snapshotMark = "loading snapshot "

// loadingAt parses what follows snapshotMark in a checkpoint: the
// snapshot being loaded and, when rows of it were committed, where the
// load stands.
func loadingAt(s string) (id string, at *sdk.SnapshotProgress, err error) {
	if !strings.HasPrefix(s, "{") {
		return s, nil, nil
	}
	at = new(sdk.SnapshotProgress)
	if err := json.Unmarshal([]byte(s), at); err != nil {
		return "", nil, fmt.Errorf("the checkpoint's snapshot progress %q: %w", s, err)
	}
	return at.Snapshot, at, nil
}

// snapshotEvent applies a snapshot's schema event or row. Rows go into
// multi-row REPLACE statements, pipelined on the group's connection,
// snapshotBatch rows per target transaction, which also saves how far the
// load is in the checkpoint: after a crash the load goes on right after
// the last committed row.
func (a *Applier) snapshotEvent(ctx context.Context, g *group, open **txn, it item) error {
	m := it.m
	ev := m.Event
	if ev.Op == sdk.OpDDL {
		if *open != nil {
			if err := a.commitSnapshotRows(ctx, g, *open); err != nil {
				return err
			}
			*open = nil
		}
		for _, q := range []string{"CREATE DATABASE IF NOT EXISTS " + sdk.QuoteIdent(ev.Database), ev.SQL} {
			if _, err := a.db.ExecContext(ctx, q); err != nil {
				return fmt.Errorf("creating %s.%s from the snapshot (%.200s): %w", ev.Database, ev.Table, q, err)
			}
		}
		return m.Ack(ctx)
	}
	if *open == nil {
		if err := a.commitGroup(ctx, g); err != nil {
			return err
		}
		// The rows come from one consistent read: checking them for
		// uniqueness (or, as the session never does, against other
		// tables) only slows the load down. The transaction begins with
		// the first statement (autocommit is off).
		*open = &txn{id: ev.Txn.ID, stmt: []byte("SET SESSION unique_checks = 0")}
	}
	t := *open
	if t.stmtRows > 0 && len(t.stmt)+len(it.tuple) > statementBytes {
		if err := a.flushRows(ctx, g, t); err != nil {
			return err
		}
	}
	if t.stmtRows == 0 {
		if len(t.stmt) > 0 {
			t.stmt = append(t.stmt, ';')
		}
		t.stmt = append(t.stmt, replaceHead(it.head)...)
	} else {
		t.stmt = append(t.stmt, ',')
	}
	t.stmt = append(t.stmt, it.tuple...)
	t.stmtRows++
	t.last = m
	if t.events++; t.events >= snapshotBatch || ev.Txn.Last {
		if err := a.commitSnapshotRows(ctx, g, t); err != nil {
			return err
		}
		*open = nil
	}
	return nil
}

// replaceHead turns an insert's head into REPLACE: a snapshot row the
// target holds already (loaded before a crash) is written again.
func replaceHead(insert string) string {
	return "REPLACE" + strings.TrimPrefix(insert, "INSERT")
}

// flushRows sends the pending multi-row statement.
func (a *Applier) flushRows(ctx context.Context, g *group, t *txn) error {
	if len(t.stmt) == 0 {
		return nil
	}
	if err := g.pipeline(ctx, string(t.stmt), t.stmtRows); err != nil {
		return t.failed(ctx, g, err)
	}
	t.stmt, t.stmtRows = t.stmt[:0], 0
	return nil
}

// commitSnapshotRows writes the pending rows, records in the checkpoint
// where the load stands and commits, once every statement before has
// succeeded.
func (a *Applier) commitSnapshotRows(ctx context.Context, g *group, t *txn) error {
	ctx, cancel := seeThrough(ctx)
	defer cancel()
	if err := a.flushRows(ctx, g, t); err != nil {
		return err
	}
	if err := g.drain(ctx); err != nil {
		return t.failed(ctx, g, err)
	}
	at, _ := json.Marshal(t.last.Snapshot)
	q := a.checkpointSQL(a.snapSeq, snapshotMark+string(at), t.last.Event.Position) + ";SET SESSION unique_checks = 1;COMMIT"
	if err := g.conn.Exec(ctx, q); err != nil {
		t.rollback(ctx, g)
		return fmt.Errorf("saving the snapshot load's progress and committing on the target: %w", err)
	}
	a.mu.Lock()
	a.progress.Events += uint64(t.events)
	a.progress.Commits++
	a.mu.Unlock()
	return t.last.Ack(ctx)
}

// failed rolls the load's transaction back after a statement of it failed
// with err.
func (t *txn) failed(ctx context.Context, g *group, err error) error {
	t.rollback(ctx, g)
	ev := t.last.Event
	return fmt.Errorf("loading snapshot rows of %s.%s up to row %d: %w", ev.Database, ev.Table, ev.Txn.Seq, err)
}
