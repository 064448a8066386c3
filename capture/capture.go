package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"golang.org/x/sync/errgroup"

	"github.com/databus/databus/configs"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/filter"
	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/sdk"
)

// Config configures a [Capturer].
type Config struct {
	// Source names the captured server in stream and subject names.
	Source string
	MySQL  mysqlsrc.Config
	Filter filter.Filter
	Stream bus.StreamConfig
	// RetryMax is the longest wait between reconnection attempts;
	// configs.DefaultRetryMax when zero.
	RetryMax time.Duration
	// CheckpointInterval is how often the checkpoint is saved while events
	// flow; 1s when zero.
	CheckpointInterval time.Duration
	// Recover makes capture start from the server's current position,
	// instead of stopping, when the checkpoint cannot be resumed because
	// its binlog was purged ([ErrBinlogPurged]) or it belongs to another
	// server ([ErrServerChanged]). OnRecover, if set, is then called with
	// the reason: the changes in between are lost to the stream, so
	// consumers need a new snapshot.
	Recover   bool
	OnRecover func(reason error)
	// Start is where capture begins when the source has no checkpoint
	// (capture.start). A checkpoint made under another explicit start is
	// refused with [ErrBadStart], unless Recover is set: then capture
	// begins at Start again.
	Start configs.CaptureStart
	// Lease, when set, is the capture lease this node holds (high
	// availability, docs/ha.md): capture writes nothing while Lease.Wait
	// waits or once it fails, and fences off the previous holder when it
	// starts.
	Lease  Lease
	Logger *slog.Logger

	// crashAfter, in tests only, makes a session fail every publish after
	// that many messages, as a killed capture would stop (see fatal).
	crashAfter int
}

// Capturer reads the source's binlog and publishes every change of the
// captured tables into the source's JetStream stream.
type Capturer struct {
	cfg Config
	nc  *nats.Conn
	log *slog.Logger

	mu     sync.Mutex
	status Status
	// resumed is closed by Resume; stopSession ends the running session
	// (see Pause).
	resumed     chan struct{}
	stopSession context.CancelFunc
	// inProcess counts the sessions in a row that failed on a message id
	// "in process" (see unstick).
	inProcess int
}

// New returns a capturer publishing through nc.
func New(cfg Config, nc *nats.Conn) *Capturer {
	if cfg.MySQL.ServerID == 0 {
		cfg.MySQL.ServerID = mysqlsrc.DeriveServerID(cfg.Source)
	}
	if cfg.RetryMax == 0 {
		cfg.RetryMax = configs.DefaultRetryMax
	}
	if cfg.CheckpointInterval == 0 {
		cfg.CheckpointInterval = time.Second
	}
	if cfg.MySQL.ConnectTimeout == 0 {
		cfg.MySQL.ConnectTimeout = configs.DefaultConnectTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Capturer{cfg: cfg, nc: nc, log: log.With("component", "capture", "source", cfg.Source)}
}

// Run captures until ctx ends (returning nil) or a fatal error: bad
// credentials ([ErrAccessDenied]), unusable server settings
// ([ErrSourceSettings]), a row that cannot be decoded ([ErrUndecodable]) or a
// checkpoint of another server ([ErrServerChanged]). Other failures (MySQL or
// NATS unreachable, a rejected publish) are logged and retried with
// exponential backoff from the last checkpoint. While paused (see
// [Capturer.Pause]) it waits.
func (c *Capturer) Run(ctx context.Context) error {
	watchCtx, stopWatching := context.WithCancel(ctx)
	defer stopWatching()
	go c.watchEnd(watchCtx)
	backoff := 500 * time.Millisecond
	for {
		sctx, endSession, ok := c.waitResumed(ctx)
		if !ok {
			return nil
		}
		started := time.Now()
		before := c.nc.LastError()
		err := c.session(sctx)
		endSession()
		if ctx.Err() == nil && c.paused() {
			// Paused: the session stopped as at shutdown, checkpoint saved.
			c.setStreaming(false, nil)
			continue
		}
		if bus.StorageFull(err) {
			err = fmt.Errorf("JetStream has no room for more events (raise nats.max_store or the account's JetStream storage limit, or free the NATS server's disk); "+
				"capture keeps its checkpoint and goes on when there is room: %w", err)
		}
		// NATS answers a refused publish with silence (the request times
		// out) and records why as the connection's last error.
		if perr := c.nc.LastError(); err != nil && perr != before && errors.Is(perr, nats.ErrPermissionViolation) {
			err = PermissionError(perr, err)
		}
		c.setStreaming(false, err)
		if ctx.Err() != nil {
			return nil
		}
		if fatal(err) {
			return err
		}
		if time.Since(started) > time.Minute {
			backoff = 500 * time.Millisecond
		}
		c.log.Warn("capture interrupted, retrying from the checkpoint", "err", err, "retry_in", backoff)
		c.unstick(ctx, err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, c.cfg.RetryMax)
	}
}

// PermissionError is err, which followed perr, the NATS server's refusal
// of a subject (the connection's last error), explained: the user databus
// run connects with lacks the capture role. It wraps [ErrNATSPermission].
func PermissionError(perr, err error) error {
	return fmt.Errorf("%w: %v (then: %v): the NATS user databus run connects with may not do what capture does; "+
		"give it a user with the capture role (nats.auth.capture on the embedded server), not a reader", ErrNATSPermission, perr, err)
}

// session connects, decides where to resume, sets up publishing and
// streams the binlog until an error or the end of ctx.
func (c *Capturer) session(ctx context.Context) error {
	db, info, err := c.connectSource(ctx)
	if err != nil {
		return err
	}
	defer db.Close()
	js, err := jetstream.New(c.nc, jetstream.WithPublishAsyncMaxPending(4096), jetstream.WithPublishAsyncTimeout(30*time.Second))
	if err != nil {
		return fmt.Errorf("opening JetStream: %w", err)
	}
	// Waits as long as the cluster needs to elect leaders or bring back
	// servers for the replicas.
	stream, kv, err := bus.Ensure(ctx, js, c.cfg.Source, c.cfg.Stream, c.log)
	if err != nil {
		return err
	}
	cctx, cancel := context.WithTimeout(ctx, c.cfg.MySQL.ConnectTimeout+5*time.Second)
	defer cancel()
	at, err := c.resumePoint(cctx, db, info, kv)
	if err != nil {
		return err
	}
	pub, err := c.newPublisher(cctx, db, js, kv, stream, info, at)
	if err != nil {
		return err
	}
	if err := c.fence(cctx, stream, pub, at.cp); err != nil {
		return err
	}
	gtidSet, err := c.gtidSet(cctx, db, info, at.cp, at.byGTID)
	if err != nil {
		return err
	}
	syncer, streamer, err := c.startBinlog(info, at)
	if err != nil {
		return err
	}
	defer syncer.Close()
	c.resumingAt(sdk.Position{File: at.cp.File, Offset: at.cp.Offset, GTID: at.cp.GTID, ServerID: info.ServerID, ServerUUID: info.ServerUUID}, gtidSetString(gtidSet))
	c.log.Info("capturing", "server", info.Version, "file", at.cp.File, "offset", at.cp.Offset, "gtid_set", gtidSet, "stream_last_seq", pub.expected)
	r := &reader{cfg: c.cfg, log: c.log, info: info, pub: pub, file: at.cp.File, start: at.cp.Start, tables: map[uint64]*binlogTable{}, gtidSet: gtidSet,
		committed: c.committed, atEnd: c.atEnd,
		traits: func(schema, table string) (mysqlsrc.ColumnTraits, error) {
			return mysqlsrc.TableTraits(ctx, db, info, schema, table)
		}}
	if err := c.stream(ctx, streamer, r, pub); err != nil {
		return err
	}
	return ctx.Err()
}

// connectSource connects to the source and checks that it can be
// captured.
func (c *Capturer) connectSource(ctx context.Context) (*sql.DB, mysqlsrc.ServerInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.MySQL.ConnectTimeout+5*time.Second)
	defer cancel()
	db, err := mysqlsrc.Connect(ctx, c.cfg.MySQL)
	if err != nil {
		return nil, mysqlsrc.ServerInfo{}, err
	}
	info, err := mysqlsrc.Inspect(ctx, db)
	if err == nil {
		var checks []mysqlsrc.Check
		if checks, err = mysqlsrc.Preflight(ctx, db, c.cfg.MySQL, info); err == nil {
			err = mysqlsrc.FailedChecks(checks)
		}
	}
	if err != nil {
		db.Close()
		return nil, mysqlsrc.ServerInfo{}, err
	}
	return db, info, nil
}

// newPublisher prepares the publisher of a session: it follows the
// stream's last message and skips what the stream already holds. The last
// message must be capture's own: it carries the capture id and lies within
// the server's binlog.
func (c *Capturer) newPublisher(ctx context.Context, db *sql.DB, js jetstream.JetStream, kv jetstream.KeyValue, stream jetstream.Stream, info mysqlsrc.ServerInfo, at resumeAt) (*publisher, error) {
	file, offset, err := mysqlsrc.MasterStatus(ctx, db, info)
	if err != nil {
		return nil, err
	}
	end := sdk.Position{File: file, Offset: offset, ServerID: info.ServerID}
	lastPos, lastSeq, complete, err := bus.LastPublished(ctx, stream, bus.Own{CaptureID: at.trust, End: &end})
	if err != nil {
		return nil, err
	}
	if lastPos != nil && lastPos.ServerID != info.ServerID {
		lastPos = nil
	}
	var skipTxn map[string]int
	if at.byGTID != nil {
		// What the old server published after the checkpoint comes again
		// from this one under the same GTIDs, at other positions.
		if skipTxn, err = publishedAfter(ctx, c.nc, c.cfg.Source, at.cp.StreamSeq, lastSeq); err != nil {
			return nil, err
		}
	}
	// A NATS server before 2.12 ignores allow_atomic: the stream says
	// whether it took effect.
	atomic := stream.CachedInfo().Config.AllowAtomicPublish
	if c.cfg.Stream.AtomicTransactions && !atomic {
		c.log.Warn("the NATS server does not support atomic batch publish (2.12+ needed): a consumer can see part of a transaction")
	}
	return &publisher{
		js: js, kv: kv, cpRev: at.rev, lease: c.cfg.Lease, source: c.cfg.Source, log: c.log, captureID: at.captureID,
		expected: lastSeq, skipThrough: lastPos, skipPartial: !complete, skipTxn: skipTxn,
		maxData:    int(c.nc.MaxPayload()) - 16<<10, // room for headers
		queue:      make(chan pending, 8192),
		atomic:     atomic,
		crashAfter: c.cfg.crashAfter,
	}, nil
}

// startBinlog opens the binlog stream at the resume point.
func (c *Capturer) startBinlog(info mysqlsrc.ServerInfo, at resumeAt) (*replication.BinlogSyncer, *replication.BinlogStreamer, error) {
	host, portStr, _ := net.SplitHostPort(c.cfg.MySQL.Addr)
	port, _ := strconv.Atoi(portStr)
	tc, err := c.cfg.MySQL.BinlogTLS(info)
	if err != nil {
		return nil, nil, err
	}
	syncer := replication.NewBinlogSyncer(replication.BinlogSyncerConfig{
		ServerID:                c.cfg.MySQL.ServerID,
		Flavor:                  info.Flavor(),
		Host:                    host,
		Port:                    uint16(port),
		User:                    c.cfg.MySQL.User,
		Password:                c.cfg.MySQL.Password,
		TimestampStringLocation: time.UTC,
		HeartbeatPeriod:         time.Second, // an idle source is seen caught up within a second
		ReadTimeout:             30 * time.Second,
		DisableRetrySync:        true,
		Logger:                  slog.New(slog.DiscardHandler),
		EventCacheCount:         256, // bounded read-ahead: memory stays flat
		TLSConfig:               tc,
	})
	var streamer *replication.BinlogStreamer
	if at.byGTID != nil {
		streamer, err = syncer.StartSyncGTID(at.byGTID)
	} else {
		streamer, err = syncer.StartSync(mysql.Position{Name: at.cp.File, Pos: at.cp.Offset})
	}
	if err != nil {
		syncer.Close()
		return nil, nil, fmt.Errorf("%w: starting binlog stream at %s:%d (GTIDs %s): %v", ErrUnreachable, at.cp.File, at.cp.Offset, at.cp.GTIDSet, err)
	}
	return syncer, streamer, nil
}

// stream is a session's main loop: r reads binlog events and hands their
// messages to pub, while pub's acknowledgements advance the checkpoint.
// It ends at the first error of either, or when ctx ends after the
// acknowledgements drained.
func (c *Capturer) stream(ctx context.Context, streamer *replication.BinlogStreamer, r *reader, pub *publisher) error {
	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error { return pub.acks(gctx, c.cfg.CheckpointInterval) })
	g.Go(func() error {
		defer close(pub.queue)
		c.setStreaming(true, nil)
		for {
			ev, err := streamer.GetEvent(gctx)
			if err != nil {
				if gctx.Err() != nil {
					return nil // stopping: let acks drain and save
				}
				return fmt.Errorf("%w: reading binlog after %s: %v", ErrUnreachable, r.file, err)
			}
			if err := r.handle(ev); err != nil {
				return err
			}
		}
	})
	return g.Wait()
}

// gtidSetString is set as text, "" for none.
func gtidSetString(set mysql.GTIDSet) string {
	if set == nil {
		return ""
	}
	return set.String()
}

// gtidSet is MariaDB's GTID position at cp (nil on MySQL): byGTID when
// resuming by GTID, else what the server says of cp's file and offset.
func (c *Capturer) gtidSet(ctx context.Context, db *sql.DB, info mysqlsrc.ServerInfo, cp *bus.Checkpoint, byGTID mysql.GTIDSet) (mysql.GTIDSet, error) {
	if !info.MariaDB {
		return nil, nil
	}
	if byGTID != nil {
		return byGTID.Clone(), nil
	}
	var pos sql.NullString
	if err := db.QueryRowContext(ctx, "SELECT BINLOG_GTID_POS(?, ?)", cp.File, cp.Offset).Scan(&pos); err != nil {
		return nil, fmt.Errorf("reading the GTID position of %s:%d: %w", cp.File, cp.Offset, err)
	}
	set, err := mysql.ParseMariadbGTIDSet(pos.String)
	if err != nil {
		return nil, fmt.Errorf("GTID position %q of %s:%d: %w", pos.String, cp.File, cp.Offset, err)
	}
	return set, nil
}

// publishedAfter reads the stream's events after sequence from through
// to and returns, by transaction (GTID), the highest Txn.Seq among them.
func publishedAfter(ctx context.Context, nc *nats.Conn, source string, from, to uint64) (map[string]int, error) {
	if to <= from {
		return nil, nil
	}
	c, err := sdk.Connect(ctx, sdk.Config{Conn: nc, Source: source, Start: sdk.StartAtSequence(from + 1)})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	out := map[string]int{}
	for {
		// The newest message may be a chunk of an event never finished:
		// the stream has nothing more to give when Next waits in vain.
		wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		m, err := c.Next(wctx)
		cancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return out, nil
		}
		if err != nil {
			return nil, fmt.Errorf("reading what the previous server published after stream sequence %d: %w", from, err)
		}
		if seq, ok := out[m.Event.Txn.ID]; !ok || m.Event.Txn.Seq > seq {
			out[m.Event.Txn.ID] = m.Event.Txn.Seq
		}
		if m.Sequence >= to {
			return out, nil
		}
	}
}
