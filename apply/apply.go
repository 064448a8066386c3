package apply

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/mysqlwire"
	"github.com/databus/databus/internal/tlsconf"
	"github.com/databus/databus/sdk"
)

// Config configures an [Applier].
type Config struct {
	// TargetDSN is the target server in go-sql-driver form,
	// user:password@tcp(host:port)/.
	TargetDSN string
	// TLSMode is how the target connection uses TLS (empty: preferred);
	// TLS names the CA that signs the target's certificate and a client
	// certificate. They win over a tls parameter in TargetDSN.
	TLSMode tlsconf.Mode
	TLS     tlsconf.Files
	// Name identifies this applier's checkpoint on the target; "apply"
	// when empty.
	Name string
	// NATSURL and NATSOptions reach the source's stream.
	NATSURL     string
	NATSOptions []nats.Option
	// Source is the databus source name.
	Source string
	// Start applies when the target holds no checkpoint yet.
	Start sdk.Start
	// Databases and Tables filter what is applied (see [sdk.Config]).
	Databases, Tables []string
	// ProgressEvery is how often progress is logged; 10s when zero.
	ProgressEvery time.Duration
	Logger        *slog.Logger
}

// Progress is what an applier has done.
type Progress struct {
	// Transactions and Events count source transactions and events
	// applied; Commits counts target transactions (each commits one or
	// more whole source transactions).
	Transactions, Events, Commits uint64
	// Seq is the stream sequence of the last applied event.
	Seq uint64
	// Lag is the time between the source commit of the last applied event
	// and its application.
	Lag time.Duration
	// Applied is when the last target transaction committed; Pending how
	// many of the stream's messages followed its last event then (0: the
	// target had caught up).
	Applied time.Time
	Pending uint64
	// Applying is true while events are being received and applied;
	// Retrying holds why they are not, when the stream was interrupted.
	Applying bool
	Retrying string
}

// Applier mirrors a source into a target server.
type Applier struct {
	cfg Config
	log *slog.Logger
	// db runs one statement per call (DDL, snapshot rows, checkpoint
	// reads); the row events' statements go, many per command, through a
	// connection to batch (dialBatch). It has TLS as db has: when TLS is
	// only preferred (batchPreferTLS), when db's connection has it.
	db             *sql.DB
	batch          mysqlwire.Config
	batchPreferTLS bool

	// mu guards progress, which other goroutines read.
	mu       sync.Mutex
	progress Progress
	// logged is the progress at the last progress log, at loggedAt.
	logged   Progress
	loggedAt time.Time
	// resumed is true until the first event after a (re)start is applied.
	resumed bool
	// resumeSnap is where a snapshot load stood at the last commit, when
	// the target was loading one; snapSeq is the stream sequence of the
	// snapshot being loaded (its checkpoint's).
	resumeSnap *sdk.SnapshotProgress
	snapSeq    uint64
	// careful is the stream sequence up to which events are applied one
	// statement per round trip, to name the one the target refused.
	careful uint64
}

// rowSQLMode is the sql_mode of apply's sessions: row statements mean the
// same under it whatever the target's default. DDL runs under the mode it
// ran under on the source (see [Applier.ddl]).
const rowSQLMode = "NO_AUTO_VALUE_ON_ZERO,NO_BACKSLASH_ESCAPES"

// checkpointDDL creates the table that keeps every applier's position.
var checkpointDDL = []string{
	"CREATE DATABASE IF NOT EXISTS `databus`",
	"CREATE TABLE IF NOT EXISTS `databus`.`apply_checkpoint` (" +
		"`source` VARCHAR(64) NOT NULL, `name` VARCHAR(128) NOT NULL, " +
		"`stream_seq` BIGINT UNSIGNED NOT NULL, `txn_id` VARCHAR(255) NOT NULL, " +
		"`binlog_file` VARCHAR(255) NOT NULL, `binlog_offset` BIGINT UNSIGNED NOT NULL, " +
		"`updated` TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6), PRIMARY KEY (`source`, `name`))",
}

// New opens the target and checks the configuration.
func New(cfg Config) (*Applier, error) {
	if cfg.Name == "" {
		cfg.Name = "apply"
	}
	if cfg.ProgressEvery == 0 {
		cfg.ProgressEvery = 10 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	mc, err := mysql.ParseDSN(cfg.TargetDSN)
	if err != nil {
		return nil, fmt.Errorf("%w: --target: want user:password@tcp(host:port)/: %v", ErrBadTarget, err)
	}
	mc.Params = map[string]string{
		"time_zone":          "'+00:00'",
		"sql_mode":           "'" + rowSQLMode + "'",
		"foreign_key_checks": "0",
	}
	mc.Collation = "utf8mb4_general_ci"
	if err := tlsconf.Driver(mc, cfg.TLSMode, cfg.TLS); err != nil {
		return nil, fmt.Errorf("%w: apply.tls: %v", ErrBadTarget, err)
	}
	// A DDL statement's text is run as it is: one statement per call.
	mc.MultiStatements = false
	single, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadTarget, err)
	}
	batch := mysqlwire.Config{Addr: mc.Addr, User: mc.User, Password: mc.Passwd, TLS: mc.TLS, MultiStatements: true,
		ConnectTimeout: mc.Timeout, ReadTimeout: mc.ReadTimeout, WriteTimeout: mc.WriteTimeout}
	return &Applier{cfg: cfg, db: sql.OpenDB(single), batch: batch, batchPreferTLS: mc.TLS != nil && mc.AllowFallbackToPlaintext,
		log: log.With("component", "apply", "name", cfg.Name)}, nil
}

// filtered reports whether the applier applies only some databases or
// tables: a transaction's last event may then not reach it.
func (a *Applier) filtered() bool { return len(a.cfg.Databases)+len(a.cfg.Tables) > 0 }

// Close closes the target connections.
func (a *Applier) Close() error { return a.db.Close() }

// Progress returns what has been applied so far. It is meant for the
// goroutine running [Applier.Run] or after it returned.
func (a *Applier) Progress() Progress {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.progress
}

// setState records whether events are being applied and, when they are
// not, why.
func (a *Applier) setState(applying bool, retrying error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.progress.Applying, a.progress.Retrying = applying, ""
	if retrying != nil {
		a.progress.Retrying = retrying.Error()
	}
}

// checkpoint reads this applier's checkpoint from the target; ok is false
// when there is none.
// loading names the snapshot being loaded when the checkpoint was pinned
// at a snapshot's start and no change has been applied since.
func (a *Applier) checkpoint(ctx context.Context) (seq uint64, loading string, ok bool, err error) {
	for _, s := range checkpointDDL {
		if _, err := a.db.ExecContext(ctx, s); err != nil {
			return 0, "", false, fmt.Errorf("creating the checkpoint table on the target: %w", err)
		}
	}
	var txnID string
	err = a.db.QueryRowContext(ctx, "SELECT `stream_seq`, `txn_id` FROM `databus`.`apply_checkpoint` WHERE `source` = ? AND `name` = ?",
		a.cfg.Source, a.cfg.Name).Scan(&seq, &txnID)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, "", false, nil
	}
	if err != nil {
		return 0, "", false, fmt.Errorf("reading the checkpoint: %w", err)
	}
	loading, _ = strings.CutPrefix(txnID, snapshotMark)
	if loading == txnID {
		loading = ""
	}
	return seq, loading, true, nil
}

// Run applies events until ctx ends (returning nil) or an event fails to
// apply (returning an error naming the event). When receiving from the
// stream fails (NATS restarted and the consumer is gone or silent), Run
// rolls back the open transaction and resumes after the target's
// checkpoint, as a restart of the process would, retrying until NATS is
// back; NATS unreachable at the start is an error.
func (a *Applier) Run(ctx context.Context) error {
	if err := a.db.PingContext(ctx); err != nil {
		return fmt.Errorf("%w: connecting: %v", ErrBadTarget, err)
	}
	retrying := false
	backoff := time.Second
	for {
		err := a.session(ctx)
		var bf *batchFailed
		if errors.As(err, &bf) && bf.upTo > a.careful && ctx.Err() == nil {
			// Find the statement that failed: apply the same events again,
			// one statement per round trip.
			a.careful = bf.upTo
			a.log.Warn("the target refused a statement of a batch: applying those events again one statement at a time", "err", bf.err, "to_stream_seq", bf.upTo)
			continue
		}
		var se *streamError
		if !errors.As(err, &se) || ctx.Err() != nil || !se.receiving && !retrying {
			return err
		}
		if se.receiving {
			backoff = time.Second
		}
		retrying = true
		a.setState(false, se.err)
		a.log.Warn("stream interrupted: resuming after the target's checkpoint", "err", se.err, "retry_in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 10*time.Second)
	}
}

// streamError is a failure to reach or read the stream; receiving is
// true when it broke while events were being received.
type streamError struct {
	err       error
	receiving bool
}

func (e *streamError) Error() string { return e.err.Error() }
func (e *streamError) Unwrap() error { return e.err }

// lostStream reports whether err, from receiving, is NATS or JetStream
// failing (missed heartbeats, consumer gone, connection closed) rather
// than an event that cannot be decoded.
func lostStream(err error) bool {
	var jsErr jetstream.JetStreamError
	return errors.As(err, &jsErr) || errors.Is(err, nats.ErrTimeout) || errors.Is(err, nats.ErrConnectionClosed) ||
		errors.Is(err, nats.ErrNoResponders) || errors.Is(err, nats.ErrDisconnected)
}

// session connects to the stream, resumes after the target's checkpoint
// and applies events until ctx ends or an error.
func (a *Applier) session(ctx context.Context) error {
	nc, err := nats.Connect(a.cfg.NATSURL, a.cfg.NATSOptions...)
	if err != nil {
		return &streamError{err: fmt.Errorf("connecting to NATS at %s: %w", sdk.RedactURL(a.cfg.NATSURL), err)}
	}
	defer nc.Close()
	start, err := a.startPoint(ctx, nc)
	if err != nil {
		return err
	}
	a.resumed = true
	c, err := sdk.Connect(ctx, sdk.Config{
		Conn: nc, Source: a.cfg.Source,
		Start: start, Databases: a.cfg.Databases, Tables: a.cfg.Tables,
		ResumeSnapshot: func(context.Context) (*sdk.SnapshotProgress, error) { return a.resumeSnap, nil },
	})
	if err != nil {
		if errors.Is(err, sdk.ErrNoStream) {
			return err
		}
		return &streamError{err: err}
	}
	defer c.Close()
	a.setState(true, nil)
	return a.applyAll(ctx, c)
}

// startPoint decides where the consumer starts: after the target's
// checkpoint, at the snapshot the target was loading, or (on a first
// start) at the configured start, which is pinned on the target at once.
func (a *Applier) startPoint(ctx context.Context, nc *nats.Conn) (sdk.Start, error) {
	a.resumeSnap = nil
	seq, loading, ok, err := a.checkpoint(ctx)
	if err != nil {
		return sdk.Start{}, err
	}
	start := a.cfg.Start
	switch {
	case loading != "":
		// Killed while loading: go on with the same snapshot right after
		// the last row committed (the checkpoint says which), or from its
		// start when none was.
		id, at, err := loadingAt(loading)
		if err != nil {
			return sdk.Start{}, err
		}
		a.resumeSnap, a.snapSeq = at, seq
		if at == nil {
			a.log.Info("loading the snapshot from its start after a restart", "snapshot", id)
		} else {
			a.log.Info("resuming the snapshot load after the last committed row", "snapshot", id, "table_index", at.Table, "part", at.Object, "row_in_part", at.Row)
		}
		return sdk.StartSnapshotID(id), nil
	case !ok && start.Kind() == "snapshot":
		js, err := jetstream.New(nc)
		if err != nil {
			return sdk.Start{}, err
		}
		man, err := sdk.LatestSnapshot(ctx, js, a.cfg.Source)
		if err != nil {
			return sdk.Start{}, err
		}
		if err := a.pin(ctx, man.StreamSeq, snapshotMark+man.ID, man.Position); err != nil {
			return sdk.Start{}, err
		}
		a.snapSeq = man.StreamSeq
		a.log.Info("loading snapshot", "snapshot", man.ID, "tables", len(man.Tables), "rows", man.Rows, "then_stream_seq", man.StreamSeq+1)
		return sdk.StartSnapshotID(man.ID), nil
	case ok:
		a.log.Info("resuming after the target's checkpoint", "stream_seq", seq)
		return sdk.StartAtSequence(seq + 1), nil
	case start == sdk.StartNow:
		// Pin "now" on the target at once: a restart before the first
		// commit must not move it past events written meanwhile.
		last, err := sdk.LastSequence(ctx, nc, a.cfg.Source)
		if err != nil {
			return sdk.Start{}, err
		}
		if err := a.pin(ctx, last, "", sdk.Position{}); err != nil {
			return sdk.Start{}, err
		}
		a.log.Info("starting now: checkpoint pinned on the target", "stream_seq", last)
		return sdk.StartAtSequence(last + 1), nil
	}
	return start, nil
}
