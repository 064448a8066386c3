package apply

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/internal/secret"
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
	Transactions, Events uint64
	// Seq is the stream sequence of the last applied event.
	Seq uint64
	// Lag is the time between the source commit of the last applied event
	// and its application.
	Lag time.Duration
}

// Applier mirrors a source into a target server.
type Applier struct {
	cfg Config
	log *slog.Logger
	db  *sql.DB

	progress Progress
	// resumed is true until the first event after a (re)start is applied.
	resumed bool
	// resumeSnap is where a snapshot load stood at the last commit, when
	// the target was loading one.
	resumeSnap *sdk.SnapshotProgress
}

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
		"sql_mode":           "'NO_AUTO_VALUE_ON_ZERO,NO_BACKSLASH_ESCAPES'",
		"foreign_key_checks": "0",
	}
	mc.Collation = "utf8mb4_general_ci"
	if err := tlsconf.Driver(mc, cfg.TLSMode, cfg.TLS); err != nil {
		return nil, fmt.Errorf("%w: apply.tls: %v", ErrBadTarget, err)
	}
	mc.MultiStatements = false
	connector, err := mysql.NewConnector(mc)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadTarget, err)
	}
	return &Applier{cfg: cfg, db: sql.OpenDB(connector), log: log.With("component", "apply", "name", cfg.Name)}, nil
}

// Close closes the target connections.
func (a *Applier) Close() error { return a.db.Close() }

// Progress returns what has been applied so far. It is meant for the
// goroutine running [Applier.Run] or after it returned.
func (a *Applier) Progress() Progress { return a.progress }

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
		var se *streamError
		if !errors.As(err, &se) || ctx.Err() != nil || !se.receiving && !retrying {
			return err
		}
		if se.receiving {
			backoff = time.Second
		}
		retrying = true
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
		return &streamError{err: fmt.Errorf("connecting to NATS at %s: %w", secret.URL(a.cfg.NATSURL), err)}
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
		a.resumeSnap = at
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
		if _, err := a.db.ExecContext(ctx, "INSERT INTO `databus`.`apply_checkpoint` (`source`, `name`, `stream_seq`, `txn_id`, `binlog_file`, `binlog_offset`) "+
			"VALUES (?, ?, ?, ?, ?, ?)", a.cfg.Source, a.cfg.Name, man.StreamSeq, snapshotMark+man.ID, man.Position.File, man.Position.Offset); err != nil {
			return sdk.Start{}, fmt.Errorf("saving the start checkpoint: %w", err)
		}
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
		if err := a.pin(ctx, last); err != nil {
			return sdk.Start{}, err
		}
		a.log.Info("starting now: checkpoint pinned on the target", "stream_seq", last)
		return sdk.StartAtSequence(last + 1), nil
	}
	return start, nil
}

// applyAll applies the events c delivers until ctx ends or an error. Each
// source transaction is one target transaction that also saves the
// checkpoint; one whose last event is filtered out is committed when
// nothing follows it soon.
func (a *Applier) applyAll(ctx context.Context, c *sdk.Consumer) error {
	tick := time.NewTicker(a.cfg.ProgressEvery)
	defer tick.Stop()
	var open *txn
	for {
		select {
		case <-tick.C:
			p := a.progress
			a.log.Info("progress", "transactions", p.Transactions, "events", p.Events, "stream_seq", p.Seq, "lag", p.Lag.Round(time.Millisecond))
		default:
		}
		wait := ctx
		var cancel context.CancelFunc = func() {}
		if open != nil && !open.snapshot {
			// The transaction's last event may be filtered out: commit
			// what we have when nothing follows soon. (A snapshot's rows
			// are all there: its transactions end at each table's last
			// row.)
			wait, cancel = context.WithTimeout(ctx, 200*time.Millisecond)
		}
		m, err := c.Next(wait)
		cancel()
		if err != nil {
			if open != nil && ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
				if err := a.commit(ctx, open); err != nil {
					return err
				}
				open = nil
				continue
			}
			if open != nil {
				open.rollback()
			}
			if ctx.Err() != nil || errors.Is(err, sdk.ErrClosed) {
				return nil
			}
			if lostStream(err) {
				return &streamError{err: err, receiving: true}
			}
			if errors.Is(err, sdk.ErrEventsLost) {
				return fmt.Errorf("the target cannot be brought up to date: %w; it misses those changes: load a new, empty target with `databus apply --from snapshot`", err)
			}
			return err
		}
		if err := a.apply(ctx, &open, m); err != nil {
			if ctx.Err() != nil {
				return nil // stopped: the open target transaction is rolled back
			}
			return err
		}
	}
}

// apply applies one event: a snapshot's, a DDL statement, or a row change
// in the open target transaction (*open), which it begins, and commits at
// the transaction's last event or when another transaction starts.
func (a *Applier) apply(ctx context.Context, open **txn, m *sdk.Message) error {
	if *open != nil && (*open).id != m.Event.Txn.ID {
		if err := a.commit(ctx, *open); err != nil {
			return err
		}
		*open = nil
	}
	switch {
	case m.Event.Snapshot:
		return a.snapshotEvent(ctx, open, m)
	case m.Event.Op == sdk.OpDDL:
		return a.ddl(ctx, m)
	}
	if *open == nil {
		tx, err := a.db.BeginTx(ctx, nil)
		if err != nil {
			return fmt.Errorf("beginning a target transaction: %w", err)
		}
		*open = &txn{id: m.Event.Txn.ID, tx: tx}
	}
	t := *open
	// The statement is built from the event's values, not taken from its
	// SQL text: a row event can only change the row it describes.
	stmt, err := m.Event.Statement()
	if err == nil {
		_, err = t.tx.ExecContext(ctx, stmt)
	}
	if err != nil {
		t.rollback()
		return fmt.Errorf("applying stream sequence %d (%s %s.%s at %s): %w", m.Sequence, m.Event.Op, m.Event.Database, m.Event.Table, m.Event.Position, err)
	}
	t.last = m
	t.events++
	if m.Event.Txn.Last {
		*open = nil
		return a.commit(ctx, t)
	}
	return nil
}
