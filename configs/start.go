package configs

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/databus/databus/sdk"
)

// CaptureStart is where a capture that has no checkpoint begins reading
// the source's binlog (capture.start).
type CaptureStart struct {
	// Kind is StartNow, StartEarliest, StartPosition or StartGTID.
	Kind string
	// File and Offset are a StartPosition's binlog position: the start
	// of the event capture reads first.
	File   string
	Offset uint32
	// GTIDs is a StartGTID's set: capture begins with the first
	// transaction not in it.
	GTIDs string
}

// Kinds of [CaptureStart].
const (
	StartNow      = "now"
	StartEarliest = "earliest"
	StartPosition = "position"
	StartGTID     = "gtid"
)

// Explicit reports whether the start differs from the default, the
// server's current position.
func (s CaptureStart) Explicit() bool { return s.Kind != StartNow && s.Kind != "" }

// String returns the start as [ParseCaptureStart] reads it.
func (s CaptureStart) String() string {
	switch s.Kind {
	case StartPosition:
		return s.File + ":" + strconv.FormatUint(uint64(s.Offset), 10)
	case StartGTID:
		return "gtid:" + s.GTIDs
	case "":
		return StartNow
	}
	return s.Kind
}

// captureStartForms lists what ParseCaptureStart accepts, for its errors.
const captureStartForms = "now, earliest, a binlog position FILE:OFFSET (mysql-bin.000003:1234) " +
	"or a GTID set (MariaDB 0-1-42, MySQL 3e11fa47-71ca-11e1-9e33-c80aa9429562:1-42; a gtid: prefix is allowed)"

// ParseCaptureStart parses capture.start: "now", "earliest", a binlog
// position "FILE:OFFSET", or a GTID set ("0-1-42", "<uuid>:1-42", either
// with an optional "gtid:" prefix).
func ParseCaptureStart(s string) (CaptureStart, error) {
	s = strings.TrimSpace(s)
	switch s {
	case "", StartNow:
		return CaptureStart{Kind: StartNow}, nil
	case StartEarliest:
		return CaptureStart{Kind: StartEarliest}, nil
	}
	// A GTID set without its prefix is no binlog position: its colons
	// follow a server uuid, and MariaDB's have none.
	st, err := sdk.ParseStart("gtid:" + s)
	if err != nil {
		st, err = sdk.ParseStart(s)
	}
	if err == nil {
		switch st.Kind() {
		case "gtid":
			return CaptureStart{Kind: StartGTID, GTIDs: st.GTIDs()}, nil
		case "position":
			return CaptureStart{Kind: StartPosition, File: st.Position().File, Offset: st.Position().Offset}, nil
		}
	}
	if strings.HasPrefix(s, "gtid:") {
		return CaptureStart{}, fmt.Errorf("not a GTID set: want MariaDB's 0-1-42 (domain-server-sequence, comma-separated) or MySQL's <uuid>:1-42")
	}
	return CaptureStart{}, fmt.Errorf("want %s", captureStartForms)
}
