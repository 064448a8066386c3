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
	snapshotBatch = 5000
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
// multi-row REPLACE statements, snapshotBatch rows per target
// transaction, which also saves how far the load is in the checkpoint:
// after a crash the load goes on right after the last committed row.
func (a *Applier) snapshotEvent(ctx context.Context, open **txn, m *sdk.Message) error {
	ev := m.Event
	if ev.Op == sdk.OpDDL {
		if *open != nil {
			if err := a.commitSnapshotRows(ctx, *open); err != nil {
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
		tx, err := a.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("beginning a target transaction: %w", err)
		}
		// The rows come from one consistent read: checking them against
		// other tables (a child table may load before its parent) or for
		// uniqueness only slows the load down.
		if _, err := tx.ExecContext(ctx, "SET SESSION foreign_key_checks = 0, unique_checks = 0"); err != nil {
			_ = tx.Rollback()
			return fmt.Errorf("preparing the target session for loading: %w", err)
		}
		*open = &txn{id: ev.Txn.ID, tx: tx}
	}
	t := *open
	if t.head == "" {
		head, err := ev.InsertHead()
		if err != nil {
			t.rollback()
			return fmt.Errorf("snapshot row %d of %s.%s: %w", ev.Txn.Seq, ev.Database, ev.Table, err)
		}
		t.head = "REPLACE" + strings.TrimPrefix(head, "INSERT")
	}
	tuple, err := ev.Tuple()
	if err != nil {
		t.rollback()
		return fmt.Errorf("snapshot row %d of %s.%s: %w", ev.Txn.Seq, ev.Database, ev.Table, err)
	}
	if len(t.stmt) > 0 && len(t.stmt)+len(tuple) > statementBytes {
		if err := a.flushRows(ctx, t); err != nil {
			return err
		}
	}
	if len(t.stmt) == 0 {
		t.stmt = append(t.stmt, t.head...)
	} else {
		t.stmt = append(t.stmt, ',')
	}
	t.stmt = append(t.stmt, tuple...)
	t.stmtRows++
	t.last = m
	if t.events++; t.events >= snapshotBatch || ev.Txn.Last {
		if err := a.commitSnapshotRows(ctx, t); err != nil {
			return err
		}
		*open = nil
	}
	return nil
}

// flushRows runs the pending multi-row statement.
func (a *Applier) flushRows(ctx context.Context, t *txn) error {
	if len(t.stmt) == 0 {
		return nil
	}
	if _, err := t.tx.ExecContext(ctx, string(t.stmt)); err != nil {
		t.rollback()
		ev := t.last.Event
		return fmt.Errorf("loading %d snapshot rows of %s.%s up to row %d: %w", t.stmtRows, ev.Database, ev.Table, ev.Txn.Seq, err)
	}
	t.stmt, t.stmtRows = t.stmt[:0], 0
	return nil
}

// commitSnapshotRows writes the pending rows, records in the checkpoint
// where the load stands and commits.
func (a *Applier) commitSnapshotRows(ctx context.Context, t *txn) error {
	if err := a.flushRows(ctx, t); err != nil {
		return err
	}
	at, _ := json.Marshal(t.last.Snapshot)
	if _, err := t.tx.ExecContext(ctx, a.checkpointSQL(a.snapSeq, snapshotMark+string(at), t.last.Event.Position)); err != nil {
		t.rollback()
		return fmt.Errorf("saving the snapshot load's progress: %w", err)
	}
	if _, err := t.tx.ExecContext(ctx, "SET SESSION foreign_key_checks = 1, unique_checks = 1"); err != nil {
		t.rollback()
		return fmt.Errorf("restoring the target session after loading: %w", err)
	}
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("committing snapshot rows on the target: %w", err)
	}
	a.mu.Lock()
	a.progress.Events += uint64(t.events)
	a.progress.Commits++
	a.mu.Unlock()
	return t.last.Ack(ctx)
}
