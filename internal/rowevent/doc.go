// Package rowevent turns row images into databus events: the JSON of
// [sdk.Event] with lossless values and the statement that re-creates the
// change on another server. Capture feeds it binlog rows and the snapshot
// feeds it rows read with SELECT; both describe a table the same way (see
// [rowcodec.ColumnsFromTableMap] and [rowcodec.ColumnFromSchema]), so a row
// is encoded identically whichever way it was read.
//
// A [Table] is built once per table shape and reused for every row of it;
// [Table.Events] makes the events of one rows event (or one snapshot
// row), and [Event.AppendJSON] writes an event's JSON into a reused buffer.
package rowevent
