package sdk

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/nats-io/nats.go"
)

// Config configures a [Consumer].
type Config struct {
	// URL is the NATS server URL; "nats://127.0.0.1:4222" when empty.
	// Ignored when Conn is set.
	URL string
	// Options are passed to nats.Connect (credentials, TLS, name).
	Options []nats.Option
	// TLS, when set, is the TLS configuration of the connection: the CA
	// that signs the server's certificate (RootCAs) and a client
	// certificate (Certificates) when the server wants one. Ignored when
	// Conn is set.
	TLS *tls.Config
	// Conn is an existing connection to use instead of dialing URL. The
	// consumer does not close it.
	Conn *nats.Conn
	// Source is the databus source name (the `source` setting of
	// `databus run`); "default" when empty.
	Source string
	// Name is the durable consumer name. Empty means an ephemeral consumer
	// that is deleted when the program stops.
	Name string
	// Start is where a newly created consumer begins.
	Start Start
	// Databases limits delivery to these databases, Tables to these
	// "db.table" names; both empty means everything. They add up.
	Databases []string
	Tables    []string
	// AckWait is how long the server waits for an [Message.Ack] before
	// delivering the event again; 30s when zero.
	AckWait time.Duration
	// Resume, when set, returns the stream sequence of the last event whose
	// effects the application has stored (0 when none). Store
	// [Message.Sequence] in the same database transaction as the event's
	// effects and return it here: the consumer then starts right after it,
	// whatever Start, Name and the server's acknowledgements say, so a crash
	// of the application, NATS or databus neither loses nor repeats an
	// effect (exactly-once effects; `databus apply` works this way).
	Resume func(ctx context.Context) (uint64, error)
	// ResumeSnapshot, when set, returns where the application stands in
	// loading a snapshot: the [Message.Snapshot] of the last snapshot event
	// whose effects it stored (in the same transaction), or nil when it is
	// not loading one. A consumer that starts from a snapshot then goes on
	// right after that event, whatever its saved progress says, so a
	// crash in the middle of a large table repeats no row. Resume, when it
	// returns a sequence, wins: the snapshot was loaded.
	ResumeSnapshot func(ctx context.Context) (*SnapshotProgress, error)
	// MaxTxnEvents is the most events [Consumer.NextTxn] holds at once: a
	// larger transaction is handed over in parts. 5,000 when zero; at most
	// 10,000 (the events the server lets a consumer hold unacknowledged).
	MaxTxnEvents int
}
