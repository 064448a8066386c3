package sdk

import "errors"

// Errors returned by the SDK. Match them with [errors.Is].
var (
	// ErrUnsupportedVersion is returned for an event written in a newer wire
	// format than this SDK understands: upgrade the SDK.
	ErrUnsupportedVersion = errors.New("unsupported event format version")
	// ErrClosed is returned by [Consumer.Next] after [Consumer.Close].
	ErrClosed = errors.New("consumer closed")
	// ErrNoStream is returned by [Connect] when the source's stream does not
	// exist yet: start `databus run` for that source first.
	ErrNoStream = errors.New("databus stream not found")
	// ErrEventsLost is returned when the stream no longer holds events a
	// consumer had not read: see [EventsLostError].
	ErrEventsLost = errors.New("events lost")
)
