// Package lease elects one leader among the nodes that share a JetStream
// key-value bucket: the node that holds the lease, a key renewed with
// compare-and-set, does the work only one node may do (capture), and
// standbys take over when it stops renewing.
//
// Lifecycle: [New] then [Elector.Run], which campaigns, runs the leader's
// work with a context that ends when the lease is lost, and campaigns
// again. The leader calls [Lease.Check] before each write only a leader
// may make; writes that reach the server after the lease was lost are
// refused by the server-side fences that the leader's work sets up (the
// stream's expected last sequence, the checkpoint's revision).
package lease
