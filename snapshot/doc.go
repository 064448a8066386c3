// Package snapshot takes consistent snapshots of the captured tables into
// the source's JetStream Object Store, each tied to the binlog position,
// GTID set and stream sequence it matches, so that a consumer loads the
// snapshot and continues with the stream right after it.
//
// # Contract
//
//   - Every table is read inside one read view, opened on every reading
//     connection while commits are held off (readview.go): on MariaDB 10.4+
//     by BACKUP STAGE BLOCK_COMMIT, elsewhere by FLUSH TABLES WITH READ
//     LOCK, for the moment it takes to start the transactions and read the
//     binlog position, which is then exactly the view's.
//   - The schema of every covered table is held until the snapshot ends, so
//     DDL on them waits and reaches consumers after the snapshot's rows; a
//     DDL statement that slipped in before the locks abandons the snapshot
//     (tables.go).
//   - Rows are encoded by package rowevent exactly as capture encodes binlog
//     rows, written as gzip JSON lines objects with their SHA-256
//     (read.go, objects.go).
//   - A snapshot becomes the latest only once it is complete: its manifest
//     is written after capture has published every change before its
//     position (handoff.go), then the state bucket's snapshot.latest names
//     it. A snapshot that fails leaves the previous latest in place and its
//     objects are deleted.
//   - One snapshot of a source is taken at a time (lock.go); old snapshots
//     are pruned, but never one a durable consumer is loading (catalog.go).
//
// # Lifecycle
//
// [Take] takes one snapshot and returns its manifest; [Schedule] is what
// `databus run` starts to take them on start, on a timer and after a
// capture recovery. Both need capture to be running for the source: the
// stream sequence of a snapshot is known once capture has reached its
// position.
package snapshot
