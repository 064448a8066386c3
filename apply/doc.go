// Package apply mirrors a databus source into another MySQL or MariaDB
// server, building each row statement from the event's values.
//
// Whole source transactions, in stream order, are applied in one target
// transaction together with the applier's checkpoint (the stream sequence
// of the last event applied) in the table databus.apply_checkpoint. A
// restart reads the checkpoint from the target and resumes right after it,
// so a crash neither loses nor repeats a transaction, and a reader of the
// target never sees part of one: the exactly-once pattern any application
// can use with the SDK by storing the sequence in its own transaction.
//
// Throughput: a reader goroutine receives and decodes events and builds
// their statements while the target runs the ones before. When events wait,
// several source transactions share one target transaction (one commit, one
// checkpoint) and their statements go many per round trip (consecutive
// inserts into one table as one multi-row INSERT); when none wait, what is
// there commits at once. Everything runs on one target connection, so the
// target commits in source order. A statement the target refuses inside a
// batch rolls the group back and the same events are applied again one
// statement per round trip, to stop at that statement with its source
// position and stream sequence.
//
// DDL cannot share a transaction with the checkpoint (MySQL commits DDL
// implicitly): a DDL statement interrupted between its execution and the
// checkpoint is run again on restart, and errors that mean "already done"
// (table exists, unknown table, duplicate column…) are then tolerated.
package apply
