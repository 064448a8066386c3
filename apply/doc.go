// Package apply mirrors a databus source into another MySQL or MariaDB
// server by executing each event's SQL.
//
// Each source transaction is applied in one target transaction, together
// with the applier's checkpoint (the stream sequence of the transaction's
// last event) in the table databus.apply_checkpoint. A restart reads the
// checkpoint from the target and resumes right after it, so a crash neither
// loses nor repeats a transaction: the exactly-once pattern any application
// can use with the SDK by storing the sequence in its own transaction.
//
// DDL cannot share a transaction with the checkpoint (MySQL commits DDL
// implicitly): a DDL statement interrupted between its execution and the
// checkpoint is run again on restart, and errors that mean "already done"
// (table exists, unknown table, duplicate column…) are then tolerated.
package apply
