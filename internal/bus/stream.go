package bus

import (
	"context"
	"errors"
	"fmt"
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
)

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

// Ensure creates or updates the source's stream and state bucket.
func Ensure(ctx context.Context, js jetstream.JetStream, source string, sc StreamConfig) (jetstream.Stream, jetstream.KeyValue, error) {
	cfg := jetstream.StreamConfig{
		Name:        sdk.StreamName(source),
		Description: "databus change events of source " + source,
		Subjects:    []string{sdk.StreamSubjects(source)},
		Storage:     jetstream.FileStorage,
		Replicas:    sc.Replicas,
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
	s, err := js.CreateOrUpdateStream(ctx, cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("creating stream %s: %w", cfg.Name, err)
	}
	kv, err := js.CreateOrUpdateKeyValue(ctx, jetstream.KeyValueConfig{
		Bucket:      sdk.StateBucket(source),
		Description: "databus capture state of source " + source,
		History:     1,
		Replicas:    sc.Replicas,
		Storage:     jetstream.FileStorage,
	})
	if err != nil {
		return nil, nil, fmt.Errorf("creating state bucket %s: %w", sdk.StateBucket(source), err)
	}
	return s, kv, nil
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
