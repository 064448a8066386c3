package apply

import (
	"context"
	"fmt"

	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/sdk"
)

// snapshotEvent applies a snapshot's schema event or row. Rows are
// written with REPLACE in target transactions of snapshotBatch rows; the
// checkpoint keeps naming the snapshot until the first change after it.
func (a *Applier) snapshotEvent(ctx context.Context, open **txn, m *sdk.Message) error {
	ev := m.Event
	if ev.Op == sdk.OpDDL {
		if *open != nil {
			if err := a.commitSnapshotRows(ctx, *open); err != nil {
				return err
			}
			*open = nil
		}
		for _, q := range []string{"CREATE DATABASE IF NOT EXISTS " + rowcodec.QuoteIdent(ev.Database), ev.SQL} {
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
		*open = &txn{id: ev.Txn.ID, tx: tx, snapshot: true}
	}
	t := *open
	if _, err := t.tx.ExecContext(ctx, ev.IdempotentSQL()); err != nil {
		t.rollback()
		return fmt.Errorf("applying snapshot row %d of %s.%s: %w", ev.Txn.Seq, ev.Database, ev.Table, err)
	}
	t.last = m
	if t.events++; t.events >= snapshotBatch {
		if err := a.commitSnapshotRows(ctx, t); err != nil {
			return err
		}
		*open = nil
	}
	return nil
}

const snapshotBatch = 500

func (a *Applier) commitSnapshotRows(ctx context.Context, t *txn) error {
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("committing snapshot rows on the target: %w", err)
	}
	a.progress.Events += uint64(t.events)
	return t.last.Ack(ctx)
}
