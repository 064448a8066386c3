// Package ops is what an operator sees of a running databus and steers
// it with: the live state of a `databus run` node ([Node]), its metrics
// in the Prometheus format, /healthz and /readyz ([Serve]), and the NATS
// micro service `databus` ([StartAdmin]) that answers `databus status`,
// `databus snapshot` and `nats micro` (docs/operations.md).
package ops

import (
	"context"
	"errors"
	"log/slog"
	"maps"
	"sync"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/sdk"
	"github.com/databus/databus/snapshot"
)

// Roles and states of a node, as [Info] reports them.
const (
	RoleLeader  = "leader"
	RoleStandby = "standby"

	StateStarting  = "starting"  // not yet campaigning for the lease
	StateStandby   = "standby"   // another node captures
	StateCapturing = "capturing" // reading the binlog
	StatePaused    = "paused"    // paused by an operator
	StateRetrying  = "retrying"  // capture failed and is tried again
	StateStopped   = "stopped"   // capture stopped by an error; a restart is needed
)

// Node is the live state of one `databus run` process: which role it has,
// the capture and snapshot schedule it runs while it leads, and what they
// did. The metrics, the health checks and the admin service read it.
type Node struct {
	// Source, Name and Version identify the node.
	Source, Name, Version string
	// Level is the level of the process's logger, which the admin service
	// and SIGHUP change.
	Level *slog.LevelVar
	Log   *slog.Logger

	started time.Time
	mu      sync.Mutex
	nc      *nats.Conn
	waiting string // what the node waits for before campaigning
	leading bool
	cap     *capture.Capturer
	sched   *snapshot.Schedule
	leadCtx context.Context // ends when the node stops leading
	paused  bool
	// ended adds up the counters of the capturers this node ran before
	// the current one, so that metrics never go back.
	ended   capture.Status
	stopped error
	snap    snapshotStats
	rate    rateMeter
}

// snapshotStats is what the snapshots this node took did.
type snapshotStats struct {
	rows, failures uint64
	last           *snapshot.Result
	lastFailure    *snapshot.Result
	lastFailureAt  time.Time
}

// NewNode returns the state of a node that has just started.
func NewNode(source, name, version string, level *slog.LevelVar, log *slog.Logger) *Node {
	return &Node{Source: source, Name: name, Version: version, Level: level, Log: log, started: time.Now(), waiting: "starting"}
}

// Connected records the NATS connection the node uses, once it has one.
func (n *Node) Connected(nc *nats.Conn) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.nc = nc
}

// conn is the node's NATS connection, nil before it has one.
func (n *Node) conn() *nats.Conn {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.nc
}

// Waiting records what the node waits for before it can campaign for
// the capture lease; "" when it campaigns.
func (n *Node) Waiting(what string) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.waiting = what
}

// SetLeading records whether the node holds the capture lease.
func (n *Node) SetLeading(on bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.leading = on
}

// Lead records the capturer and snapshot schedule the node runs while it
// leads, until ctx ends. It returns the function that records their end,
// which also ends a pause: a node that leads again captures.
func (n *Node) Lead(ctx context.Context, c *capture.Capturer, sched *snapshot.Schedule) (end func()) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cap, n.sched, n.leadCtx = c, sched, ctx
	return func() {
		n.mu.Lock()
		defer n.mu.Unlock()
		st := c.Status()
		n.ended.Transactions += st.Transactions
		n.ended.Events = addCounts(n.ended.Events, st.Events)
		n.ended.Errors = addCounts(n.ended.Errors, st.Errors)
		if st.LastCommit.After(n.ended.LastCommit) {
			n.ended.LastCommit = st.LastCommit
		}
		n.ended.LastError, n.ended.LastErrorAt = st.LastError, st.LastErrorAt
		n.cap, n.sched, n.leadCtx, n.paused = nil, nil, nil, false
	}
}

func addCounts[K comparable](to, from map[K]uint64) map[K]uint64 {
	if to == nil {
		to = map[K]uint64{}
	}
	for k, v := range from {
		to[k] += v
	}
	return to
}

// Stopped records that capture stopped for good with err.
func (n *Node) Stopped(err error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.stopped = err
}

// ErrNotLeader is returned by the node's actions that only the capture
// leader takes.
var ErrNotLeader = errors.New("this node does not capture: it stands by")

// Pause pauses capture until Resume, or until this node stops leading.
func (n *Node) Pause() error { return n.setPaused(true) }

// Resume resumes capture after Pause.
func (n *Node) Resume() error { return n.setPaused(false) }

func (n *Node) setPaused(on bool) error {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.cap == nil {
		return ErrNotLeader
	}
	n.paused = on
	if on {
		n.cap.Pause()
	} else {
		n.cap.Resume()
	}
	return nil
}

// TakeSnapshot takes a snapshot now through the node's schedule; it is
// abandoned if the node stops leading. published, when set, is called as
// soon as the snapshot is the latest, before older ones are deleted.
func (n *Node) TakeSnapshot(published func(*sdk.Manifest)) (*sdk.Manifest, error) {
	n.mu.Lock()
	sched, nc, ctx := n.sched, n.nc, n.leadCtx
	n.mu.Unlock()
	if sched == nil {
		return nil, ErrNotLeader
	}
	return sched.TakeNow(ctx, nc, published)
}

// ObserveSnapshot records how a snapshot attempt went.
func (n *Node) ObserveSnapshot(r snapshot.Result) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if r.Err != nil {
		n.snap.failures++
		n.snap.lastFailure, n.snap.lastFailureAt = &r, time.Now()
		return
	}
	n.snap.rows += uint64(r.Manifest.Rows)
	n.snap.last = &r
}

// state is a consistent copy of what the node knows now.
type state struct {
	role, state, reason string
	capture             capture.Status
	capturing           bool // this node has a capturer
	snapRunning         *snapshot.Progress
	snap                snapshotStats
}

// read returns the node's state now.
func (n *Node) read() state {
	n.mu.Lock()
	defer n.mu.Unlock()
	s := state{role: RoleStandby, snap: n.snap}
	s.capture = n.ended
	s.capture.Events, s.capture.Errors = maps.Clone(n.ended.Events), maps.Clone(n.ended.Errors)
	if n.cap != nil {
		st := n.cap.Status()
		st.Transactions += n.ended.Transactions
		st.Events = addCounts(st.Events, n.ended.Events)
		st.Errors = addCounts(st.Errors, n.ended.Errors)
		s.capture, s.capturing = st, true
		if n.sched != nil {
			if p, ok := n.sched.Running(); ok {
				s.snapRunning = &p
			}
		}
	}
	switch {
	case n.stopped != nil:
		s.state, s.reason = StateStopped, "capture stopped by an error, fix its cause and restart databus run: "+n.stopped.Error()
	case n.waiting != "":
		s.state, s.reason = StateStarting, n.waiting
	case n.leading || n.cap != nil:
		s.role = RoleLeader
		s.state, s.reason = leaderState(n.cap)
	default:
		s.state, s.reason = StateStandby, "standing by: another node captures"
	}
	if n.nc != nil && !n.nc.IsConnected() && s.state != StateStopped && s.state != StateStarting {
		s.reason = "NATS connection lost (" + n.nc.Status().String() + "): " + s.reason
		if s.state == StateStandby {
			s.state = StateRetrying
		}
	}
	return s
}

// leaderState is the state of a node that leads with capturer c.
func leaderState(c *capture.Capturer) (state, reason string) {
	if c == nil {
		return StateStarting, "starting capture"
	}
	st := c.Status()
	switch {
	case st.Paused:
		return StatePaused, "capture paused by an operator (resume it with the admin service's resume endpoint)"
	case st.Streaming:
		return StateCapturing, "capturing"
	case st.LastError != "":
		return StateRetrying, "capture is retrying: " + st.LastError
	}
	return StateStarting, "starting capture"
}

// Ready reports whether the node does its job, capturing or standing by
// healthy, and otherwise why not.
func (n *Node) Ready() (bool, string) {
	s := n.read()
	return s.state == StateCapturing || s.state == StateStandby, s.reason
}

// Run keeps the event rate of [Info] up to date until ctx ends.
func (n *Node) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s := n.read()
			var total uint64
			for _, v := range s.capture.Events {
				total += v
			}
			n.mu.Lock()
			n.rate.add(now, total)
			n.mu.Unlock()
		}
	}
}

// rateMeter computes a rate over the last rateWindow from samples of a
// counter.
type rateMeter struct {
	at    [rateWindow + 1]time.Time
	count [rateWindow + 1]uint64
	n     int
}

const rateWindow = 10

func (r *rateMeter) add(at time.Time, count uint64) {
	i := r.n % len(r.at)
	r.at[i], r.count[i] = at, count
	r.n++
}

// perSecond is the rate between the oldest and newest sample kept.
func (r *rateMeter) perSecond() float64 {
	if r.n < 2 {
		return 0
	}
	newest := (r.n - 1) % len(r.at)
	oldest := 0
	if r.n > len(r.at) {
		oldest = r.n % len(r.at)
	}
	secs := r.at[newest].Sub(r.at[oldest]).Seconds()
	if secs <= 0 || r.count[newest] < r.count[oldest] {
		return 0
	}
	return float64(r.count[newest]-r.count[oldest]) / secs
}
