package apply

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/databus/databus/internal/mysqlwire"
	"github.com/databus/databus/sdk"
)

// txn is an open target transaction loading a snapshot's rows, on the
// group's connection.
type txn struct {
	id     string
	last   *sdk.Message
	events int
	// stmt is the multi-row REPLACE statement of snapshot rows not sent
	// yet, of stmtRows rows.
	stmt     []byte
	stmtRows int
}

// rollback rolls the transaction back and gives the session back its
// unique checks.
func (t *txn) rollback(ctx context.Context, g *group) {
	g.abort(ctx)
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = g.conn.Exec(ctx, "SET SESSION unique_checks = 1")
}

// checkpointSQL is the statement that records the checkpoint: stream
// sequence seq, the transaction txnID at p (of the last event applied, or
// what a start pins).
func (a *Applier) checkpointSQL(seq uint64, txnID string, p sdk.Position) string {
	return "INSERT INTO `databus`.`apply_checkpoint` (`source`, `name`, `stream_seq`, `txn_id`, `binlog_file`, `binlog_offset`, `updated`) VALUES (" +
		sdk.QuoteString(a.cfg.Source) + ", " + sdk.QuoteString(a.cfg.Name) + ", " + strconv.FormatUint(seq, 10) + ", " +
		sdk.QuoteString(txnID) + ", " + sdk.QuoteString(p.File) + ", " + strconv.FormatUint(uint64(p.Offset), 10) + ", NOW(6)) " +
		"ON DUPLICATE KEY UPDATE `stream_seq` = VALUES(`stream_seq`), `txn_id` = VALUES(`txn_id`), " +
		"`binlog_file` = VALUES(`binlog_file`), `binlog_offset` = VALUES(`binlog_offset`), `updated` = VALUES(`updated`)"
}

// appliedSQL records m as the last event applied, to run in the
// transaction that applies it.
func (a *Applier) appliedSQL(m *sdk.Message) string {
	return a.checkpointSQL(m.Sequence, m.Event.Txn.ID, m.Event.Position)
}

// pin saves a start checkpoint (stream sequence seq, txnID at p) before
// anything is applied.
func (a *Applier) pin(ctx context.Context, seq uint64, txnID string, p sdk.Position) error {
	if _, err := a.db.ExecContext(ctx, a.checkpointSQL(seq, txnID, p)); err != nil {
		return fmt.Errorf("saving the start checkpoint: %w", err)
	}
	return nil
}

// applied records a target commit of txns source transactions (events
// events) that ends with m.
func (a *Applier) applied(m *sdk.Message, txns, events int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.progress.Transactions += uint64(txns)
	a.progress.Events += uint64(events)
	a.progress.Commits++
	a.progress.Seq = m.Sequence
	a.progress.Lag = time.Since(m.Event.Timestamp)
	a.progress.Applied, a.progress.Pending = time.Now(), m.Pending
	a.progress.Applying, a.progress.Retrying = true, ""
	a.resumed = false
}

// logProgress logs what was applied, and how fast since the last log.
func (a *Applier) logProgress() {
	p, was := a.Progress(), a.logged
	now := time.Now()
	args := []any{"transactions", p.Transactions, "events", p.Events, "stream_seq", p.Seq, "lag", p.Lag.Round(time.Millisecond)}
	if !a.loggedAt.IsZero() {
		secs := now.Sub(a.loggedAt).Seconds()
		args = append(args, "txns_per_s", int(float64(p.Transactions-was.Transactions)/secs), "events_per_s", int(float64(p.Events-was.Events)/secs))
	}
	if n := p.Commits - was.Commits; n > 0 {
		args = append(args, "txns_per_commit", math.Round(10*float64(p.Transactions-was.Transactions)/float64(n))/10)
	}
	a.log.Info("progress", args...)
	a.logged, a.loggedAt = p, now
}

// batchSession are the settings of the connection that runs the row
// events' statements: those of db's (New), and no autocommit, so that a
// statement of a command sent behind one that failed (and ended the
// transaction) commits nothing.
var batchSession = []string{
	"SET NAMES utf8mb4 COLLATE utf8mb4_general_ci",
	"SET time_zone = '+00:00', sql_mode = '" + rowSQLMode + "', foreign_key_checks = 0, autocommit = 0",
}

// dialBatch opens the connection that runs the row events' statements.
func (a *Applier) dialBatch(ctx context.Context) (*mysqlwire.Conn, error) {
	cfg := a.batch
	if a.batchPreferTLS {
		// TLS is preferred: used when the server offers it, as db's
		// driver does.
		var name, cipher string
		if err := a.db.QueryRowContext(ctx, "SHOW SESSION STATUS LIKE 'Ssl_cipher'").Scan(&name, &cipher); err != nil || cipher == "" {
			cfg.TLS = nil
		}
	}
	c, err := mysqlwire.Dial(ctx, cfg)
	if err != nil {
		return nil, err
	}
	for _, q := range batchSession {
		if err := c.Exec(ctx, q); err != nil {
			c.Close()
			return nil, fmt.Errorf("%s: %w", q, err)
		}
	}
	return c, nil
}

// schemaHint explains a target without the database or table a change
// applies to.
func schemaHint(err error) string {
	var me *mysql.MySQLError
	if !errors.As(err, &me) || me.Number != 1049 && me.Number != 1146 {
		return ""
	}
	return "; the target lacks the schema the stream's changes apply to (capture started after it was created): " +
		"load a new, empty target with `databus apply --from snapshot`, or create the databases and tables there first"
}

// ddlSettings are session variables a DDL statement runs with: what the
// source ran, the target runs. A statement its settings allowed
// (innodb_strict_mode off, an ALTER of a system-versioned table under
// system_versioning_alter_history=KEEP) must not fail here for the
// target's own. Neither turns an error of the source into a success: they
// only let through what it did. A server without one of them (MySQL has no
// system versioning) skips it.
var ddlSettings = []struct{ name, value string }{
	{"innodb_strict_mode", "OFF"},
	{"system_versioning_alter_history", "KEEP"},
}

// prepareDDL sets conn up to run d's statement: under the sql_mode it ran
// under on the source, which decides how it reads (ANSI_QUOTES,
// NO_BACKSLASH_ESCAPES) and what it creates (ORACLE's types), or the
// target's default when the event has none (MySQL, a snapshot's schema);
// and with [ddlSettings]. restore puts apply's own settings back.
func prepareDDL(ctx context.Context, conn *sql.Conn, d *sdk.DDL) (restore func() error, err error) {
	setMode, modeArgs := "SET SESSION sql_mode = @@GLOBAL.sql_mode", []any(nil)
	if d != nil && d.SQLMode != nil {
		setMode, modeArgs = "SET SESSION sql_mode = ?", []any{*d.SQLMode}
	}
	restore = func() error {
		for _, v := range ddlSettings {
			if _, err := conn.ExecContext(ctx, "SET SESSION "+v.name+" = DEFAULT"); err != nil && !unknownVariable(err) {
				return err
			}
		}
		_, err := conn.ExecContext(ctx, "SET SESSION sql_mode = '"+rowSQLMode+"'")
		return err
	}
	if _, err := conn.ExecContext(ctx, setMode, modeArgs...); err != nil {
		return nil, fmt.Errorf("sql_mode: %w", err)
	}
	for _, v := range ddlSettings {
		if _, err := conn.ExecContext(ctx, "SET SESSION "+v.name+" = "+v.value); err != nil && !unknownVariable(err) {
			_ = restore()
			return nil, fmt.Errorf("%s: %w", v.name, err)
		}
	}
	return restore, nil
}

// unknownVariable reports MySQL's "unknown system variable".
func unknownVariable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1193
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
		if _, err := conn.ExecContext(ctx, "USE "+sdk.QuoteIdent(db)); err != nil {
			var me *mysql.MySQLError
			if !errors.As(err, &me) || me.Number != 1049 { // unknown database: the DDL may create it
				return fmt.Errorf("selecting database %s for DDL at stream sequence %d: %w", db, m.Sequence, err)
			}
		}
	}
	restore, err := prepareDDL(ctx, conn, m.Event.DDL)
	if err != nil {
		return fmt.Errorf("preparing the session for DDL at stream sequence %d: %w", m.Sequence, err)
	}
	_, err = conn.ExecContext(ctx, m.Event.SQL)
	if rerr := restore(); rerr != nil {
		return fmt.Errorf("restoring apply's session after DDL at stream sequence %d: %w", m.Sequence, rerr)
	}
	if err != nil {
		var me *mysql.MySQLError
		if a.resumed && errors.As(err, &me) && alreadyApplied[me.Number] {
			a.log.Warn("DDL seems applied before the last restart; continuing", "stream_seq", m.Sequence, "err", err)
		} else {
			return fmt.Errorf("applying DDL at stream sequence %d (%s, %.200s): %w%s", m.Sequence, m.Event.Position, m.Event.SQL, err, schemaHint(err))
		}
	}
	if _, err := conn.ExecContext(ctx, a.appliedSQL(m)); err != nil {
		return fmt.Errorf("saving the checkpoint at stream sequence %d: %w", m.Sequence, err)
	}
	a.applied(m, 1, 1)
	_ = m.Ack(ctx)
	return nil
}
