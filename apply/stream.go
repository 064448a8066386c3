package apply

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/databus/databus/internal/mysqlwire"
	"github.com/databus/databus/sdk"
	"github.com/go-sql-driver/mysql"
)

// How the stream's changes reach the target. A reader goroutine receives
// events and builds their statements while the target runs the ones
// before; the applier puts whole source transactions, in stream order,
// into one target transaction that ends with the checkpoint of its last
// event, and sends its statements many per round trip. A target
// transaction is committed as soon as nothing more has arrived (so a
// lightly loaded mirror is as fresh as one transaction at a time) or when
// it is full; a busy stream fills it, and the target commits less often.
const (
	// batchBytes bounds the statements sent to the target in one round
	// trip (well under any server's max_allowed_packet).
	batchBytes = 1 << 20
	// groupEvents and groupBytes bound one target transaction once its
	// source transactions are whole: a source transaction is never split.
	groupEvents = 20_000
	groupBytes  = 16 << 20
	// readAhead is how many prepared events wait for the target.
	readAhead = 4096
	// ackEvery is how often (in events taken) the applier acknowledges
	// the stream before the target commits: the server stops delivering
	// to a consumer with too many unacknowledged events (the SDK's
	// maxAckPending), and the target's checkpoint, not the consumer, is
	// where a restart resumes.
	ackEvery = 512
	// lastEventWait is how long an open source transaction of a filtered
	// applier waits for its next event before the stream is asked whether
	// it has ended (its last event may be filtered out).
	lastEventWait = 200 * time.Millisecond
	// maxResultsWait bounds the wait before a command's results are read
	// (group.readOldest); perRowWeight is the weight, in rows, of the
	// estimate of the target's time per row change against a new sample.
	maxResultsWait = 250 * time.Millisecond
	perRowWeight   = 5000
)

// item is one event read from the stream, prepared for the target: a row
// change has its statement (an insert its head and values, so that
// consecutive inserts into one table become one multi-row statement).
// err ends the reader: receiving failed (m is nil) or the event has no
// statement.
type item struct {
	m                 *sdk.Message
	stmt, head, tuple string
	err               error
}

// read receives events and prepares them until ctx ends or an error,
// which is its last item.
func read(ctx context.Context, c *sdk.Consumer, out chan<- item) {
	defer close(out)
	for {
		m, err := c.Next(ctx)
		it := item{m: m, err: err}
		if err == nil {
			it.prepare()
		}
		select {
		case out <- it:
		case <-ctx.Done():
			return
		}
		if it.err != nil {
			return
		}
	}
}

// prepare builds a row change's statement from the event's values (never
// from its SQL text: a row event can only change the row it describes).
func (it *item) prepare() {
	ev := it.m.Event
	if ev.Op == sdk.OpDDL {
		return
	}
	var err error
	if ev.Op == sdk.OpInsert { // and a snapshot's row
		if it.head, err = ev.InsertHead(); err == nil {
			it.tuple, err = ev.Tuple()
		}
	} else {
		it.stmt, err = ev.ChangeStatement()
	}
	if err != nil {
		it.err = rowError(it.m, it.m, "", err)
	}
}

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

// commitGroup sends what is left with the checkpoint of the group's last event
// and COMMIT in the same round trip, then acknowledges the stream.
func (a *Applier) commitGroup(ctx context.Context, g *group) error {
	if !g.pending() {
		return nil
	}
	g.endTxn()
	last := g.last
	if err := g.commit(ctx, a.appliedSQL(last)); err != nil {
		return err
	}
	a.applied(last, g.txns, g.events)
	g.reset()
	_ = last.Ack(ctx) // the checkpoint on the target is what counts
	return nil
}

// rowError names the events a failed statement applies, where they were
// in the source, the statement and what the target needs.
func rowError(first, last *sdk.Message, stmt string, err error) error {
	ev := first.Event
	seqs := fmt.Sprintf("stream sequence %d", first.Sequence)
	if last.Sequence != first.Sequence {
		seqs = fmt.Sprintf("stream sequences %d to %d", first.Sequence, last.Sequence)
	}
	msg := fmt.Sprintf("applying %s (%s %s.%s at %s, transaction %s)", seqs, ev.Op, ev.Database, ev.Table, ev.Position, ev.Txn.ID)
	if stmt != "" {
		msg += fmt.Sprintf(" with %.300s", stmt)
	}
	return fmt.Errorf("%s: %w%s", msg, err, schemaHint(err))
}

// applyAll applies the events c delivers until ctx ends or an error.
func (a *Applier) applyAll(ctx context.Context, c *sdk.Consumer) error {
	rctx, stop := context.WithCancel(ctx)
	in := make(chan item, readAhead)
	readerDone := make(chan struct{})
	go func() { defer close(readerDone); read(rctx, c, in) }()
	defer func() { stop(); <-readerDone }()

	conn, err := a.dialBatch(ctx)
	if err != nil {
		if ctx.Err() != nil {
			return nil // stopped while connecting
		}
		return fmt.Errorf("connecting to the target: %w", err)
	}
	defer conn.Close()
	g := &group{conn: conn}
	var snap *txn // a snapshot's rows being loaded
	defer func() {
		g.rollback(ctx)
		if snap != nil {
			snap.rollback(ctx, g)
		}
	}()
	tick := time.NewTicker(a.cfg.ProgressEvery)
	defer tick.Stop()
	taken := 0
	for {
		it, ok, err := a.next(ctx, c, in, g, tick)
		if err != nil {
			if ctx.Err() != nil {
				return nil // stopped while committing: nothing of it is applied, or all of it
			}
			return err
		}
		if !ok {
			return nil // stopped: the open target transaction is rolled back
		}
		if it.err != nil {
			return a.readFailed(ctx, it)
		}
		if taken++; taken%ackEvery == 0 && !it.m.Event.Snapshot {
			_ = it.m.Ack(ctx)
		}
		if err := a.applyItem(ctx, g, &snap, it); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
}

// next returns the next prepared event. While none has arrived, it
// commits the group when its transactions are whole, or when the stream
// says the last one has ended (its last event filtered out). ok is false
// when ctx ended.
func (a *Applier) next(ctx context.Context, c *sdk.Consumer, in <-chan item, g *group, tick *time.Ticker) (it item, ok bool, err error) {
	select {
	case it, ok = <-in:
		return it, ok, nil
	default:
	}
	for {
		var busy <-chan time.Time
		if g.pending() && g.openTxn == "" {
			if left := g.busyFor(); left > time.Millisecond {
				// The target still runs the group's commands, and the
				// group cannot commit before they end: send what is
				// built, and let events that come meanwhile join it.
				if err := g.send(ctx, false); err != nil {
					return item{}, false, err
				}
				busy = time.After(left)
			} else if err := a.commitGroup(ctx, g); err != nil {
				return item{}, false, err
			}
		}
		var wait <-chan time.Time
		if g.pending() && a.filtered() {
			wait = time.After(lastEventWait)
		}
		select {
		case it, ok = <-in:
			return it, ok, nil
		case <-busy: // commit on the next turn
		case <-wait:
			ended, err := c.TxnEnded(ctx, g.last)
			if err != nil {
				return item{}, false, &streamError{err: err, receiving: true}
			}
			if ended {
				g.endTxn() // and commit it on the next turn
			}
		case <-tick.C:
			a.logProgress()
		case <-ctx.Done():
			return item{}, false, nil
		}
	}
}

// applyItem applies one prepared event: a row change joins the group, a
// snapshot's event or a DDL statement commits the group first.
func (a *Applier) applyItem(ctx context.Context, g *group, snap **txn, it item) error {
	ev := it.m.Event
	if *snap != nil && (*snap).id != ev.Txn.ID {
		if err := a.commitSnapshotRows(ctx, g, *snap); err != nil {
			return err
		}
		*snap = nil
	}
	if ev.Snapshot {
		return a.snapshotEvent(ctx, g, snap, it)
	}
	if ev.Op == sdk.OpDDL || g.full() && g.openTxn != ev.Txn.ID {
		if err := a.commitGroup(ctx, g); err != nil {
			return err
		}
	}
	if ev.Op == sdk.OpDDL {
		return a.ddl(ctx, it.m)
	}
	g.add(it)
	if careful := it.m.Sequence <= a.careful; careful || len(g.buf) >= batchBytes {
		return g.send(ctx, careful)
	}
	return nil
}

// readFailed says why reading the stream stopped (applyAll rolls back
// what is not committed).
func (a *Applier) readFailed(ctx context.Context, it item) error {
	err := it.err
	switch {
	case it.m != nil:
		return err // an event without a statement (rowError)
	case ctx.Err() != nil || errors.Is(err, sdk.ErrClosed):
		return nil
	case lostStream(err):
		return &streamError{err: err, receiving: true}
	case errors.Is(err, sdk.ErrEventsLost):
		return fmt.Errorf("the target cannot be brought up to date: %w; it misses those changes: load a new, empty target with `databus apply --from snapshot`", err)
	}
	return err
}
