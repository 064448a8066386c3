package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/sdk"
)

// StreamConfig configures the source's JetStream stream.
type StreamConfig struct {
	Replicas        int
	MaxAge          time.Duration
	MaxBytes        int64
	DuplicateWindow time.Duration
	// AtomicTransactions publishes each transaction as a JetStream atomic
	// batch (NATS 2.12+), so that no consumer ever sees part of it.
	AtomicTransactions bool
}

// Keys of the state bucket ([sdk.StateBucket]) that databus writes.
const (
	// CheckpointKey holds the capture [Checkpoint].
	CheckpointKey = "capture.checkpoint"
	// SnapshotLockKey is held by the snapshot being taken.
	SnapshotLockKey = "snapshot.running"
	// SnapshotAttemptKey holds the [SnapshotAttempt] of the scheduled
	// snapshot tried last.
	SnapshotAttemptKey = "snapshot.attempt"
	// LeaderKey holds the capture lease (a lease.Record): which node
	// captures.
	LeaderKey = "capture.leader"
	// CaptureStopKey holds the [CaptureStop] of the capture that an error
	// stopped; the next capture to start deletes it.
	CaptureStopKey = "capture.stopped"
	// nodeKeyPrefix starts the keys of [NodeKey].
	nodeKeyPrefix = "capture.node."
)

// NodeKey is the key under which `databus run` node announces itself (a
// [Node]) while it runs.
func NodeKey(node string) string { return nodeKeyPrefix + node }

// NodeKeys is the wildcard that matches every [NodeKey].
const NodeKeys = nodeKeyPrefix + "*"

// Node is what a `databus run` node says of itself under [NodeKey], again
// every few seconds while it runs.
type Node struct {
	Name string `json:"name"`
	// Role is "leader" (it captures) or "standby".
	Role string `json:"role"`
	// NATS names the NATS server the node uses (its embedded one, or
	// the external one it is connected to).
	NATS string    `json:"nats,omitempty"`
	Seen time.Time `json:"seen"`
}

// CaptureStop says why capture stopped and cannot go on by itself (a
// value it cannot represent, a foreign message in the stream), for
// `databus status`.
type CaptureStop struct {
	Node  string    `json:"node"`
	Error string    `json:"error"`
	At    time.Time `json:"at"`
	// Position is the last checkpoint: where capture starts again once
	// the cause is fixed.
	Position string `json:"position,omitempty"`
}

// SnapshotAttempt is how the last scheduled snapshot went, for `databus
// status`: running, done (ID set) or failed (Error, and NextTry when it is
// tried again on its own).
type SnapshotAttempt struct {
	State   string     `json:"state"`
	ID      string     `json:"id,omitempty"`
	Error   string     `json:"error,omitempty"`
	At      time.Time  `json:"at"`
	NextTry *time.Time `json:"next_try,omitempty"`
}

// Streams names the JetStream streams that hold source: its events, its
// state bucket's and its snapshot bucket's (JetStream keeps bucket B in
// stream KV_B or OBJ_B).
func Streams(source string) (events, state, snapshots string) {
	return sdk.StreamName(source), kvStream(sdk.StateBucket(source)), "OBJ_" + sdk.SnapshotBucket(source)
}

// kvStream is the stream of key-value bucket.
func kvStream(bucket string) string { return "KV_" + bucket }

// ErrReplicasUnsupported is wrapped by [Ensure]'s error when the NATS
// server is not part of a JetStream cluster and cannot keep more than one
// replica.
var ErrReplicasUnsupported = errors.New("the NATS server is not clustered and keeps one replica only (use a JetStream cluster with a server for each replica, or set 1)")

// Ensure creates the source's stream and state bucket, or updates them when
// their configuration differs from sc. On a cluster that is still electing
// its leaders, or lacks servers for the replicas, it waits and tries again
// (logging why) until ctx ends. A server that cannot hold replicas at all
// is an error wrapping [ErrReplicasUnsupported].
func Ensure(ctx context.Context, js jetstream.JetStream, source string, sc StreamConfig, log *slog.Logger) (jetstream.Stream, jetstream.KeyValue, error) {
	wait := 250 * time.Millisecond
	var reported string
	for {
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		s, kv, err := ensure(actx, js, source, sc)
		cancel()
		if err == nil || ctx.Err() != nil || !retryable(err) {
			return s, kv, err
		}
		if log != nil && err.Error() != reported {
			log.Warn("the NATS servers cannot create the stream yet: trying again", "err", err, "replicas", sc.Replicas)
			reported = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil, nil, err
		case <-time.After(wait):
		}
		wait = min(2*wait, 5*time.Second)
	}
}

// JetStream error codes of a cluster that lacks servers to place a stream
// now (nats-server's JSClusterNoPeersErrF), and of a server that cannot
// keep replicas (JSStreamReplicasNotSupportedErr).
const (
	errCodeNoPeers              jetstream.ErrorCode = 10005
	errCodeReplicasNotSupported jetstream.ErrorCode = 10074
)

// retryable reports whether ensure's err may pass once the cluster has
// elected its leaders or its servers are back.
func retryable(err error) bool {
	var apiErr *jetstream.APIError
	return sdk.Transient(err) || errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeNoPeers
}

// ensure makes one attempt of [Ensure]. What exists with the wanted
// configuration is only looked up: that needs the stream's leader alone,
// not the cluster's meta leader.
func ensure(ctx context.Context, js jetstream.JetStream, source string, sc StreamConfig) (jetstream.Stream, jetstream.KeyValue, error) {
	cfg := jetstream.StreamConfig{
		Name:        sdk.StreamName(source),
		Description: "databus change events of source " + source,
		Subjects:    []string{sdk.StreamSubjects(source)},
		Storage:     jetstream.FileStorage,
		Replicas:    max(sc.Replicas, 1),
		MaxAge:      sc.MaxAge,
		MaxBytes:    sc.MaxBytes,
		Duplicates:  sc.DuplicateWindow,
		Discard:     jetstream.DiscardOld,
		// Allowed on an existing stream too; turning it off again is
		// harmless (only in-progress batches are dropped).
		AllowAtomicPublish: sc.AtomicTransactions,
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = -1
	}
	s, err := js.Stream(ctx, cfg.Name)
	if err != nil || !sameStream(s.CachedInfo().Config, cfg) {
		if err != nil && !errors.Is(err, jetstream.ErrStreamNotFound) {
			return nil, nil, fmt.Errorf("looking up stream %s: %w", cfg.Name, err)
		}
		if s, err = js.CreateOrUpdateStream(ctx, cfg); err != nil {
			return nil, nil, replicasError(fmt.Errorf("creating stream %s: %w", cfg.Name, err))
		}
	}
	bucket := sdk.StateBucket(source)
	kv, err := js.KeyValue(ctx, bucket)
	if err == nil {
		st, err := kv.Status(ctx)
		if err != nil {
			return nil, nil, fmt.Errorf("reading state bucket %s: %w", bucket, err)
		}
		if st.(*jetstream.KeyValueBucketStatus).StreamInfo().Config.Replicas == cfg.Replicas {
			return s, kv, nil
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return nil, nil, fmt.Errorf("looking up state bucket %s: %w", bucket, err)
	}
	kv, err = js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      bucket,
		Description: "databus capture state of source " + source,
		History:     1,
		Replicas:    cfg.Replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, nil, replicasError(fmt.Errorf("creating state bucket %s: %w", bucket, err))
	}
	return s, kv, nil
}

// sameStream reports whether the stream configured as have already is
// what want asks for.
func sameStream(have, want jetstream.StreamConfig) bool {
	return slices.Equal(have.Subjects, want.Subjects) && have.Replicas == want.Replicas && have.MaxAge == want.MaxAge &&
		have.MaxBytes == want.MaxBytes && have.Duplicates == want.Duplicates && have.AllowAtomicPublish == want.AllowAtomicPublish &&
		have.Storage == want.Storage && have.Discard == want.Discard && have.Description == want.Description
}

// replicasError wraps [ErrReplicasUnsupported] into err when the server
// refused replicas.
func replicasError(err error) error {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeReplicasNotSupported {
		return fmt.Errorf("%w: %w", ErrReplicasUnsupported, err)
	}
	return err
}

// JetStream error codes for a server without room (nats-server's
// JSStorageResourcesExceededErr, JSInsufficientResourcesErr and
// JSAccountResourcesExceededErr).
const (
	errCodeStorageExceeded       jetstream.ErrorCode = 10047
	errCodeInsufficientResources jetstream.ErrorCode = 10023
	errCodeAccountLimits         jetstream.ErrorCode = 10002
)

// StorageFull reports whether err is JetStream refusing a message for lack
// of storage.
func StorageFull(err error) bool {
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) {
		switch apiErr.ErrorCode {
		case errCodeStorageExceeded, errCodeInsufficientResources, errCodeAccountLimits:
			return true
		}
		return false
	}
	return err != nil && strings.Contains(err.Error(), "insufficient storage")
}

// MoveLeaders asks every stream in streams whose cluster leader is the
// server named server to hand its leadership to another current replica.
// The capture leader calls it for its own NATS server: when that node
// dies, its standbys then find the stream and the state bucket led by a
// live server, without waiting for a leader election (4 to 9 seconds).
// Streams that are not replicated, or have no other current replica, are
// left alone. It returns the names of the streams it moved, once they
// have their new leaders.
func MoveLeaders(ctx context.Context, js jetstream.JetStream, server string, streams ...string) ([]string, error) {
	var moved []string
	for _, name := range streams {
		s, err := js.Stream(ctx, name)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			continue
		}
		if err != nil {
			return moved, fmt.Errorf("looking up stream %s: %w", name, err)
		}
		to := successor(s.CachedInfo().Cluster, server)
		if to == "" {
			continue
		}
		if err := StepDown(ctx, js, name, to); err != nil {
			return moved, err
		}
		moved = append(moved, name)
		if err := waitLeader(ctx, s, server); err != nil {
			return moved, fmt.Errorf("stream %s after its leader stepped down: %w", name, err)
		}
	}
	return moved, nil
}

// StepDown asks the leader of stream name to hand its leadership over to
// the replica named preferred, or to a healthy replica of its choice when
// preferred is empty; either way directly, without an election.
func StepDown(ctx context.Context, js jetstream.JetStream, name, preferred string) error {
	var req []byte
	if preferred != "" {
		req, _ = json.Marshal(map[string]any{"placement": map[string]string{"preferred": preferred}})
	}
	resp, err := js.Conn().RequestWithContext(ctx, "$JS.API.STREAM.LEADER.STEPDOWN."+name, req)
	if err != nil {
		return fmt.Errorf("asking stream %s's leader to step down: %w", name, err)
	}
	var r struct {
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return fmt.Errorf("stream %s's leader step-down answer %q: %w", name, resp.Data, err)
	}
	if r.Error != nil {
		return fmt.Errorf("stream %s's leader did not step down: %w", name, r.Error)
	}
	return nil
}

// errCodeMsgIDInProcess is nats-server's JSStreamDuplicateMessageConflict:
// a message with this Nats-Msg-Id is being stored ("in process").
const errCodeMsgIDInProcess jetstream.ErrorCode = 10158

// MsgIDInProcess reports whether err is JetStream refusing a message
// because one with the same Nats-Msg-Id is being stored. The stream's
// leader forgets such a message id when its leadership changes.
func MsgIDInProcess(err error) bool {
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.ErrorCode == errCodeMsgIDInProcess
}

// successor returns the replica that should lead a stream of cluster cl
// instead of server, or "" when server does not lead it or the stream is
// not healthy enough to move: every replica must be current and heard
// from within the last 1.5 seconds (raft heartbeats come every second),
// or the new leader could be a server that just died or hangs. Of those,
// the one heard from last is chosen.
func successor(cl *jetstream.ClusterInfo, server string) string {
	if cl == nil || cl.Leader != server || len(cl.Replicas) == 0 {
		return ""
	}
	best := cl.Replicas[0]
	for _, p := range cl.Replicas {
		if !p.Current || p.Offline || p.Active > 1500*time.Millisecond {
			return ""
		}
		if p.Active < best.Active {
			best = p
		}
	}
	return best.Name
}

// waitLeader waits until stream s has a leader other than server.
func waitLeader(ctx context.Context, s jetstream.Stream, server string) error {
	for {
		info, err := s.Info(ctx)
		if err == nil && info.Cluster != nil && info.Cluster.Leader != "" && info.Cluster.Leader != server {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}
