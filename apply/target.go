package apply

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/sdk"
)

// txn is an open target transaction.
type txn struct {
	id       string
	snapshot bool // rows of a snapshot, committed without a checkpoint
	tx       *sql.Tx
	last     *sdk.Message
	events   int
	// stmt is the multi-row statement of snapshot rows not run yet, of
	// stmtRows rows; head is the table's insertHead.
	stmt     []byte
	stmtRows int
	head     string
}

// rollback rolls the transaction back; a snapshot load's transaction
// first gives its connection back the checks it turned off.
func (t *txn) rollback() {
	if t.snapshot {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, _ = t.tx.ExecContext(ctx, "SET SESSION foreign_key_checks = 1, unique_checks = 1")
		cancel()
	}
	_ = t.tx.Rollback()
}

// commit stores the checkpoint in the transaction, commits it and then
// acknowledges the stream.
func (a *Applier) commit(ctx context.Context, t *txn) error {
	if t.snapshot {
		return a.commitSnapshotRows(ctx, t)
	}
	if err := a.saveCheckpoint(ctx, t.tx, t.last); err != nil {
		t.rollback()
		return err
	}
	if err := t.tx.Commit(); err != nil {
		return fmt.Errorf("committing transaction %s on the target: %w", t.id, err)
	}
	a.applied(t.last, t.events)
	_ = t.last.Ack(ctx) // the checkpoint on the target is what counts
	return nil
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

func (a *Applier) saveCheckpoint(ctx context.Context, x execer, m *sdk.Message) error {
	p := m.Event.Position
	_, err := x.ExecContext(ctx, "INSERT INTO `databus`.`apply_checkpoint` (`source`, `name`, `stream_seq`, `txn_id`, `binlog_file`, `binlog_offset`, `updated`) "+
		"VALUES (?, ?, ?, ?, ?, ?, NOW(6)) ON DUPLICATE KEY UPDATE `stream_seq` = VALUES(`stream_seq`), `txn_id` = VALUES(`txn_id`), "+
		"`binlog_file` = VALUES(`binlog_file`), `binlog_offset` = VALUES(`binlog_offset`), `updated` = VALUES(`updated`)",
		a.cfg.Source, a.cfg.Name, m.Sequence, m.Event.Txn.ID, p.File, p.Offset)
	if err != nil {
		return fmt.Errorf("saving the checkpoint at stream sequence %d: %w", m.Sequence, err)
	}
	return nil
}

// pin saves a checkpoint at stream sequence seq before anything is applied.
func (a *Applier) pin(ctx context.Context, seq uint64) error {
	_, err := a.db.ExecContext(ctx, "INSERT INTO `databus`.`apply_checkpoint` (`source`, `name`, `stream_seq`, `txn_id`, `binlog_file`, `binlog_offset`) "+
		"VALUES (?, ?, ?, '', '', 0)", a.cfg.Source, a.cfg.Name, seq)
	if err != nil {
		return fmt.Errorf("saving the start checkpoint: %w", err)
	}
	return nil
}

func (a *Applier) applied(m *sdk.Message, events int) {
	a.progress.Transactions++
	a.progress.Events += uint64(events)
	a.progress.Seq = m.Sequence
	a.progress.Lag = time.Since(m.Event.Timestamp)
	a.resumed = false
}

// alreadyApplied are MySQL errors a DDL statement raises when it ran before.
var alreadyApplied = map[uint16]bool{
	1007: true, // database exists
	1008: true, // database does not exist (drop)
	1050: true, // table exists
	1051: true, // unknown table (drop)
	1060: true, // duplicate column
	1061: true, // duplicate key name
	1091: true, // can't drop: does not exist
	1146: true, // table does not exist
}

// ddl runs a DDL statement in the event's default database, then saves the
// checkpoint.
func (a *Applier) ddl(ctx context.Context, m *sdk.Message) error {
	conn, err := a.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("connecting to the target: %w", err)
	}
	defer conn.Close()
	if d := m.Event.DDL; d != nil && !d.Qualified && d.DefaultDB != "" {
		db := d.DefaultDB
		if _, err := conn.ExecContext(ctx, "USE "+rowcodec.QuoteIdent(db)); err != nil {
			var me *mysql.MySQLError
			if !errors.As(err, &me) || me.Number != 1049 { // unknown database: the DDL may create it
				return fmt.Errorf("selecting database %s for DDL at stream sequence %d: %w", db, m.Sequence, err)
			}
		}
	}
	if _, err := conn.ExecContext(ctx, m.Event.SQL); err != nil {
		var me *mysql.MySQLError
		if a.resumed && errors.As(err, &me) && alreadyApplied[me.Number] {
			a.log.Warn("DDL seems applied before the last restart; continuing", "stream_seq", m.Sequence, "err", err)
		} else {
			return fmt.Errorf("applying DDL at stream sequence %d (%.200s): %w", m.Sequence, m.Event.SQL, err)
		}
	}
	if err := a.saveCheckpoint(ctx, conn, m); err != nil {
		return err
	}
	a.applied(m, 1)
	_ = m.Ack(ctx)
	return nil
}
