package capture

import (
	"errors"

	"github.com/databus/databus/internal/bus"
	"github.com/databus/databus/internal/mysqlsrc"
	"github.com/databus/databus/internal/rowcodec"
)

// Errors returned by capture. Match them with [errors.Is].
var (
	// ErrAccessDenied means the source refused the credentials; retrying
	// does not help.
	ErrAccessDenied = mysqlsrc.ErrAccessDenied
	// ErrUnreachable means the source could not be reached; capture retries
	// with backoff.
	ErrUnreachable = mysqlsrc.ErrUnreachable
	// ErrSourceSettings means a server setting or privilege makes capture
	// impossible or lossy; the message names the setting and the fix.
	ErrSourceSettings = mysqlsrc.ErrSourceSettings
	// ErrUndecodable means a row could not be represented exactly; capture
	// stops rather than publish a wrong value.
	ErrUndecodable = rowcodec.ErrUndecodable
	// ErrServerChanged means the checkpoint belongs to another server.
	ErrServerChanged = errors.New("source server changed")
	// ErrBinlogPurged means the binlog file capture must resume from is no
	// longer on the server: the changes since the checkpoint are lost to
	// capture, and consumers need a new snapshot.
	ErrBinlogPurged = errors.New("binlog needed to resume has been purged")
	// ErrForeignMessage means the stream's newest message was not
	// published by capture (it lacks the capture id, or lies beyond the
	// end of the server's binlog): capture stops instead of skipping the
	// changes up to its position.
	ErrForeignMessage = bus.ErrForeignMessage
	// ErrNATSPermission means the NATS server refused capture a subject:
	// the user it connects with lacks the capture role's permissions.
	ErrNATSPermission = errors.New("NATS refused permission")
	// ErrLeaseLost means this node no longer holds the capture lease, or
	// another capture wrote the checkpoint: it must stop capturing and
	// stand by (docs/ha.md).
	ErrLeaseLost = errors.New("no longer the capture leader")
	// ErrBadStart means capture cannot begin where capture.start says:
	// the source has no such position or GTID set, or the source's
	// checkpoint was made under another start.
	ErrBadStart = errors.New("capture.start")
)

// fatal reports whether err must stop capture instead of being retried.
func fatal(err error) bool {
	// errTestCrash stands for a kill: no retry.
	return errors.Is(err, errTestCrash) || errors.Is(err, ErrAccessDenied) || errors.Is(err, ErrSourceSettings) ||
		errors.Is(err, ErrUndecodable) || errors.Is(err, ErrServerChanged) || errors.Is(err, ErrBinlogPurged) ||
		errors.Is(err, ErrForeignMessage) || errors.Is(err, ErrNATSPermission) || errors.Is(err, bus.ErrReplicasUnsupported) ||
		errors.Is(err, ErrLeaseLost) || errors.Is(err, ErrBadStart)
}
