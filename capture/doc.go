// Package capture reads a MySQL or MariaDB binlog and publishes every change
// of the captured tables into the source's JetStream stream, in commit
// order, exactly once in the stream.
//
// # Contract
//
//   - Every event of a transaction is published in binlog order; each
//     message names the stream sequence it must follow
//     (Nats-Expected-Last-Sequence) and carries a deterministic Nats-Msg-Id
//     derived from its position, so no publish can leave a gap, a swap or
//     a duplicate.
//   - The checkpoint (the state bucket's capture.checkpoint) advances only at
//     transaction boundaries and only after JetStream acknowledged every
//     message before it.
//   - After a restart a session resumes at the checkpoint and skips what the
//     stream already holds; on another MariaDB server of the same
//     replication domain it resumes by GTID.
//   - Under a lease ([Config.Lease], several nodes for one source), capture
//     writes nothing while the lease is not held, and every session checks
//     the stream's newest leader message: the first session of a term
//     publishes the term's leader message and writes the checkpoint over
//     the revision it read (fence.go), so the previous holder's in-flight
//     publishes and checkpoint writes are refused by the server, and its
//     next session stops with [ErrLeaseLost].
//
// # Lifecycle
//
// [New] returns a [Capturer]; [Capturer.Run] runs sessions until its
// context ends or a fatal error ([ErrAccessDenied], [ErrSourceSettings],
// [ErrUndecodable], [ErrServerChanged], [ErrBinlogPurged], [ErrLeaseLost]). Other failures
// are retried with backoff from the checkpoint. A session (capture.go)
// connects and checks the source, chooses where to resume, prepares the
// publisher (publisher.go) and streams: the reader (reader.go) turns
// binlog events into events (through package rowevent) and hands them to
// the publisher, whose acknowledgements save the checkpoint.
// [Capturer.Status] tells what it is doing.
//
// Snapshots are taken by package snapshot, which shares the stream layout
// (internal/bus) and the row encoding (internal/rowevent) but not this
// package.
package capture
