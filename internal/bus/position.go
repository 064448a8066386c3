package bus

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/databus/databus/sdk"
)

// MsgID returns the deterministic Nats-Msg-Id of the event at pos:
// "server_id:file:offset:row". A chunk of a large event adds "#i@attempt".
func MsgID(pos sdk.Position) string {
	return strconv.FormatUint(uint64(pos.ServerID), 10) + ":" + pos.File + ":" +
		strconv.FormatUint(uint64(pos.Offset), 10) + ":" + strconv.Itoa(pos.Row)
}

// ChunkID returns the Nats-Msg-Id of chunk i of the event with id, in the
// publish attempt that starts at stream sequence attempt.
func ChunkID(id string, i int, attempt uint64) string {
	return id + "#" + strconv.Itoa(i) + "@" + strconv.FormatUint(attempt, 10)
}

// ParseMsgID reverses [MsgID] (ignoring a chunk suffix).
func ParseMsgID(id string) (sdk.Position, error) {
	id, _, _ = strings.Cut(id, "#")
	parts := strings.Split(id, ":")
	if len(parts) < 4 {
		return sdk.Position{}, fmt.Errorf("message id %q is not server:file:offset:row", id)
	}
	n := len(parts)
	sid, err1 := strconv.ParseUint(parts[0], 10, 32)
	off, err2 := strconv.ParseUint(parts[n-2], 10, 32)
	row, err3 := strconv.Atoi(parts[n-1])
	if err := errors.Join(err1, err2, err3); err != nil {
		return sdk.Position{}, fmt.Errorf("message id %q: %w", id, err)
	}
	return sdk.Position{ServerID: uint32(sid), File: strings.Join(parts[1:n-2], ":"), Offset: uint32(off), Row: row}, nil
}

// MsgPosition returns the position of the event stream message m carries,
// from its Nats-Msg-Id.
func MsgPosition(m *jetstream.RawStreamMsg) (sdk.Position, error) {
	pos, err := ParseMsgID(m.Header.Get(jetstream.MsgIDHeader))
	if err != nil {
		return sdk.Position{}, fmt.Errorf("stream message %d: %w", m.Sequence, err)
	}
	return pos, nil
}

// CaptureHeader carries, on every message capture publishes, the source's
// capture id ([Checkpoint.CaptureID]).
const CaptureHeader = "Databus-Capture"

// ErrForeignMessage means the stream's newest message is not one capture
// published: taking its position as capture's own would skip changes.
var ErrForeignMessage = errors.New("the stream's newest message was not published by capture")

// Own says how to recognise capture's own messages at the stream's end:
// they carry CaptureID (when set) and, when End is set, lie no further
// than End in the binlog of End's server.
type Own struct {
	CaptureID string
	End       *sdk.Position
}

// LastPublished returns the position of the newest event in the stream and
// the stream's last sequence, or a nil position when the stream holds none.
// complete is false when the newest message is a chunk of an event whose
// other chunks were never published: that event must be published again.
// A newest message that own does not recognise is an error wrapping
// [ErrForeignMessage].
func LastPublished(ctx context.Context, s jetstream.Stream, own Own) (pos *sdk.Position, seq uint64, complete bool, err error) {
	info, err := s.Info(ctx)
	if err != nil {
		return nil, 0, false, fmt.Errorf("reading stream info: %w", err)
	}
	last := info.State.LastSeq
	if info.State.Msgs == 0 {
		return nil, last, true, nil
	}
	// The newest event: leader messages ([sdk.LeaderSubject]) may follow
	// it, and the sequence to follow is the stream's last all the same.
	m, err := s.GetLastMsgForSubject(ctx, eventSubjects(info.Config))
	if errors.Is(err, jetstream.ErrMsgNotFound) {
		return nil, last, true, nil
	}
	if err != nil {
		return nil, 0, false, fmt.Errorf("reading the stream's newest event: %w", err)
	}
	if got := m.Header.Get(CaptureHeader); own.CaptureID != "" && got != own.CaptureID {
		return nil, 0, false, foreignMessage(info.Config.Name, m, fmt.Sprintf("its %s header is %q, not this source's capture id %q", CaptureHeader, got, own.CaptureID))
	}
	complete = true
	if chunk := m.Header.Get(sdk.ChunkHeader); chunk != "" {
		p, err := MsgPosition(m)
		if err != nil {
			return nil, 0, false, err
		}
		i, n, err := sdk.ParseChunk(chunk)
		if err != nil {
			return nil, 0, false, fmt.Errorf("stream message %d: %w", m.Sequence, err)
		}
		pos, complete = &p, i == n
	} else {
		ev, err := sdk.DecodeEvent(m.Data)
		if err != nil {
			return nil, 0, false, fmt.Errorf("stream message %d: %w", m.Sequence, err)
		}
		pos = &ev.Position
	}
	if e := own.End; e != nil && pos.ServerID == e.ServerID && pos.Compare(sdk.Position{File: e.File, Offset: e.Offset, Row: pos.Row}) > 0 {
		return nil, 0, false, foreignMessage(info.Config.Name, m, fmt.Sprintf("its position %s is beyond the end of the server's binlog (%s:%d)", pos, e.File, e.Offset))
	}
	return pos, last, complete, nil
}

// eventSubjects is the wildcard of the events of the stream configured as
// cfg ([sdk.EventSubjects] of its source).
func eventSubjects(cfg jetstream.StreamConfig) string {
	return sdk.EventSubjects(strings.TrimPrefix(cfg.Name, sdk.StreamName("")))
}

// foreignMessage is the error for message m of stream, which capture did
// not publish (why says how that shows), with what to do about it.
func foreignMessage(stream string, m *jetstream.RawStreamMsg, why string) error {
	return fmt.Errorf("%w: stream %s, sequence %d, subject %s: %s. Capture stops rather than take it for its own and skip the changes after it: "+
		"see what it is (nats stream get %s %d), delete it (nats stream rmm %s %d -f), allow only databus to publish to the stream (docs/security.md) and start databus again",
		ErrForeignMessage, stream, m.Sequence, m.Subject, why, stream, m.Sequence, stream, m.Sequence)
}
