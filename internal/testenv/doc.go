// Package testenv starts the real things integration tests talk to: a
// throwaway mariadbd ([StartMariaDB]) with its own data directory and port,
// and an embedded JetStream server in a temporary directory
// ([StartJetStream]). Both stop when the test ends.
//
// The helpers never skip: when MariaDB is not installed they fail the test
// with a message saying how to install it.
package testenv
