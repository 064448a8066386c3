package capture

import (
	"context"
	"database/sql"
	"errors"
	"maps"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/sdk"
)

// Status is a snapshot of what the capturer is doing.
type Status struct {
	// Streaming is true while the binlog is being read.
	Streaming bool
	// Started is true once the binlog was read since start.
	Started bool
	// Paused is true between [Capturer.Pause] and [Capturer.Resume].
	Paused bool
	// Position is where capture has read the binlog to: after the last
	// transaction it published or its filter left out, or the end of what
	// the server had when it had nothing more to send.
	Position sdk.Position
	// GTIDSet is MariaDB's GTID position at Position, when known.
	GTIDSet string
	// Published is the stream sequence of the last message published.
	Published uint64
	// Events counts the events published since start, by operation;
	// Transactions the source transactions that published any.
	Events       map[sdk.Op]uint64
	Transactions uint64
	// LastCommit is the source commit time of the last transaction read.
	LastCommit time.Time
	// Behind is how many bytes of binlog the server has after Position,
	// as of BehindAt; BehindKnown is false until it was read (MySQL
	// unreachable, or capture not started).
	Behind      int64
	BehindKnown bool
	BehindAt    time.Time
	// CaughtUp is the last time capture was known to have read everything
	// the server had; Current says it still has, as far as is known.
	CaughtUp time.Time
	Current  bool
	// LastError is the error of the last failed attempt, if any, at
	// LastErrorAt; Errors counts the failed attempts by [ErrorKind].
	LastError   string
	LastErrorAt time.Time
	Errors      map[string]uint64
}

// Lag is how far behind the source capture is at now: 0 while it has read
// everything the server has, else the time since the source committed the
// last transaction it read or since it was last caught up, whichever is
// later. While capture cannot read (paused, retrying), it grows.
func (s Status) Lag(now time.Time) time.Duration {
	if s.Current && s.Streaming && !s.Paused {
		return 0
	}
	if s.Current && s.BehindKnown && s.Behind == 0 {
		return 0 // stopped, but nothing was written since
	}
	since := s.LastCommit
	if s.CaughtUp.After(since) {
		since = s.CaughtUp
	}
	if since.IsZero() {
		return 0
	}
	return max(now.Sub(since), 0)
}

// Error kinds of [Status.Errors], for metrics and alerts.
const (
	KindMySQL      = "mysql"      // MySQL unreachable, or the binlog stream broke
	KindNATS       = "nats"       // NATS unreachable, a publish not acknowledged
	KindStoreFull  = "store_full" // JetStream has no room
	KindPermission = "permission" // NATS or MySQL refused access
	KindData       = "data"       // a row or statement capture cannot represent
	KindPosition   = "position"   // the checkpoint cannot be resumed
	KindLease      = "lease"      // another node took over
	KindOther      = "other"
)

// ErrorKind sorts a capture error into one of the Kind constants.
func ErrorKind(err error) string {
	switch {
	case errors.Is(err, ErrLeaseLost):
		return KindLease
	case bus.StorageFull(err):
		return KindStoreFull
	case errors.Is(err, ErrNATSPermission), errors.Is(err, ErrAccessDenied), errors.Is(err, ErrSourceSettings):
		return KindPermission
	case errors.Is(err, ErrUndecodable), errors.Is(err, ErrForeignMessage):
		return KindData
	case errors.Is(err, ErrBinlogPurged), errors.Is(err, ErrServerChanged):
		return KindPosition
	case errors.Is(err, ErrUnreachable):
		return KindMySQL
	case errors.Is(err, nats.ErrTimeout), errors.Is(err, nats.ErrConnectionClosed), errors.Is(err, nats.ErrNoResponders),
		errors.Is(err, jetstream.ErrNoStreamResponse), errors.Is(err, context.DeadlineExceeded), errors.Is(err, nats.ErrNoServers):
		return KindNATS
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		return KindNATS
	}
	return KindOther
}

// Status returns what the capturer is doing now.
func (c *Capturer) Status() Status {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.status
	st.Events = maps.Clone(st.Events)
	st.Errors = maps.Clone(st.Errors)
	return st
}

// Pause stops reading the binlog at the next transaction boundary, with
// the checkpoint saved, until [Capturer.Resume]. A capturer paused before
// Run starts paused.
func (c *Capturer) Pause() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.status.Paused {
		return
	}
	c.status.Paused = true
	c.resumed = make(chan struct{})
	if c.stopSession != nil {
		c.stopSession()
	}
	c.log.Info("capture paused")
}

// Resume undoes [Capturer.Pause]: capture resumes from the checkpoint.
func (c *Capturer) Resume() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.status.Paused {
		return
	}
	c.status.Paused = false
	close(c.resumed)
	c.log.Info("capture resumed")
}

// waitResumed returns when capture is not paused, or false when ctx ended
// first. It arranges for a later Pause to end the session that follows,
// through its context, which it returns.
func (c *Capturer) waitResumed(ctx context.Context) (context.Context, context.CancelFunc, bool) {
	for {
		c.mu.Lock()
		paused, resumed := c.status.Paused, c.resumed
		if !paused {
			sctx, cancel := context.WithCancel(ctx)
			c.stopSession = cancel
			c.mu.Unlock()
			return sctx, cancel, true
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, nil, false
		case <-resumed:
		}
	}
}

// paused reports whether capture is paused.
func (c *Capturer) paused() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.status.Paused
}

// setStreaming records whether the binlog is being read and, when it
// stopped, why.
func (c *Capturer) setStreaming(on bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.Streaming = on
	c.status.Started = c.status.Started || on
	if err != nil {
		c.status.LastError, c.status.LastErrorAt = err.Error(), time.Now()
		if c.status.Errors == nil {
			c.status.Errors = map[string]uint64{}
		}
		c.status.Errors[ErrorKind(err)]++
	}
}

// resumingAt records where a session starts reading.
func (c *Capturer) resumingAt(pos sdk.Position, gtidSet string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.Position, c.status.GTIDSet = pos, gtidSet
}

// txnRead is what the reader tells of a transaction it read.
type txnRead struct {
	next      sdk.Position // where the next one starts
	gtidSet   string
	published uint64 // the stream sequence after it
	commit    time.Time
	// events counts what it published, by operation.
	events opCounts
}

// countedOps are the operations [opCounts] counts, in its order.
var countedOps = [...]sdk.Op{sdk.OpInsert, sdk.OpUpdate, sdk.OpDelete, sdk.OpDDL}

// opCounts counts events by operation, cheaply enough for every event.
type opCounts [len(countedOps)]uint64

func (c *opCounts) add(op sdk.Op) {
	switch op {
	case sdk.OpInsert:
		c[0]++
	case sdk.OpUpdate:
		c[1]++
	case sdk.OpDelete:
		c[2]++
	case sdk.OpDDL:
		c[3]++
	}
}

// committed records a transaction read to its end, whose messages are all
// sent.
func (c *Capturer) committed(t txnRead) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.Position, c.status.GTIDSet, c.status.Published = t.next, t.gtidSet, t.published
	if !t.commit.IsZero() {
		c.status.LastCommit = t.commit
	}
	if t.events != (opCounts{}) {
		c.status.Transactions++
		if c.status.Events == nil {
			c.status.Events = map[sdk.Op]uint64{}
		}
		for i, n := range t.events {
			if n > 0 {
				c.status.Events[countedOps[i]] += n
			}
		}
	}
}

// atEnd records that the server had nothing more to send: capture has
// read everything, up to pos.
func (c *Capturer) atEnd(pos sdk.Position) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.Position = pos
	c.status.Behind, c.status.BehindKnown, c.status.BehindAt = 0, true, time.Now()
	c.status.CaughtUp, c.status.Current = time.Now(), true
}

// endPollInterval is how often capture compares its position with the end
// of the server's binlog.
const endPollInterval = 2 * time.Second

// watchEnd reads the end of the server's binlog every endPollInterval
// until ctx ends, for [Status.Behind] and [Status.Lag]. It keeps going
// while capture is paused or retrying, on its own connection.
func (c *Capturer) watchEnd(ctx context.Context) {
	var db *sql.DB
	defer func() {
		if db != nil {
			db.Close()
		}
	}()
	t := time.NewTicker(endPollInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if db == nil {
			cctx, cancel := context.WithTimeout(ctx, c.cfg.MySQL.ConnectTimeout)
			var err error
			db, err = mysqlsrc.Connect(cctx, c.cfg.MySQL)
			cancel()
			if err != nil {
				c.behindUnknown()
				continue
			}
			db.SetMaxOpenConns(1)
		}
		qctx, cancel := context.WithTimeout(ctx, endPollInterval)
		logs, err := mysqlsrc.BinaryLogSizes(qctx, db)
		cancel()
		if err != nil {
			db.Close()
			db = nil
			c.behindUnknown()
			continue
		}
		c.measured(logs)
	}
}

// measured records the server's binlog files as just read.
func (c *Capturer) measured(logs []mysqlsrc.BinaryLog) {
	c.mu.Lock()
	defer c.mu.Unlock()
	pos := c.status.Position
	if pos.File == "" {
		return // nothing read yet
	}
	n, ok := mysqlsrc.Behind(logs, pos.File, pos.Offset)
	c.status.Behind, c.status.BehindKnown, c.status.BehindAt = n, ok, time.Now()
	switch {
	case ok && n == 0:
		c.status.CaughtUp, c.status.Current = time.Now(), true
	default:
		c.status.Current = false
	}
}

// behindUnknown records that the end of the binlog could not be read.
func (c *Capturer) behindUnknown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.status.BehindKnown, c.status.Current = false, false
}
