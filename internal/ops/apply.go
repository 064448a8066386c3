package ops

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/databus/databus/apply"
)

// applyState is an applier's progress, read at one time.
type applyState struct {
	apply.Progress
	now time.Time
}

// lag is how far the target is behind the source: 0 when the applier had
// caught up with the stream at its last commit and is still applying,
// else the time since the source committed the last event applied.
func (s applyState) lag() (time.Duration, bool) {
	switch {
	case s.Applying && s.Pending == 0 && !s.Applied.IsZero():
		return 0, true
	case s.Applied.IsZero():
		return 0, false
	}
	return s.Lag + s.now.Sub(s.Applied), true
}

var applyLabels = []string{"source", "name"}

// applyMetrics are the metrics of one applier, whose name is the second
// label.
func applyMetrics(name string) []metric[applyState] {
	emitter := func(f func(applyState) float64) func(applyState, func(float64, ...string)) {
		return func(s applyState, emit func(float64, ...string)) { emit(f(s), name) }
	}
	return []metric[applyState]{
		newMetric("databus_apply_up", "1 while the applier receives and applies events.", gauge, applyLabels,
			emitter(func(s applyState) float64 { return boolValue(s.Applying) })),
		newMetric("databus_apply_transactions_total", "Source transactions applied to the target.", counter, applyLabels,
			emitter(func(s applyState) float64 { return float64(s.Transactions) })),
		newMetric("databus_apply_events_total", "Events applied to the target (snapshot rows included).", counter, applyLabels,
			emitter(func(s applyState) float64 { return float64(s.Events) })),
		newMetric("databus_apply_commits_total", "Target transactions committed; each holds one or more whole source transactions.", counter, applyLabels,
			emitter(func(s applyState) float64 { return float64(s.Commits) })),
		newMetric("databus_apply_stream_sequence", "Stream sequence of the last event applied.", gauge, applyLabels,
			emitter(func(s applyState) float64 { return float64(s.Seq) })),
		newMetric("databus_apply_pending_messages", "Messages of the stream after the last one applied, at its commit.", gauge, applyLabels,
			emitter(func(s applyState) float64 { return float64(s.Pending) })),
		newMetric("databus_apply_lag_seconds", "Now minus the source commit time of the last event applied; 0 while the target is caught up.", gauge, applyLabels,
			func(s applyState, emit func(float64, ...string)) {
				if lag, ok := s.lag(); ok {
					emit(lag.Seconds(), name)
				}
			}),
	}
}

// ApplyRegistry returns the registry of the metrics of the applier of
// source named name, whose progress progress reads.
func ApplyRegistry(version, source, name string, progress func() apply.Progress) *prometheus.Registry {
	reg := newRegistry(version)
	reg.MustRegister(&collector[applyState]{
		read:  func() applyState { return applyState{Progress: progress(), now: time.Now()} },
		label: source, metrics: applyMetrics(name),
	})
	return reg
}

// ApplyReady reports whether an applier with progress p applies events,
// and otherwise why not.
func ApplyReady(p apply.Progress) (bool, string) {
	switch {
	case p.Applying:
		return true, "applying"
	case p.Retrying != "":
		return false, "the stream was interrupted, retrying: " + p.Retrying
	}
	return false, "starting: connecting to the target and the stream"
}
