// Package bus owns the layout of a source's JetStream resources that only
// databus itself writes: the stream's configuration, the keys of the state
// bucket, the capture checkpoint record, the deterministic Nats-Msg-Id of
// each event, how to find the newest event in the stream, and where the
// stream's raft leaders are (moved off a dying capture leader's server). Capture and
// the snapshot both go through it; neither knows the other.
//
// The names that consumers rely on (stream, subjects, buckets, snapshot
// objects, consumer progress) belong to the public contract and live in
// package sdk.
package bus
