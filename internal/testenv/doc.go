// Package testenv starts the real things integration tests talk to: a
// throwaway mariadbd ([StartMariaDB]) with its own data directory and port,
// and an embedded JetStream server in a temporary directory
// ([StartJetStream]). Both stop when the test ends.
//
// [Rig] puts a capturer between the two, with helpers to read its events
// and take snapshots; it is the one place that knows both capture and
// snapshot, which never import each other.
//
// The helpers never skip a test that runs: when MariaDB is not installed
// they fail it with a message saying how to install it. Only `go test
// -short` (make test-short, the unit tests) skips, by name, the tests that
// start a mariadbd.
package testenv
