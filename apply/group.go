package apply

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/databus/databus/internal/mysqlwire"
	"github.com/databus/databus/sdk"
)

// group is the target transaction being built: whole source transactions
// and, last, maybe one whose end has not arrived. Its statements not sent
// yet are in buf: stmts of them, for the events from first to last, the
// last statement starting at buf[lastStmt:].
type group struct {
	conn     *mysqlwire.Conn
	began    bool
	buf      []byte
	stmts    int
	first    *sdk.Message
	lastStmt int
	// insertHead is the head of the multi-row insert at the end of buf.
	insertHead string

	txns, events int
	bytes        int
	last         *sdk.Message
	// openTxn is the source transaction whose last event has not come.
	openTxn string

	// batchEvents is how many events the statements in buf apply.
	batchEvents int

	// inflight are the commands sent whose results are not read yet,
	// oldest first: one runs on the target while the next waits there.
	inflight []sentBatch
	// perRow is how long the target takes per row change (estimated from
	// the commands before), and lastDone when the results of the last
	// command read were complete: a command's results are read once they
	// are probably all there, so that neither side wakes for each
	// statement's OK.
	perRow   time.Duration
	lastDone time.Time
}

// sentBatch is a command sent: how many row changes, and when.
type sentBatch struct {
	rows int
	at   time.Time
}

func (g *group) pending() bool { return g.began || len(g.buf) > 0 }

func (g *group) full() bool { return g.events >= groupEvents || g.bytes >= groupBytes }

// add appends a prepared row change.
func (g *group) add(it item) {
	if g.openTxn != "" && g.openTxn != it.m.Event.Txn.ID {
		g.endTxn() // the open one's last event was filtered out
	}
	n := len(g.buf)
	if it.head != "" && it.head == g.insertHead {
		g.buf = append(append(g.buf, ','), it.tuple...)
	} else {
		switch {
		case !g.began:
			g.buf = append(g.buf, "BEGIN;"...)
			g.began = true
		case len(g.buf) > 0:
			g.buf = append(g.buf, ';')
		}
		if g.stmts == 0 {
			g.first = it.m
		}
		g.stmts++
		g.lastStmt = len(g.buf)
		g.buf = append(append(append(g.buf, it.head...), it.tuple...), it.stmt...) // head and tuple, or stmt
		g.insertHead = it.head
	}
	g.bytes += len(g.buf) - n
	g.events++
	g.batchEvents++
	g.last = it.m
	g.openTxn = it.m.Event.Txn.ID
	if it.m.Event.Txn.Last {
		g.endTxn()
	}
}

func (g *group) endTxn() {
	if g.openTxn != "" {
		g.txns++
		g.openTxn = ""
	}
}

// send sends the statements not sent yet. They are pipelined: the
// command's results are read later, while the target runs the next one.
// When careful, the command holds one statement and its results are read
// at once, to name the statement the target refuses.
func (g *group) send(ctx context.Context, careful bool) error {
	if len(g.buf) == 0 {
		return nil
	}
	if careful {
		if err := g.drain(ctx); err != nil {
			return g.failedInFlight(ctx, err)
		}
		if err := g.conn.Exec(ctx, string(g.buf)); err != nil {
			return g.failed(ctx, err, false)
		}
		g.sent()
		return nil
	}
	err := g.pipeline(ctx, string(g.buf), g.batchEvents)
	g.sent()
	if err != nil {
		return g.failedInFlight(ctx, err)
	}
	return nil
}

// pipeline sends command q, which applies rows row changes, and reads the
// results of the one before when there is one: one command runs on the
// target while the next waits there.
func (g *group) pipeline(ctx context.Context, q string, rows int) error {
	if err := g.conn.Send(q); err != nil {
		return err
	}
	g.inflight = append(g.inflight, sentBatch{rows: rows, at: time.Now()})
	if len(g.inflight) > 1 {
		return g.readOldest(ctx)
	}
	return nil
}

// readOldest reads the results of the oldest command in flight, once
// they are probably complete, and learns from how long they took.
func (g *group) readOldest(ctx context.Context) error {
	b := g.inflight[0]
	g.inflight = g.inflight[1:]
	start := later(b.at, g.lastDone) // when the target could start it
	if g.perRow == 0 {
		g.perRow = 10 * time.Microsecond
	}
	if wait := min(time.Until(start.Add(time.Duration(b.rows)*g.perRow)), maxResultsWait); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
		}
	}
	asked := time.Now()
	err := g.conn.Results(ctx)
	g.lastDone = time.Now()
	if g.lastDone.Sub(asked) > time.Millisecond { // they were still coming
		// A sample weighs as many rows as it changed, against a batch's
		// worth for the estimate: a command of a few rows that waited
		// (on a lock, behind a flush) barely moves it.
		n := time.Duration(max(b.rows, 1))
		g.perRow = (g.perRow*perRowWeight + g.lastDone.Sub(start)) / (perRowWeight + n)
	} else {
		g.perRow -= g.perRow / 16
	}
	return err
}

// commit sends the statements not sent yet, reads the results of every
// command in flight and commits with query (the checkpoint).
func (g *group) commit(ctx context.Context, query string) error {
	if err := g.send(ctx, false); err != nil {
		return err
	}
	if err := g.drain(ctx); err != nil {
		return g.failedInFlight(ctx, err)
	}
	g.buf = append(g.buf, query+";COMMIT"...)
	if err := g.conn.Exec(ctx, string(g.buf)); err != nil {
		return g.failed(ctx, err, true)
	}
	g.sent()
	return nil
}

// busyFor estimates how long the target will take to run the commands in
// flight.
func (g *group) busyFor() time.Duration {
	if len(g.inflight) == 0 {
		return 0
	}
	done := g.lastDone
	for _, b := range g.inflight {
		done = later(done, b.at).Add(time.Duration(b.rows) * g.perRow)
	}
	return time.Until(done)
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// drain reads the results of every command in flight.
func (g *group) drain(ctx context.Context) error {
	for len(g.inflight) > 0 {
		if err := g.readOldest(ctx); err != nil {
			return err
		}
	}
	return nil
}

// failedInFlight rolls the group back after a command in flight failed
// with err. When the target refused a statement, the events are applied
// again one statement at a time to name it (batchFailed).
func (g *group) failedInFlight(ctx context.Context, err error) error {
	var failed error
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		failed = &batchFailed{err: err, upTo: g.last.Sequence}
	} else {
		failed = fmt.Errorf("applying stream sequences up to %d on the target: %w", g.last.Sequence, err)
	}
	g.rollback(ctx)
	return failed
}

// sent forgets the statements the target ran.
func (g *group) sent() {
	g.buf, g.stmts, g.first, g.insertHead, g.batchEvents = g.buf[:0], 0, nil, "", 0
}

// failed rolls the group back after its round trip failed with err. When
// the round trip held one statement (and not the commit), the error names
// it; else it asks for the events to be applied again one statement at a
// time (batchFailed).
func (g *group) failed(ctx context.Context, err error, committing bool) error {
	var failed error
	var me *mysql.MySQLError
	switch {
	case g.stmts == 1 && !committing:
		failed = rowError(g.first, g.last, string(g.buf[g.lastStmt:]), err)
	case g.stmts > 0 && errors.As(err, &me):
		failed = &batchFailed{err: err, upTo: g.last.Sequence}
	case g.stmts > 0:
		failed = fmt.Errorf("applying stream sequences %d to %d on the target: %w", g.first.Sequence, g.last.Sequence, err)
	default:
		failed = fmt.Errorf("saving the checkpoint at stream sequence %d and committing on the target: %w", g.last.Sequence, err)
	}
	g.rollback(ctx)
	return failed
}

// batchFailed is a statement of a round trip that the target refused;
// none of the group is committed. Applying the events again up to upTo
// one statement per round trip names the statement.
type batchFailed struct {
	err  error
	upTo uint64
}

func (e *batchFailed) Error() string { return e.err.Error() }
func (e *batchFailed) Unwrap() error { return e.err }

// rollback ends the target transaction without committing anything of
// it.
func (g *group) rollback(ctx context.Context) {
	if g.began {
		g.abort(ctx)
	}
	g.reset()
}

// abort rolls the connection's transaction back once the commands in
// flight are done.
func (g *group) abort(ctx context.Context) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	var me *mysql.MySQLError
	for g.conn.Pending() > 0 {
		if err := g.conn.Results(ctx); err != nil && !errors.As(err, &me) {
			break // the connection is gone, and the transaction with it
		}
	}
	g.inflight = g.inflight[:0]
	_ = g.conn.Exec(ctx, "ROLLBACK")
}

func (g *group) reset() {
	g.sent()
	g.began, g.txns, g.events, g.bytes, g.last, g.openTxn, g.inflight = false, 0, 0, 0, nil, "", g.inflight[:0]
}
