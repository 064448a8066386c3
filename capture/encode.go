package capture

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/databus/databus/sdk"
)

// outEvent is an event on its way to JetStream. Row events carry their
// row-specific JSON already encoded (body) after a per-table cached head,
// which keeps encoding off the reflection path; DDL events are marshalled
// from ev. Both produce the JSON of [sdk.Event].
type outEvent struct {
	ev   sdk.Event
	head []byte // `{"v":…,"source":…,"op":…,"db":…,"table":…,"columns":…,"pk":…`
	body []byte // `"key":…,"before":…,"after":…,"sql":…`
}

// encode appends the event's JSON to buf.
func (o *outEvent) encode(buf []byte) ([]byte, error) {
	if o.head == nil {
		b, err := json.Marshal(&o.ev)
		if err != nil {
			return buf, err
		}
		return append(buf, b...), nil
	}
	buf = append(buf, o.head...)
	buf = append(buf, ',')
	buf = append(buf, o.body...)
	p := &o.ev.Position
	buf = append(buf, `,"pos":{"file":`...)
	buf = appendJSONString(buf, p.File)
	buf = append(buf, `,"offset":`...)
	buf = strconv.AppendUint(buf, uint64(p.Offset), 10)
	buf = append(buf, `,"row":`...)
	buf = strconv.AppendInt(buf, int64(p.Row), 10)
	if p.GTID != "" {
		buf = append(buf, `,"gtid":`...)
		buf = appendJSONString(buf, p.GTID)
	}
	buf = append(buf, `,"server_id":`...)
	buf = strconv.AppendUint(buf, uint64(p.ServerID), 10)
	if p.ServerUUID != "" {
		buf = append(buf, `,"server_uuid":`...)
		buf = appendJSONString(buf, p.ServerUUID)
	}
	buf = append(buf, `},"ts":"`...)
	buf = o.ev.Timestamp.AppendFormat(buf, time.RFC3339Nano)
	buf = append(buf, `","txn":{"id":`...)
	buf = appendJSONString(buf, o.ev.Txn.ID)
	buf = append(buf, `,"seq":`...)
	buf = strconv.AppendInt(buf, int64(o.ev.Txn.Seq), 10)
	if o.ev.Txn.Last {
		buf = append(buf, `,"last":true}`...)
	} else {
		buf = append(buf, `,"last":false}`...)
	}
	if o.ev.Snapshot {
		buf = append(buf, `,"snapshot":true`...)
	}
	buf = append(buf, '}')
	return buf, nil
}

// head returns the cached JSON head of the table's events of op.
func (t *table) head(source string, op sdk.Op) []byte {
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
func (t *table) appendImage(buf []byte, img *image) []byte {
	buf = append(buf, '{')
	for i := range t.cols {
		if i > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, t.quoted[i]...)
		buf = appendJSONValue(buf, img.json[i])
	}
	return append(buf, '}')
}

// appendKey appends the primary key object of img, or nothing when the
// table has no primary key; it reports whether it wrote.
func (t *table) appendKey(buf []byte, img *image) ([]byte, bool) {
	if len(t.pk) == 0 {
		return buf, false
	}
	buf = append(buf, `"key":{`...)
	for n, i := range t.pk {
		if n > 0 {
			buf = append(buf, ',')
		}
		buf = append(buf, t.quoted[i]...)
		buf = appendJSONValue(buf, img.json[i])
	}
	return append(buf, '}'), true
}

// appendJSONValue appends a value produced by rowcodec: nil, json.Number
// or string.
func appendJSONValue(buf []byte, v any) []byte {
	switch x := v.(type) {
	case nil:
		return append(buf, "null"...)
	case json.Number:
		return append(buf, x...)
	case string:
		return appendJSONString(buf, x)
	}
	b, _ := json.Marshal(v)
	return append(buf, b...)
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string. s is valid UTF-8 (rowcodec
// guarantees it); only quotes, backslashes and control characters are
// escaped.
func appendJSONString[S ~string | ~[]byte](buf []byte, s S) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' {
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
		}
		start = i + 1
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
