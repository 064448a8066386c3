package ops

import (
	"time"

	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

// Info is what the admin service's info endpoint answers: a node's live
// state (docs/operations.md).
type Info struct {
	Version string    `json:"version"`
	Source  string    `json:"source"`
	Node    string    `json:"node"`
	Role    string    `json:"role"`
	State   string    `json:"state"`
	Reason  string    `json:"reason"`
	Started time.Time `json:"started"`
	// LogLevel is the logger's level now.
	LogLevel string `json:"log_level"`
	// Capture is set on the node that leads capture.
	Capture *CaptureInfo `json:"capture,omitempty"`
	// Snapshot tells what this node's snapshots did since it started.
	Snapshot SnapshotInfo `json:"snapshot"`
}

// CaptureInfo is the live state of capture.
type CaptureInfo struct {
	Position  *sdk.Position `json:"position,omitempty"`
	GTIDSet   string        `json:"gtid_set,omitempty"`
	StreamSeq uint64        `json:"stream_seq"`
	// LagSeconds is how far capture is behind the source (0: it has read
	// everything the server has); BehindBytes how much binlog it has yet
	// to read, when known.
	LagSeconds  float64 `json:"lag_seconds"`
	BehindBytes *int64  `json:"binlog_behind_bytes,omitempty"`
	// EventsPerSecond is the publish rate over the last 10 seconds.
	EventsPerSecond float64    `json:"events_per_second"`
	Events          uint64     `json:"events"`
	Transactions    uint64     `json:"transactions"`
	LastCommit      *time.Time `json:"last_source_commit,omitempty"`
	Paused          bool       `json:"paused"`
	LastError       string     `json:"last_error,omitempty"`
	LastErrorAt     *time.Time `json:"last_error_at,omitempty"`
}

// SnapshotInfo is what the node's snapshots did.
type SnapshotInfo struct {
	// Running is the progress of the snapshot being taken, if any.
	Running *SnapshotProgress `json:"running,omitempty"`
	// Last is the last one this node completed.
	Last *SnapshotDone `json:"last,omitempty"`
	// LastError is why the last one that failed did, at LastErrorAt.
	LastError   string     `json:"last_error,omitempty"`
	LastErrorAt *time.Time `json:"last_error_at,omitempty"`
}

// SnapshotProgress is how far the running snapshot is.
type SnapshotProgress struct {
	ID             string  `json:"id"`
	Phase          string  `json:"phase"` // reading, handoff, done
	Tables         int     `json:"tables"`
	TablesDone     int     `json:"tables_done"`
	Table          string  `json:"table,omitempty"`
	Rows           int64   `json:"rows"`
	RowsEstimate   int64   `json:"rows_estimate"`
	Bytes          int64   `json:"bytes"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
}

// Progress is p as the snapshot package reports it.
func (p SnapshotProgress) Progress() snapshot.Progress {
	return snapshot.Progress{
		ID: p.ID, Phase: p.Phase, Tables: p.Tables, TablesDone: p.TablesDone, Table: p.Table, Rows: p.Rows,
		RowsEstimate: p.RowsEstimate, Bytes: p.Bytes, Elapsed: time.Duration(p.ElapsedSeconds * float64(time.Second)),
	}
}

func progressOf(p *snapshot.Progress) *SnapshotProgress {
	if p == nil {
		return nil
	}
	return &SnapshotProgress{
		ID: p.ID, Phase: p.Phase, Tables: p.Tables, TablesDone: p.TablesDone, Table: p.Table, Rows: p.Rows,
		RowsEstimate: p.RowsEstimate, Bytes: p.Bytes, ElapsedSeconds: p.Elapsed.Seconds(),
	}
}

// SnapshotDone describes a completed snapshot.
type SnapshotDone struct {
	ID          string       `json:"id"`
	Position    sdk.Position `json:"pos"`
	GTIDSet     string       `json:"gtid_set,omitempty"`
	StreamSeq   uint64       `json:"stream_seq"`
	Tables      int          `json:"tables"`
	Rows        int64        `json:"rows"`
	StoredBytes int64        `json:"stored_bytes"`
	Finished    time.Time    `json:"finished"`
	Seconds     float64      `json:"seconds"`
}

// snapshotDone describes manifest m, taken in took seconds.
func snapshotDone(m *sdk.Manifest, took time.Duration) *SnapshotDone {
	return &SnapshotDone{
		ID: m.ID, Position: m.Position, GTIDSet: m.GTIDSet, StreamSeq: m.StreamSeq, Tables: len(m.Tables),
		Rows: m.Rows, StoredBytes: m.StoredBytes, Finished: m.Finished, Seconds: took.Seconds(),
	}
}

// Info returns the node's live state.
func (n *Node) Info() Info {
	s := n.read()
	n.mu.Lock()
	rate := n.rate.perSecond()
	n.mu.Unlock()
	info := Info{
		Version: n.Version, Source: n.Source, Node: n.Name, Role: s.role, State: s.state, Reason: s.reason,
		Started: n.started.UTC(), LogLevel: levelName(n.Level.Level()),
	}
	if s.capturing {
		st := s.capture
		c := &CaptureInfo{
			GTIDSet: st.GTIDSet, StreamSeq: st.Published, LagSeconds: st.Lag(time.Now()).Seconds(),
			EventsPerSecond: rate, Transactions: st.Transactions, Paused: st.Paused, LastError: st.LastError,
		}
		if st.Position.File != "" {
			c.Position = &st.Position
		}
		if st.BehindKnown {
			c.BehindBytes = &st.Behind
		}
		for _, v := range st.Events {
			c.Events += v
		}
		c.LastCommit = timeOrNil(st.LastCommit)
		c.LastErrorAt = timeOrNil(st.LastErrorAt)
		info.Capture = c
	}
	info.Snapshot.Running = progressOf(s.snapRunning)
	if r := s.snap.last; r != nil {
		info.Snapshot.Last = snapshotDone(r.Manifest, r.Took)
	}
	if r := s.snap.lastFailure; r != nil {
		info.Snapshot.LastError, info.Snapshot.LastErrorAt = r.Err.Error(), timeOrNil(s.snap.lastFailureAt)
	}
	return info
}

func timeOrNil(t time.Time) *time.Time {
	if t.IsZero() {
		return nil
	}
	u := t.UTC()
	return &u
}
