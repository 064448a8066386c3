package snapshot

import (
	"errors"
)

// ErrRunning is returned when a snapshot of the source is already
// being taken.
var ErrRunning = errors.New("a snapshot is already running")

// ErrAbandoned is returned when a snapshot could not be completed;
// the previous latest snapshot stays the latest.
var ErrAbandoned = errors.New("snapshot abandoned")
