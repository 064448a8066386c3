package apply

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/databus/databus/sdk"
)

// How the stream's changes reach the target. A reader goroutine receives
// events and builds their statements while the target runs the ones
// before; the applier puts whole source transactions, in stream order,
// into one target transaction that ends with the checkpoint of its last
// event, and sends its statements many per command, pipelined (group). A
// target transaction is committed as soon as nothing more has arrived and
// the target has run what was sent (so a lightly loaded mirror is as
// fresh as one transaction at a time) or when it is full; a busy stream
// fills it, and the target commits less often.
const (
	// batchBytes bounds the statements sent to the target in one command
	// (well under any server's max_allowed_packet).
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
	// commitWait bounds a commit a stop waits for: the commands in flight
	// and the commit itself (seeThrough).
	commitWait   = 30 * time.Second
	perRowWeight = 5000
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

// commitGroup sends what is left with the checkpoint of the group's last event
// and COMMIT in the same round trip, then acknowledges the stream.
func (a *Applier) commitGroup(ctx context.Context, g *group) error {
	if !g.pending() {
		return nil
	}
	g.endTxn()
	last := g.last
	cctx, cancel := seeThrough(ctx)
	defer cancel()
	if err := g.commit(cctx, a.appliedSQL(last)); err != nil {
		return err
	}
	a.applied(last, g.txns, g.events)
	g.reset()
	_ = last.Ack(ctx) // the checkpoint on the target is what counts
	return nil
}

// seeThrough returns the context of a commit that has begun: a stop does
// not cut it short, so that whether it committed is known (and counted),
// but it gives up after commitWait.
func seeThrough(ctx context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.WithoutCancel(ctx), commitWait)
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
