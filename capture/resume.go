package capture

import (
	"context"
	"fmt"
	"slices"

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
