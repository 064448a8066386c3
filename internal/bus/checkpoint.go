package bus

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go"
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
	CaptureID string `json:"capture_id,omitempty"`
	// Start is the capture.start this capture began under ("" for now,
	// the default): another start does not apply to it.
	Start   string    `json:"start,omitempty"`
	Updated time.Time `json:"updated"`
}

// ErrCheckpointFenced is wrapped by [SaveCheckpoint]'s error when the
// checkpoint changed since the revision the writer knows: another capture
// (a new leader) has written it, and this one must stop.
var ErrCheckpointFenced = errors.New("the checkpoint was written by another capture since this one read it")

// LoadCheckpoint returns the saved checkpoint, or nil when there is none.
func LoadCheckpoint(ctx context.Context, kv jetstream.KeyValue) (*Checkpoint, error) {
	cp, _, err := LoadCheckpointRev(ctx, nil, kv)
	return cp, err
}

// LoadCheckpointRev returns the saved checkpoint and its revision, or nil
// and 0 when there is none. With nc it reads from the bucket's stream
// leader ([GetFromLeader]): the newest revision, the one a save must
// name.
func LoadCheckpointRev(ctx context.Context, nc *nats.Conn, kv jetstream.KeyValue) (*Checkpoint, uint64, error) {
	var (
		value []byte
		rev   uint64
		err   error
	)
	if nc != nil {
		value, rev, err = GetFromLeader(ctx, nc, kv.Bucket(), CheckpointKey)
	} else {
		var e jetstream.KeyValueEntry
		if e, err = kv.Get(ctx, CheckpointKey); err == nil {
			value, rev = e.Value(), e.Revision()
		}
	}
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("reading checkpoint: %w", err)
	}
	var cp Checkpoint
	if err := json.Unmarshal(value, &cp); err != nil {
		return nil, 0, fmt.Errorf("checkpoint in bucket %s is corrupt: %w", kv.Bucket(), err)
	}
	return &cp, rev, nil
}

// errCodeNoMessage is nats-server's JSNoMessageFoundErr.
const errCodeNoMessage jetstream.ErrorCode = 10037

// GetFromLeader reads the newest value of key in bucket from the bucket's
// stream leader, and its revision; jetstream.ErrKeyNotFound when it has
// none or it was deleted. Unlike kv.Get (a direct get, which any replica
// may answer), it never returns a value older than the newest write, and
// it is not sent to a replica that hangs.
func GetFromLeader(ctx context.Context, nc *nats.Conn, bucket, key string) ([]byte, uint64, error) {
	req, _ := json.Marshal(map[string]string{"last_by_subj": "$KV." + bucket + "." + key})
	resp, err := nc.RequestWithContext(ctx, "$JS.API.STREAM.MSG.GET."+kvStream(bucket), req)
	if err != nil {
		return nil, 0, err
	}
	var r struct {
		Message *struct {
			Seq    uint64 `json:"seq"`
			Header []byte `json:"hdrs"`
			Data   []byte `json:"data"`
		} `json:"message"`
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(resp.Data, &r); err != nil {
		return nil, 0, fmt.Errorf("answer %q: %w", resp.Data, err)
	}
	switch {
	case r.Error != nil && r.Error.ErrorCode == errCodeNoMessage:
		return nil, 0, jetstream.ErrKeyNotFound
	case r.Error != nil:
		return nil, 0, r.Error
	case r.Message == nil:
		return nil, 0, fmt.Errorf("answer %q holds no message", resp.Data)
	case bytes.Contains(r.Message.Header, []byte("KV-Operation")): // deleted or purged
		return nil, 0, jetstream.ErrKeyNotFound
	}
	return r.Message.Data, r.Message.Seq, nil
}

// SaveCheckpoint stores cp, stamped with the time, if the stored
// checkpoint is still at revision rev (0: there is none yet), and returns
// its new revision. When another writer changed it since, the error wraps
// [ErrCheckpointFenced]: two captures never both advance one checkpoint.
func SaveCheckpoint(ctx context.Context, kv jetstream.KeyValue, cp Checkpoint, rev uint64) (uint64, error) {
	cp.Updated = time.Now().UTC()
	b, err := json.Marshal(cp)
	if err != nil {
		return 0, err
	}
	if rev == 0 {
		rev, err = kv.Create(ctx, CheckpointKey, b)
	} else {
		rev, err = kv.Update(ctx, CheckpointKey, b, rev)
	}
	if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		return 0, fmt.Errorf("saving checkpoint %s:%d: %w", cp.File, cp.Offset, ErrCheckpointFenced)
	}
	if err != nil {
		return 0, fmt.Errorf("saving checkpoint %s:%d: %w", cp.File, cp.Offset, err)
	}
	return rev, nil
}
