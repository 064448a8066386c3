package rowevent

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/databus/databus/internal/rowcodec"
	"github.com/databus/databus/sdk"
)

// Event is an event on its way to the stream. Row events made by
// [Table.Events] carry their row-specific JSON already encoded after a
// per-table cached head, which keeps encoding off the reflection path;
// other events (DDL: Event{Event: ev}) are marshalled from the embedded
// [sdk.Event]. Both produce the JSON of [sdk.Event]. Of a row event, only
// Position, Timestamp, Txn and Snapshot may be changed after it is made.
type Event struct {
	sdk.Event
	head []byte // `{"v":…,"source":…,"op":…,"db":…,"table":…,"columns":…,"pk":…`
	body []byte // `"key":…,"before":…,"after":…,"sql":…`
}

// AppendJSON appends the event's JSON to buf.
func (o *Event) AppendJSON(buf []byte) ([]byte, error) {
	if o.head == nil {
		b, err := json.Marshal(&o.Event)
		if err != nil {
			return buf, err
		}
		return append(buf, b...), nil
	}
	buf = append(buf, o.head...)
	buf = append(buf, ',')
	buf = append(buf, o.body...)
	p := &o.Position
	buf = append(buf, `,"pos":{"file":`...)
	buf = rowcodec.AppendJSONString(buf, p.File)
	buf = append(buf, `,"offset":`...)
	buf = strconv.AppendUint(buf, uint64(p.Offset), 10)
	buf = append(buf, `,"row":`...)
	buf = strconv.AppendInt(buf, int64(p.Row), 10)
	if p.GTID != "" {
		buf = append(buf, `,"gtid":`...)
		buf = rowcodec.AppendJSONString(buf, p.GTID)
	}
	buf = append(buf, `,"server_id":`...)
	buf = strconv.AppendUint(buf, uint64(p.ServerID), 10)
	if p.ServerUUID != "" {
		buf = append(buf, `,"server_uuid":`...)
		buf = rowcodec.AppendJSONString(buf, p.ServerUUID)
	}
	buf = append(buf, `},"ts":"`...)
	buf = o.Timestamp.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","txn":{"id":`...)
	buf = rowcodec.AppendJSONString(buf, o.Txn.ID)
	buf = append(buf, `,"seq":`...)
	buf = strconv.AppendInt(buf, int64(o.Txn.Seq), 10)
	if o.Txn.Last {
		buf = append(buf, `,"last":true}`...)
	} else {
		buf = append(buf, `,"last":false}`...)
	}
	if o.Snapshot {
		buf = append(buf, `,"snapshot":true`...)
	}
	buf = append(buf, '}')
	return buf, nil
}

// head returns the cached JSON head of the table's events of op.
func (t *Table) head(source string, op sdk.Op) []byte {
	if source != t.headSource {
		t.heads, t.headSource = nil, source
	}
	if h, ok := t.heads[op]; ok {
		return h
	}
	b, _ := json.Marshal(struct {
		V       int          `json:"v"`
		Source  string       `json:"source"`
		Op      sdk.Op       `json:"op"`
		DB      string       `json:"db"`
		Table   string       `json:"table"`
		Columns []sdk.Column `json:"columns"`
		PK      []string     `json:"pk,omitempty"`
	}{sdk.FormatVersion, source, op, t.db, t.name, t.wire, t.pkNames})
	h := b[:len(b)-1] // drop the closing brace
	if t.heads == nil {
		t.heads = map[sdk.Op][]byte{}
	}
	t.heads[op] = h
	return h
}

// appendImage appends a row image as a JSON object in column order.
func (t *Table) appendImage(buf []byte, img *image) []byte {
	buf = append(buf, '{')
	for i := range t.cols {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, t.quoted[i]...)
		buf = rowcodec.AppendJSONValue(buf, img.json[i])
	}
	return append(buf, '}')
}

// appendKey appends the primary key object of img, or nothing when the
// table has no primary key; it reports whether it wrote.
func (t *Table) appendKey(buf []byte, img *image) ([]byte, bool) {
	if len(t.pk) == 0 {
		return buf, false
	}
	buf = append(buf, `"key":{`...)
	for n, i := range t.pk {
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, t.quoted[i]...)
		buf = rowcodec.AppendJSONValue(buf, img.json[i])
	}
	return append(buf, '}'), true
}
