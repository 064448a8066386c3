// Package embedded runs a NATS server with JetStream inside the databus
// process, so that a single binary needs no other service.
//
// [Start] starts the server and waits until it accepts clients; [Server.Close]
// shuts it down and waits for JetStream to flush. The JetStream store lives
// in the directory given in [Config.StoreDir]. With [Config.Cluster] the
// server is a member of a JetStream cluster of such servers (one per
// `databus run` node), whose replicated streams keep a source's events,
// state and snapshots through the loss of a node.
package embedded
