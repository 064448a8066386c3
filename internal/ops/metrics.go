package ops

import (
	"context"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/databus/databus/capture"
	"github.com/databus/databus/sdk"
)

// metric is one metric of a collector: its description and how it is
// read from a value of type T.
type metric[T any] struct {
	desc    *prometheus.Desc
	typ     prometheus.ValueType
	collect func(T, func(v float64, labels ...string))
}

func newMetric[T any](name, help string, typ prometheus.ValueType, labels []string, collect func(T, func(float64, ...string))) metric[T] {
	return metric[T]{desc: prometheus.NewDesc(name, help, labels, nil), typ: typ, collect: collect}
}

// collector is a prometheus.Collector that reads a value of type T at each
// scrape and turns it into its metrics; the first label of every metric
// is given by constLabel.
type collector[T any] struct {
	read    func() T
	label   string
	metrics []metric[T]
}

func (c *collector[T]) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.metrics {
		ch <- m.desc
	}
}

func (c *collector[T]) Collect(ch chan<- prometheus.Metric) {
	v := c.read()
	for _, m := range c.metrics {
		m.collect(v, func(val float64, labels ...string) {
			ch <- prometheus.MustNewConstMetric(m.desc, m.typ, val, append([]string{c.label}, labels...)...)
		})
	}
}

const (
	counter = prometheus.CounterValue
	gauge   = prometheus.GaugeValue
)

var (
	sourceLabel   = []string{"source"}
	opLabels      = []string{"source", "op"}
	kindLabels    = []string{"source", "kind"}
	captureErrors = []string{capture.KindMySQL, capture.KindNATS, capture.KindStoreFull, capture.KindPermission,
		capture.KindData, capture.KindPosition, capture.KindLease, capture.KindOther}
	ops = []sdk.Op{sdk.OpInsert, sdk.OpUpdate, sdk.OpDelete, sdk.OpDDL}
)

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

// nodeMetrics are the capture and snapshot metrics of a node.
func nodeMetrics() []metric[state] {
	return []metric[state]{
		newMetric("databus_capture_up", "1 while this node reads the binlog; 0 while it retries, is paused, stopped or stands by.", gauge, sourceLabel,
			func(s state, emit func(float64, ...string)) { emit(boolValue(s.state == StateCapturing)) }),
		newMetric("databus_capture_leader", "1 while this node holds the capture lease.", gauge, sourceLabel,
			func(s state, emit func(float64, ...string)) { emit(boolValue(s.role == RoleLeader)) }),
		newMetric("databus_capture_paused", "1 while capture is paused by an operator.", gauge, sourceLabel,
			func(s state, emit func(float64, ...string)) { emit(boolValue(s.capture.Paused)) }),
		newMetric("databus_capture_stopped", "1 when capture stopped on an error that needs a restart (databus status shows it).", gauge, sourceLabel,
			func(s state, emit func(float64, ...string)) { emit(boolValue(s.state == StateStopped)) }),
		newMetric("databus_capture_events_total", "Events published, by operation.", counter, opLabels,
			func(s state, emit func(float64, ...string)) {
				for _, op := range ops {
					emit(float64(s.capture.Events[op]), string(op))
				}
			}),
		newMetric("databus_capture_transactions_total", "Source transactions whose events were published.", counter, sourceLabel,
			func(s state, emit func(float64, ...string)) { emit(float64(s.capture.Transactions)) }),
		newMetric("databus_capture_errors_total", "Failed capture attempts (each retried, or stopping capture), by kind.", counter, kindLabels,
			func(s state, emit func(float64, ...string)) {
				for _, k := range captureErrors {
					emit(float64(s.capture.Errors[k]), k)
				}
			}),
		newMetric("databus_capture_lag_seconds", "How far capture is behind the source: 0 while it has read everything the server has, else now minus the later of the source commit time of the last transaction read and the last time it was caught up.", gauge, sourceLabel,
			func(s state, emit func(float64, ...string)) {
				if s.capturing {
					emit(s.capture.Lag(time.Now()).Seconds())
				}
			}),
		newMetric("databus_capture_binlog_behind_bytes", "Bytes of binlog between where capture has read to and the server's end.", gauge, sourceLabel,
			func(s state, emit func(float64, ...string)) {
				if s.capturing && s.capture.BehindKnown {
					emit(float64(s.capture.Behind))
				}
			}),
		newMetric("databus_capture_last_event_timestamp_seconds", "Source commit time of the last transaction capture read, in Unix seconds.", gauge, sourceLabel,
			func(s state, emit func(float64, ...string)) {
				if !s.capture.LastCommit.IsZero() {
					emit(unixSeconds(s.capture.LastCommit))
				}
			}),
		newMetric("databus_snapshot_rows_total", "Rows written by the snapshots this node took.", counter, sourceLabel,
			func(s state, emit func(float64, ...string)) { emit(float64(s.snap.rows)) }),
		newMetric("databus_snapshot_failures_total", "Snapshots this node tried and failed to take.", counter, sourceLabel,
			func(s state, emit func(float64, ...string)) { emit(float64(s.snap.failures)) }),
		newMetric("databus_snapshot_running", "1 while this node takes a snapshot.", gauge, sourceLabel,
			func(s state, emit func(float64, ...string)) { emit(boolValue(s.snapRunning != nil)) }),
	}
}

// streamState is what the NATS server says of a source's stream, its
// latest snapshot and the account's storage.
type streamState struct {
	stream   *jetstream.StreamInfo
	account  *jetstream.AccountInfo
	snapshot *sdk.Manifest
}

// streamMetrics are the metrics read from the NATS server.
func streamMetrics() []metric[streamState] {
	return []metric[streamState]{
		newMetric("databus_stream_messages", "Messages in the source's stream.", gauge, sourceLabel,
			func(s streamState, emit func(float64, ...string)) {
				if s.stream != nil {
					emit(float64(s.stream.State.Msgs))
				}
			}),
		newMetric("databus_stream_bytes", "Bytes in the source's stream.", gauge, sourceLabel,
			func(s streamState, emit func(float64, ...string)) {
				if s.stream != nil {
					emit(float64(s.stream.State.Bytes))
				}
			}),
		newMetric("databus_stream_max_bytes", "The stream's size limit (nats.stream.max_bytes), when it has one.", gauge, sourceLabel,
			func(s streamState, emit func(float64, ...string)) {
				if s.stream != nil && s.stream.Config.MaxBytes > 0 {
					emit(float64(s.stream.Config.MaxBytes))
				}
			}),
		newMetric("databus_stream_last_sequence", "Sequence of the stream's last message.", gauge, sourceLabel,
			func(s streamState, emit func(float64, ...string)) {
				if s.stream != nil {
					emit(float64(s.stream.State.LastSeq))
				}
			}),
		newMetric("databus_jetstream_storage_bytes", "File storage the NATS account uses (streams, state, snapshots).", gauge, sourceLabel,
			func(s streamState, emit func(float64, ...string)) {
				if s.account != nil {
					emit(float64(s.account.Store))
				}
			}),
		newMetric("databus_jetstream_storage_limit_bytes", "The NATS account's file storage limit (nats.max_store on the embedded server), when it has one.", gauge, sourceLabel,
			func(s streamState, emit func(float64, ...string)) {
				if s.account != nil && s.account.Limits.MaxStore > 0 {
					emit(float64(s.account.Limits.MaxStore))
				}
			}),
		newMetric("databus_snapshot_last_success_timestamp_seconds", "When the latest complete snapshot finished, in Unix seconds.", gauge, sourceLabel,
			func(s streamState, emit func(float64, ...string)) {
				if s.snapshot != nil {
					emit(unixSeconds(s.snapshot.Finished))
				}
			}),
		newMetric("databus_snapshot_duration_seconds", "How long the latest complete snapshot took.", gauge, sourceLabel,
			func(s streamState, emit func(float64, ...string)) {
				if s.snapshot != nil && !s.snapshot.Started.IsZero() {
					emit(s.snapshot.Finished.Sub(s.snapshot.Started).Seconds())
				}
			}),
	}
}

// readStream asks the NATS server about source, within two seconds;
// what it cannot learn stays nil.
func readStream(nc *nats.Conn, source string) streamState {
	var s streamState
	if nc == nil || !nc.IsConnected() {
		return s
	}
	js, err := jetstream.New(nc)
	if err != nil {
		return s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if st, err := js.Stream(ctx, sdk.StreamName(source)); err == nil {
		s.stream = st.CachedInfo()
	}
	if a, err := js.AccountInfo(ctx); err == nil {
		s.account = a
	}
	if m, err := sdk.LatestSnapshot(ctx, js, source); err == nil {
		s.snapshot = m
	}
	return s
}

// Registry returns the registry of the node's metrics, with the Go
// runtime's and the process's.
func (n *Node) Registry() *prometheus.Registry {
	reg := newRegistry(n.Version)
	reg.MustRegister(&collector[state]{read: n.read, label: n.Source, metrics: nodeMetrics()})
	reg.MustRegister(&collector[streamState]{read: func() streamState { return readStream(n.conn(), n.Source) }, label: n.Source, metrics: streamMetrics()})
	return reg
}
