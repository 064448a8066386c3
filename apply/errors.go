package apply

import "errors"

// ErrBadTarget means the target server cannot be used: a malformed DSN,
// refused credentials or an unreachable server.
var ErrBadTarget = errors.New("apply target")
