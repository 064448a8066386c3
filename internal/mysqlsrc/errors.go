package mysqlsrc

import "errors"

// Errors of talking to the source. Match them with [errors.Is].
var (
	// ErrAccessDenied means the source refused the credentials; retrying
	// does not help.
	ErrAccessDenied = errors.New("mysql access denied")
	// ErrUnreachable means the source could not be reached; retrying may
	// help.
	ErrUnreachable = errors.New("mysql unreachable")
	// ErrSourceSettings means a server setting or privilege makes capture
	// impossible or lossy; the message names the setting and the fix.
	ErrSourceSettings = errors.New("mysql source is not set up for capture")
)
