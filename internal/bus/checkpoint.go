package bus

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// Checkpoint is where capture resumes: the start of the first transaction
// not yet fully acknowledged by JetStream. It is stored as JSON under
// [CheckpointKey].
type Checkpoint struct {
	File   string `json:"file"`
	Offset uint32 `json:"offset"`
	GTID   string `json:"last_gtid,omitempty"`
	// GTIDSet is MariaDB's GTID position at the checkpoint (the last GTID
	// of each domain), with which capture resumes on another server.
	GTIDSet    string `json:"gtid_set,omitempty"`
	ServerID   uint32 `json:"server_id"`
	ServerUUID string `json:"server_uuid,omitempty"`
	StreamSeq  uint64 `json:"stream_seq"`
	// CaptureID identifies the source's capture: every message it
	// publishes carries it in the [CaptureHeader] header. Empty in a
	// checkpoint written before capture had one.
	CaptureID string    `json:"capture_id,omitempty"`
	Updated   time.Time `json:"updated"`
}

// LoadCheckpoint returns the saved checkpoint, or nil when there is none.
func LoadCheckpoint(ctx context.Context, kv jetstream.KeyValue) (*Checkpoint, error) {
	e, err := kv.Get(ctx, CheckpointKey)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading checkpoint: %w", err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(e.Value(), &cp); err != nil {
		return nil, fmt.Errorf("checkpoint in bucket %s is corrupt: %w", kv.Bucket(), err)
	}
	return &cp, nil
}

// SaveCheckpoint stores cp, stamped with the time.
func SaveCheckpoint(ctx context.Context, kv jetstream.KeyValue, cp Checkpoint) error {
	cp.Updated = time.Now().UTC()
	b, err := json.Marshal(cp)
	if err != nil {
		return err
	}
	if _, err := kv.Put(ctx, CheckpointKey, b); err != nil {
		return fmt.Errorf("saving checkpoint %s:%d: %w", cp.File, cp.Offset, err)
	}
	return nil
}
