package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/go-mysql-org/go-mysql/mysql"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/nats-io/nuid"

	"github.com/databus/databus/configs"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/mysqlsrc"
)

// resumable checks that capture can resume at cp on the server described
// by info: the checkpoint was written for this server
// ([ErrServerChanged]) and its binlog file is still there
// ([ErrBinlogPurged]). The errors name what is missing and the recovery.
func resumable(ctx context.Context, db mysqlsrc.Querier, cfg Config, info mysqlsrc.ServerInfo, cp bus.Checkpoint) error {
	const recovery = "start databus run once with --recover to capture from the current position " +
		"and take a new snapshot (consumers that need every row start again from it)"
	if cp.ServerID != info.ServerID || cp.ServerUUID != info.ServerUUID {
		return fmt.Errorf("%w: checkpoint %s:%d was written for server_id %d (uuid %q), %s is server_id %d (uuid %q); "+
			"positions of one server mean nothing on another: %s",
			ErrServerChanged, cp.File, cp.Offset, cp.ServerID, cp.ServerUUID, cfg.MySQL.Addr, info.ServerID, info.ServerUUID, recovery)
	}
	files, err := mysqlsrc.BinaryLogs(ctx, db)
	if err != nil {
		return err
	}
	if slices.Contains(files, cp.File) {
		return nil
	}
	gtid, oldest := "", "none"
	if cp.GTID != "" {
		gtid = " (GTID " + cp.GTID + ")"
	}
	if len(files) > 0 {
		oldest = files[0]
	}
	return fmt.Errorf("%w: capture must resume at %s:%d%s but %s no longer has %s (oldest binlog: %s); "+
		"the changes since then cannot be captured. Keep binlogs longer than databus can be down "+
		"(expire_logs_days / binlog_expire_logs_seconds), and %s",
		ErrBinlogPurged, cp.File, cp.Offset, gtid, cfg.MySQL.Addr, cp.File, oldest, recovery)
}

// resumeAt is where a session starts reading the binlog.
type resumeAt struct {
	cp *bus.Checkpoint
	// rev is the checkpoint's revision in the state bucket: capture
	// writes the next one over it.
	rev uint64
	// captureID is the id capture publishes with; trust is the id the
	// stream's messages must carry, empty when the checkpoint had none.
	captureID, trust string
	// byGTID, when set, resumes after these GTIDs instead of at cp's file
	// and offset: the source is another server than cp's.
	byGTID mysql.GTIDSet
}

// resumePoint decides where to resume: at the checkpoint, by GTID on
// another server of the same replication domain, or, saved as the
// checkpoint, at Config.Start when there is no checkpoint (or, with
// Config.Recover, one made under another start), and at the server's
// current position when the checkpoint cannot be resumed and
// Config.Recover is set.
func (c *Capturer) resumePoint(ctx context.Context, db *sql.DB, info mysqlsrc.ServerInfo, kv jetstream.KeyValue) (resumeAt, error) {
	cp, rev, err := bus.LoadCheckpointRev(ctx, c.nc, kv)
	if err != nil {
		return resumeAt{}, err
	}
	at := resumeAt{rev: rev}
	if cp != nil {
		at.trust = cp.CaptureID
	}
	at.captureID = at.trust
	if at.captureID == "" {
		// A first start, or a checkpoint written before capture ids: the
		// stream's messages carry none yet.
		at.captureID = nuid.Next()
	}
	start := c.cfg.Start
	if cp != nil && start.Explicit() && cp.Start != start.String() {
		made := "now"
		if cp.Start != "" {
			made = cp.Start
		}
		if !c.cfg.Recover {
			return resumeAt{}, badStart(start, "source %q has a checkpoint (%s:%d) of a capture that began at %s, and capture.start applies only to a first start: "+
				"remove capture.start to resume from the checkpoint, or start databus run once with --recover to capture again from %s (the stream keeps what it has)",
				c.cfg.Source, cp.File, cp.Offset, made, start)
		}
		c.log.Warn("capture.start differs from the checkpoint's: capturing again from capture.start (recover)",
			"start", start.String(), "checkpoint_start", made, "file", cp.File, "offset", cp.Offset)
		cp = nil
	}
	var recovered error
	if cp != nil {
		err := resumable(ctx, db, c.cfg, info, *cp)
		switch {
		case err == nil:
		case errors.Is(err, ErrServerChanged) && info.MariaDB && cp.GTIDSet != "":
			// Another server of the same replication domain (after a
			// failover): resume after the checkpoint's GTIDs.
			if at.byGTID, err = mysql.ParseMariadbGTIDSet(cp.GTIDSet); err != nil {
				return resumeAt{}, fmt.Errorf("checkpoint GTID set %q: %w", cp.GTIDSet, err)
			}
			c.log.Warn("source server changed: resuming by GTID", "gtid_set", cp.GTIDSet,
				"old_server_id", cp.ServerID, "server_id", info.ServerID)
		case c.cfg.Recover && (errors.Is(err, ErrBinlogPurged) || errors.Is(err, ErrServerChanged)):
			c.log.Warn("the checkpoint cannot be resumed: capturing from the current position (recover)", "reason", err)
			cp, recovered = nil, err
			start = configs.CaptureStart{Kind: configs.StartNow}
		default:
			return resumeAt{}, err
		}
	}
	if cp == nil {
		file, pos, err := c.startPoint(ctx, db, info, start)
		if err != nil {
			return resumeAt{}, err
		}
		cp = &bus.Checkpoint{File: file, Offset: pos, ServerID: info.ServerID, ServerUUID: info.ServerUUID, CaptureID: at.captureID}
		if c.cfg.Start.Explicit() {
			// What this capture began under, even when a recovery made it
			// begin now: the same capture.start resumes it.
			cp.Start = c.cfg.Start.String()
		}
		if at.rev, err = bus.SaveCheckpoint(ctx, kv, *cp, at.rev); err != nil {
			return resumeAt{}, err
		}
		if start.Explicit() {
			c.log.Info("no checkpoint: starting at capture.start", "start", start.String(), "file", file, "offset", pos)
		} else {
			c.log.Info("no checkpoint: starting at the current binlog position", "file", file, "offset", pos)
		}
	}
	if recovered != nil && c.cfg.OnRecover != nil {
		c.cfg.OnRecover(recovered)
	}
	at.cp = cp
	return at, nil
}
