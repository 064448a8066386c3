// Package sdk is the Go client of databus: it reads the changes that
// `databus run` publishes into NATS JetStream.
//
// [Connect] binds to the stream of one source ("DATABUS_<source>") with a
// durable consumer (or an ephemeral one when no name is given), optionally
// filtered by database and table. [Consumer.Next] blocks until the next
// [Message]; the application calls [Message.Ack] when it is done with it.
// A durable consumer that is restarted resumes after the last acknowledged
// event. [Consumer.Events] offers the same as an iterator, and
// [Consumer.Handle] as a handler that acknowledges on success.
//
// Delivery is at-least-once per event: an event handed to the application
// but not acknowledged before a crash is delivered again. Events of one
// source arrive in commit order, also across restarts: acknowledgements are
// cumulative, and a durable consumer that restarts with unacknowledged
// events is moved back to just after its last acknowledged event. Run one
// process per durable consumer name.
//
// Against a NATS cluster give [Config.URL] several servers (or one: the
// client learns the others). A consumer whose server dies or hangs
// reconnects to another and carries on after its last acknowledged event;
// reads that fail while the cluster elects a leader are retried
// ([Transient]). Consumers given no filter read the events
// ([EventSubjects]) and never see capture's leader messages.
//
// The package depends only on the NATS client; the wire format it decodes
// ([Event]) is documented in docs/events.md so that programs in other
// languages can read the same streams.
package sdk
