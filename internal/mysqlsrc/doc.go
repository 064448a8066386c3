// Package mysqlsrc talks to the source MySQL or MariaDB server on behalf
// of capture and the snapshot: it connects (classifying failures as
// [ErrAccessDenied] or [ErrUnreachable]), learns the server's facts
// ([ServerInfo]), runs the start-up checks ([CheckSource]) and reads the
// binlog coordinates ([MasterStatus], [BinaryLogs]). It holds no state
// between calls.
package mysqlsrc
