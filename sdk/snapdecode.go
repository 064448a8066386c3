package sdk

import (
	"bytes"
	"fmt"
)

// decoder decodes an object's rows on a goroutine of its own, a few
// batches ahead of the rows handed out: decoding is most of the work of
// reading a snapshot, and the consumer's handler (a target's inserts)
// runs meanwhile.
type decoder struct {
	batches chan decoded
	stop    chan struct{}
	cur     []*Event
	err     error
}

// decoded is a batch of rows; err, when set, is the decoding error of
// the row after them, which ends the object.
type decoded struct {
	evs []*Event
	err error
}

const (
	decodeBatch = 256 // rows per batch
	decodeAhead = 4   // batches decoded and not handed out
)

// decodeRows starts decoding lines, the rows of an object of table st,
// until they are all handed out, or the decoder's stop or quit closes.
func decodeRows(man *Manifest, st *snapTable, lines []byte, quit <-chan struct{}) *decoder {
	d := &decoder{batches: make(chan decoded, decodeAhead), stop: make(chan struct{})}
	go func() {
		defer close(d.batches)
		var vals []any
		for len(lines) > 0 {
			b := decoded{evs: make([]*Event, 0, decodeBatch)}
			for len(lines) > 0 && len(b.evs) < decodeBatch {
				var line []byte
				line, lines, _ = bytes.Cut(lines, []byte{'\n'})
				var ev *Event
				if ev, vals, b.err = decodeRow(man, st, line, vals); b.err != nil {
					break
				}
				b.evs = append(b.evs, ev)
			}
			select {
			case d.batches <- b:
			case <-d.stop:
				return
			case <-quit:
				return
			}
			if b.err != nil {
				return
			}
		}
	}()
	return d
}

// next returns the next row decoded, nil once the object's rows are all
// handed out.
func (d *decoder) next() (*Event, error) {
	for len(d.cur) == 0 {
		if d.err != nil {
			return nil, d.err
		}
		b, ok := <-d.batches
		if !ok {
			return nil, nil
		}
		d.cur, d.err = b.evs, b.err
	}
	ev := d.cur[0]
	d.cur = d.cur[1:]
	return ev, nil
}

// decodeRow builds the event of one stored row of table st; vals is
// scratch space, returned for the next row.
func decodeRow(man *Manifest, st *snapTable, line []byte, vals []any) (*Event, []any, error) {
	if man.Version == 1 {
		ev, err := DecodeEvent(line)
		return ev, vals, err
	}
	vals, err := decodeValues(line, vals[:0])
	if err != nil {
		return nil, vals, err
	}
	cols := st.t.Columns
	if len(vals) != len(cols) {
		return nil, vals, fmt.Errorf("row has %d values, the table %d columns", len(vals), len(cols))
	}
	ev := &Event{
		Version: FormatVersion, Source: man.Source, Op: OpInsert, Database: st.t.Database, Table: st.t.Table,
		Columns: cols, PrimaryKey: st.t.PrimaryKey, After: make(map[string]any, len(cols)),
		Position: man.Position, Timestamp: man.Started, Snapshot: true,
	}
	for i, v := range vals {
		ev.After[cols[i].Name] = v
	}
	tuple, err := ev.Tuple()
	if err != nil {
		return nil, vals, err
	}
	ev.SQL, ev.head, ev.tuple = st.insert+tuple, st.insert, tuple
	if len(st.pk) > 0 {
		ev.Key = make(map[string]any, len(st.pk))
		for _, i := range st.pk {
			ev.Key[cols[i].Name] = vals[i]
		}
	}
	return ev, vals, nil
}
