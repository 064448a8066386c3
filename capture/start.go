package capture

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	gomysql "github.com/go-mysql-org/go-mysql/mysql"
	"github.com/go-mysql-org/go-mysql/replication"
	driver "github.com/go-sql-driver/mysql"

	"github.com/databus/databus/configs"
	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/mysqlsrc"
)

// badStart is the error of a capture.start the source cannot begin at.
func badStart(start configs.CaptureStart, format string, args ...any) error {
	return fmt.Errorf("%w %s: %s", ErrBadStart, start, fmt.Sprintf(format, args...))
}

// startPoint returns the binlog position where a capture without a
// checkpoint begins: the start of the first event it reads.
func (c *Capturer) startPoint(ctx context.Context, db *sql.DB, info mysqlsrc.ServerInfo, start configs.CaptureStart) (string, uint32, error) {
	if start.Kind == configs.StartGTID {
		return c.gtidStart(ctx, info, start)
	}
	return startPosition(ctx, db, info, start)
}

// startPosition is startPoint for every start but a GTID set.
func startPosition(ctx context.Context, db *sql.DB, info mysqlsrc.ServerInfo, start configs.CaptureStart) (string, uint32, error) {
	switch start.Kind {
	case configs.StartEarliest:
		logs, err := mysqlsrc.BinaryLogSizes(ctx, db)
		if err != nil {
			return "", 0, err
		}
		if len(logs) == 0 {
			return "", 0, fmt.Errorf("SHOW BINARY LOGS lists no file: %w", ErrSourceSettings)
		}
		return logs[0].Name, 4, nil // after the magic number: the whole file
	case configs.StartPosition:
		return start.File, start.Offset, checkStartPosition(ctx, db, info, start)
	}
	return mysqlsrc.MasterStatus(ctx, db, info)
}

// beginsTransaction lists the binlog events (SHOW BINLOG EVENTS'
// Event_type) before which no transaction is open: a start position must
// be one of them, or capture would read the rows of a transaction without
// its beginning.
var beginsTransaction = []string{
	"Format_desc", "Start_encryption", "Gtid_list", "Binlog_checkpoint", "Previous_gtids", // a file's header
	"Gtid", "Anonymous_Gtid", // a transaction's first event
	"Rotate", "Stop",
}

// checkStartPosition checks that start is the beginning of an event, and
// of one outside any transaction, in a binlog the server still has (or its
// current end).
func checkStartPosition(ctx context.Context, db *sql.DB, info mysqlsrc.ServerInfo, start configs.CaptureStart) error {
	logs, err := mysqlsrc.BinaryLogSizes(ctx, db)
	if err != nil {
		return err
	}
	i := slices.IndexFunc(logs, func(l mysqlsrc.BinaryLog) bool { return l.Name == start.File })
	if i < 0 {
		have := "none"
		if len(logs) > 0 {
			have = logs[0].Name + " to " + logs[len(logs)-1].Name
		}
		return badStart(start, "the server has no binlog %s (it has %s, SHOW BINARY LOGS)", start.File, have)
	}
	size, last := logs[i].Size, i == len(logs)-1
	switch {
	case int64(start.Offset) == size && last:
		return nil // the current end: capture begins with the next transaction
	case int64(start.Offset) >= size:
		return badStart(start, "%s ends at %d", start.File, size)
	}
	// The name comes from the server's own list; the offset is a number.
	q := fmt.Sprintf("SHOW BINLOG EVENTS IN '%s' FROM %d LIMIT 1", strings.ReplaceAll(start.File, "'", "''"), start.Offset)
	var logName, eventType, infoText string
	var pos, serverID, end uint64
	err = db.QueryRowContext(ctx, q).Scan(&logName, &pos, &eventType, &serverID, &end, &infoText)
	var me *driver.MySQLError
	switch {
	case errors.As(err, &me) && me.Number == 1220:
		return badStart(start, "no binlog event begins at offset %d of %s (%s): give the Pos of an event SHOW BINLOG EVENTS IN '%s' lists",
			start.Offset, start.File, me.Message, start.File)
	case err != nil:
		return fmt.Errorf("%s: %w", q, err)
	}
	if !slices.Contains(beginsTransaction, eventType) && !(!info.MariaDB && eventType == "Query" && infoText == "BEGIN") {
		return badStart(start, "the event there is a %s event, inside a transaction (%s); give the position of a transaction's first event (a Gtid event in SHOW BINLOG EVENTS IN '%s')",
			eventType, infoText, start.File)
	}
	return nil
}

// gtidStart asks the server where the first transaction not in start's
// GTID set begins: it streams the binlog from that set, and the first
// transaction it sends is there. When the set holds every transaction the
// server has, the server's first heartbeat says where its binlog ends.
func (c *Capturer) gtidStart(ctx context.Context, info mysqlsrc.ServerInfo, start configs.CaptureStart) (string, uint32, error) {
	set, err := startGTIDs(info, start)
	if err != nil {
		return "", 0, err
	}
	syncer, streamer, err := c.startBinlog(info, resumeAt{cp: &bus.Checkpoint{GTIDSet: start.GTIDs}, byGTID: set})
	if err != nil {
		return "", 0, err
	}
	defer syncer.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	file := ""
	for {
		e, err := streamer.GetEvent(ctx)
		var me *gomysql.MyError
		switch {
		case errors.As(err, &me) && me.Code == gomysql.ER_MASTER_FATAL_ERROR_READING_BINLOG:
			return "", 0, badStart(start, "the server cannot stream from there: %s", me.Message)
		case err != nil:
			return "", 0, fmt.Errorf("%w: finding where GTID set %s ends in the binlog: %v", ErrUnreachable, start.GTIDs, err)
		}
		h := e.Header
		switch ev := e.Event.(type) {
		case *replication.RotateEvent:
			file = string(ev.NextLogName)
		case *replication.MariadbGTIDEvent, *replication.GTIDEvent:
			if h.LogPos != 0 {
				return file, h.LogPos - h.EventSize, nil
			}
		case *replication.HeartbeatEvent:
			if h.LogPos != 0 {
				if ev.Filename != "" {
					file = ev.Filename
				}
				return file, h.LogPos, nil
			}
		}
	}
}

// startGTIDs parses start's GTID set in the source's flavour.
func startGTIDs(info mysqlsrc.ServerInfo, start configs.CaptureStart) (gomysql.GTIDSet, error) {
	parse, server := gomysql.ParseMysqlGTIDSet, "MySQL"
	if info.MariaDB {
		parse, server = gomysql.ParseMariadbGTIDSet, "MariaDB"
	}
	set, err := parse(start.GTIDs)
	if err != nil {
		return nil, badStart(start, "not a GTID set of %s, which the source is (%v): MariaDB's are domain-server-sequence (0-1-42), MySQL's <uuid>:1-42", server, err)
	}
	return set, nil
}

// CheckStart checks, for `databus check`, that the source can begin where
// cfg.Start says. Of a GTID set it checks only the form: finding where it
// ends takes a binlog stream, which would end the one a running capture
// with the same server id reads; capture finds it when it starts.
func CheckStart(ctx context.Context, cfg Config) mysqlsrc.Check {
	c := mysqlsrc.Check{Name: "capture.start", OK: true, Detail: cfg.Start.String(),
		Fix: "set capture.start to a position SHOW BINARY LOGS and SHOW BINLOG EVENTS list (a Gtid event), or remove it to start now"}
	if !cfg.Start.Explicit() {
		c.Detail = "now: a first capture begins at the current binlog position"
		return c
	}
	db, err := mysqlsrc.Connect(ctx, cfg.MySQL)
	if err != nil {
		c.OK, c.Detail = false, err.Error()
		return c
	}
	defer db.Close()
	info, err := mysqlsrc.Inspect(ctx, db)
	if err == nil {
		switch cfg.Start.Kind {
		case configs.StartGTID:
			_, err = startGTIDs(info, cfg.Start)
			c.Detail += " (where it ends in the binlog is found when capture starts)"
		default:
			var file string
			var offset uint32
			if file, offset, err = startPosition(ctx, db, info, cfg.Start); err == nil {
				c.Detail = fmt.Sprintf("%s: a first capture begins at %s:%d", cfg.Start, file, offset)
			}
		}
	}
	if err != nil {
		c.OK, c.Detail = false, err.Error()
	}
	return c
}
