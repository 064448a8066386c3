package sdk

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Start says where a new consumer begins reading. It applies only when the
// durable consumer is created; an existing one resumes where it stopped.
type Start struct {
	kind startKind
	seq  uint64
	snap string
	// at is the time of a StartAtTime; gtids the set of a StartAtGTID;
	// pos the position of a StartAtPosition.
	at    time.Time
	gtids string
	pos   Position
}

type startKind int

const (
	kindBeginning startKind = iota
	kindNow
	kindSequence
	kindSnapshot
	kindTime
	kindGTID
	kindPosition
)

// Start points.
var (
	// StartBeginning reads every event still kept in the stream.
	StartBeginning = Start{kind: kindBeginning}
	// StartNow reads only events published after the consumer is created.
	StartNow = Start{kind: kindNow}
	// StartSnapshot reads the latest complete snapshot (each table's schema,
	// then its rows), then every change after it: no gap, no overlap.
	StartSnapshot = Start{kind: kindSnapshot}
)

// StartSnapshotID is [StartSnapshot] with a given snapshot rather than the
// latest, e.g. to load the same snapshot again after a crash.
func StartSnapshotID(id string) Start { return Start{kind: kindSnapshot, snap: id} }

// StartAtSequence begins at the given stream sequence (inclusive).
func StartAtSequence(seq uint64) Start { return Start{kind: kindSequence, seq: seq} }

// StartAtTime begins at the first event the source committed at or after
// t, by the events' ts (the binlog's timestamps, whole seconds). The
// binlog is in commit order, its timestamps nearly so: a transaction that
// began before t and committed after it may count as before t.
func StartAtTime(t time.Time) Start { return Start{kind: kindTime, at: t} }

// StartAtGTID begins at the first event of a transaction not in the GTID
// set: MariaDB's "0-1-42" (each domain's last transaction, as in
// gtid_slave_pos) or MySQL's "3E11FA47-71CA-11E1-9E33-C80AA9429562:1-42".
// The set is checked by [Connect].
func StartAtGTID(set string) Start { return Start{kind: kindGTID, gtids: set} }

// StartAtPosition begins at the first event after the binlog position
// file:offset, as SHOW MASTER STATUS or a replica's Exec_Master_Log_Pos
// gives it: the events at or before it are skipped.
func StartAtPosition(file string, offset uint32) Start {
	return Start{kind: kindPosition, pos: Position{File: file, Offset: offset}}
}

// Kind returns "beginning", "now", "sequence", "snapshot", "time", "gtid"
// or "position".
func (s Start) Kind() string {
	return [...]string{"beginning", "now", "sequence", "snapshot", "time", "gtid", "position"}[s.kind]
}

// SnapshotID returns the snapshot a [StartSnapshotID] start point names.
func (s Start) SnapshotID() string { return s.snap }

// GTIDs returns the set a [StartAtGTID] start point names.
func (s Start) GTIDs() string { return s.gtids }

// Position returns the binlog file and offset a [StartAtPosition] start
// point names.
func (s Start) Position() Position { return s.pos }

// String returns the start point as [ParseStart] reads it.
func (s Start) String() string {
	switch s.kind {
	case kindSequence:
		return strconv.FormatUint(s.seq, 10)
	case kindSnapshot:
		if s.snap != "" {
			return "snapshot:" + s.snap
		}
	case kindTime:
		return s.at.UTC().Format(time.RFC3339Nano)
	case kindGTID:
		return "gtid:" + s.gtids
	case kindPosition:
		return s.pos.File + ":" + strconv.FormatUint(uint64(s.pos.Offset), 10)
	}
	return s.Kind()
}

// startForms lists what [ParseStart] accepts, for its errors.
const startForms = "beginning, now, snapshot, snapshot:<id>, a stream sequence (42), a time (2026-11-30T10:00:00Z), " +
	"gtid:<set> (gtid:0-1-42 or gtid:<uuid>:1-42) or a binlog position (mysql-bin.000003:1234)"

// ParseStart parses a start point: "beginning", "now", "snapshot",
// "snapshot:<id>", a stream sequence ("42"), an RFC 3339 time
// ("2026-11-30T10:00:00Z"), "gtid:<set>" or a binlog position
// ("mysql-bin.000003:1234").
func ParseStart(s string) (Start, error) {
	switch s {
	case "", "beginning":
		return StartBeginning, nil
	case "now":
		return StartNow, nil
	case "snapshot":
		return StartSnapshot, nil
	}
	bad := func(why string) (Start, error) {
		return Start{}, fmt.Errorf("start point %q: %s; want %s", s, why, startForms)
	}
	if id, ok := strings.CutPrefix(s, "snapshot:"); ok {
		if id == "" {
			return bad("no snapshot id")
		}
		return StartSnapshotID(id), nil
	}
	if set, ok := strings.CutPrefix(s, "gtid:"); ok {
		if _, err := parseGTIDSet(set); err != nil {
			return bad(err.Error())
		}
		return StartAtGTID(set), nil
	}
	if isDigits(s) {
		seq, err := strconv.ParseUint(s, 10, 64)
		if err != nil || seq == 0 {
			return bad("a stream sequence starts at 1")
		}
		return StartAtSequence(seq), nil
	}
	if len(s) >= 10 && isDigits(s[:4]) && s[4] == '-' {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return bad("a time is RFC 3339 with a zone, like 2026-11-30T10:00:00Z")
		}
		return StartAtTime(t), nil
	}
	if file, off, ok := strings.Cut(s, ":"); ok && file != "" {
		n, err := strconv.ParseUint(off, 10, 32)
		if err != nil || n < 4 {
			return bad("a binlog position is FILE:OFFSET, the offset a number from 4")
		}
		return StartAtPosition(file, uint32(n)), nil
	}
	return bad("not one of these")
}

func isDigits(s string) bool {
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return s != ""
}
