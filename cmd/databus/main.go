// Command databus captures a MySQL or MariaDB binlog into NATS JetStream.
// See the README for the commands and docs/events.md for what it publishes.
package main

import "os"

func main() {
	os.Exit(runMain(os.Args[1:], os.Stdout, os.Stderr))
}
